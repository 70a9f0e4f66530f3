"""The objects that install the kmcp controller (the guide's list, CRD excluded: it has its own file).

Pure: ``install_objects()`` returns dicts in apply order; ``manifests/install/kmcp.yaml`` is its checked-in output
(``python -m kmcp.install > manifests/install/kmcp.yaml``). The ClusterRole grants what the controller really does
and nothing more."""

from __future__ import annotations

import sys
from typing import Any

from kmcp import __version__
from kmcp.render import ADAPTER_AUTH_CLUSTER_ROLE

Obj = dict[str, Any]
DEFAULT_NAMESPACE = "kmcp-system"
DEFAULT_IMAGE = f"ghcr.io/kagent-dev/kmcp/controller:{__version__}"
NAME = "kmcp-controller-manager"
SERVICE_ACCOUNT = "kmcp-controller-manager"
MANAGER_ROLE = "kmcp-manager-role"
LEADER_ELECTION_ROLE = "kmcp-leader-election-role"
METRICS_READER_ROLE = "kmcp-metrics-reader"
METRICS_AUTH_ROLE = "kmcp-metrics-auth-role"
METRICS_SERVICE = "kmcp-controller-manager-metrics-service"
# The one ClusterRole the controller may bind (for `auth: kubernetes`); the controller is told its name
# (KMCP_ADAPTER_AUTH_CLUSTER_ROLE), the Helm chart's is release-scoped.
ADAPTER_AUTH_ROLE = ADAPTER_AUTH_CLUSTER_ROLE
POD_LABELS = {"app.kubernetes.io/name": "kmcp", "control-plane": "controller-manager"}
SELECTOR = {"app.kubernetes.io/name": "kmcp"}
HEALTH_PORT = 8081
METRICS_PORT = 8443
RBAC = "rbac.authorization.k8s.io"
CHILD_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def _labels(component: str) -> dict[str, str]:
    # No app.kubernetes.io/managed-by=kmcp: that label marks the children the controller watches.
    return {"app.kubernetes.io/name": "kmcp", "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": "kmcp"}


def _meta(name: str, namespace: str | None, component: str) -> Obj:
    meta: Obj = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = _labels(component)
    return meta


def _subject(namespace: str) -> list[Obj]:
    return [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}]


def manager_rules() -> list[Obj]:
    return [
        {"apiGroups": ["kagent.dev"], "resources": ["mcpservers"],
         "verbs": ["get", "list", "patch", "update", "watch"]},
        {"apiGroups": ["kagent.dev"], "resources": ["mcpservers/status"], "verbs": ["get", "patch", "update"]},
        {"apiGroups": ["kagent.dev"], "resources": ["mcpservers/finalizers"], "verbs": ["update"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": CHILD_VERBS},
        {"apiGroups": [""], "resources": ["serviceaccounts", "services"], "verbs": CHILD_VERBS},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
        # create: the per-MCPServer session-id key of the adapter replicas (never updated by kmcp)
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "get", "list", "watch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        # auth: kubernetes -> one ClusterRoleBinding per MCPServer to ADAPTER_AUTH_ROLE, and only to it: the
        # apiserver lets a binding be created by whoever may `bind` its role (or holds every permission in it).
        {"apiGroups": [RBAC], "resources": ["clusterrolebindings"], "verbs": CHILD_VERBS},
        {"apiGroups": [RBAC], "resources": ["clusterroles"], "resourceNames": [ADAPTER_AUTH_ROLE],
         "verbs": ["bind"]},
    ]


def review_rules() -> list[Obj]:
    """Create TokenReviews and SubjectAccessReviews: what an adapter with ``--auth kubernetes`` calls, and what the
    controller's secure metrics endpoint calls."""
    return [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
    ]


def controller_args(*, leader_elect: bool = True, health_port: int = HEALTH_PORT, metrics_port: int = METRICS_PORT,
                    metrics_secure: bool = True) -> list[str]:
    args = ["controller"]
    if leader_elect:
        args.append("--leader-elect")
    args += [f"--health-probe-bind-address=:{health_port}", f"--metrics-bind-address=:{metrics_port}"]
    args.append("--metrics-secure" if metrics_secure else "--metrics-secure=false")
    return args


def deployment(namespace: str, image: str, *, leader_elect: bool, replicas: int,
               image_pull_policy: str) -> Obj:
    container: Obj = {
        "name": "manager",
        "image": image,
        "imagePullPolicy": image_pull_policy,
        "command": ["kmcp"],
        "args": controller_args(leader_elect=leader_elect),
        "env": [{"name": "KMCP_ADAPTER_IMAGE", "value": image},
                {"name": "KMCP_ADAPTER_AUTH_CLUSTER_ROLE", "value": ADAPTER_AUTH_ROLE}],
        "ports": [
            {"name": "https", "containerPort": METRICS_PORT, "protocol": "TCP"},
            {"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"},
        ],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": HEALTH_PORT}, "initialDelaySeconds": 15,
                          "periodSeconds": 20},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": HEALTH_PORT}, "initialDelaySeconds": 5,
                           "periodSeconds": 10},
        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "10m", "memory": "64Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(NAME, namespace, "controller"),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(SELECTOR)},
            "template": {
                "metadata": {"labels": {**_labels("controller"), **POD_LABELS},
                             "annotations": {"kubectl.kubernetes.io/default-container": "manager"}},
                "spec": {
                    "serviceAccountName": SERVICE_ACCOUNT,
                    "terminationGracePeriodSeconds": 10,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                },
            },
        },
    }


def install_objects(namespace: str = DEFAULT_NAMESPACE, image: str = DEFAULT_IMAGE, leader_elect: bool = True,
                    replicas: int = 1, image_pull_policy: str = "IfNotPresent") -> list[Obj]:
    """Namespace, ServiceAccount, RBAC, metrics Service and the controller Deployment, in apply order."""
    rbac_ref = {"apiGroup": RBAC, "kind": "ClusterRole"}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(namespace, None, "controller")},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(SERVICE_ACCOUNT, namespace, "rbac"),
         "automountServiceAccountToken": True},
        {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRole", "metadata": _meta(MANAGER_ROLE, None, "rbac"),
         "rules": manager_rules()},
        {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRoleBinding",
         "metadata": _meta("kmcp-manager-rolebinding", None, "rbac"),
         "roleRef": {**rbac_ref, "name": MANAGER_ROLE}, "subjects": _subject(namespace)},
        {"apiVersion": f"{RBAC}/v1", "kind": "Role", "metadata": _meta(LEADER_ELECTION_ROLE, namespace, "rbac"),
         "rules": [
             {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
              "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
             {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
         ]},
        {"apiVersion": f"{RBAC}/v1", "kind": "RoleBinding",
         "metadata": _meta("kmcp-leader-election-rolebinding", namespace, "rbac"),
         "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": LEADER_ELECTION_ROLE},
         "subjects": _subject(namespace)},
        {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRole", "metadata": _meta(METRICS_READER_ROLE, None, "rbac"),
         "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]},
        {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRole", "metadata": _meta(METRICS_AUTH_ROLE, None, "rbac"),
         "rules": review_rules()},
        {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRoleBinding",
         "metadata": _meta("kmcp-metrics-auth-rolebinding", None, "rbac"),
         "roleRef": {**rbac_ref, "name": METRICS_AUTH_ROLE}, "subjects": _subject(namespace)},
        # Bound by the controller to the ServiceAccount of each MCPServer with auth: kubernetes.
        {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRole", "metadata": _meta(ADAPTER_AUTH_ROLE, None, "rbac"),
         "rules": review_rules()},
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(METRICS_SERVICE, namespace, "metrics"),
         "spec": {"type": "ClusterIP", "selector": dict(SELECTOR),
                  "ports": [{"name": "https", "port": METRICS_PORT, "targetPort": METRICS_PORT, "protocol": "TCP"}]}},
        deployment(namespace, image, leader_elect=leader_elect, replicas=replicas,
                   image_pull_policy=image_pull_policy),
    ]


def install_yaml(**kwargs: Any) -> str:
    from kmcp.render import to_yaml

    return to_yaml(install_objects(**kwargs))


if __name__ == "__main__":
    sys.stdout.write(install_yaml())
