"""`kmcp controller` (the zipapp, as the install's own ServiceAccount) against the real kube-apiserver and the real
garbage collector. There is no deployment controller: tests write the Deployment status subresource themselves."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from kmcp import render, spec
from tests.controller.conftest import (
    ControllerProcess,
    condition,
    ensure_namespace,
    events_about,
    mcpserver,
    set_deployment_available,
    wait_condition,
)
from tests.kubehelpers import Kube, load_manifests, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples" / "mcpservers").glob("*.yaml"))
MCP = "kagent.dev/v1alpha1"
Obj = dict[str, Any]


def children(kube: Kube, name: str, namespace: str) -> dict[str, Obj | None]:
    return {
        "ServiceAccount": kube.read("v1", "ServiceAccount", name, namespace),
        "Service": kube.read("v1", "Service", name, namespace),
        "Deployment": kube.read("apps/v1", "Deployment", name, namespace),
    }


def pod_spec(kube: Kube, name: str, namespace: str) -> Obj:
    dep = kube.read("apps/v1", "Deployment", name, namespace)
    assert dep is not None
    return dict(dep["spec"]["template"]["spec"])


def test_every_guide_example_gets_its_children(kube: Kube, shared_controller: ControllerProcess) -> None:
    for path in EXAMPLES:
        objects = load_manifests(path)
        for ns in {o["metadata"].get("namespace") for o in objects if o["metadata"].get("namespace")}:
            ensure_namespace(kube, ns)
        kube.apply(objects)
        for obj in objects:
            if obj["kind"] != "MCPServer":
                continue
            name, ns = obj["metadata"]["name"], obj["metadata"]["namespace"]
            live = wait_condition(kube, name, ns, "Programmed", "True")
            server = spec.decode_mcpserver(live)
            assert live["status"]["url"] == render.server_url(server)
            assert live["status"]["observedGeneration"] == live["metadata"]["generation"]
            assert condition(live, "Accepted")["status"] == "True"  # type: ignore[index]
            assert condition(live, "ResolvedRefs")["status"] == "True"  # type: ignore[index]
            assert condition(live, "Ready")["reason"] == "DeploymentProgressing"  # type: ignore[index]
            expected = {o["kind"] for o in render.render(server)}
            found = children(kube, name, ns)
            for kind, child in found.items():
                if kind not in expected:
                    assert child is None or not child["metadata"].get("ownerReferences"), (path.name, kind)
                    continue
                assert child is not None, f"{path.name}: no {kind}"
                (owner,) = child["metadata"]["ownerReferences"]
                assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
                    "MCPServer", name, live["metadata"]["uid"], True)
                assert child["metadata"]["labels"]["app.kubernetes.io/instance"] == name
                assert child["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kmcp"
            dep = found["Deployment"]
            assert dep is not None
            containers = {c["name"]: c for c in dep["spec"]["template"]["spec"]["containers"]}
            assert containers["mcp-server"]["image"] == server.spec.deployment.image
            if server.spec.transport_type == "stdio":
                (adapter,) = dep["spec"]["template"]["spec"]["initContainers"]
                assert adapter["image"] == "example.test/kmcp:dev"  # from KMCP_ADAPTER_IMAGE
            # kubectl get all -l app.kubernetes.io/instance=<name>
            labelled = kube.items("apps/v1", "Deployment", ns, labelSelector=f"app.kubernetes.io/instance={name}")
            assert [d["metadata"]["name"] for d in labelled] == [name]
            # One Event says what the first reconcile achieved, not all four conditions it sets.
            event = wait_for(lambda: next((e for e in events_about(kube, name, ns)  # noqa: B023
                                           if e["reason"] == "Programmed"), None),
                             timeout=5, description=f"events about {name}")
            assert event["type"] == "Normal"
            assert event["message"].startswith("Programmed=True (Programmed): ")
            assert "Accepted" not in event["message"] and "ResolvedRefs" not in event["message"]


def test_spec_change_rolls_the_template_but_keeps_what_others_own(kube: Kube, namespace: str,
                                                                  shared_controller: ControllerProcess) -> None:
    kube.apply(mcpserver("roll", namespace, args=["--one"]))
    wait_condition(kube, "roll", namespace, "Programmed", "True")
    dep_path = f"/apis/apps/v1/namespaces/{namespace}/deployments/roll"
    # kubectl rollout restart (another field manager) and kubectl scale
    restart = {"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}}}}}
    kube.request("PATCH", dep_path, content=json.dumps(restart), params={"fieldManager": "kubectl-rollout"},
                 headers={"Content-Type": "application/strategic-merge-patch+json"})
    kube.request("PATCH", dep_path + "/scale", content=json.dumps({"spec": {"replicas": 3}}),
                 params={"fieldManager": "kubectl-scale"}, headers={"Content-Type": "application/merge-patch+json"})
    time.sleep(6)  # one resync of the shared controller (5 s) passes over the externally changed Deployment
    dep = kube.read("apps/v1", "Deployment", "roll", namespace)
    assert dep is not None
    assert dep["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
    assert dep["spec"]["replicas"] == 3
    old_hash = dep["spec"]["template"]["metadata"]["annotations"][render.CONFIG_HASH_ANNOTATION]

    kube.apply(mcpserver("roll", namespace, args=["--two"]))
    args = wait_for(lambda: [c["args"] for c in pod_spec(kube, "roll", namespace)["containers"]
                             if "--two" in c.get("args", [])], timeout=15, description="new args")
    assert args
    dep = kube.read("apps/v1", "Deployment", "roll", namespace)
    assert dep is not None
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations[render.CONFIG_HASH_ANNOTATION] != old_hash
    assert annotations["kubectl.kubernetes.io/restartedAt"] == "2026-01-01T00:00:00Z"
    assert dep["spec"]["replicas"] == 3
    live = wait_condition(kube, "roll", namespace, "Programmed", "True")
    assert live["status"]["observedGeneration"] == 2


def test_ready_follows_the_deployment_status(kube: Kube, namespace: str,
                                             shared_controller: ControllerProcess) -> None:
    kube.apply(mcpserver("ready", namespace))
    wait_condition(kube, "ready", namespace, "Ready", "False", reason="DeploymentProgressing")
    start = time.monotonic()
    set_deployment_available(kube, "ready", namespace, True)
    live = wait_condition(kube, "ready", namespace, "Ready", "True", reason="DeploymentReady", timeout=10)
    became_ready = time.monotonic() - start
    assert became_ready < 1.0, became_ready
    transition = condition(live, "Ready")["lastTransitionTime"]  # type: ignore[index]
    start = time.monotonic()
    set_deployment_available(kube, "ready", namespace, False)
    live = wait_condition(kube, "ready", namespace, "Ready", "False", reason="DeploymentUnavailable", timeout=10)
    assert time.monotonic() - start < 1.0
    assert condition(live, "Accepted")["status"] == "True"  # type: ignore[index]
    assert condition(live, "Ready")["message"] == "Deployment does not have minimum availability."  # type: ignore
    assert transition
    event = wait_for(lambda: next((e for e in events_about(kube, "ready", namespace)
                                   if e["reason"] == "DeploymentUnavailable"), None), timeout=5, description="event")
    assert "DeploymentReady" in {e["reason"] for e in events_about(kube, "ready", namespace)}
    assert event["type"] == "Warning"
    assert event["involvedObject"]["kind"] == "MCPServer"
    assert event["reportingComponent"] == "kmcp"


def test_resolved_refs_waits_for_a_missing_secret(kube: Kube, namespace: str,
                                                  shared_controller: ControllerProcess) -> None:
    kube.apply(mcpserver("refs", namespace, secretRefs=[{"name": "api-keys"}]))
    live = wait_condition(kube, "refs", namespace, "ResolvedRefs", "False", reason="RefNotFound")
    assert "Secret api-keys" in condition(live, "ResolvedRefs")["message"]  # type: ignore[index]
    assert condition(live, "Ready")["status"] == "False"  # type: ignore[index]
    assert kube.read("apps/v1", "Deployment", "refs", namespace) is None
    wait_for(lambda: "RefNotFound" in {e["reason"] for e in events_about(kube, "refs", namespace)}, timeout=5,
             description="RefNotFound event")
    start = time.monotonic()
    kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api-keys", "namespace": namespace},
                "stringData": {"TOKEN": "t0"}})
    wait_condition(kube, "refs", namespace, "ResolvedRefs", "True", timeout=10)
    assert time.monotonic() - start < 2.5  # the Secret's watch event, not the 5 s resync
    wait_condition(kube, "refs", namespace, "Programmed", "True", timeout=10)
    first = pod_spec(kube, "refs", namespace)
    assert any(v.get("secret", {}).get("secretName") == "api-keys" for v in first.get("volumes", []))
    before = kube.read("apps/v1", "Deployment", "refs", namespace)
    assert before is not None
    old = before["spec"]["template"]["metadata"]["annotations"][render.CONFIG_HASH_ANNOTATION]
    # A changed Secret restarts the pods: its resourceVersion is part of the config hash.
    kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api-keys", "namespace": namespace},
                "stringData": {"TOKEN": "t1"}})
    wait_for(lambda: (kube.read("apps/v1", "Deployment", "refs", namespace) or {})["spec"]["template"]["metadata"][
        "annotations"][render.CONFIG_HASH_ANNOTATION] != old, timeout=10, description="config hash to change")


def test_a_key_in_two_configmaps_is_not_resolved(kube: Kube, namespace: str,
                                                 shared_controller: ControllerProcess) -> None:
    for cm in ("a", "b"):
        kube.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": cm, "namespace": namespace},
                    "data": {"config.yaml": cm}})
    kube.apply(mcpserver("dup", namespace, configMapRefs=[{"name": "a"}, {"name": "b"}]))
    live = wait_condition(kube, "dup", namespace, "ResolvedRefs", "False", reason="ConflictingKeys")
    assert "config.yaml" in condition(live, "ResolvedRefs")["message"]  # type: ignore[index]


def test_stdio_without_cmd_is_not_accepted(kube: Kube, namespace: str,
                                           shared_controller: ControllerProcess) -> None:
    server = mcpserver("nocmd", namespace)
    del server["spec"]["deployment"]["cmd"]
    kube.create(server)  # the CRD admits it; kmcp cannot wrap an unknown ENTRYPOINT
    live = wait_condition(kube, "nocmd", namespace, "Accepted", "False", reason="MissingCommand")
    accepted = condition(live, "Accepted")
    assert accepted is not None and "spec.deployment.cmd" in accepted["message"]
    assert accepted["observedGeneration"] == 1
    assert condition(live, "Ready")["status"] == "False"  # type: ignore[index]
    assert kube.read("apps/v1", "Deployment", "nocmd", namespace) is None
    wait_for(lambda: any(e["reason"] == "MissingCommand" and e["type"] == "Warning"
                         for e in events_about(kube, "nocmd", namespace)), timeout=5, description="event")


def test_env_var_names_follow_the_apiservers_version(kube: Kube, namespace: str,
                                                     shared_controller: ControllerProcess) -> None:
    """The apiserver here is >= 1.32: it takes any printable ASCII env var name but "=", so the controller does too
    (and the Deployment it applies is the proof that the apiserver agrees)."""
    assert int(kube.get("/version").json()["minor"].rstrip("+")) >= 32
    kube.create(mcpserver("digit", namespace, env={"1BAD": "x", "my var": "y"}))
    live = wait_condition(kube, "digit", namespace, "Programmed", "True")
    assert condition(live, "Accepted")["status"] == "True"  # type: ignore[index]
    (container,) = pod_spec(kube, "digit", namespace)["containers"]
    assert {(e["name"], e.get("value")) for e in container["env"]} >= {("1BAD", "x"), ("my var", "y")}

    kube.create(mcpserver("equals", namespace, env={"A=B": "x"}))
    live = wait_condition(kube, "equals", namespace, "Accepted", "False", reason="InvalidSpec")
    assert "spec.deployment.env.A=B: an environment variable name may not contain '='" in \
        condition(live, "Accepted")["message"]  # type: ignore[index]
    assert kube.read("apps/v1", "Deployment", "equals", namespace) is None


def test_deleting_the_mcpserver_garbage_collects_every_child(kube: Kube, namespace: str,
                                                             shared_controller: ControllerProcess) -> None:
    kube.apply(mcpserver("gone", namespace))
    wait_condition(kube, "gone", namespace, "Programmed", "True")
    assert all(children(kube, "gone", namespace).values())
    kube.remove(MCP, "MCPServer", "gone", namespace)
    wait_for(lambda: not any(children(kube, "gone", namespace).values()), timeout=30,
             description="the garbage collector to delete the children")


def test_a_service_account_no_longer_rendered_is_pruned(kube: Kube, namespace: str,
                                                        shared_controller: ControllerProcess) -> None:
    kube.apply(mcpserver("own-sa", namespace))
    wait_condition(kube, "own-sa", namespace, "Programmed", "True")
    assert kube.read("v1", "ServiceAccount", "own-sa", namespace) is not None
    kube.apply(mcpserver("own-sa", namespace, serviceAccountName="default"))
    wait_for(lambda: kube.read("v1", "ServiceAccount", "own-sa", namespace) is None, timeout=10,
             description="the kmcp-made ServiceAccount to be pruned")
    assert pod_spec(kube, "own-sa", namespace)["serviceAccountName"] == "default"
    assert kube.read("v1", "ServiceAccount", "default", namespace) is not None


def test_drift_in_a_field_kmcp_owns_is_reverted(kube: Kube, namespace: str,
                                                shared_controller: ControllerProcess) -> None:
    kube.apply(mcpserver("drift", namespace))
    wait_condition(kube, "drift", namespace, "Programmed", "True")
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "mcp-server", "image": "evil.test/x:1"}]}}}}
    kube.request("PATCH", f"/apis/apps/v1/namespaces/{namespace}/deployments/drift", content=json.dumps(patch),
                 params={"fieldManager": "kubectl-edit"},
                 headers={"Content-Type": "application/strategic-merge-patch+json"})
    wait_for(lambda: pod_spec(kube, "drift", namespace)["containers"][0]["image"] == "example.test/server:1",
             timeout=10, description="the image to be set back")


def test_a_deleted_child_is_recreated(kube: Kube, namespace: str, shared_controller: ControllerProcess) -> None:
    kube.apply(mcpserver("heal", namespace))
    wait_condition(kube, "heal", namespace, "Programmed", "True")
    kube.remove("v1", "Service", "heal", namespace)
    wait_for(lambda: kube.read("v1", "Service", "heal", namespace), timeout=10, description="Service recreated")


def _scrape(proc: ControllerProcess) -> dict[str, float]:
    text = httpx.get(f"http://{proc.metrics_url}", timeout=5).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def _writes(metrics: dict[str, float]) -> float:
    return sum(v for k, v in metrics.items() if k.startswith("kmcp_kube_api_requests_total{")
               and any(f'verb="{verb}"' in k for verb in ("create", "update", "patch", "delete")))


def test_an_idle_converged_cluster_costs_no_writes(kube: Kube, namespace: str, start_controller: Any) -> None:
    kube.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": namespace},
                "data": {"config.yaml": "x: 1"}})
    for index, path in enumerate(EXAMPLES):
        for obj in load_manifests(path):
            if obj["kind"] == "MCPServer":
                obj["metadata"]["namespace"] = namespace
                obj["metadata"]["name"] = f"idle-{index}"
                dep = obj["spec"]["deployment"]
                dep.pop("secretRefs", None)
                if dep.get("configMapRefs"):
                    dep["configMapRefs"] = [{"name": "cfg"}]
                kube.apply(obj)
    # with auth: kubernetes, its finalizer and cluster-scoped ClusterRoleBinding must converge to no writes too
    guarded = mcpserver("idle-auth", namespace)
    guarded["spec"]["auth"] = {"type": "kubernetes"}
    kube.apply(guarded)
    proc: ControllerProcess = start_controller(f"--namespace={namespace}", "--resync-period=1s",
                                               "--metrics-secure=false", name="idle")
    for index in range(len(EXAMPLES)):
        wait_condition(kube, f"idle-{index}", namespace, "Programmed", "True")
    wait_condition(kube, "idle-auth", namespace, "Programmed", "True")
    assert kube.items("rbac.authorization.k8s.io/v1", "ClusterRoleBinding",
                      labelSelector=f"app.kubernetes.io/instance=idle-auth,{render.SERVER_NAMESPACE_LABEL}={namespace}")
    set_deployment_available(kube, "idle-0", namespace, True)
    wait_condition(kube, "idle-0", namespace, "Ready", "True")
    time.sleep(1.5)  # let the last status write's own watch event come back through the queue
    before = _scrape(proc)
    versions = {o["metadata"]["name"]: o["metadata"]["resourceVersion"]
                for o in kube.items(MCP, "MCPServer", namespace) + kube.items("apps/v1", "Deployment", namespace)}
    time.sleep(4.5)  # four resyncs of every MCPServer
    after = _scrape(proc)
    reconciles = 'controller_runtime_reconcile_total{controller="mcpserver",result="success"}'
    assert after[reconciles] - before[reconciles] >= 3 * len(EXAMPLES), (before[reconciles], after[reconciles])
    assert _writes(after) == _writes(before), {k: v for k, v in after.items() if "api_requests" in k}
    assert versions == {o["metadata"]["name"]: o["metadata"]["resourceVersion"]
                        for o in kube.items(MCP, "MCPServer", namespace)
                        + kube.items("apps/v1", "Deployment", namespace)}
    assert proc.running()

    # A restarted controller has no memory of what it applied: comparing the cached children with what it would
    # apply must be enough to make no write at all on this converged namespace.
    assert proc.stop() == 0
    restarted: ControllerProcess = start_controller(f"--namespace={namespace}", "--resync-period=1s",
                                                    "--watch-timeout=1s", "--metrics-secure=false",
                                                    name="idle-restarted")
    time.sleep(3.5)
    metrics = _scrape(restarted)
    assert metrics[reconciles] >= 2 * len(EXAMPLES)
    # and every watch ended and resumed a few times meanwhile, without a write either
    assert metrics['kmcp_watch_restarts_total{cause="timeout",resource="deployments"}'] >= 2
    assert _writes(metrics) == 0, {k: v for k, v in metrics.items() if "api_requests" in k}
    assert metrics['kmcp_watch_restarts_total{cause="timeout",resource="clusterrolebindings"}'] >= 2
    # A change still arrives through the restarting watches.
    server = kube.read(MCP, "MCPServer", "idle-0", namespace)
    assert server is not None
    patch = {"spec": {"deployment": {"args": ["--changed"]}}}
    kube.request("PATCH", f"/apis/kagent.dev/v1alpha1/namespaces/{namespace}/mcpservers/idle-0",
                 content=json.dumps(patch), headers={"Content-Type": "application/merge-patch+json"})
    wait_for(lambda: any("--changed" in c.get("args", []) for c in pod_spec(kube, "idle-0", namespace)["containers"]),
             timeout=10, description="the change to be applied")
    # (while a controller runs: the finalizer would otherwise hold the MCPServer and its namespace)
    kube.remove(MCP, "MCPServer", "idle-auth", namespace)
    kube.wait_deleted(MCP, "MCPServer", "idle-auth", namespace, timeout=15)


def test_probes_and_namespace_scoping(kube: Kube, namespace: str, start_controller: Any, tmp_path: Path) -> None:
    other = f"{namespace}-other"
    kube.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}})
    try:
        proc: ControllerProcess = start_controller(f"--namespace={namespace}", "--metrics-bind-address=0",
                                                   name="scoped")
        base = f"http://127.0.0.1:{proc.probe_port}"
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert httpx.get(f"{base}/readyz").status_code == 200
        assert httpx.get(f"{base}/nope").status_code == 404
        kube.apply(mcpserver("mine", namespace))
        kube.apply(mcpserver("theirs", other))
        wait_condition(kube, "mine", namespace, "Programmed", "True")
        time.sleep(1)
        # ("reconciled", not "applied": the session's shared controller may have converged it first)
        touched = {r.get("namespace") for r in proc.log_records() if r.get("msg") == "reconciled"}
        assert touched == {namespace}
    finally:
        kube.delete(f"/api/v1/namespaces/{other}", check=False)


def test_sigterm_shuts_down_cleanly(start_controller: Any) -> None:
    proc: ControllerProcess = start_controller("--metrics-bind-address=0", "--namespace=default", name="term")
    start = time.monotonic()
    assert proc.stop() == 0
    assert time.monotonic() - start < 5
    assert any(r.get("msg") == "stopped" for r in proc.log_records())


def test_log_lines_are_json(shared_controller: ControllerProcess) -> None:
    records = shared_controller.log_records()
    assert records and all("level" in r and "msg" in r and "ts" in r for r in records[:50])



def test_an_apply_the_apiserver_rejects_is_reported_and_retried(kube: Kube, namespace: str,
                                                                shared_controller: ControllerProcess) -> None:
    kube.apply(mcpserver("bad-volume", namespace, volumes=[{"name": "data", "emptyDir": {"sizeLimit": "lots"}}],
                         volumeMounts=[{"name": "data", "mountPath": "/data"}]))
    live = wait_condition(kube, "bad-volume", namespace, "Programmed", "False", reason="ApplyFailed")
    assert "Deployment bad-volume" in condition(live, "Programmed")["message"]  # type: ignore[index]
    assert condition(live, "Ready")["status"] == "False"  # type: ignore[index]
    # Retries back off (0.5 s, 1 s, 2 s, ...) instead of spinning, and repeats aggregate: the retries are one Event
    # whose series counts them (patched at most every --event-series-interval=1s), not one Event per attempt.
    def attempts() -> int:
        return max([(e.get("series") or {}).get("count", 1) for e in events_about(kube, "bad-volume", namespace)
                    if e["reason"] == "ApplyFailed" and e["type"] == "Warning"] or [0])

    wait_for(lambda: attempts() >= 3, timeout=15, description="repeated ApplyFailed attempts in one Event's series")
    failures = [e for e in events_about(kube, "bad-volume", namespace) if e["reason"] == "ApplyFailed"]
    assert len(failures) <= 2, failures  # the Programmed=False transition and the series of retries
    # Fixing the spec converges.
    kube.apply(mcpserver("bad-volume", namespace, volumes=[{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}],
                         volumeMounts=[{"name": "data", "mountPath": "/data"}]))
    wait_condition(kube, "bad-volume", namespace, "Programmed", "True", timeout=15)


def test_the_install_deployment_is_valid_for_the_apiserver(kube: Kube, installed: list[Obj]) -> None:
    from kmcp import install

    deployment = next(o for o in install.install_objects() if o["kind"] == "Deployment")
    response = kube.request("PATCH", "/apis/apps/v1/namespaces/kmcp-system/deployments/kmcp-controller-manager",
                            content=json.dumps(deployment), params={"fieldManager": "kmcp-tests", "dryRun": "All",
                                                                    "fieldValidation": "Strict"},
                            headers={"Content-Type": "application/apply-patch+yaml"})
    assert response.json()["spec"]["template"]["spec"]["containers"][0]["name"] == "manager"
