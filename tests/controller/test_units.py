"""Pure parts of the controller: conditions, the status computed from what a reconcile observed, the work queue
(on trio's MockClock), metrics text, flag parsing, the child comparison that keeps an idle cluster write-free, kube's
typed errors, and the install manifest."""

from __future__ import annotations

import argparse
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
import yaml

from kmcp import install, kube
from kmcp.controller import cli, conditions
from kmcp.controller.metrics import ControllerMetrics, Counter, Histogram
from kmcp.controller.queue import WorkQueue
from kmcp.controller.reconcile import (
    APPLIED_HASH_ANNOTATION,
    NamespaceTerminating,
    Observed,
    ReconcileError,
    References,
    contains,
    decode,
    deployment_ready,
    failing_as,
    server_conditions,
    server_status,
    with_applied_hash,
)
from kmcp.spec import Problem

ROOT = Path(__file__).resolve().parents[2]
C = conditions.Condition


# -- conditions

def test_last_transition_time_moves_only_when_status_changes() -> None:
    first = conditions.set_conditions([], [C("Ready", "False", "DeploymentProgressing", "wait")], 1, "T1")
    assert first == [{"type": "Ready", "status": "False", "reason": "DeploymentProgressing", "message": "wait",
                      "lastTransitionTime": "T1", "observedGeneration": 1}]
    same_status = conditions.set_conditions(first, [C("Ready", "False", "DeploymentUnavailable", "down")], 2, "T2")
    assert same_status[0]["lastTransitionTime"] == "T1"
    assert (same_status[0]["reason"], same_status[0]["observedGeneration"]) == ("DeploymentUnavailable", 2)
    flipped = conditions.set_conditions(same_status, [C("Ready", "True", "DeploymentReady")], 2, "T3")
    assert flipped[0]["lastTransitionTime"] == "T3"


def test_conditions_keep_canonical_order_and_untouched_entries() -> None:
    current = [{"type": "Custom", "status": "True", "reason": "X"}]
    out = conditions.set_conditions(current, [C("Ready", "True", "R"), C("Accepted", "True", "A")], 3, "T")
    assert [c["type"] for c in out] == ["Accepted", "Ready", "Custom"]
    assert out[2] == current[0]


def test_changed_conditions_are_the_ones_worth_an_event() -> None:
    before = conditions.set_conditions([], [C("Accepted", "True", "Accepted"), C("Ready", "False", "A")], 1, "T")
    after = conditions.set_conditions(before, [C("Accepted", "True", "Accepted", "new message"),
                                               C("Ready", "False", "B")], 1, "T")
    assert [c["type"] for c in conditions.changed(before, after)] == ["Ready"]


def test_one_event_says_what_changed_not_every_condition() -> None:
    """The four conditions are a chain: a True one implies every earlier one, and one that is not True holds back
    the later ones. An Event names the step that moved, and what is now pending, nothing implied by it."""
    new = conditions.set_conditions([], [C("Accepted", "True", "Accepted", "the spec is valid"),
                                         C("ResolvedRefs", "True", "ResolvedRefs"),
                                         C("Programmed", "True", "Programmed", "applied"),
                                         C("Ready", "False", "DeploymentProgressing", "waiting")], 1, "T")
    created = conditions.summarize(conditions.changed([], new))
    assert created is not None and (created.type, created.reason) == ("Normal", "Programmed")
    assert created.note == "Programmed=True (Programmed): applied; Ready=False (DeploymentProgressing): waiting"
    failing = conditions.set_conditions(new, [C("Programmed", "False", "ApplyFailed", "boom"),
                                              C("Ready", "False", "NotProgrammed", "not applied")], 1, "T")
    warning = conditions.summarize(conditions.changed(new, failing))
    assert warning is not None and (warning.type, warning.reason, warning.note) == (
        "Warning", "ApplyFailed", "Programmed=False (ApplyFailed): boom")
    assert conditions.summarize(conditions.changed(failing, failing)) is None

    rejected = conditions.set_conditions([], [C("Accepted", "False", "MissingCommand", "spec.deployment.cmd: required"),
                                              C("ResolvedRefs", "Unknown", "NotAccepted", "the spec is not accepted"),
                                              C("Programmed", "False", "NotAccepted", "the spec is not accepted"),
                                              C("Ready", "False", "NotAccepted", "the spec is not accepted")], 1, "T")
    summary = conditions.summarize(conditions.changed([], rejected))
    assert summary is not None and summary.note == "Accepted=False (MissingCommand): spec.deployment.cmd: required"
    missing = conditions.set_conditions([], [C("Accepted", "True", "Accepted", "the spec is valid"),
                                             C("ResolvedRefs", "False", "RefNotFound", "not found: Secret k"),
                                             C("Programmed", "False", "RefsNotResolved", "waiting"),
                                             C("Ready", "False", "RefsNotResolved", "waiting")], 1, "T")
    summary = conditions.summarize(conditions.changed([], missing))
    assert summary is not None and (summary.reason, summary.note) == (
        "RefNotFound", "ResolvedRefs=False (RefNotFound): not found: Secret k")
    ready = conditions.set_conditions(new, [C("Ready", "True", "DeploymentReady", "ready")], 1, "T")
    summary = conditions.summarize(conditions.changed(new, ready))
    assert summary is not None and summary.note == "Ready=True (DeploymentReady): ready"


def test_an_event_about_a_failed_step_names_only_that_step() -> None:
    """What server_conditions holds back behind a failed step carries one of HELD_BACK_REASONS, so the Event about
    a new MCPServer that fails at any step names that step alone."""
    failures = {
        "Accepted": Observed([Problem("spec.deployment.cmd", "required for stdio", "MissingCommand")]),
        "ResolvedRefs": Observed(url=URL, refs=References(missing=["Secret k"])),
        "Programmed": Observed(url=URL, apply_error=ReconcileError("ApplyFailed", "boom")),
    }
    for step, observed in failures.items():
        summary = conditions.summarize(conditions.set_conditions([], server_conditions(observed), 1, "T"))
        assert summary is not None and summary.type == "Warning", step
        assert summary.note.startswith(f"{step}=False (") and summary.note.count("=False") == 1, summary.note


def test_deployment_ready_needs_available_and_a_current_generation() -> None:
    def dep(gen: int, observed: int, available: str | None) -> dict[str, object]:
        conds = [] if available is None else [{"type": "Available", "status": available, "message": "m"}]
        return {"metadata": {"generation": gen}, "status": {"observedGeneration": observed, "conditions": conds}}

    assert deployment_ready(None).reason == "DeploymentNotFound"
    assert deployment_ready(dep(2, 1, "True")).reason == "DeploymentProgressing"
    assert deployment_ready(dep(2, 2, "True")) == C("Ready", "True", "DeploymentReady", "MCPServer deployment is ready")
    assert deployment_ready(dep(2, 2, "False")).status == "False"
    assert deployment_ready(dep(2, 2, None)).reason == "DeploymentUnavailable"


# -- status: a pure function of the MCPServer and what one reconcile observed

URL = "http://weather.tools.svc.cluster.local:3000/mcp"
READY_DEPLOYMENT = {"metadata": {"generation": 1},
                    "status": {"observedGeneration": 1, "conditions": [{"type": "Available", "status": "True"}]}}


def _server(generation: int = 1, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "weather", "namespace": "tools", "generation": generation}, "status": status or {}}


def _summary(status: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(c["type"], c["status"], c["reason"]) for c in status["conditions"]]


def test_a_ready_server_has_four_true_conditions_and_its_url() -> None:
    status = server_status(_server(), Observed(url=URL, deployment=READY_DEPLOYMENT), "T1")
    assert _summary(status) == [("Accepted", "True", "Accepted"), ("ResolvedRefs", "True", "ResolvedRefs"),
                                ("Programmed", "True", "Programmed"), ("Ready", "True", "DeploymentReady")]
    assert (status["observedGeneration"], status["url"]) == (1, URL)


def test_a_converged_server_gets_the_status_it_already_has() -> None:
    """What keeps an idle cluster write-free: recomputing later yields the same status, timestamps included."""
    observed = Observed(url=URL, deployment=READY_DEPLOYMENT)
    first = server_status(_server(), observed, "T1")
    assert server_status(_server(status=first), observed, "T2") == first


def test_a_rejected_spec_holds_back_every_later_condition_and_keeps_the_old_url() -> None:
    problems = [Problem("spec.deployment.cmd", "required for stdio", "MissingCommand"), Problem("spec.x", "bad")]
    status = server_status(_server(2, {"url": URL}), Observed(problems), "T1")
    assert _summary(status) == [("Accepted", "False", "MissingCommand"), ("ResolvedRefs", "Unknown", "NotAccepted"),
                                ("Programmed", "False", "NotAccepted"), ("Ready", "False", "NotAccepted")]
    assert status["conditions"][0]["message"] == "spec.deployment.cmd: required for stdio; spec.x: bad"
    assert (status["observedGeneration"], status["url"]) == (2, URL)
    assert "url" not in server_status(_server(), Observed(problems), "T1")


def test_missing_and_conflicting_references_are_one_resolvedrefs_message() -> None:
    refs = References(missing=["Secret creds"], conflicts=["key 'a' is in ConfigMaps one and two"])
    conds = server_conditions(Observed(url=URL, refs=refs))
    assert conds[1] == C("ResolvedRefs", "False", "RefNotFound",
                         "not found: Secret creds; key 'a' is in ConfigMaps one and two")
    assert [c.reason for c in conds[2:]] == ["RefsNotResolved", "RefsNotResolved"]
    only_conflicts = server_conditions(Observed(url=URL, refs=References(conflicts=["key 'a' ..."])))
    assert only_conflicts[1].reason == "ConflictingKeys"


def test_a_failed_apply_is_programmed_false_with_its_reason() -> None:
    failure = ReconcileError("ApplyFailed", "could not apply Service weather: boom")
    conds = server_conditions(Observed(url=URL, apply_error=failure))
    assert conds[2:] == [C("Programmed", "False", "ApplyFailed", "could not apply Service weather: boom"),
                         C("Ready", "False", "NotProgrammed", "the children are not applied")]


def test_a_failed_api_call_becomes_a_retryable_reconcile_error() -> None:
    with pytest.raises(ReconcileError) as raised, failing_as("StatusUpdateFailed", "could not write status", "tools"):
        raise kube.ApiUnreachable(0, "ConnectError", "All connection attempts failed")
    assert str(raised.value) == "could not write status: All connection attempts failed"
    assert raised.value.reason == "StatusUpdateFailed"
    terminating = kube.error_from_status(403, {"details": {"causes": [{"reason": "NamespaceTerminating"}]}})
    with pytest.raises(NamespaceTerminating), failing_as("ApplyFailed", "could not apply Service weather", "tools"):
        raise terminating
    with pytest.raises(ReconcileError), failing_as("PruneFailed", "could not delete Service weather"):
        raise terminating  # only creates and applies pass the namespace that may be terminating


def test_an_undecodable_server_has_problems_and_no_structs() -> None:
    server, problems = decode({"apiVersion": "kagent.dev/v1alpha1", "kind": "MCPServer", "metadata": {"name": "a"},
                               "spec": {"transportType": "grpc", "deployment": {"image": "x"}}})
    assert server is None and problems and "spec.transportType" in str(problems[0])


# -- child comparison

def test_contains_ignores_defaults_and_foreign_fields_but_not_drift() -> None:
    desired = {"spec": {"template": {"metadata": {"annotations": {"a": "1"}},
                                     "spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    live = {"spec": {"replicas": 3, "template": {
        "metadata": {"annotations": {"a": "1", "kubectl.kubernetes.io/restartedAt": "now"}},
        "spec": {"containers": [{"name": "c", "image": "i", "terminationMessagePath": "/dev/x"}]}}}}
    assert contains(live, desired)
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "other"  # type: ignore[index]
    assert not contains(live, desired)
    assert not contains({"l": [1, 2]}, {"l": [1]})


def test_applied_hash_changes_when_a_field_is_dropped() -> None:
    with_env = with_applied_hash({"metadata": {"name": "a", "annotations": {"x": "1"}}, "spec": {"env": [1]}})
    without = with_applied_hash({"metadata": {"name": "a", "annotations": {"x": "1"}}, "spec": {}})
    assert with_env["metadata"]["annotations"][APPLIED_HASH_ANNOTATION] != \
        without["metadata"]["annotations"][APPLIED_HASH_ANNOTATION]
    assert not contains(with_env, without)  # so the apply that removes the field happens


# -- work queue

async def test_queue_coalesces_and_never_runs_a_key_twice_at_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "a"):
        queue.add(key)
    assert queue.depth == 2
    assert await queue.get() == "a"
    queue.add("a")  # while a worker holds it: deferred, not queued twice
    assert queue.depth == 1
    assert await queue.get() == "b"
    queue.done("b")
    assert queue.depth == 0
    queue.done("a")
    assert queue.depth == 1 and await queue.get() == "a"


async def test_queue_backoff_is_exponential_per_key_and_reset_by_forget() -> None:
    queue: WorkQueue[str] = WorkQueue(backoff_base=0.5, backoff_max=4.0)
    assert [queue.backoff("k") for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert queue.backoff("other") == 0.5
    queue.forget("k")
    assert queue.backoff("k") == 0.5


async def test_retried_keys_come_back_after_their_delay(autojump_clock: trio.testing.MockClock) -> None:
    queue: WorkQueue[str] = WorkQueue(backoff_base=1.0)
    seen: list[tuple[str, float]] = []
    attempts = {"k": 0}

    async def worker(key: str) -> None:
        seen.append((key, trio.current_time()))
        attempts[key] += 1
        if attempts[key] < 4:
            queue.retry(key)
        else:
            queue.forget(key)

    async with trio.open_nursery() as nursery:
        await nursery.start(queue.run_workers, worker, 2)
        start = trio.current_time()
        queue.add("k")
        await trio.sleep(100)
        nursery.cancel_scope.cancel()
    times = [round(t - start, 3) for _, t in seen]
    assert times == [0.0, 1.0, 3.0, 7.0]
    assert queue.failures("k") == 0


async def test_workers_are_bounded(autojump_clock: trio.testing.MockClock) -> None:
    queue: WorkQueue[int] = WorkQueue()
    running = 0
    peak = 0

    async def worker(key: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await trio.sleep(1)
        running -= 1

    async with trio.open_nursery() as nursery:
        await nursery.start(queue.run_workers, worker, 3)
        for key in range(10):
            queue.add(key)
        await trio.sleep(3.5)
        assert peak == 3
        await trio.sleep(10)
        assert queue.depth == 0
        nursery.cancel_scope.cancel()


# -- metrics

def test_metrics_text_format() -> None:
    counter = Counter("x_total", "Things.")
    counter.inc(result="success")
    counter.inc(2, result="error")
    assert counter.render() == ["# HELP x_total Things.", "# TYPE x_total counter",
                                'x_total{result="error"} 2', 'x_total{result="success"} 1']
    hist = Histogram("d_seconds", "Durations.", buckets=(0.1, 1.0))
    hist.observe(0.05)
    hist.observe(0.5)
    hist.observe(5)
    lines = hist.render()
    assert 'd_seconds_bucket{le="0.1"} 1' in lines
    assert 'd_seconds_bucket{le="1"} 2' in lines
    assert 'd_seconds_bucket{le="+Inf"} 3' in lines
    assert "d_seconds_count 3" in lines and "d_seconds_sum 5.55" in lines


def test_controller_metrics_include_api_requests_and_queue_depth() -> None:
    metrics = ControllerMetrics(api_requests=lambda: {("patch", "deployments", 200): 4})
    metrics.queue_depth.sampler = lambda: 7.0
    text = metrics.render()
    assert 'kmcp_kube_api_requests_total{code="200",resource="deployments",verb="patch"} 4' in text
    assert "workqueue_depth 7" in text
    assert "# TYPE controller_runtime_reconcile_time_seconds histogram" in text


# -- kube helpers

def test_resource_paths() -> None:
    assert kube.DEPLOYMENTS.path("ns", "d", "status") == "/apis/apps/v1/namespaces/ns/deployments/d/status"
    assert kube.SECRETS.path() == "/api/v1/secrets"
    assert kube.TOKEN_REVIEWS.path("ignored") == "/apis/authentication.k8s.io/v1/tokenreviews"


def test_errors_are_typed_from_the_status() -> None:
    status = {"kind": "Status", "reason": "Invalid", "message": "bad",
              "details": {"causes": [{"field": "spec.x", "message": "m"}]}}
    error = kube.error_from_status(422, status)
    assert isinstance(error, kube.Invalid) and error.causes == [{"field": "spec.x", "message": "m"}]
    assert isinstance(kube.error_from_status(409, {"reason": "AlreadyExists"}), kube.AlreadyExists)
    assert isinstance(kube.error_from_status(410, {}), kube.Gone)
    terminating = kube.error_from_status(403, {"details": {"causes": [{"reason": "NamespaceTerminating"}]}})
    assert isinstance(terminating, kube.Forbidden) and kube.namespace_terminating(terminating)


def _kube_answering(handler: Callable[[httpx.Request], httpx.Response]) -> kube.Kube:
    http = httpx.AsyncClient(base_url="https://apiserver.test", transport=httpx.MockTransport(handler))
    return kube.Kube(kube.KubeConfig("https://apiserver.test", ssl.create_default_context()), http=http)


@pytest.mark.parametrize(("failure", "expected"), [
    (httpx.ConnectError("All connection attempts failed"), kube.ApiUnreachable),
    (httpx.ReadTimeout("timed out"), kube.ApiTimeout),
    (httpx.RemoteProtocolError("peer closed connection"), kube.ApiUnavailable),
])
async def test_a_request_without_an_answer_is_a_kube_error_not_an_httpx_one(
        failure: httpx.HTTPError, expected: type[kube.ApiUnavailable]) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise failure

    async with _kube_answering(fail) as client:
        with pytest.raises(expected) as raised:
            await client.get(kube.SECRETS, "s", "ns")
    assert isinstance(raised.value, kube.ApiError) and raised.value.status == 0
    assert str(raised.value) == str(failure) and raised.value.__cause__ is failure
    assert client.counter.counts == {("get", "secrets", 0): 1}


async def test_a_watch_whose_connection_breaks_is_a_kube_error() -> None:
    class BreaksAfterOneEvent(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b'{"type": "ADDED", "object": {"metadata": {"name": "a"}}}\n'
            raise httpx.ReadError("connection reset by peer")

    async with _kube_answering(lambda request: httpx.Response(200, stream=BreaksAfterOneEvent())) as client:
        seen = []
        with pytest.raises(kube.ApiUnavailable, match="connection reset by peer"):
            async for event in client.watch(kube.SECRETS, "ns", resource_version="1"):
                seen.append(event.object["metadata"]["name"])
    assert seen == ["a"]


# -- flags

def test_flags_follow_the_guide() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["--leader-elect", "--health-probe-bind-address=:8081", "--metrics-bind-address=:8443",
                              "--metrics-secure"])
    assert (args.leader_elect, args.health_probe_bind_address, args.metrics_bind_address, args.metrics_secure) == (
        True, ("", 8081), ("", 8443), True)
    assert parser.parse_args(["--metrics-secure=false"]).metrics_secure is False
    assert parser.parse_args(["--no-metrics-secure"]).metrics_secure is False
    assert parser.parse_args([]).metrics_secure is True
    assert parser.parse_args(["--metrics-bind-address=0"]).metrics_bind_address is None
    assert parser.parse_args(["--resync-period=10m"]).resync_period == 600.0
    assert cli.parse_duration("500ms") == 0.5
    with pytest.raises(argparse.ArgumentTypeError):
        cli.parse_address("nope")


def test_settings_take_the_adapter_image_and_lease_namespace_from_the_environment() -> None:
    config = kube.KubeConfig("https://x", ssl_context=None, namespace="pods-ns", in_cluster=True)  # type: ignore
    args = cli.build_parser().parse_args(["--leader-elect"])
    settings = cli.settings_from(args, config, {"KMCP_ADAPTER_IMAGE": "img:1"})
    assert settings.render.adapter_image == "img:1"
    assert settings.leader_election_namespace == "pods-ns"
    outside = kube.KubeConfig("https://x", ssl_context=None, namespace="dev")  # type: ignore[arg-type]
    assert cli.settings_from(args, outside, {}).leader_election_namespace == "kmcp-system"


def test_the_adapter_otlp_endpoint_flag_reaches_the_render_settings() -> None:
    config = kube.KubeConfig("https://x", ssl_context=None, namespace="dev")  # type: ignore[arg-type]
    parser = cli.build_parser()
    args = parser.parse_args(["--adapter-otlp-endpoint=http://otel-collector.observability:4318"])
    assert cli.settings_from(args, config, {}).render.adapter_otlp_endpoint == \
        "http://otel-collector.observability:4318"
    assert cli.settings_from(parser.parse_args([]), config, {}).render.adapter_otlp_endpoint == ""
    with pytest.raises(SystemExit):
        parser.parse_args(["--adapter-otlp-endpoint=otel-collector:4318"])  # the adapter wants an http(s) URL


# -- install objects

def test_checked_in_install_manifest_matches_install_objects() -> None:
    checked_in = ROOT / "manifests" / "install" / "kmcp.yaml"
    assert checked_in.read_text() == install.install_yaml(), \
        "run: python -m kmcp.install > manifests/install/kmcp.yaml"
    assert list(yaml.safe_load_all(checked_in.read_text())) == install.install_objects()


def test_install_objects_carry_the_guides_names() -> None:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in install.install_objects()}
    assert set(objects) == {
        ("Namespace", "kmcp-system"), ("ServiceAccount", "kmcp-controller-manager"),
        ("ClusterRole", "kmcp-manager-role"), ("ClusterRoleBinding", "kmcp-manager-rolebinding"),
        ("Role", "kmcp-leader-election-role"), ("RoleBinding", "kmcp-leader-election-rolebinding"),
        ("ClusterRole", "kmcp-metrics-reader"), ("ClusterRole", "kmcp-metrics-auth-role"),
        ("ClusterRoleBinding", "kmcp-metrics-auth-rolebinding"), ("ClusterRole", "kmcp-adapter-auth"),
        ("Service", "kmcp-controller-manager-metrics-service"), ("Deployment", "kmcp-controller-manager"),
    }
    dep = objects[("Deployment", "kmcp-controller-manager")]
    pod = dep["spec"]["template"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "kmcp"
    (container,) = pod["spec"]["containers"]
    assert container["name"] == "manager" and container["command"] == ["kmcp"]
    assert container["args"] == ["controller", "--leader-elect", "--health-probe-bind-address=:8081",
                                 "--metrics-bind-address=:8443", "--metrics-secure"]
    assert container["env"] == [{"name": "KMCP_ADAPTER_IMAGE", "value": container["image"]},
                                {"name": "KMCP_ADAPTER_AUTH_CLUSTER_ROLE", "value": "kmcp-adapter-auth"}]
    assert container["image"] == "ghcr.io/kagent-dev/kmcp/controller:0.1.0"
    assert container["resources"] == {"limits": {"cpu": "500m", "memory": "128Mi"},
                                      "requests": {"cpu": "10m", "memory": "64Mi"}}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8081}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8081}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    service = objects[("Service", "kmcp-controller-manager-metrics-service")]
    assert service["spec"]["ports"] == [{"name": "https", "port": 8443, "targetPort": 8443, "protocol": "TCP"}]
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "kmcp"}
    rules = objects[("ClusterRole", "kmcp-manager-role")]["rules"]
    secrets_rule = next(r for r in rules if "secrets" in r["resources"])
    # least privilege: creates the replicas' session-key Secrets once, never updates or deletes a Secret
    assert secrets_rule["verbs"] == ["create", "get", "list", "watch"]
    assert not any("*" in r["verbs"] or "*" in r["resources"] for r in rules)
    custom = install.install_objects(namespace="ops", image="reg/kmcp:2", leader_elect=False)
    dep = next(o for o in custom if o["kind"] == "Deployment")
    assert dep["metadata"]["namespace"] == "ops"
    assert "--leader-elect" not in dep["spec"]["template"]["spec"]["containers"][0]["args"]


def test_an_unreadable_kubeconfig_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([f"--kubeconfig={tmp_path / 'missing'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kmcp controller: ") and err.count("\n") == 1


def test_difference_names_the_first_field_that_differs() -> None:
    from kmcp.controller.reconcile import difference

    desired = {"metadata": {"labels": {"a": "1"}}, "spec": {"ports": [{"port": 3000}]}}
    assert difference({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"ports": [{"port": 3000}]}},
                      desired) is None
    assert difference({"metadata": {"labels": {}}, "spec": {}}, desired) == ".metadata.labels.a"
    assert difference({"metadata": {"labels": {"a": "1"}}, "spec": {"ports": [{"port": 80}]}},
                      desired) == ".spec.ports[0].port"


def test_the_owner_index_follows_puts_replacements_and_discards() -> None:
    from kmcp.controller.informer import Informer

    def child(name: str, owner: str | None) -> dict[str, object]:
        refs = [{"uid": owner, "controller": True, "kind": "MCPServer", "name": "x"}] if owner else []
        return {"metadata": {"namespace": "ns", "name": name, "ownerReferences": refs,
                             "managedFields": [{"manager": "kmcp"}]}}

    informer = Informer(None, kube.DEPLOYMENTS)  # type: ignore[arg-type]  # put/discard never call the API
    informer.put(child("a", "uid-1"))
    informer.put(child("b", "uid-1"))
    informer.put(child("c", "uid-2"))
    informer.put(child("d", None))
    assert sorted(o["metadata"]["name"] for o in informer.owned_by("uid-1")) == ["a", "b"]
    assert "managedFields" not in informer.get("ns", "a")["metadata"]  # type: ignore[index]
    informer.put(child("b", "uid-2"))  # adopted by another owner
    assert [o["metadata"]["name"] for o in informer.owned_by("uid-1")] == ["a"]
    assert sorted(o["metadata"]["name"] for o in informer.owned_by("uid-2")) == ["b", "c"]
    informer.discard(("ns", "a"))
    informer.discard(("ns", "missing"))
    assert informer.owned_by("uid-1") == [] and informer.get("ns", "a") is None


def test_mcpservers_are_found_by_the_objects_they_reference_without_a_scan() -> None:
    from kmcp.controller.informer import Informer
    from kmcp.controller.manager import REFS_INDEX, referenced

    def server(name: str, secrets: list[str], config_maps: tuple[str, ...] = ()) -> dict[str, object]:
        return {"metadata": {"namespace": "ns", "name": name},
                "spec": {"deployment": {"secretRefs": [{"name": s} for s in secrets],
                                        "configMapRefs": [{"name": c} for c in config_maps]}}}

    informer = Informer(None, kube.MCPSERVERS, indexes={REFS_INDEX: referenced})  # type: ignore[arg-type]
    informer.put(server("a", ["s1", "s2"], ["c1"]))
    informer.put(server("b", ["s1"]))
    informer.put({"metadata": {"namespace": "other", "name": "c"}, "spec": {"deployment": {"secretRefs": [
        {"name": "s1"}]}}})
    informer.put({"metadata": {"namespace": "ns", "name": "odd"}, "spec": {"deployment": "not a mapping"}})

    def names(which: str, ns: str, name: str) -> list[str]:
        return sorted(o["metadata"]["name"] for o in informer.by_index(REFS_INDEX, (which, ns, name)))

    assert names("secret", "ns", "s1") == ["a", "b"] and names("secret", "other", "s1") == ["c"]
    assert names("configmap", "ns", "c1") == ["a"] and names("secret", "ns", "c1") == []
    informer.put(server("a", ["s2"]))  # a spec change moves it between entries
    assert names("secret", "ns", "s1") == ["b"] and names("configmap", "ns", "c1") == []
    informer.discard(("ns", "b"))
    assert names("secret", "ns", "s1") == []


def test_the_server_version_is_read_as_providers_write_it() -> None:
    assert kube.parse_server_version({"major": "1", "minor": "37", "gitVersion": "v1.37.0"}) == (1, 37)
    assert kube.parse_server_version({"major": "1", "minor": "32+", "gitVersion": "v1.32.3-gke.1"}) == (1, 32)
    assert kube.parse_server_version({"major": "", "minor": "", "gitVersion": "v1.31.2-eks-7f9249a"}) == (1, 31)
    with pytest.raises(ValueError, match="no Kubernetes version"):
        kube.parse_server_version({"gitVersion": "unknown"})


def test_the_echo_of_a_write_that_beats_its_answer_does_not_reconcile_again() -> None:
    """A watch event can arrive before the answer to the write it reports: while the key is being reconciled it is
    judged when the reconcile ends, by the resourceVersions the reconcile then knows it wrote."""
    from kmcp.controller.manager import Manager
    from kmcp.controller.settings import ControllerSettings

    class Writes:
        def __init__(self) -> None:
            self.written: set[tuple[str, str]] = set()  # (plural, resourceVersion)

        def is_echo(self, plural: str, obj: dict[str, Any]) -> bool:
            return (plural, obj["metadata"]["resourceVersion"]) in self.written

    manager = Manager(ControllerSettings(), kube.Kube(kube.KubeConfig("https://x", ssl.create_default_context())))
    writes = Writes()
    manager.reconciler = writes  # type: ignore[assignment]
    owner = [{"kind": "MCPServer", "apiVersion": "kagent.dev/v1alpha1", "name": "s", "controller": True}]

    def deployment(rv: str) -> dict[str, Any]:
        return {"metadata": {"namespace": "ns", "name": "s", "resourceVersion": rv, "ownerReferences": owner}}

    manager.queue.add(("ns", "s"))
    key = trio.run(manager.queue.get)  # a worker holds it
    manager._on_child("ADDED", "deployments", deployment("7"))  # the apply's echo, before the apply's answer
    writes.written.add(("deployments", "7"))  # the answer: the reconcile now knows it wrote rv 7
    manager._settle(key)
    manager.queue.done(key)
    assert manager.queue.depth == 0  # nothing to do again

    manager.queue.add(("ns", "s"))
    key = trio.run(manager.queue.get)
    manager._on_child("MODIFIED", "deployments", deployment("8"))  # someone else's change, meanwhile
    manager._settle(key)
    manager.queue.done(key)
    assert manager.queue.depth == 1  # reconciled again

    manager._on_child("MODIFIED", "deployments", deployment("7"))  # an echo while idle: nothing
    manager._on_child("DELETED", "deployments", deployment("7"))  # a delete always counts
    assert manager.queue.depth == 1 and manager.queue.processing(("ns", "s")) is False


def test_the_cache_keeps_json_and_hands_out_copies() -> None:
    from kmcp.controller.informer import Informer

    informer = Informer(None, kube.DEPLOYMENTS)  # type: ignore[arg-type]  # put/discard never call the API
    applied = {"metadata": {"namespace": "ns", "name": "a", "resourceVersion": "3", "managedFields": [{"m": 1}]},
               "spec": {"replicas": 1}}
    informer.put(applied)
    assert "managedFields" in applied["metadata"]  # the caller's object is left as it was
    got = informer.get("ns", "a")
    assert got == {"metadata": {"namespace": "ns", "name": "a", "resourceVersion": "3"}, "spec": {"replicas": 1}}
    got["spec"]["replicas"] = 5  # type: ignore[index]
    assert informer.get("ns", "a")["spec"] == {"replicas": 1}  # type: ignore[index]
    assert informer.cached_version(("ns", "a")) == "3" and informer.cached_version(("ns", "b")) is None
    assert len(informer) == 1 and informer.cached_keys() == [("ns", "a")]


def test_the_answer_to_a_write_never_replaces_a_newer_watched_version() -> None:
    """A watch event of someone else's change can come before the answer to the controller's own earlier write:
    caching the answer over it kept a spec change unreconciled until the next relist."""
    from kmcp.controller.informer import Informer

    informer = Informer(None, kube.MCPSERVERS)  # type: ignore[arg-type]  # put never calls the API

    def server(rv: str, image: str) -> dict[str, object]:
        return {"metadata": {"namespace": "ns", "name": "s", "resourceVersion": rv}, "spec": {"image": image}}

    informer.put(server("329", "new"))  # the watch: a spec change after our status patch
    informer.put_answer(server("328", "old"))  # then the status patch's answer
    assert informer.get("ns", "s")["spec"] == {"image": "new"}  # type: ignore[index]
    informer.put_answer(server("330", "ours"))  # an answer newer than the cache is cached
    assert informer.cached_version(("ns", "s")) == "330"
    informer.put_answer({"metadata": {"namespace": "ns", "name": "t", "resourceVersion": "1"}})  # not cached yet
    assert informer.cached_version(("ns", "t")) == "1"
