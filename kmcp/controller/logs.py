"""Structured logs: one JSON object per line on stderr (ts, level, logger, msg, then the record's key/values).

Callers pass key/values as ``extra={"kv": {...}}`` so the message stays a constant, greppable string."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

import msgspec

_encode = msgspec.json.Encoder(enc_hook=str).encode  # several times json.dumps' speed; str() what it cannot


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        kv = getattr(record, "kv", None)
        if isinstance(kv, dict):
            line.update({k: v for k, v in kv.items() if k not in line})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return _encode(line).decode()


def setup(level: str = "info", stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger("kmcp")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
