"""`kmcp add-tool`: the tool lands in kmcp.yaml and in the server, and the server still runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.cli.helpers import kmcp, mcp_session


@pytest.fixture
def python_project(tmp_path: Path) -> Path:
    project = tmp_path / "toolbox"
    assert kmcp("init", "python", project).returncode == 0
    return project


def test_add_tool_declares_it_in_kmcp_yaml(python_project: Path) -> None:
    result = kmcp("add-tool", "weather", "--description", "Current weather for a city",
                  "--project-dir", python_project)
    assert result.returncode == 0, result.stderr
    tools = yaml.safe_load((python_project / "kmcp.yaml").read_text())["tools"]
    assert tools == {"echo": {"description": "Echo the message back."},
                     "weather": {"description": "Current weather for a city"}}
    source = (python_project / "src" / "main.py").read_text()
    assert "def weather(" in source
    assert source.index("def weather(") < source.index('if __name__ == "__main__":')


def test_add_tool_defaults_to_the_current_directory(python_project: Path) -> None:
    assert kmcp("add-tool", "lookup", cwd=python_project).returncode == 0
    assert "lookup" in yaml.safe_load((python_project / "kmcp.yaml").read_text())["tools"]


@pytest.mark.parametrize(("name", "message"), [
    ("echo", "already exists"),
    ("9lives", "letters, digits"),
    ("has space", "letters, digits"),
])
def test_add_tool_rejects_bad_or_duplicate_names(python_project: Path, name: str, message: str) -> None:
    before = (python_project / "src" / "main.py").read_text()
    result = kmcp("add-tool", name, "--project-dir", python_project)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert (python_project / "src" / "main.py").read_text() == before


def test_add_tool_outside_a_project_is_a_usage_error(tmp_path: Path) -> None:
    result = kmcp("add-tool", "x", "--project-dir", tmp_path)
    assert result.returncode == 2 and "kmcp.yaml: not found" in result.stderr


def test_add_tool_to_a_go_project_writes_a_self_registering_handler(tmp_path: Path) -> None:
    project = tmp_path / "gosrv"
    assert kmcp("init", "go", project).returncode == 0
    assert kmcp("add-tool", "get_user", "--description", 'Say "hi"', "--project-dir", project).returncode == 0
    source = (project / "get_user_tool.go").read_text()
    assert "func GetUser(" in source and 'Name: "get_user"' in source and r'"Say \"hi\""' in source
    assert "registerTool(" in source


@pytest.mark.slow
def test_python_server_with_added_tools_still_answers(python_project: Path, scaffold_python: Path) -> None:
    for name, description in (("get-weather", "Current weather"), ("class", ""), ("mcp", "Shadows nothing")):
        args = ["add-tool", name, "--project-dir", python_project]
        result = kmcp(*args, "--description", description) if description else kmcp(*args)
        assert result.returncode == 0, result.stderr
    seen = mcp_session(python_project, [str(scaffold_python), "src/main.py"],
                       {"echo": {"message": "still here"}, "get-weather": {"text": "Madrid"}, "class": {"text": "x"}})
    assert set(seen["tools"]) == {"echo", "get-weather", "class", "mcp"}
    assert seen["tools"]["get-weather"] == "Current weather"
    assert seen["schemas"]["get-weather"]["required"] == ["text"]
    assert seen["calls"]["echo"]["text"] == ["still here"]
    assert seen["calls"]["get-weather"] == {"error": False, "text": ["Madrid"]}
