"""`kmcp completion`: the scripts cover every command and actually complete in the shell."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from kmcp.cli import build_parser
from kmcp.commands.completion import describe
from tests.cli.helpers import kmcp

COMMANDS = [info.name for info in describe(build_parser())]


def bash_complete(script: str, *words: str) -> list[str]:
    """Run the generated completion function for a command line and return COMPREPLY."""
    words_array = " ".join(f"'{w}'" for w in words)
    program = (f'{script}\nCOMP_WORDS=({words_array}); COMP_CWORD={len(words) - 1}; '
               f'_kmcp_complete; printf "%s\\n" "${{COMPREPLY[@]}}"')
    proc = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if line]


@pytest.fixture(scope="module")
def bash_script() -> str:
    result = kmcp("completion", "bash")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_developer_command_is_covered() -> None:
    assert {"init", "add-tool", "build", "completion", "render", "validate", "crd"} <= set(COMMANDS)


def test_bash_completes_commands(bash_script: str) -> None:
    assert set(bash_complete(bash_script, "kmcp", "")) >= set(COMMANDS)
    assert sorted(bash_complete(bash_script, "kmcp", "ad")) == ["adapter", "add-tool"]


def test_bash_completes_options_and_choices(bash_script: str) -> None:
    assert {"go", "python", "--force", "--name"} <= set(bash_complete(bash_script, "kmcp", "init", ""))
    assert "--kind-load-cluster" in bash_complete(bash_script, "kmcp", "build", "--")
    assert bash_complete(bash_script, "kmcp", "completion", "z") == ["zsh"]
    assert bash_complete(bash_script, "kmcp", "render", "-o", "") == ["yaml", "json"]


def test_zsh_script_names_every_command() -> None:
    result = kmcp("completion", "zsh")
    assert result.returncode == 0
    assert result.stdout.startswith("#compdef kmcp")
    for command in COMMANDS:
        assert f"'{command}:" in result.stdout and f"        {command})" in result.stdout
    if shutil.which("zsh"):
        proc = subprocess.run(["zsh", "-n"], input=result.stdout, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr


def test_unknown_shell_is_a_usage_error() -> None:
    result = kmcp("completion", "tcsh")
    assert result.returncode == 2


def test_bash_completes_subcommands_and_their_options_but_no_hidden_one(bash_script: str) -> None:
    assert {"up", "down", "build", "echo-server"} <= set(bash_complete(bash_script, "kmcp", "dev", ""))
    options = bash_complete(bash_script, "kmcp", "dev", "up", "--")
    assert {"--detach", "--check", "--port", "--dir"} <= set(options)
    assert "--background" not in options  # what --detach starts, not for users


def test_fish_completes_commands_subcommands_options_and_choices() -> None:
    result = kmcp("completion", "fish")
    assert result.returncode == 0 and result.stdout.startswith("# fish completion for kmcp")
    for command in COMMANDS:
        assert f"-n __fish_use_subcommand -a {command} " in result.stdout
    if not shutil.which("fish"):
        pytest.skip("fish is not installed (scripts/setup installs it): the script was checked as text only")

    def complete(line: str) -> list[str]:
        proc = subprocess.run(["fish", "--no-config", "-c", f"source; complete -C {line!r}"], input=result.stdout,
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        return [entry.split("\t")[0] for entry in proc.stdout.splitlines()]

    assert set(complete("kmcp ")) >= set(COMMANDS)
    assert {"up", "down", "build"} <= set(complete("kmcp dev "))
    assert {"--detach", "--check"} <= set(complete("kmcp dev up --"))
    assert set(complete("kmcp render -o ")) == {"yaml", "json"}
    assert complete("kmcp completion f") == ["fish"]


def test_the_modes_complete_their_own_flags(bash_script: str) -> None:
    """`kmcp controller` and `kmcp adapter` parse argv themselves: their flags come from their own parsers."""
    controller = set(bash_complete(bash_script, "kmcp", "controller", "--"))
    assert {"--leader-elect", "--metrics-bind-address", "--adapter-otlp-endpoint", "--kubeconfig"} <= controller
    assert bash_complete(bash_script, "kmcp", "controller", "--log-level", "w") == ["warning"]
    assert {"--listen", "--otlp-endpoint", "--bridge"} <= set(bash_complete(bash_script, "kmcp", "adapter", "--"))
    fish = kmcp("completion", "fish").stdout
    assert "-n '__fish_seen_subcommand_from controller' -l leader-elect" in fish
    zsh = kmcp("completion", "zsh").stdout
    assert "'--resync-period[" in zsh
    if shutil.which("fish"):
        proc = subprocess.run(["fish", "--no-config", "-c", "source; complete -C 'kmcp controller --leader-elect-r'"],
                              input=fish, capture_output=True, text=True, timeout=30)
        assert [entry.split("\t")[0] for entry in proc.stdout.splitlines()] == [
            "--leader-elect-renew-deadline", "--leader-elect-retry-period"]
