"""The informer's relist path on the real apiserver: a watch from a resourceVersion the apiserver no longer has
gets 410 Gone, and the informer relists and carries on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trio

from kmcp import kube
from kmcp.controller.informer import Informer
from kmcp.devcluster.control_plane import ControlPlane
from tests.controller.conftest import compact_etcd, mcpserver
from tests.kubehelpers import Kube, service_account_token

pytestmark = pytest.mark.cluster


async def eventually(predicate: Callable[[], bool]) -> None:
    for _ in range(200):  # 10 s
        if predicate():
            return
        await trio.sleep(0.05)
    raise AssertionError("timed out")


def _configmap(namespace: str, name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": {"k": "v"}}


async def test_a_too_old_resource_version_is_gone_and_the_informer_relists(control_plane: ControlPlane,
                                                                           kubeconfig: Path, installed: object,
                                                                           namespace: str) -> None:
    config = await trio.to_thread.run_sync(kube_load, str(kubeconfig))
    async with kube_client(config) as client:
        # The MCPServer CRD's watch cache started long after resourceVersion 1, and etcd's history is compacted
        # (as kube-apiserver does every 5 minutes): nothing can serve a watch from there.
        await trio.to_thread.run_sync(compact_etcd, control_plane.etcd_url)
        for _ in range(100):  # a watch cache that is still initializing answers 429 for a moment
            try:
                async for _ in client.watch(kube.MCPSERVERS, namespace, resource_version="1", timeout_seconds=5):
                    pass
            except kube.TooManyRequests:
                await trio.sleep(0.1)
                continue
            except kube.Gone as gone:
                assert gone.status == 410
                break
            raise AssertionError("a watch from resourceVersion 1 was served")

        restarts: list[str] = []
        seen: list[tuple[str, str]] = []
        informer = Informer(client, kube.MCPSERVERS, namespace=namespace, watch_timeout_seconds=1,
                            on_restart=restarts.append)
        informer.add_handler(lambda kind, obj: seen.append((kind, obj["metadata"]["name"])))
        await client.create(kube.MCPSERVERS, mcpserver("before", namespace))
        async with trio.open_nursery() as nursery:
            await nursery.start(informer.run)
            assert ("ADDED", "before") in seen and informer.relists == 1
            def fall_behind() -> bool:
                # As if the watch fell far behind: the next watch gets 410. (A bookmark at the end of the running
                # watch may move the version forward again, so keep pushing it back until the 410 happened.)
                informer.resource_version = "1"
                return "gone" in restarts

            await eventually(fall_behind)
            await client.create(kube.MCPSERVERS, mcpserver("after", namespace))
            await eventually(lambda: informer.get(namespace, "after") is not None)
            assert informer.relists >= 2
            await client.delete(kube.MCPSERVERS, "before", namespace)
            await eventually(lambda: informer.get(namespace, "before") is None)
            assert ("DELETED", "before") in seen
            nursery.cancel_scope.cancel()


async def test_server_side_apply_and_typed_errors(kubeconfig: Path, namespace: str) -> None:
    config = await trio.to_thread.run_sync(kube_load, str(kubeconfig))
    async with kube_client(config) as client:
        obj = _configmap(namespace, "applied")
        first = await client.apply(obj)
        again = await client.apply(obj)
        assert first["metadata"]["resourceVersion"] == again["metadata"]["resourceVersion"]  # a no-op
        assert any(m["manager"] == "kmcp" and m["operation"] == "Apply" for m in again["metadata"]["managedFields"])
        with pytest.raises(kube.AlreadyExists):
            await client.create(kube.CONFIG_MAPS, obj)
        with pytest.raises(kube.NotFound):
            await client.get(kube.CONFIG_MAPS, "missing", namespace)
        with pytest.raises(kube.Invalid) as invalid:
            await client.create(kube.CONFIG_MAPS, _configmap(namespace, "Not_A_Name"))
        assert invalid.value.causes
        stale = dict(first)
        stale["metadata"] = {**first["metadata"], "resourceVersion": "1"}
        with pytest.raises(kube.Conflict):
            await client.replace(kube.CONFIG_MAPS, stale)
        listed = await client.list(kube.CONFIG_MAPS, namespace, metadata_only=True)
        assert any(i["metadata"]["name"] == "applied" and "data" not in i for i in listed["items"])
        assert client.counter.writes() >= 2


def kube_load(path: str) -> kube.KubeConfig:
    return kube.load_config(path)


def kube_client(config: kube.KubeConfig) -> kube.Kube:
    return kube.Kube(config)


async def test_in_cluster_config_uses_the_service_account_files(kube_admin: Kube, control_plane: ControlPlane,
                                                                installed: object, tmp_path: Path) -> None:
    sa_dir = tmp_path / "serviceaccount"
    sa_dir.mkdir()
    token = await trio.to_thread.run_sync(lambda: service_account_token(kube_admin, "kmcp-system",
                                                                        "kmcp-controller-manager"))
    (sa_dir / "token").write_text(token)
    (sa_dir / "ca.crt").write_bytes(control_plane.ca_pem)
    (sa_dir / "namespace").write_text("kmcp-system")
    url = httpx.URL(control_plane.server)
    env = {"KUBERNETES_SERVICE_HOST": str(url.host), "KUBERNETES_SERVICE_PORT": str(url.port)}
    config = kube.load_config(environ=env, service_account_dir=sa_dir)
    assert config.in_cluster and config.namespace == "kmcp-system" and config.refresh_token is not None
    config.refresh_interval = 0  # ask the loader's hook on every call: it re-reads the file when due
    async with kube_client(config) as client:
        listed = await client.list(kube.MCPSERVERS)
        assert listed["kind"] == "MCPServerList"
        with pytest.raises(kube.Forbidden):  # the controller's role does not reach Namespaces
            await client.list(kube.NAMESPACES)
