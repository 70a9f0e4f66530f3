"""Every problem of an MCPServer document, for ``kmcp validate``: msgspec stops at the first field it cannot
convert, so each faulty field found is taken out of a copy and the rest is checked again.

A scalar or enum field gets a valid placeholder (so a required one, or one in a list, does not hide what follows);
another field is taken out. The search stops where neither works (a required object, a list element that is an
object) and at apiVersion/kind. Pure, no I/O.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import re
from typing import Any

import msgspec

from kmcp import spec
from kmcp.spec import _type_at  # the same walk of the schema that names the allowed values in messages

_TOKEN = re.compile(r"\[(\d+)\]|([^.\[\]]+)")
_MAX_ROUNDS = 50
_TAKE_OUT = object()


def _parts(path: str) -> list[str | int]:
    return [int(index) if index else key for index, key in _TOKEN.findall(path)]


def _placeholder(path: str) -> tuple[Any, ...]:
    """Valid values for a scalar or enum field at ``path`` (every allowed one for an enum); () for anything else."""
    info = _type_at(spec.MCPServer, "." + path)
    if isinstance(info, msgspec.inspect.LiteralType):
        return tuple(info.values)
    scalars = {msgspec.inspect.StrType: "x", msgspec.inspect.IntType: 1, msgspec.inspect.BoolType: False}
    return next(((value,) for kind, value in scalars.items() if isinstance(info, kind)), ())


def _set(doc: Any, path: str, value: Any = _TAKE_OUT) -> bool:
    """Set (or, with _TAKE_OUT, delete) the field at ``path``: a mapping key, or an existing list element."""
    *parents, last = _parts(path) or [""]
    node = doc
    for part in parents:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return False
    if isinstance(node, dict) and isinstance(last, str) and (value is not _TAKE_OUT or last in node):
        if value is _TAKE_OUT:
            del node[last]
        else:
            node[last] = value
        return True
    if isinstance(node, list) and isinstance(last, int) and last < len(node) and value is not _TAKE_OUT:
        node[last] = value
        return True
    return False


def _semantic_whatever_the_enums(doc: Any, enums: dict[str, tuple[Any, ...]]) -> list[spec.Problem]:
    """The cross-field problems that hold for every value the faulty enums could have had (a placeholder
    transportType must not make up an httpTransport problem)."""
    found: list[list[spec.Problem]] = []
    for values in itertools.islice(itertools.product(*enums.values()), 16):
        for path, value in zip(enums, values, strict=True):
            _set(doc, path, value)
        with contextlib.suppress(spec.SpecError):
            found.append(spec.semantic_problems(spec.decode_mcpserver(doc)))
    return [problem for problem in found[0] if all(problem in other for other in found[1:])] if found else []


def every_problem(obj: Any) -> list[spec.Problem]:
    """What :func:`kmcp.spec.validated` would reject ``obj`` for: all of it, each problem once; [] when valid."""
    doc = copy.deepcopy(obj)
    problems: list[spec.Problem] = []
    enums: dict[str, tuple[Any, ...]] = {}
    for _ in range(_MAX_ROUNDS):
        try:
            spec.decode_mcpserver(doc)
        except spec.SpecError as error:
            new = [problem for problem in error.problems if problem.path not in {p.path for p in problems}]
            problems += new
            only = error.problems[0] if len(error.problems) == 1 else None
            if only is None or not new or only.path in ("apiVersion", "kind"):
                return problems
            values = _placeholder(only.path)
            if len(values) > 1:
                enums[only.path] = values
            if not _set(doc, only.path, *values[:1]):
                return problems
            continue
        return problems + _semantic_whatever_the_enums(doc, enums)
    return problems
