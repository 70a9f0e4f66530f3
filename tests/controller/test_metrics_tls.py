"""The secure metrics endpoint's self-signed TLS context, where the installed controller runs: a read-only root
filesystem with no writable temporary directory."""

from __future__ import annotations

import ssl
import tempfile

import pytest

from kmcp.controller.metrics_server import self_signed_context


def test_self_signed_context_needs_no_temporary_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", "/nonexistent/kmcp-no-tmp")
    ctx = self_signed_context()
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.get_ca_certs() == []  # a server context: our own chain loaded, no CA pinned
