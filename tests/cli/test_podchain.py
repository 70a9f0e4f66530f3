"""The pod chain read link by link (kmcp.commands.podchain), from objects as the apiserver returns them."""

from __future__ import annotations

from typing import Any

from kmcp.commands.podchain import PodChain, stuck_link

Obj = dict[str, Any]
DEPLOYMENT: Obj = {"metadata": {"name": "weather", "namespace": "tools", "uid": "d-1"},
                   "spec": {"selector": {"matchLabels": {"app": "weather"}}}}
OWNED_RS: Obj = {"metadata": {"name": "weather-5d9", "ownerReferences": [{"uid": "d-1"}]}, "status": {}}


def pod(status: Obj, node: str = "") -> Obj:
    return {"metadata": {"name": "weather-5d9-x"}, "spec": {"nodeName": node} if node else {}, "status": status}


def chain(*pods: Obj, nodes: int | None = 1, replica_sets: list[Obj] | None = None) -> PodChain:
    return PodChain(DEPLOYMENT, [OWNED_RS] if replica_sets is None else replica_sets, list(pods), nodes)


def test_no_node_comes_first_whatever_else_is_missing() -> None:
    link = stuck_link(chain(nodes=0, replica_sets=[]))
    assert link is not None and link.what.startswith("no node: the cluster has no kubelet registered")
    assert "kubectl get nodes" in link.look


def test_nodes_unknown_to_the_caller_are_not_a_finding() -> None:
    running = pod({"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"}]}, node="n1")
    assert stuck_link(chain(running, nodes=None)) is None


def test_no_replica_set_of_this_deployment_means_no_deployment_controller() -> None:
    foreign = {"metadata": {"name": "other", "ownerReferences": [{"uid": "d-2"}]}}
    link = stuck_link(chain(replica_sets=[foreign]))
    assert link is not None and link.what == "no deployment controller: Deployment tools/weather has no ReplicaSet"


def test_a_replica_set_that_cannot_create_pods_says_why() -> None:
    failing = {**OWNED_RS, "status": {"conditions": [
        {"type": "ReplicaFailure", "status": "True", "message": "pods \"w\" is forbidden: exceeded quota"}]}}
    link = stuck_link(chain(replica_sets=[failing]))
    assert link is not None and "cannot create pods: pods \"w\" is forbidden: exceeded quota" in link.what
    quiet = stuck_link(chain())
    assert quiet is not None and quiet.what == "no replicaset controller: ReplicaSet weather-5d9 has no pods"


def test_pending_pods_say_unschedulable_or_no_scheduler() -> None:
    unschedulable = pod({"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/3 nodes are available: 3 Insufficient memory."}]})
    link = stuck_link(chain(unschedulable))
    assert link is not None
    assert link.what == "pod weather-5d9-x is Pending, unschedulable: 0/3 nodes are available: 3 Insufficient memory."
    link = stuck_link(chain(pod({"phase": "Pending"})))
    assert link is not None and link.what.startswith("no scheduler: pod weather-5d9-x")


def test_an_image_that_cannot_be_pulled_is_named_with_the_kubelet_message() -> None:
    pulling = pod({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
                   "containerStatuses": [{"name": "mcp-server", "state": {"waiting": {
                       "reason": "ErrImagePull", "message": "pull access denied for weather"}}}]}, node="n1")
    link = stuck_link(chain(pulling))
    assert link is not None and link.what == ("image not present: pod weather-5d9-x cannot pull the image of "
                                              "mcp-server (ErrImagePull: pull access denied for weather)")
    assert any("kind-load-cluster" in place for place in link.look)


def test_a_scheduled_pod_still_creating_its_containers_is_not_stuck() -> None:
    creating = pod({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
                    "containerStatuses": [{"name": "mcp-server",
                                           "state": {"waiting": {"reason": "ContainerCreating"}}}]}, node="n1")
    assert stuck_link(chain(creating)) is None
