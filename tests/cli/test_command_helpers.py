"""Pure helpers of the cluster commands: .env parsing, kubectl-style ages and tables, condition summaries."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest

from kmcp.commands.cluster import age, table
from kmcp.commands.deploy import conditions_summary, failing_condition, ready
from kmcp.commands.install import image_for
from kmcp.commands.secrets import parse_dotenv
from kmcp.errors import BadInput
from tests.cli.helpers import kmcp

NOW = datetime.datetime(2026, 1, 2, 12, 0, 0, tzinfo=datetime.UTC)


def test_dotenv_quotes_comments_and_export() -> None:
    text = ('# comment\n\nexport A=1\nB = "two words"\nC=\'single # kept\'\nD=plain # dropped\n'
            'E="line\\nbreak"\nF=\n')
    assert parse_dotenv(text) == {"A": "1", "B": "two words", "C": "single # kept", "D": "plain",
                                  "E": "line\nbreak", "F": ""}
    with pytest.raises(BadInput, match=r"\.env:2: expected KEY=VALUE"):
        parse_dotenv("A=1\nnot a pair\n")


def test_age_and_table_look_like_kubectl() -> None:
    assert age("2026-01-02T11:59:15Z", NOW) == "45s"
    assert age("2026-01-02T11:57:00Z", NOW) == "3m"
    assert age("2026-01-02T07:00:00Z", NOW) == "5h"
    assert age("2025-12-30T12:00:00Z", NOW) == "3d"
    assert age(None, NOW) == "<unknown>"
    assert table([["NAME", "READY"], ["weather", "True"]]) == "NAME      READY\nweather   True\n"


def test_condition_summary_and_the_failing_condition() -> None:
    obj = {"metadata": {"generation": 2}, "status": {"observedGeneration": 2, "conditions": [
        {"type": "Accepted", "status": "True", "reason": "Valid"},
        {"type": "ResolvedRefs", "status": "False", "reason": "SecretNotFound", "message": "secret x not found"},
    ]}}
    assert conditions_summary(obj) == "Accepted=True, ResolvedRefs=False (SecretNotFound), Programmed=?, Ready=?"
    failing = failing_condition(obj)
    assert failing is not None and failing["reason"] == "SecretNotFound"
    assert not ready(obj)
    stale = {"metadata": {"generation": 3}, "status": {"observedGeneration": 2, "conditions": [
        {"type": "Ready", "status": "True", "reason": "Available"}]}}
    assert not ready(stale)  # Ready for an older generation is not Ready


def test_install_image_from_version() -> None:
    assert image_for(None, "0.2.0") == "ghcr.io/kagent-dev/kmcp/controller:0.2.0"
    assert image_for("example.test/kmcp:dev", "0.2.0") == "example.test/kmcp:dev"


def test_a_missing_or_broken_kubeconfig_is_one_line_naming_the_file(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    default = kmcp("get", "-A", env=env)
    assert (default.returncode, default.stderr.splitlines()) == (2, [
        f"kmcp: error: kubeconfig not found: {tmp_path}/.kube/config (default; pass --kubeconfig FILE or set "
        "$KUBECONFIG, e.g. to the one `kmcp dev up` prints)"])
    listed = kmcp("status", "x", env={**env, "KUBECONFIG": f"{tmp_path}/a:{tmp_path}/b"})
    assert listed.returncode == 2
    assert listed.stderr.startswith(f"kmcp: error: kubeconfig not found: {tmp_path}/a, {tmp_path}/b ($KUBECONFIG;")
    broken = tmp_path / "broken.yaml"
    broken.write_text("clusters: [\n")
    parsed = kmcp("get", "-A", "--kubeconfig", broken, env=env)
    assert parsed.returncode == 2 and len(parsed.stderr.splitlines()) == 1, parsed.stderr
    assert parsed.stderr.startswith(f"kmcp: error: cannot load kubeconfig {broken}: ")
