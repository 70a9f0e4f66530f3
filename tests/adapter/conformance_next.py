"""Run the official conformance suite's frozen requirement sets (``--requirements REVISION``) against any URL.

The sets live only in the 0.2 line of ``@modelcontextprotocol/conformance``, installed by scripts/npm-peers as the
npm alias ``conformance-next`` (0.1.16, which tests/adapter/test_conformance.py runs, stays under its own name).
Each revision's set is read from the package's own ``requirements/<revision>.yaml``: which scenarios are required
for a server, and which are only run and reported (``not_scored``: extensions, pending, added after the release).

Use from a test::

    async def test_x(next_suite: NextSuite, tmp_path: Path) -> None:   # fixture in test_conformance_2026.py
        run = await run_requirements(next_suite, "http://127.0.0.1:PORT/mcp", "2026-07-28", tmp_path / "out")
        assert run.passed == run.required_names, run.failures()

or find the suite outside pytest with ``find_next_suite()`` (it raises :class:`SuiteMissing` with the reason).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import trio
import yaml

from tests.adapter.npm_peers import install_node_modules
from tests.adapter.test_conformance import Scenario, _node_from_wheel, parse_results

PACKAGE = "conformance-next"  # npm alias of @modelcontextprotocol/conformance@0.2.0-alpha.12 (tests/peers/package.json)
MIN_REQUIRED = 20  # 2026-07-28 requires 37 server scenarios, 2025-11-25 30: fewer means the set was misread


class SuiteMissing(Exception):
    """Node >= 22 or the conformance-next package is not there; the message says which."""


@dataclass(frozen=True)
class NextSuite:
    node: Path
    package: Path  # node_modules/conformance-next

    @property
    def cli(self) -> Path:
        return self.package / "dist/index.js"

    @property
    def version(self) -> str:
        return str(json.loads((self.package / "package.json").read_text())["version"])

    def revisions(self) -> list[str]:
        return sorted(path.stem for path in (self.package / "requirements").glob("*.yaml"))

    def requirements(self, revision: str) -> tuple[list[str], list[str]]:
        """The server scenarios ``revision`` requires, and those it runs without scoring (in the suite's order)."""
        path = self.package / "requirements" / f"{revision}.yaml"
        if not path.exists():
            raise ValueError(f"{self.version} has no requirement set {revision!r}; it has {self.revisions()}")
        data = yaml.safe_load(path.read_text())
        required = [str(name) for name in data.get("server") or []]
        unscored = [str(entry["scenario"]) for entry in data.get("not_scored") or [] if entry.get("leg") == "server"]
        return required, unscored

    def argv(self, url: str, revision: str, out: Path) -> list[str]:
        return [str(self.node), str(self.cli), "server", "--url", url, "--requirements", revision, "-o", str(out)]


def find_next_suite() -> NextSuite:
    node, problem = _node_from_wheel()
    if node is None:
        raise SuiteMissing(problem)
    modules, problem = install_node_modules()
    if modules is None:
        raise SuiteMissing(problem)
    package = modules / PACKAGE
    if not (package / "dist/index.js").exists():
        raise SuiteMissing(f"{package} is missing: scripts/npm-peers did not install {PACKAGE}")
    return NextSuite(node, package)


@dataclass
class RequirementsRun:
    """One ``server --requirements REVISION`` run: per-scenario results, split as the requirement set splits them."""

    revision: str
    url: str
    required_names: set[str]
    required: dict[str, Scenario]  # every required scenario that produced results
    not_scored: dict[str, Scenario]  # run and reported, never counted
    returncode: int
    stdout: str
    stderr: str
    unexpected: dict[str, Scenario] = field(default_factory=dict)  # results for scenarios the set does not name

    @property
    def missing(self) -> set[str]:
        """Required scenarios that left no results (the run broke before or inside them)."""
        return self.required_names - self.required.keys()

    @property
    def passed(self) -> set[str]:
        return {name for name, scenario in self.required.items() if scenario.ok}

    def failures(self) -> dict[str, list[str]]:
        """Every required scenario that did not pass, with its failing checks (or why it has none)."""
        failed = {name: scenario.failures for name, scenario in self.required.items() if not scenario.ok}
        failed.update({name: ["no results: the scenario did not run"] for name in self.missing})
        return failed

    def summary(self) -> str:
        return f"{len(self.passed)}/{len(self.required_names)} required {self.revision} scenarios pass at {self.url}"


RUN_TIMEOUT = 240  # seconds for one whole run; wrap the call in trio.fail_after for another bound


async def run_requirements(suite: NextSuite, url: str, revision: str, out: Path) -> RequirementsRun:
    """Run ``revision``'s requirement set against ``url`` (a Streamable HTTP endpoint) and parse what it wrote."""
    required, unscored = suite.requirements(revision)
    await trio.Path(out).mkdir(parents=True, exist_ok=True)
    with trio.fail_after(RUN_TIMEOUT):
        done = await trio.run_process(suite.argv(url, revision, out), capture_stdout=True, capture_stderr=True,
                                      check=False, cwd=str(out))
    results = parse_results(out)
    stdout, stderr = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
    if len(required) < MIN_REQUIRED:
        raise AssertionError(f"{suite.package}/requirements/{revision}.yaml names only {required} for a server")
    return RequirementsRun(
        revision=revision, url=url, required_names=set(required),
        required={name: results[name] for name in required if name in results},
        not_scored={name: results[name] for name in unscored if name in results},
        returncode=done.returncode, stdout=stdout, stderr=stderr,
        unexpected={name: s for name, s in results.items() if name not in required and name not in unscored})
