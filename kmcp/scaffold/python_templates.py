"""Files of a new Python project on ``MCPServer`` (``mcp`` 2.x), as string constants so they ship inside the zipapp
unchanged. ``mcp`` 2.x because it is the SDK that speaks revision 2026-07-28: its stdio server answers a client that
opens with ``initialize`` the handshake way and one that sends self-contained 2026-07-28 requests statelessly, so the
scaffold serves both eras (and ``kmcp adapter`` passes modern requests straight through to it).

Placeholders use ``str.format``: ``{name}``, ``{description}``, ``{version}``; literal braces are doubled.
"""

from __future__ import annotations

# The marker add-tool inserts new tools above; a server without it still works, add-tool then asks for it.
MAIN_GUARD = 'if __name__ == "__main__":'

MAIN_PY = '''\
"""{name}: an MCP server on MCPServer from the official MCP Python SDK (`mcp` 2.x).

It speaks both protocol eras over stdio: a client that starts with `initialize` gets the handshake (revisions up
to 2025-11-25); one that sends 2026-07-28 requests (each carrying its own `_meta`, `server/discover` first) is
answered without one.

Run it over stdio:   python src/main.py
Add a tool:          kmcp add-tool my_tool --description "What it does"
"""

from mcp.server.mcpserver import MCPServer

mcp = MCPServer("{name}", version="{version}")


@mcp.tool()
def echo(message: str) -> str:
    """Echo the message back."""
    return message


if __name__ == "__main__":
    # stdio: the client (or kmcp's transport adapter in the pod) speaks MCP over stdin/stdout.
    mcp.run(transport="stdio")
'''

TOOL_FUNCTION = '''\
@mcp.tool({decorator_args})
def {function}(text: str) -> str:
    {docstring}
    # Replace this stub with the tool's logic; parameters become the tool's input schema.
    return text


'''

PYPROJECT_TOML = '''\
[project]
name = "{name}"
version = "{version}"
description = {description_toml}
requires-python = ">=3.10"
dependencies = [
  "mcp>=2.3,<3",
]

[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[tool.setuptools]
# The server runs as `python src/main.py`: installing the project installs only its dependencies.
py-modules = []
'''

DOCKERFILE = '''\
FROM python:3.12-slim

WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

# Installing the project installs its dependencies (pyproject.toml is the one list of them).
COPY pyproject.toml ./
RUN pip install --no-cache-dir .
COPY src ./src

USER 65532:65532
# stdio MCP server: kmcp's transport adapter starts this command and bridges it to HTTP.
CMD ["python", "src/main.py"]
'''

GITIGNORE = '''\
__pycache__/
*.py[cod]
.venv/
.env
dist/
build/
*.egg-info/
'''

DOCKERIGNORE = '''\
.venv/
__pycache__/
.env
.git/
'''

README_MD = '''\
# {name}

{description}

An MCP server on `MCPServer` from the official MCP Python SDK (`mcp` 2.x on PyPI), scaffolded by `kmcp init python`.
It serves MCP revision 2026-07-28 (stateless: no `initialize`, `server/discover`) and the handshake revisions up to
2025-11-25 over stdio; the SDK picks the era from the client's first request.

## Run locally

```bash
python -m venv .venv && .venv/bin/pip install -e .   # or: uv sync
.venv/bin/python src/main.py                          # speaks MCP over stdio
```

MCP Inspector: transport `STDIO`, command `uv`, arguments `run python src/main.py`.

## Add a tool

```bash
kmcp add-tool my_tool --description "What it does"
```

## Build and deploy

```bash
kmcp build --project-dir . -t {name}:latest --kind-load-cluster kind
kmcp deploy --file kmcp.yaml --image {name}:latest
```
'''
