"""What only a kubelet can show about the guide's workloads: replicas that hand sessions to each other over the pod
network, Secrets and ConfigMaps as the server process sees them, a Secret change rolling the pods, a killed
mcp-server container failing its session while the next one works, and an http MCPServer served natively."""

from __future__ import annotations

import base64
import ipaddress
import json
import threading
import time
from collections.abc import Iterable
from typing import Any

import httpx
import pytest

from kmcp.devcluster.images import ImageArchive
from kmcp.devcluster.node import DevCluster
from tests.controller.conftest import ControllerProcess, wait_condition
from tests.kubehelpers import Kube, wait_for
from tests.node.conftest import (
    McpClient,
    container_log,
    echo_mcpserver,
    first_session,
    ready_pods,
    service_url,
)
from tests.node.test_node import TIMINGS

pytestmark = [pytest.mark.node, pytest.mark.slow]
Obj = dict[str, Any]
LOAD_SESSIONS_PER_POD = 4
LOAD_CALLS_PER_SESSION = 25  # x 8 sessions = 200 calls
LOAD_DEADLINE = 90.0


def session_owner(session_id: str) -> str:
    """The pod IP a replica wrote into its session id (kmcp/adapter/session_ids.py: nonce | IPv4 | port | mac)."""
    raw = base64.urlsafe_b64decode(session_id + "=" * (-len(session_id) % 4))
    return str(ipaddress.IPv4Address(raw[16:20]))


def sessions_on_each_replica(url: str, pod_ips: Iterable[str], per_pod: int) -> dict[str, list[McpClient]]:
    """``per_pod`` open sessions owned by each replica: sessions are opened through the Service (kube-proxy picks
    the pod) until every replica holds enough; the extra ones are closed. Asserts every replica got its share."""
    held: dict[str, list[McpClient]] = {ip: [] for ip in pod_ips}
    for _ in range(60):
        if all(len(clients) >= per_pod for clients in held.values()):
            break
        client = McpClient(url)
        client.initialize()
        assert client.session is not None
        mine = held[session_owner(client.session)]
        (mine.append(client) if len(mine) < per_pod else client.http.close())
    assert all(len(clients) == per_pod for clients in held.values()), "kube-proxy never chose one replica"
    return held


def test_two_replicas_forward_sessions_between_real_pods_with_no_broken_session_under_load(
        node_kube: Kube, node_namespace: str, kmcp_node_image: ImageArchive,
        node_controller: ControllerProcess) -> None:
    name = "echo-replicas"
    node_kube.apply(echo_mcpserver(name, node_namespace, kmcp_node_image.name, replicas=2))
    wait_condition(node_kube, name, node_namespace, "Ready", "True", timeout=90)
    pods = wait_for(lambda: (lambda p: p if len(p) == 2 else None)(ready_pods(node_kube, name, node_namespace)),
                    timeout=60, description="two Ready replicas")
    pod_ips = {p["status"]["podIP"] for p in pods}
    url = service_url(node_kube, name, node_namespace)
    owners: set[str] = set()
    answered = 0
    first_session(url).http.close()  # the Service answers
    for i in range(16):
        with McpClient(url) as client:
            client.initialize()
            assert client.session is not None
            owners.add(session_owner(client.session))
            # kube-proxy picks a replica per connection: about half of these land on the pod that does not
            # hold the session, which must forward them to the owner.
            for j in range(5):
                client.http.close()
                client.http = httpx.Client(timeout=30, trust_env=False)
                text = client.call_tool("echo", {"message": f"{i}.{j}"})["result"]["content"][0]["text"]
                assert text == f"{i}.{j}"
                answered += 1
    assert answered == 80
    assert owners == pod_ips, f"sessions were owned by {owners}, the replicas are {pod_ips}"

    # Then a bounded concurrent load: 4 sessions owned by each replica, all 8 calling at once, every call on a
    # fresh connection; each reply must carry its own call's payload, and no session may break.
    held = sessions_on_each_replica(url, pod_ips, LOAD_SESSIONS_PER_POD)
    sessions = [c for clients in held.values() for c in clients]
    failures: dict[int, list[str]] = {i: [] for i in range(len(sessions))}
    latencies: list[float] = []
    lock = threading.Lock()

    def load(index: int, client: McpClient) -> None:
        for n in range(LOAD_CALLS_PER_SESSION):
            payload = f"s{index}-c{n}-{client.session}"
            began = time.monotonic()
            try:
                client.http.close()
                client.http = httpx.Client(timeout=30, trust_env=False)
                reply = client.call_tool("echo", {"message": payload})
                text = reply["result"]["content"][0]["text"]
                problem = "" if text == payload else f"call {n}: got {text[:60]!r}"
            except (httpx.HTTPError, KeyError, IndexError, ValueError) as error:
                problem = f"call {n}: {type(error).__name__}: {error}"
            with lock:
                latencies.append(time.monotonic() - began)
                if problem:
                    failures[index].append(problem)

    started = time.monotonic()
    threads = [threading.Thread(target=load, args=(i, c), daemon=True) for i, c in enumerate(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LOAD_DEADLINE)
    elapsed = time.monotonic() - started
    for client in sessions:
        client.http.close()
    assert not any(t.is_alive() for t in threads), f"the load did not finish within {LOAD_DEADLINE:.0f}s"
    assert len(latencies) == len(sessions) * LOAD_CALLS_PER_SESSION
    broken = {i: problems for i, problems in failures.items() if problems}
    assert broken == {}, f"{len(broken)} of {len(sessions)} sessions broke: {broken}"
    latencies.sort()
    TIMINGS[f"2 replicas: {len(sessions)} sessions x {LOAD_CALLS_PER_SESSION} calls at once, wall time"] = elapsed
    TIMINGS["2 replicas: per call p50 (fresh connection, half forwarded)"] = latencies[len(latencies) // 2]
    TIMINGS["2 replicas: per call max"] = latencies[-1]


def test_secret_and_configmap_reach_the_server_process_and_a_secret_change_rolls_the_pod(
        node_kube: Kube, node_namespace: str, kmcp_node_image: ImageArchive,
        node_controller: ControllerProcess) -> None:
    name = "refs"
    node_kube.apply([
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api-credentials", "namespace": node_namespace},
         "stringData": {"API_KEY": "first-key"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": node_namespace},
         "data": {"greeting": "hello-from-configmap"}},
    ])
    report = ('echo "server sees env=$API_KEY file=$(cat /secrets/api-credentials/API_KEY)'
              ' config=$(cat /config/greeting)" >&2; exec kmcp dev echo-server')
    server = echo_mcpserver(name, node_namespace, kmcp_node_image.name, cmd="/bin/sh", args=["-c", report],
                            secretRefs=[{"name": "api-credentials"}], configMapRefs=[{"name": "settings"}])
    node_kube.apply(server)
    wait_condition(node_kube, name, node_namespace, "Ready", "True", timeout=90)
    # The isolated session runs its own server process, which reports what it sees.
    first_session(service_url(node_kube, name, node_namespace)).http.close()

    def reported(key: str) -> Obj | None:
        for pod in ready_pods(node_kube, name, node_namespace):
            if f"server sees env={key} file={key} config=hello-from-configmap" in container_log(
                    node_kube, pod, "mcp-server"):
                return pod
        return None

    first = wait_for(lambda: reported("first-key"), timeout=30, description="the server's report of its refs")
    node_kube.apply({"apiVersion": "v1", "kind": "Secret",
                     "metadata": {"name": "api-credentials", "namespace": node_namespace},
                     "stringData": {"API_KEY": "second-key"}})

    def rolled() -> Obj | None:
        pods = ready_pods(node_kube, name, node_namespace)
        fresh = [p for p in pods if p["metadata"]["uid"] != first["metadata"]["uid"]]
        return fresh[0] if fresh and len(pods) == 1 else None

    second = wait_for(rolled, timeout=90, description="a new pod after the Secret changed")
    first_session(service_url(node_kube, name, node_namespace)).http.close()
    wait_for(lambda: reported("second-key"), timeout=30, description="the new pod's server sees the new Secret")
    assert second["metadata"]["uid"] != first["metadata"]["uid"]


# A stdio MCP server with echo and a `slow` tool that answers after `seconds`: a call can be in flight on purpose.
SLOW_SERVER = r'''
import json, sys, time
TOOLS = [{"name": n, "description": n, "inputSchema": {"type": "object"}} for n in ("echo", "slow")]
for line in sys.stdin:
    msg = json.loads(line)
    if "id" not in msg:
        continue
    method, params, answer = msg["method"], msg.get("params") or {}, {"jsonrpc": "2.0", "id": msg["id"]}
    if method == "initialize":
        answer["result"] = {"protocolVersion": params.get("protocolVersion"), "capabilities": {"tools": {}},
                            "serverInfo": {"name": "slow-echo", "version": "1"}}
    elif method == "tools/list":
        answer["result"] = {"tools": TOOLS}
    elif method == "tools/call":
        arguments = params.get("arguments") or {}
        if params["name"] == "slow":
            time.sleep(float(arguments.get("seconds", 60)))
        answer["result"] = {"content": [{"type": "text", "text": str(arguments.get("message", ""))}]}
    else:
        answer["error"] = {"code": -32601, "message": "method not found"}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
'''


def jsonrpc_body(resp: httpx.Response) -> Obj:
    body = resp.text
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        body = [line[5:] for line in body.splitlines() if line.startswith("data:")][-1]
    return dict(json.loads(body))


def test_killed_mcp_server_container_fails_the_call_in_flight_and_its_session_and_the_next_session_works(
        node_kube: Kube, node_namespace: str, kmcp_node_image: ImageArchive, dev_cluster: DevCluster,
        node_controller: ControllerProcess) -> None:
    name = "echo-killed"
    node_kube.apply(echo_mcpserver(name, node_namespace, kmcp_node_image.name, cmd="python3",
                                   args=["-c", SLOW_SERVER]))
    wait_condition(node_kube, name, node_namespace, "Ready", "True", timeout=90)
    (pod,) = ready_pods(node_kube, name, node_namespace)
    url = service_url(node_kube, name, node_namespace)
    old = first_session(url)
    assert old.call_tool("echo", {"message": "before"})["result"]["content"][0]["text"] == "before"
    # A call in flight when the container dies (its server sleeps 60 s before answering).
    inflight = first_session(url)
    inflight.http.timeout = httpx.Timeout(90)
    outcome: dict[str, Any] = {}

    def slow_call() -> None:
        began = time.monotonic()
        try:
            outcome["response"] = inflight.post({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                                                 "params": {"name": "slow", "arguments": {"seconds": 60}}})
        except httpx.HTTPError as error:
            outcome["error"] = f"{type(error).__name__}: {error}"
        outcome["after"] = time.monotonic() - began

    caller = threading.Thread(target=slow_call, daemon=True)
    caller.start()
    time.sleep(2.0)
    assert caller.is_alive(), f"the slow call returned before the kill: {outcome}"
    (status,) = pod["status"]["containerStatuses"]
    container_id = status["containerID"].removeprefix("containerd://")
    killed_in_flight = time.monotonic()
    dev_cluster.node.ctr("tasks", "kill", "-a", "-s", "SIGKILL", container_id)
    caller.join(45)
    assert not caller.is_alive(), "the call in flight hung after its server was killed"
    inflight.http.close()
    assert "response" in outcome, outcome
    failed = jsonrpc_body(outcome["response"])
    assert failed.get("id") == 7 and "error" in failed and "result" not in failed, failed
    TIMINGS["killed mcp-server: the call in flight failed (JSON-RPC error) after"] = \
        time.monotonic() - killed_in_flight

    def restarted() -> Obj | None:
        live = node_kube.read("v1", "Pod", pod["metadata"]["name"], node_namespace)
        st = (live or {}).get("status", {}).get("containerStatuses", [{}])[0]
        return live if st.get("restartCount", 0) >= 1 and st.get("ready") else None

    # The session's server process died with its container: once the kubelet has restarted mcp-server (its
    # serve.sh announces a new generation) the adapter fails the old session's call with an error, not a hang.
    old.http.timeout = httpx.Timeout(60)
    killed = time.monotonic()
    resp = old.post({"jsonrpc": "2.0", "id": 99, "method": "tools/call",
                     "params": {"name": "echo", "arguments": {"message": "after"}}})
    if resp.status_code == 200:
        assert "error" in jsonrpc_body(resp), resp.text
    else:
        assert resp.status_code in (404, 502, 503), resp.text
    old.http.close()
    failed_after = time.monotonic() - killed
    wait_for(restarted, timeout=60, description="the kubelet restarted mcp-server")
    began = time.monotonic()

    def fresh_session_works() -> bool | None:
        with McpClient(url) as client:
            try:
                client.initialize()
                text = client.call_tool("echo", {"message": "next"})["result"]["content"][0]["text"]
            except (httpx.HTTPError, KeyError):
                return None
            return text == "next" or None

    wait_for(fresh_session_works, timeout=30, description="a new session after the restart")
    TIMINGS["killed mcp-server: old session's call failed after"] = failed_after
    TIMINGS["killed mcp-server: restarted and Ready -> new session answered"] = time.monotonic() - began


def test_http_mcpserver_is_served_natively_by_its_own_container(
        node_kube: Kube, node_namespace: str, kmcp_node_image: ImageArchive,
        node_controller: ControllerProcess) -> None:
    name = "http-native"
    server = {"apiVersion": "kagent.dev/v1alpha1", "kind": "MCPServer",
              "metadata": {"name": name, "namespace": node_namespace},
              "spec": {"transportType": "http", "httpTransport": {"targetPort": 8080, "path": "/mcp"},
                       "deployment": {"image": kmcp_node_image.name, "imagePullPolicy": "IfNotPresent",
                                      "cmd": "kmcp", "port": 8080,
                                      "args": ["adapter", "--listen", ":8080", "--", "kmcp", "dev", "echo-server"]}}}
    node_kube.apply(server)
    wait_condition(node_kube, name, node_namespace, "Ready", "True", timeout=90)
    (pod,) = ready_pods(node_kube, name, node_namespace)
    assert "initContainers" not in pod["spec"]  # no sidecar: the server speaks HTTP itself
    with first_session(service_url(node_kube, name, node_namespace)) as client:
        assert client.call_tool("add", {"a": 1, "b": 2})["result"]["content"][0]["text"] == "3"
