"""``kmcp secrets sync ENV``: the project's local .env file -> the Kubernetes Secret kmcp.yaml names for ENV.

Server-side applied with field manager ``kmcp`` and the whole ``data`` map, so a key deleted from .env disappears
from the Secret on the next sync. ``kmcp deploy --environment ENV`` then references the Secret (envFrom + a
read-only mount at /secrets/<name>).
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from kmcp import kube
from kmcp.commands.deploy import load_project, secret_source
from kmcp.errors import BadInput

Obj = dict[str, Any]
_LINE = re.compile(r"^\s*(?:export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(?P<value>.*?)\s*$")


def parse_dotenv(text: str, where: str = ".env") -> dict[str, str]:
    """KEY=VALUE lines; ``#`` comments, blank lines, ``export``, single/double quotes (\\n, \\" in double)."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise BadInput(f"{where}:{number}: expected KEY=VALUE")
        value = match["value"]
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        elif len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        else:
            value = re.sub(r"\s+#.*$", "", value)  # an unquoted value ends at a comment
        values[match["key"]] = value
    return values


def secret_object(name: str, namespace: str, values: dict[str, str], project: str) -> Obj:
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/part-of": project, "app.kubernetes.io/managed-by": "kmcp-cli"}},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(values.items())},
    }


def secret_for_environment(project_dir: Path, environment: str, namespace: str | None) -> Obj:
    project = load_project(project_dir / "kmcp.yaml")
    source = secret_source(project, environment)
    if source.provider != "kubernetes":
        raise BadInput(f"secrets.{environment} uses provider {source.provider}: only provider kubernetes "
                       "syncs to a Secret")
    if not source.secret_name:
        raise BadInput(f"kmcp.yaml secrets.{environment}.secretName is required")
    env_file = project_dir / (source.file or ".env")
    try:
        text = env_file.read_text()
    except OSError as error:
        raise BadInput(f"{env_file}: {error.strerror or error}") from None
    values = parse_dotenv(text, str(env_file))
    return secret_object(source.secret_name, namespace or source.namespace or "default", values, project.name)


async def sync(client: kube.Kube, secret: Obj) -> None:
    await client.apply(secret, resource=kube.SECRETS)
    meta = secret["metadata"]
    keys = ", ".join(secret["data"]) or "no keys"
    print(f"secret {meta['namespace']}/{meta['name']} synced ({len(secret['data'])} keys: {keys})")
