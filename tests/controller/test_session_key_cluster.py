"""The adapter replicas' session-id key: a Secret the controller creates once per stdio MCPServer, owned by it,
never rewritten, handed to the adapter container (real apiserver, controller as its install ServiceAccount)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from kmcp import render
from kmcp.adapter import cli as adapter_cli
from tests.controller.conftest import ControllerProcess, mcpserver, wait_condition
from tests.kubehelpers import Kube, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

MCP = "kagent.dev/v1alpha1"


def adapter_container(kube: Kube, name: str, namespace: str) -> dict[str, Any]:
    dep = kube.read("apps/v1", "Deployment", name, namespace)
    assert dep is not None
    [adapter] = dep["spec"]["template"]["spec"]["initContainers"]
    return dict(adapter)


def test_a_stdio_mcpserver_gets_one_stable_owned_session_key(kube: Kube, namespace: str,
                                                              shared_controller: ControllerProcess) -> None:
    kube.apply(mcpserver("keyed", namespace, args=["--one"]))
    live = wait_condition(kube, "keyed", namespace, "Programmed", "True")
    secret = kube.read("v1", "Secret", "keyed-session-key", namespace)
    assert secret is not None
    key = base64.b64decode(secret["data"]["key"])
    assert len(key) >= 32
    [owner] = secret["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("MCPServer", live["metadata"]["uid"], True)

    adapter = adapter_container(kube, "keyed", namespace)
    args = adapter["args"]
    assert args[args.index("--peer-address") + 1] == f"$({render.POD_IP_ENV})"
    env = {item["name"]: item["valueFrom"] for item in adapter["env"]}
    assert env[render.POD_IP_ENV] == {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}
    assert env[adapter_cli.SESSION_KEY_ENV]["secretKeyRef"]["name"] == "keyed-session-key"

    # A spec change re-renders and re-applies the Deployment, but the key stays: running pods keep agreeing.
    kube.apply(mcpserver("keyed", namespace, args=["--two"]))
    wait_for(lambda: "--two" in str(kube.read("apps/v1", "Deployment", "keyed", namespace)), timeout=15,
             description="the new args")
    again = kube.read("v1", "Secret", "keyed-session-key", namespace)
    assert again is not None
    assert again["data"]["key"] == secret["data"]["key"]
    assert again["metadata"]["resourceVersion"] == secret["metadata"]["resourceVersion"]

    # Deleted by hand: its owner notices the delete (no waiting for the 5 s resync) and creates a new key.
    kube.remove("v1", "Secret", "keyed-session-key", namespace)
    renewed = wait_for(lambda: kube.read("v1", "Secret", "keyed-session-key", namespace), timeout=3,
                       interval=0.05, description="the deleted key to be created again")
    assert renewed["metadata"]["uid"] != secret["metadata"]["uid"]

    kube.remove(MCP, "MCPServer", "keyed", namespace)
    wait_for(lambda: kube.read("v1", "Secret", "keyed-session-key", namespace) is None, timeout=30,
             description="the garbage collector to delete the key")


def test_every_mcpserver_gets_its_own_key_and_http_servers_none(kube: Kube, namespace: str,
                                                                shared_controller: ControllerProcess) -> None:
    kube.apply(mcpserver("one", namespace))
    kube.apply(mcpserver("two", namespace))
    http = mcpserver("web", namespace)
    http["spec"] = {"transportType": "http", "httpTransport": {"targetPort": 8080, "path": "/mcp"},
                    "deployment": {"image": "example.test/web:1", "port": 3000}}
    kube.apply(http)
    for name in ("one", "two", "web"):
        wait_condition(kube, name, namespace, "Programmed", "True")
    one = kube.read("v1", "Secret", "one-session-key", namespace)
    two = kube.read("v1", "Secret", "two-session-key", namespace)
    assert one is not None and two is not None
    assert one["data"]["key"] != two["data"]["key"]
    assert kube.read("v1", "Secret", "web-session-key", namespace) is None
