"""Which mode `kmcp dev up` runs in, and the one line that says so (kmcp.commands.devmode): pure, no machine."""

from __future__ import annotations

import pytest

from kmcp.commands.devmode import Mode, NodeFacts, choose_mode, requested_mode
from kmcp.errors import BadInput, CommandFailed

NOT_ROOT = "a dev node needs root (it runs containerd and the kubelet)"
BUSY = "interface kmcp0 exists: another dev node runs on this machine"


def test_auto_takes_the_real_node_where_the_machine_can_run_one() -> None:
    choice = choose_mode("auto", NodeFacts())
    assert choice.mode is Mode.REAL and not choice.builds
    assert choice.line() == ("kmcp dev mode: real node (containerd + kubelet run the pods): this machine can run one "
                             "(--node local for the pod runner)")


@pytest.mark.parametrize(("facts", "line"), [
    (NodeFacts(unsupported=NOT_ROOT), f"no real node here, {NOT_ROOT}"),
    (NodeFacts(busy=BUSY), f"no real node, {BUSY}"),
    (NodeFacts(unbuilt=("CoreDNS",)),
     "this machine can run a real node but CoreDNS is not built yet (once, by `kmcp dev up --node real` or "
     "`bash scripts/setup`)"),
    (NodeFacts(unbuilt=("CoreDNS", "the image root filesystem")),
     "this machine can run a real node but CoreDNS, the image root filesystem are not built yet "
     "(once, by `kmcp dev up --node real` or `bash scripts/setup`)"),
])
def test_auto_falls_back_to_the_pod_runner_and_says_why_in_one_line(facts: NodeFacts, line: str) -> None:
    choice = choose_mode("auto", facts)
    assert choice.mode is Mode.LOCAL
    assert choice.line() == f"kmcp dev mode: local pod runner (the pod's containers run as local processes): {line}"
    assert "\n" not in choice.line()


def test_local_is_local_even_where_a_node_could_run() -> None:
    choice = choose_mode("local", NodeFacts())
    assert choice.mode is Mode.LOCAL
    assert choice.line().endswith(": asked for (--node local)")


def test_real_builds_what_is_missing_and_says_so() -> None:
    choice = choose_mode("real", NodeFacts(unbuilt=("kubelet, kube-scheduler and kube-proxy",)))
    assert choice.mode is Mode.REAL and choice.builds
    assert "building kubelet, kube-scheduler and kube-proxy first" in choice.line()


@pytest.mark.parametrize("facts", [NodeFacts(unsupported=NOT_ROOT), NodeFacts(busy=BUSY)])
def test_real_where_no_node_can_run_fails_instead_of_running_something_else(facts: NodeFacts) -> None:
    with pytest.raises(CommandFailed) as failed:
        choose_mode("real", facts)
    assert str(failed.value) == f"--node real: {facts.unsupported or facts.busy}"


def test_the_flag_wins_over_the_environment_and_bad_values_name_their_source() -> None:
    assert requested_mode(None, {}) == "auto"
    assert requested_mode(None, {"KMCP_DEV_NODE": "Real"}) == "real"
    assert requested_mode("local", {"KMCP_DEV_NODE": "real"}) == "local"
    with pytest.raises(BadInput, match=r"^\$KMCP_DEV_NODE: 'kind' is not one of auto, real, local$"):
        requested_mode(None, {"KMCP_DEV_NODE": "kind"})
