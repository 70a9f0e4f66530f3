"""Leader election between two zipapp controllers, and the secure metrics endpoint's authn/authz, on the real
apiserver with the install's own RBAC."""

from __future__ import annotations

import signal
import ssl
import time
from typing import Any

import httpx
import pytest

from kmcp import install
from tests.controller.conftest import SYSTEM_NAMESPACE, ControllerProcess, mcpserver, wait_condition
from tests.kubehelpers import Kube, service_account_token, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
LEASE = "kmcp-controller-manager-leader"
FAST_LEASE = ("--leader-elect", "--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s",
              "--leader-elect-retry-period=0.5s", "--metrics-bind-address=0")


def holder(kube: Kube, name: str = LEASE) -> str | None:
    lease = kube.read("coordination.k8s.io/v1", "Lease", name, SYSTEM_NAMESPACE)
    return ((lease or {}).get("spec") or {}).get("holderIdentity")


def identity(proc: ControllerProcess) -> str:
    return next(str(r["identity"]) for r in proc.log_records() if r.get("msg") == "starting")


def reconciled_names(proc: ControllerProcess) -> set[str]:
    # Not "applied": the session's shared controller may have converged the object first.
    return {str(r.get("name")) for r in proc.log_records() if r.get("msg") == "reconciled"}


def test_only_the_leader_reconciles_and_a_standby_takes_over(kube: Kube, namespace: str,
                                                             start_controller: Any) -> None:
    lease_name = f"lease-{namespace[-6:]}"
    flags = (*FAST_LEASE, f"--leader-election-id={lease_name}", f"--namespace={namespace}")
    first: ControllerProcess = start_controller(*flags, name="first")
    wait_for(lambda: holder(kube, lease_name), timeout=10, description="a leader")
    second: ControllerProcess = start_controller(*flags, name="second")  # ready as a standby
    leader, standby = (first, second) if holder(kube, lease_name) == identity(first) else (second, first)
    assert holder(kube, lease_name) == identity(leader)

    kube.apply(mcpserver("led", namespace))
    wait_condition(kube, "led", namespace, "Programmed", "True")
    time.sleep(1)
    assert "led" in reconciled_names(leader)
    assert not reconciled_names(standby)
    assert not any(r.get("msg") == "caches synced" for r in standby.log_records())

    killed_at = time.monotonic()
    assert leader.proc is not None
    leader.proc.kill()  # no chance to release: the standby must wait for the lease to expire
    leader.proc.wait(5)
    wait_for(lambda: holder(kube, lease_name) == identity(standby), timeout=20, description="takeover")
    kube.apply(mcpserver("after", namespace))
    wait_condition(kube, "after", namespace, "Programmed", "True", timeout=20)
    assert time.monotonic() - killed_at < 20
    wait_for(lambda: "after" in reconciled_names(standby), timeout=5, description="the new leader to reconcile")

    # A clean shutdown releases the lease at once.
    assert standby.stop(signal.SIGTERM) == 0
    assert not holder(kube, lease_name)


def _get(url: str, token: str | None = None) -> httpx.Response:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the certificate is self-signed, as in the guide's `curl -k`
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(url, headers=headers, verify=ctx, timeout=10)


def test_metrics_need_a_token_allowed_to_get_metrics(kube: Kube, namespace: str, start_controller: Any) -> None:
    proc: ControllerProcess = start_controller(f"--namespace={namespace}", name="metrics")
    url = f"https://{proc.metrics_url}"
    assert _get(url).status_code == 401
    assert _get(url, "not-a-token").status_code == 401
    for sa in ("scraper", "stranger"):
        kube.post(f"/api/v1/namespaces/{namespace}/serviceaccounts",
                  {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa}})
    kube.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": f"{namespace}-metrics"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": install.METRICS_READER_ROLE},
                "subjects": [{"kind": "ServiceAccount", "name": "scraper", "namespace": namespace}]})
    try:
        stranger = service_account_token(kube, namespace, "stranger")
        response = _get(url, stranger)
        assert response.status_code == 403, response.text
        scraper = service_account_token(kube, namespace, "scraper")
        response = wait_for(lambda: (r := _get(url, scraper)).status_code == 200 and r, timeout=10,
                            description="metrics with an allowed token")
        assert "controller_runtime_reconcile_total" in response.text or "workqueue_depth" in response.text
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "leader_election_master_status 1" in response.text
        # plain HTTP on the TLS port is refused
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://{proc.metrics_url}", timeout=5)
    finally:
        kube.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{namespace}-metrics", check=False)
