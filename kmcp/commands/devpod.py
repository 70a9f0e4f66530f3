"""The kubelet's part of ``kmcp dev up``: while the example's Deployment exists, run its pod on 127.0.0.1 with
:mod:`kmcp.devcluster.podrunner` and write the Deployment's status as a kubelet and the deployment controller would.

Deleting the MCPServer (the garbage collector then deletes its Deployment) is ordinary use, not a failure: the pod
stops and the dev cluster stays up; a Deployment that comes back, or whose pod template changes, gets a new pod.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from kmcp import kube
from kmcp.devcluster import podrunner

Obj = dict[str, Any]


def available_status(deployment: Obj, ready: bool) -> Obj:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    count = 1 if ready else 0
    return {
        "observedGeneration": deployment["metadata"].get("generation", 1),
        "replicas": 1, "updatedReplicas": 1, "readyReplicas": count, "availableReplicas": count,
        "unavailableReplicas": 1 - count,
        "conditions": [{"type": "Available", "status": "True" if ready else "False",
                        "reason": "MinimumReplicasAvailable" if ready else "MinimumReplicasUnavailable",
                        "message": "kmcp dev runs the pod locally" if ready else "the local pod is not ready",
                        "lastUpdateTime": now, "lastTransitionTime": now}],
    }


def status_is_current(deployment: Obj, ready: bool) -> bool:
    """True when the live status already says what we would write: no idle writes (each one wakes the controller)."""
    status = deployment.get("status") or {}
    return bool(status.get("observedGeneration") == deployment["metadata"].get("generation", 1)
                and status.get("readyReplicas", 0) == (1 if ready else 0))


def referenced_sources(deployment: Obj) -> tuple[set[str], set[str]]:
    """The Secrets and ConfigMaps the pod's containers take environment variables from (by name)."""
    secrets: set[str] = set()
    config_maps: set[str] = set()
    pod_spec = deployment["spec"]["template"]["spec"]
    for container in [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]:
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                secrets.add(source["secretRef"].get("name", ""))
            if "configMapRef" in source:
                config_maps.add(source["configMapRef"].get("name", ""))
        for item in container.get("env", []):
            value_from = item.get("valueFrom") or {}
            if "secretKeyRef" in value_from:
                secrets.add(value_from["secretKeyRef"].get("name", ""))
            if "configMapKeyRef" in value_from:
                config_maps.add(value_from["configMapKeyRef"].get("name", ""))
    return secrets - {""}, config_maps - {""}


def secret_values(secret: Obj) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, encoded in (secret.get("data") or {}).items():
        try:
            values[key] = base64.b64decode(encoded).decode()
        except (binascii.Error, UnicodeDecodeError):
            continue  # binary data cannot be an environment variable's value
    values.update(secret.get("stringData") or {})
    return values


def pod_identity(deployment: Obj) -> tuple[str, str]:
    """What makes a new pod: another Deployment object (same name, new uid) or a changed pod template."""
    template = json.dumps(deployment["spec"]["template"], sort_keys=True)
    return str(deployment["metadata"].get("uid", "")), template


@dataclass(frozen=True)
class LocalKubelet:
    """Runs the pods of one Deployment (replicas: 1) as local processes for as long as the dev cluster runs."""

    client: kube.Kube
    name: str
    namespace: str
    workdir: Path
    port: int
    adapter_command: Sequence[str]
    startup_timeout: float = 120.0
    poll_seconds: float = 1.0
    log: Callable[[str], None] = print

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    async def run(self, deployment: Obj, *,
                  task_status: trio.TaskStatus[podrunner.RunnerState] = trio.TASK_STATUS_IGNORED) -> None:
        """Forever: started once the first pod is healthy (trio.TooSlowError if it never is); later pods that do
        not start are reported in the log and retried when the Deployment changes."""
        started = False
        while True:
            pod = podrunner.translate(deployment, self.workdir, self.port, adapter_command=list(self.adapter_command),
                                      secret_env=await self._env_sources(deployment))
            async with trio.open_nursery() as nursery:
                try:
                    state: podrunner.RunnerState = await nursery.start(podrunner.run_pod, pod, None,
                                                                       self.startup_timeout)
                except trio.TooSlowError as error:
                    if not started:
                        raise
                    self.log(f"the pod of deployment {self.key} did not start: {error}")
                    state = podrunner.RunnerState()
                if not started:
                    task_status.started(state)
                    started = True
                following = await self._follow(deployment, state)
                nursery.cancel_scope.cancel()
            if following is None:
                self.log(f"deployment {self.key} was deleted: its local pod is stopped (the dev cluster stays up)")
                following = await self._wait_present()
                self.log(f"deployment {self.key} is back: starting its local pod")
            else:
                self.log(f"deployment {self.key} changed: restarting its local pod")
            deployment = following

    async def _env_sources(self, deployment: Obj) -> dict[str, dict[str, str]]:
        """What a kubelet reads for the pod's env: its Secrets' and ConfigMaps' data, by name (a missing one
        leaves its variables unset, as an optional reference does; the session-key Secret may come later)."""
        secrets, config_maps = referenced_sources(deployment)
        sources: dict[str, dict[str, str]] = {}
        for resource, names in ((kube.SECRETS, secrets), (kube.CONFIG_MAPS, config_maps)):
            for name in sorted(names):
                try:
                    found = await self.client.get(resource, name, self.namespace)
                except kube.ApiError:  # missing, not readable, or the apiserver away for a moment
                    continue
                values = secret_values(found) if resource is kube.SECRETS else dict(found.get("data") or {})
                sources.setdefault(name, {}).update(values)
        return sources

    async def _get(self) -> Obj | None:
        """The Deployment, or None once deleted; a moment without the apiserver is retried, not fatal."""
        while True:
            try:
                return await self.client.get(kube.DEPLOYMENTS, self.name, self.namespace)
            except kube.NotFound:
                return None
            except kube.ApiUnavailable:
                await trio.sleep(self.poll_seconds)

    async def _wait_present(self) -> Obj:
        while True:  # a poll, not a watch: one GET a second is nothing for a dev cluster
            deployment = await self._get()
            if deployment is not None:
                return deployment
            await trio.sleep(self.poll_seconds)

    async def _follow(self, deployment: Obj, state: podrunner.RunnerState) -> Obj | None:
        """Keep the status in step with the pod until the Deployment is deleted (None) or needs a new pod (it)."""
        identity = pod_identity(deployment)
        while True:
            if not status_is_current(deployment, state.ready):
                try:
                    await self.client.patch_status(kube.DEPLOYMENTS, self.name, self.namespace,
                                                   available_status(deployment, state.ready))
                except kube.NotFound:
                    return None
                except kube.ApiUnavailable:
                    pass  # written on the next round
            with trio.move_on_after(self.poll_seconds):
                await state.ready_changed.wait()
            latest = await self._get()
            if latest is None or pod_identity(latest) != identity:
                return latest
            deployment = latest
