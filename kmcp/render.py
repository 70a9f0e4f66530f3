"""MCPServer -> the Kubernetes objects that run it. Pure: same input, same dicts, byte-identical YAML.

Shared by the controller (which server-side applies the result) and the CLI (`kmcp render`, `deploy --dry-run`),
so what a user previews is exactly what the controller applies. Only the fields kmcp means to own are set:
server-side apply then leaves everything else (a rollout-restart annotation, an HPA's replica count) alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import msgspec
import yaml

from kmcp import __version__, spec
from kmcp.podcontract import (
    ADAPTER_CONTAINER,
    BRIDGE_SCRIPT,
    POD_IP_ENV,
    SERVER_CONTAINER,
    SESSION_KEY_ENV,
)

MANAGED_BY = "kmcp"
CONFIG_HASH_ANNOTATION = "kmcp.kagent.dev/config-hash"
PRE_STOP_SECONDS = 3  # endpoint removal -> every kube-proxy updated, with room on a loaded 2-core machine
ADAPTER_UID = 65532
DEFAULT_ADAPTER_IMAGE = f"ghcr.io/kagent-dev/kmcp/controller:{__version__}"
# Carried by the install manifests: create on tokenreviews and subjectaccessreviews, what `auth: kubernetes` needs.
# The name of `kmcp install`'s and of the Helm release "kmcp"; another release names its own <fullname>-adapter-auth
# and tells its controller (RenderSettings.adapter_auth_cluster_role), so two releases never share one.
ADAPTER_AUTH_CLUSTER_ROLE = "kmcp-adapter-auth"
# Held by an MCPServer while its auth ClusterRoleBinding exists (the controller deletes the binding, then drops it);
# the binding names its MCPServer by labels: app.kubernetes.io/instance and this one.
AUTH_BINDING_FINALIZER = "kmcp.kagent.dev/auth-binding"
SERVER_NAMESPACE_LABEL = "kmcp.kagent.dev/mcpserver-namespace"
SESSION_KEY_SECRET_SUFFIX = "-session-key"
SESSION_KEY_SECRET_KEY = "key"


@dataclass(frozen=True)
class RenderSettings:
    """What the renderer needs from the controller's own deployment rather than from the MCPServer."""

    adapter_image: str = DEFAULT_ADAPTER_IMAGE
    adapter_image_pull_policy: str = "IfNotPresent"
    cluster_domain: str = "cluster.local"
    adapter_auth_cluster_role: str = ADAPTER_AUTH_CLUSTER_ROLE  # what `auth: kubernetes` binds; the install's own
    # An OTLP/HTTP collector for the adapters' spans (one per JSON-RPC request); "" renders no tracing at all.
    adapter_otlp_endpoint: str = ""


def selector_labels(name: str) -> dict[str, str]:
    """Immutable Deployment selector: never add to it, or existing Deployments cannot be updated."""
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name}


def standard_labels(name: str) -> dict[str, str]:
    return {
        **selector_labels(name),
        "app.kubernetes.io/component": "mcp-server",
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def owner_reference(server: spec.MCPServer) -> dict[str, Any]:
    return {
        "apiVersion": spec.API_VERSION,
        "kind": spec.KIND,
        "name": server.metadata.name,
        "uid": server.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(server: spec.MCPServer, labels: dict[str, str] | None = None,
              annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": server.metadata.name}
    if server.metadata.namespace:
        meta["namespace"] = server.metadata.namespace
    meta["labels"] = {**(labels or {}), **standard_labels(server.metadata.name)}
    if annotations:
        meta["annotations"] = dict(sorted(annotations.items()))
    if server.metadata.uid:  # unknown before the MCPServer exists (kmcp render / deploy --dry-run)
        meta["ownerReferences"] = [owner_reference(server)]
    return meta


def service_account_name(server: spec.MCPServer) -> str:
    return server.spec.deployment.service_account_name or server.metadata.name


def mcp_path(server: spec.MCPServer) -> str:
    http = server.spec.http_transport
    return http.path if server.spec.transport_type == "http" and http else "/mcp"


def server_url(server: spec.MCPServer, settings: RenderSettings = RenderSettings()) -> str:
    """The in-cluster URL clients such as kagent use; also written to status.url."""
    host = f"{server.metadata.name}.{server.metadata.namespace or 'default'}.svc.{settings.cluster_domain}"
    return f"http://{host}:{server.spec.deployment.port}{mcp_path(server)}"


def render_service_account(server: spec.MCPServer) -> dict[str, Any] | None:
    dep = server.spec.deployment
    if dep.service_account_name:
        return None  # the user brings their own; kmcp must not create or own it
    extra = dep.service_account or spec.ServiceAccountConfig()
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(server, dict(sorted(extra.labels.items())), extra.annotations),
    }


def render_service(server: spec.MCPServer) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(server),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(server.metadata.name),
            "ports": [{
                "name": "http",
                "port": server.spec.deployment.port,
                "targetPort": "http",
                "protocol": "TCP",
                "appProtocol": "http",
            }],
        },
    }


def _builtins(value: Any) -> Any:
    return msgspec.to_builtins(value)


def _user_volumes(dep: spec.MCPServerDeployment) -> list[dict[str, Any]]:
    volumes = [dict(v) for v in dep.volumes]
    for index, ref in enumerate(dep.secret_refs):
        volumes.append({"name": f"kmcp-secret-{index}", "secret": {"secretName": ref.name}})
    if dep.config_map_refs:
        volumes.append({
            "name": spec.CONFIG_VOLUME,
            "projected": {"sources": [{"configMap": {"name": ref.name}} for ref in dep.config_map_refs]},
        })
    return volumes


def _server_mounts(dep: spec.MCPServerDeployment) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [_builtins(m) for m in dep.volume_mounts]
    for index, ref in enumerate(dep.secret_refs):
        mounts.append({"name": f"kmcp-secret-{index}", "mountPath": f"{spec.SECRETS_PATH}/{ref.name}",
                       "readOnly": True})
    if dep.config_map_refs:
        mounts.append({"name": spec.CONFIG_VOLUME, "mountPath": spec.CONFIG_PATH, "readOnly": True})
    return mounts


def _server_container(server: spec.MCPServer) -> dict[str, Any]:
    dep = server.spec.deployment
    container: dict[str, Any] = {"name": SERVER_CONTAINER, "image": dep.image}
    if dep.image_pull_policy:
        container["imagePullPolicy"] = dep.image_pull_policy
    if server.spec.transport_type == "stdio":
        # The adapter writes serve.sh into the shared volume before it reports started; the script runs
        # `cmd args` with stdin/stdout on FIFOs the adapter reads and writes.
        container["command"] = ["/bin/sh", BRIDGE_SCRIPT]
        container["args"] = [dep.cmd or "", *dep.args]
    else:
        if dep.cmd:
            container["command"] = [dep.cmd]
        if dep.args:
            container["args"] = list(dep.args)
        target = server.spec.http_transport.target_port if server.spec.http_transport else dep.port
        container["ports"] = [{"name": "http", "containerPort": target, "protocol": "TCP"}]
    if dep.env:
        container["env"] = [{"name": k, "value": v} for k, v in sorted(dep.env.items())]
    if dep.secret_refs:
        container["envFrom"] = [{"secretRef": {"name": ref.name}} for ref in dep.secret_refs]
    mounts = _server_mounts(dep)
    if server.spec.transport_type == "stdio":
        mounts.append({"name": spec.BRIDGE_VOLUME, "mountPath": spec.BRIDGE_PATH})
    if mounts:
        container["volumeMounts"] = mounts
    if dep.resources:
        container["resources"] = _builtins(dep.resources)
    if dep.security_context is not None:
        container["securityContext"] = dep.security_context
    # A deleted pod leaves the Service's endpoints while the kubelet is already stopping it, and kube-proxy needs a
    # moment to catch up: until then new connections still arrive. The kubelet's own sleep (no binary needed in the
    # image) keeps both containers serving meanwhile (a native sidecar stops only after mcp-server), so nothing
    # is refused or dropped on the way out.
    container["lifecycle"] = {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}}
    return container


def _auth_args(server: spec.MCPServer, settings: RenderSettings) -> list[str]:
    auth = server.spec.auth
    if auth is None or auth.type == "none":
        return []
    url = server_url(server, settings)
    args = ["--auth", auth.type]
    for audience in auth.audiences or [url]:
        args += ["--auth-audience", audience]
    args += ["--resource-url", url]
    servers = auth.authorization_servers or ([auth.jwt.issuer] if auth.jwt else [])
    for authorization_server in servers:
        args += ["--authorization-server", authorization_server]
    if auth.type == "kubernetes" and auth.require_subject_access_review:
        args += ["--auth-sar-resource", f"{spec.GROUP}/{spec.PLURAL}", "--auth-sar-verb", "get",
                 "--auth-sar-name", server.metadata.name,
                 "--auth-sar-namespace", server.metadata.namespace or "default"]
    if auth.type == "jwt" and auth.jwt:
        args += ["--jwt-issuer", auth.jwt.issuer]
        if auth.jwt.jwks_url:
            args += ["--jwt-jwks-url", auth.jwt.jwks_url]
    return args


AUTH_BINDING_PREFIX = "kmcp-auth-"
MAX_NAME = 253


def auth_binding_name(server: spec.MCPServer) -> str:
    """``kmcp-auth-<namespace>-<name>-<hash>``: cluster-scoped, so it must tell apart every namespace/name pair, and
    the readable part alone does not ("a-b"/"c" and "a"/"b-c" both read ``a-b-c``). The first 8 hex digits of the
    SHA-256 of ``namespace/name`` ("/" cannot occur in either) make it unambiguous; the readable part is cut so the
    whole stays a valid object name (253 characters). The controller finds bindings by their labels, never by this
    name, so those named by the earlier ``kmcp-auth-<namespace>-<name>`` scheme are still cleaned up."""
    namespace = server.metadata.namespace or "default"
    digest = hashlib.sha256(f"{namespace}/{server.metadata.name}".encode()).hexdigest()[:8]
    readable = f"{AUTH_BINDING_PREFIX}{namespace}-{server.metadata.name}"[:MAX_NAME - len(digest) - 1].rstrip("-.")
    return f"{readable}-{digest}"


def render_auth_binding(server: spec.MCPServer, settings: RenderSettings = RenderSettings()) -> dict[str, Any] | None:
    """With ``auth: kubernetes`` the adapter reviews tokens as the pod's ServiceAccount, which needs the
    cluster-scoped review APIs: only a ClusterRoleBinding can grant them. Cluster-scoped, so it cannot be owned by
    the namespaced MCPServer (no ownerReferences): whoever applies it also deletes it with the MCPServer."""
    auth = server.spec.auth
    if server.spec.transport_type != "stdio" or auth is None or auth.type != "kubernetes":
        return None
    namespace = server.metadata.namespace or "default"
    labels = {**standard_labels(server.metadata.name), SERVER_NAMESPACE_LABEL: namespace}
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": auth_binding_name(server), "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": settings.adapter_auth_cluster_role},
        "subjects": [{"kind": "ServiceAccount", "name": service_account_name(server), "namespace": namespace}],
    }


def session_key_secret_name(server: spec.MCPServer) -> str:
    return f"{server.metadata.name}{SESSION_KEY_SECRET_SUFFIX}"


def render_session_key_secret(server: spec.MCPServer, key: str) -> dict[str, Any]:
    """The replicas' shared session-id key (kmcp/adapter/protocol/session_ids.py). The controller creates it once with a
    random ``key`` (rendering stays pure: the key is an input) and never rewrites it, so replicas, restarts and
    re-renders keep agreeing; the owner reference removes it with the MCPServer."""
    meta = _metadata(server)
    meta["name"] = session_key_secret_name(server)
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque",
            "stringData": {SESSION_KEY_SECRET_KEY: key}}


def _peer_env() -> list[dict[str, Any]]:
    return [{"name": POD_IP_ENV, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]


def _tracing(server: spec.MCPServer, settings: RenderSettings) -> tuple[list[str], list[dict[str, Any]]]:
    """The adapter's args and env for the controller's OTLP collector: spans go there under the MCPServer's name,
    so a trace view tells the servers apart. Nothing without a collector (the adapter then imports no tracing)."""
    if not settings.adapter_otlp_endpoint:
        return [], []
    return (["--otlp-endpoint", settings.adapter_otlp_endpoint],
            [{"name": "OTEL_SERVICE_NAME", "value": server.metadata.name}])


def _adapter_container(server: spec.MCPServer, settings: RenderSettings) -> dict[str, Any]:
    port = server.spec.deployment.port
    stdio = server.stdio
    tracing_args, tracing_env = _tracing(server, settings)
    def probe(period: int, failures: int) -> dict[str, Any]:
        return {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": period,
                "failureThreshold": failures}

    return {
        "name": ADAPTER_CONTAINER,
        "image": settings.adapter_image,
        "imagePullPolicy": settings.adapter_image_pull_policy,
        # A native sidecar: started before mcp-server, kept running beside it, stopped after it.
        "restartPolicy": "Always",
        "command": ["kmcp"],
        "args": [
            "adapter",
            "--listen", f":{port}",
            "--bridge", spec.BRIDGE_PATH,
            "--session-mode", stdio.session_mode,
            "--warm-pool", str(stdio.warm_pool_size),
            "--session-idle-timeout", str(stdio.session_idle_timeout_seconds),
            "--max-sessions", str(stdio.max_sessions),
            "--request-timeout", str(stdio.request_timeout_seconds),
            "--server-era", stdio.server_era,
            # Replicas (set even for one: an HPA may scale a Deployment whose replicas kmcp leaves unset):
            # session ids name this pod, and requests for another pod's session are forwarded there.
            "--peer-address", f"$({POD_IP_ENV})",
            *_auth_args(server, settings),
            *tracing_args,
        ],
        "env": [
            *_peer_env(),
            *tracing_env,
            # optional: without the Secret (not created yet, or objects applied without the controller) the
            # adapter serves alone, with plain session ids.
            {"name": SESSION_KEY_ENV, "valueFrom": {"secretKeyRef": {
                "name": session_key_secret_name(server), "key": SESSION_KEY_SECRET_KEY, "optional": True}}},
        ],
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "startupProbe": probe(1, 30),
        "readinessProbe": probe(10, 3),
        "livenessProbe": probe(20, 3),
        "resources": {"requests": {"cpu": "10m", "memory": "48Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": ADAPTER_UID,
            "runAsGroup": ADAPTER_UID,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": spec.BRIDGE_VOLUME, "mountPath": spec.BRIDGE_PATH}],
    }


def render_pod_template(server: spec.MCPServer, settings: RenderSettings, refs_digest: str = "") -> dict[str, Any]:
    dep = server.spec.deployment
    name = server.metadata.name
    pod: dict[str, Any] = {"serviceAccountName": service_account_name(server)}
    volumes = _user_volumes(dep)
    if server.spec.transport_type == "stdio":
        pod["initContainers"] = [_adapter_container(server, settings)]
        volumes.append({"name": spec.BRIDGE_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}})
    pod["containers"] = [_server_container(server)]
    if volumes:
        pod["volumes"] = volumes
    if dep.pod_security_context is not None:
        pod["securityContext"] = dep.pod_security_context
    if dep.node_selector:
        pod["nodeSelector"] = dict(sorted(dep.node_selector.items()))
    if dep.tolerations:
        pod["tolerations"] = [_builtins(t) for t in dep.tolerations]
    if dep.affinity is not None:
        pod["affinity"] = dep.affinity
    if dep.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": ref.name} for ref in dep.image_pull_secrets]
    labels = {**dict(sorted(dep.labels.items())), **standard_labels(name)}
    annotations = dict(sorted(dep.annotations.items()))
    # Everything that should restart the pods: the template itself (Kubernetes already rolls on that) and the
    # content of referenced Secrets/ConfigMaps, which envFrom does not reload.
    digest = hashlib.sha256(json.dumps([pod, labels, annotations, refs_digest], sort_keys=True).encode())
    annotations[CONFIG_HASH_ANNOTATION] = digest.hexdigest()[:16]
    return {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod}


def render_deployment(server: spec.MCPServer, settings: RenderSettings, refs_digest: str = "") -> dict[str, Any]:
    dep = server.spec.deployment
    deployment_spec: dict[str, Any] = {}
    if dep.replicas is not None:  # unset: leave replicas to an HPA or `kubectl scale`
        deployment_spec["replicas"] = dep.replicas
    deployment_spec["selector"] = {"matchLabels": selector_labels(server.metadata.name)}
    deployment_spec["template"] = render_pod_template(server, settings, refs_digest)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(server),
        "spec": deployment_spec,
    }


def render(server: spec.MCPServer, settings: RenderSettings = RenderSettings(),
           refs_digest: str = "") -> list[dict[str, Any]]:
    """Desired children of an MCPServer, in apply order (identity first, then the Service, then the pods)."""
    objects: list[dict[str, Any]] = []
    service_account = render_service_account(server)
    if service_account is not None:
        objects.append(service_account)
    binding = render_auth_binding(server, settings)
    if binding is not None:  # before the pods: their first token review must already be allowed
        objects.append(binding)
    objects.append(render_service(server))
    objects.append(render_deployment(server, settings, refs_digest))
    return objects


class _PlainDumper(yaml.SafeDumper):
    """Never emit &anchors/*aliases: the output is read by people and by kubectl, not round-tripped."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(objects: list[dict[str, Any]]) -> str:
    """Multi-document YAML in a stable layout."""
    return "".join(
        "---\n" + yaml.dump(obj, Dumper=_PlainDumper, sort_keys=False, width=120) for obj in objects
    )
