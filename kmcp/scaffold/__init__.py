"""`kmcp init` and `kmcp add-tool`: write a new MCP server project, add tools to one.

Templates are string constants (python_templates, go_templates), so the zipapp needs no package data. kmcp.yaml is
written from the ProjectFile Struct and read back through ``spec.decode_project``, so what init writes is exactly
what deploy reads.
"""

from __future__ import annotations

import json
import keyword
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from kmcp import spec
from kmcp.errors import BadInput
from kmcp.scaffold import go_templates, python_templates

Framework = Literal["python", "go"]
FRAMEWORKS: tuple[Framework, ...] = ("python", "go")
PROJECT_FILE = "kmcp.yaml"

# MCP tool names: letters, digits, '_' and '-', starting with a letter (they become function and type names).
# Names main.py already binds; a tool function must not shadow them.
RESERVED_PYTHON_NAMES = frozenset({"mcp", "MCPServer"})
TOOL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class InitRequest:
    framework: Framework
    directory: Path
    name: str | None = None
    description: str = ""
    force: bool = False


def project_name_from(directory: Path) -> str:
    """A Kubernetes-friendly name from a directory name: lower case, runs of other characters become '-'."""
    name = re.sub(r"[^a-z0-9]+", "-", directory.resolve().name.lower()).strip("-")
    return name[:63].rstrip("-")


def _go_string(text: str) -> str:
    """A Go interpreted string literal (JSON's escapes are a subset of Go's when non-ASCII stays literal)."""
    return json.dumps(text, ensure_ascii=False)


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # TOML basic strings share JSON's escapes


def dump_project(project: spec.ProjectFile) -> str:
    data: dict[str, Any] = msgspec.to_builtins(project)
    # Always show the version, even at its default: `kmcp build` tags images with it.
    data.pop("version", None)
    data = {"name": data.pop("name"), "framework": data.pop("framework"), "version": project.version, **data}
    header = "# kmcp project file: read by `kmcp build`, `kmcp deploy` and `kmcp add-tool`.\n"
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)


def load_project(directory: Path) -> spec.ProjectFile:
    path = directory / PROJECT_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise BadInput(f"{path}: not found (is {directory} a kmcp project? create one with `kmcp init`)") from None
    except OSError as error:
        raise BadInput(f"{path}: {error.strerror or error}") from None
    try:
        return spec.decode_project(yaml.safe_load(text))
    except yaml.YAMLError as error:
        raise BadInput(f"{path}: invalid YAML: {getattr(error, 'problem', None) or error}") from None
    except spec.SpecError as error:
        raise BadInput(f"{path}: {error}") from None


def _project_files(request: InitRequest, project: spec.ProjectFile) -> dict[str, str]:
    values = {"name": project.name, "description": project.description or f"The {project.name} MCP server.",
              "version": project.version}
    if request.framework == "python":
        t = python_templates
        return {
            "src/main.py": t.MAIN_PY.format(**values),
            "pyproject.toml": t.PYPROJECT_TOML.format(description_toml=_toml_string(project.description), **values),
            "Dockerfile": t.DOCKERFILE,
            ".dockerignore": t.DOCKERIGNORE,
            ".gitignore": t.GITIGNORE,
            "README.md": t.README_MD.format(**values),
            PROJECT_FILE: dump_project(project),
        }
    g = go_templates
    return {
        "main.go": g.MAIN_GO.format(sdk_module=g.GO_SDK_MODULE, name_go=_go_string(project.name),
                                    version_go=_go_string(project.version), **values),
        "go.mod": g.GO_MOD.format(go_version=g.GO_VERSION, sdk_module=g.GO_SDK_MODULE,
                                  sdk_version=g.GO_SDK_VERSION, **values),
        "Dockerfile": g.DOCKERFILE.format(binary_path=g.BINARY_PATH),
        ".dockerignore": g.DOCKERIGNORE,
        ".gitignore": g.GITIGNORE.format(**values),
        "README.md": g.README_MD.format(**values),
        PROJECT_FILE: dump_project(project),
    }


def init_project(request: InitRequest) -> list[Path]:
    """Write a new project into ``request.directory``; returns the files written. Raises BadInput."""
    directory = request.directory
    if directory.exists() and not directory.is_dir():
        raise BadInput(f"{directory}: exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()) and not request.force:
        raise BadInput(f"{directory}: directory is not empty (use --force to write the project files anyway)")
    name = request.name or project_name_from(directory)
    if request.framework == "python":
        command, args = "python", ["src/main.py"]
        tools = {"echo": spec.ToolConfig(description="Echo the message back.")}
    else:
        command, args = go_templates.BINARY_PATH, []
        tools = {"echo": spec.ToolConfig(description="Echo the message back.")}
    raw = {"name": name, "framework": request.framework, "description": request.description}
    try:
        project = spec.decode_project(raw)
    except spec.SpecError as error:
        hint = "" if request.name else " (choose one with --name)"
        raise BadInput(f"project name {name!r}: {error}{hint}") from None
    project = msgspec.structs.replace(project, tools=tools, command=command, args=args)
    written: list[Path] = []
    for relative, content in _project_files(request, project).items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        written.append(path)
    return written


@dataclass(frozen=True)
class AddToolRequest:
    name: str
    project_dir: Path
    description: str = ""


def _python_docstring(text: str) -> str:
    text = text or "Describe what this tool does."
    if '"' not in text and "\\" not in text and "\n" not in text:
        return f'"""{text}"""'
    return repr(text)


def _add_python_tool(request: AddToolRequest, function: str) -> Path:
    main = request.project_dir / "src" / "main.py"
    try:
        source = main.read_text()
    except OSError as error:
        raise BadInput(f"{main}: {error.strerror or error}") from None
    if re.search(rf"^(async\s+)?def\s+{re.escape(function)}\s*\(", source, re.M):
        raise BadInput(f"{main}: a function named {function} already exists")
    guard = python_templates.MAIN_GUARD
    at = source.find("\n" + guard)
    if at < 0:
        raise BadInput(f"{main}: cannot find the line `{guard}` to add the tool above it")
    decorator_args = "" if function == request.name else f"name={json.dumps(request.name)}"
    stub = python_templates.TOOL_FUNCTION.format(
        decorator_args=decorator_args, function=function, docstring=_python_docstring(request.description)
    )
    head = source[: at + 1].rstrip("\n") + "\n\n\n"
    main.write_text(head + stub + source[at + 1:])
    return main


def _add_go_tool(request: AddToolRequest, function: str) -> Path:
    type_name = "".join(part[:1].upper() + part[1:] for part in re.split(r"[_-]+", request.name) if part)
    # The _tool suffix keeps Go from reading the file name as a _test, GOOS or GOARCH constraint.
    path = request.project_dir / f"{function.lower()}_tool.go"
    if path.exists():
        raise BadInput(f"{path}: already exists")
    if not (request.project_dir / "main.go").is_file():
        raise BadInput(f"{request.project_dir / 'main.go'}: not found")
    path.write_text(go_templates.TOOL_GO.format(
        type_name=type_name, name=request.name, name_go=_go_string(request.name),
        description_go=_go_string(request.description or f"The {request.name} tool."),
    ))
    return path


def add_tool(request: AddToolRequest) -> list[Path]:
    """Declare a tool in kmcp.yaml and add a stub for it to the server source; returns the files changed."""
    if not TOOL_NAME.match(request.name):
        raise BadInput(f"tool name {request.name!r}: use letters, digits, '_' and '-', starting with a letter")
    project = load_project(request.project_dir)
    if request.name in project.tools:
        raise BadInput(f"tool {request.name!r} already exists in {request.project_dir / PROJECT_FILE}")
    function = request.name.replace("-", "_")
    if keyword.iskeyword(function) or function in RESERVED_PYTHON_NAMES:
        function += "_tool"
    add = _add_python_tool if project.framework == "python" else _add_go_tool
    source = add(request, function)
    tools = {**project.tools, request.name: spec.ToolConfig(description=request.description)}
    project_path = request.project_dir / PROJECT_FILE
    project_path.write_text(dump_project(msgspec.structs.replace(project, tools=tools)))
    return [project_path, source]
