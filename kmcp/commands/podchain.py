"""Why a Deployment has no running pod: the chain from Deployment to a running container, read link by link.

A pod runs only when every link works: the deployment controller creates a ReplicaSet, the replicaset controller
creates pods, the scheduler binds them to a node, a kubelet on that node pulls the image and starts it. A cluster
missing a link (a control plane without a kubelet, no scheduler, an image the node cannot pull) otherwise looks
like a slow rollout until the timeout. :func:`stuck_link` is pure (tested with objects, no cluster);
:func:`observe` is the one place that reads the cluster for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kmcp import kube

Obj = dict[str, Any]
REPLICA_SETS = kube.Resource("apps", "v1", "replicasets", kind="ReplicaSet")
NODES = kube.Resource("", "v1", "nodes", namespaced=False, kind="Node")
PODS = kube.Resource("", "v1", "pods", kind="Pod")
IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})


@dataclass(frozen=True)
class PodChain:
    """What the cluster shows of one Deployment's way to a running pod."""

    deployment: Obj
    replica_sets: list[Obj] = field(default_factory=list)
    pods: list[Obj] = field(default_factory=list)
    nodes: int | None = None  # None: not allowed to list Nodes, so not a finding


@dataclass(frozen=True)
class StuckLink:
    """The missing or failing link: what it is, and where to look."""

    what: str
    look: list[str]


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _condition(obj: Obj, type_: str) -> Obj | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def _waiting(pod: Obj) -> Iterable[tuple[str, Obj]]:
    status = pod.get("status") or {}
    for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (container.get("state") or {}).get("waiting")
        if waiting:
            yield str(container.get("name", "")), dict(waiting)


def _pod_link(pod: Obj, namespace: str) -> StuckLink | None:
    name = _name(pod)
    describe = f"kubectl describe pod {name} -n {namespace}"
    for container, waiting in _waiting(pod):
        reason, message = waiting.get("reason", ""), str(waiting.get("message", ""))[:200]
        if reason in IMAGE_PULL_REASONS:
            return StuckLink(f"image not present: pod {name} cannot pull the image of {container} ({reason}"
                             + (f": {message}" if message else "") + ")",
                             [describe, "a locally built image must be pushed or loaded into the cluster: "
                                        "kmcp build --kind-load-cluster NAME, or --push"])
        if reason == "CrashLoopBackOff":
            return StuckLink(f"container {container} of pod {name} keeps exiting (CrashLoopBackOff)",
                             [f"kubectl logs {name} -c {container} -n {namespace} --previous", describe])
    if (pod.get("spec") or {}).get("nodeName"):
        return None
    scheduled = _condition(pod, "PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False":
        return StuckLink(f"pod {name} is Pending, unschedulable: {str(scheduled.get('message', ''))[:200]}",
                         [describe, "kubectl get nodes (capacity, taints)"])
    if scheduled is None:
        return StuckLink(f"no scheduler: pod {name} has not been considered for any node",
                         ["is kube-scheduler running? kubectl get pods -n kube-system", describe])
    return None


def stuck_link(chain: PodChain) -> StuckLink | None:
    """The first link that keeps the Deployment from a running pod, when one shows; None while it may be moving."""
    deployment = chain.deployment
    meta = deployment.get("metadata") or {}
    name, namespace = str(meta.get("name", "")), str(meta.get("namespace", ""))
    if chain.nodes == 0:
        return StuckLink("no node: the cluster has no kubelet registered (no Node objects), so nothing can run "
                         "its pod", ["kubectl get nodes", "a kubelet must join the cluster (kind, minikube, a cloud "
                                     "node pool); kmcp dev up runs only its own example locally"])
    uid = meta.get("uid")
    owned = [rs for rs in chain.replica_sets
             if any(ref.get("uid") == uid for ref in (rs.get("metadata") or {}).get("ownerReferences") or [])]
    if not owned:
        return StuckLink(f"no deployment controller: Deployment {namespace}/{name} has no ReplicaSet",
                         ["is kube-controller-manager running (with the deployment controller)? "
                          "kubectl get pods -n kube-system", f"kubectl describe deployment {name} -n {namespace}"])
    for replica_set in owned:
        failure = _condition(replica_set, "ReplicaFailure")
        if failure is not None and failure.get("status") == "True":
            return StuckLink(f"ReplicaSet {_name(replica_set)} cannot create pods: "
                             f"{str(failure.get('message', ''))[:200]}",
                             [f"kubectl describe replicaset {_name(replica_set)} -n {namespace}"])
    if not chain.pods:
        return StuckLink(f"no replicaset controller: ReplicaSet {_name(owned[0])} has no pods",
                         ["is kube-controller-manager running (with the replicaset controller)? "
                          "kubectl get pods -n kube-system",
                          f"kubectl describe replicaset {_name(owned[0])} -n {namespace}"])
    for pod in chain.pods:
        link = _pod_link(pod, namespace)
        if link is not None:
            return link
    return None


async def observe(client: kube.Kube, deployment: Obj) -> PodChain:
    """Read the links of ``deployment``'s chain; what the caller may not read is left out, not an error."""
    meta = deployment.get("metadata") or {}
    namespace = str(meta.get("namespace", ""))
    labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
    nodes: int | None = None
    try:  # one is enough to know there is a node: never the whole list of a large cluster
        page = await client.request("GET", NODES.path(), params={"limit": 1})
        nodes = len(page.get("items") or [])
    except kube.Forbidden:
        pass
    replica_sets = (await client.list(REPLICA_SETS, namespace, label_selector=selector)).get("items") or []
    pods = (await client.list(PODS, namespace, label_selector=selector)).get("items") or []
    return PodChain(deployment, list(replica_sets), list(pods), nodes)


async def find_stuck_link(client: kube.Kube, name: str, namespace: str) -> StuckLink | None:
    """The stuck link of Deployment ``namespace/name``, or None (also when it cannot be read: no finding then)."""
    try:
        deployment = await client.get(kube.DEPLOYMENTS, name, namespace)
        return stuck_link(await observe(client, deployment))
    except (kube.NotFound, kube.Forbidden):
        return None


def stuck_report(what: str, name: str, namespace: str, link: StuckLink) -> str:
    lines = [f"{what} cannot become Ready: {link.what}"]
    lines += [f"  where to look: {place}" for place in link.look]
    lines.append(f"  it stays applied, and becomes Ready once that is fixed: kmcp status {name} -n {namespace}")
    return "\n".join(lines)
