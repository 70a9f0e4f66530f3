"""Decode + validate 1,000 realistic MCPServers: kmcp's msgspec Structs vs a plain dict walk.

The controller receives MCPServers as JSON from the apiserver, the CLI as YAML from files; both paths are
measured. The dict-walk baseline checks the same things by hand (required fields, types, enums, bounds) so the
comparison is like for like. Usage: python bench/spec_decode.py [--count 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import msgspec
import yaml

from kmcp import spec

ROOT = Path(__file__).resolve().parent.parent
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def realistic() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.load((ROOT / "tests/specs/edge-all-extras.yaml").read_text(), Loader=LOADER)
    doc["metadata"].update({
        "generation": 3, "resourceVersion": "12345", "creationTimestamp": "2026-01-01T00:00:00Z",
        "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}}],
    })
    return doc


def _need(cond: bool, path: str, msg: str) -> None:
    if not cond:
        raise ValueError(f"{path}: {msg}")


def dict_walk(doc: Any) -> dict[str, Any]:
    """A hand-written validator of the same rules, the way a plain-dict controller would do it."""
    _need(isinstance(doc, dict), "(document)", "expected a mapping")
    _need(doc.get("apiVersion") == spec.API_VERSION and doc.get("kind") == spec.KIND, "kind", "not an MCPServer")
    s = doc.get("spec")
    _need(isinstance(s, dict), "spec", "required")
    _need(s.get("transportType") in ("stdio", "http"), "spec.transportType", "must be one of stdio, http")
    d = s.get("deployment")
    _need(isinstance(d, dict), "spec.deployment", "required")
    allowed = {"image", "cmd", "args", "port", "env", "secretRefs", "configMapRefs", "volumes", "volumeMounts",
               "serviceAccount", "serviceAccountName", "replicas", "resources", "imagePullPolicy",
               "imagePullSecrets", "securityContext", "podSecurityContext", "nodeSelector", "tolerations",
               "affinity", "labels", "annotations"}
    for key in d:
        _need(key in allowed, f"spec.deployment.{key}", "unknown field")
    _need(isinstance(d.get("image"), str) and d["image"] != "", "spec.deployment.image", "required")
    _need(isinstance(d.get("cmd", ""), str), "spec.deployment.cmd", "expected str")
    _need(all(isinstance(a, str) for a in d.get("args", [])), "spec.deployment.args", "expected strings")
    port = d.setdefault("port", spec.DEFAULT_PORT)
    _need(isinstance(port, int) and 1 <= port <= 65535, "spec.deployment.port", "1..65535")
    for field in ("env", "nodeSelector", "labels", "annotations"):
        _need(all(isinstance(v, str) for v in d.get(field, {}).values()), f"spec.deployment.{field}", "strings")
    for field in ("secretRefs", "configMapRefs", "imagePullSecrets"):
        for i, ref in enumerate(d.get(field, [])):
            _need(isinstance(ref, dict) and isinstance(ref.get("name"), str), f"spec.deployment.{field}[{i}]", "name")
    for i, m in enumerate(d.get("volumeMounts", [])):
        _need(isinstance(m.get("name"), str) and isinstance(m.get("mountPath"), str),
              f"spec.deployment.volumeMounts[{i}]", "name and mountPath required")
    for i, t in enumerate(d.get("tolerations", [])):
        _need(t.get("effect") in (None, "NoSchedule", "PreferNoSchedule", "NoExecute"),
              f"spec.deployment.tolerations[{i}].effect", "enum")
    st = s.get("stdioTransport") or {}
    _need(st.get("sessionMode", "isolated") in ("isolated", "shared"), "spec.stdioTransport.sessionMode", "enum")
    _need(0 <= st.get("warmPoolSize", 1) <= 32, "spec.stdioTransport.warmPoolSize", "0..32")
    return doc


def timed(fn: Any, items: list[Any], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            fn(item)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    doc = realistic()
    json_docs = [json.dumps(doc).encode() for _ in range(args.count)]
    yaml_docs = [yaml.safe_dump(doc) for _ in range(args.count)]
    json_decoder = msgspec.json.Decoder(spec.MCPServer)

    def msgspec_json(raw: bytes) -> None:
        spec.semantic_problems(json_decoder.decode(raw))

    def walk_json(raw: bytes) -> None:
        dict_walk(json.loads(raw))

    def msgspec_yaml(text: str) -> None:
        spec.validated(yaml.load(text, Loader=LOADER))

    def walk_yaml(text: str) -> None:
        dict_walk(yaml.load(text, Loader=LOADER))

    rows = [
        ("JSON (controller path)", timed(msgspec_json, json_docs, args.repeat),
         timed(walk_json, json_docs, args.repeat)),
        ("YAML (CLI path)", timed(msgspec_yaml, yaml_docs, args.repeat), timed(walk_yaml, yaml_docs, args.repeat)),
    ]
    print(f"decode+validate of {args.count} MCPServers, median of {args.repeat} runs")
    print("| input | msgspec Structs | dict walk | speed-up |")
    print("|---|---|---|---|")
    for name, fast, slow in rows:
        print(f"| {name} | {fast * 1e3:.1f} ms | {slow * 1e3:.1f} ms | {slow / fast:.2f}x |")


if __name__ == "__main__":
    main()
