"""`kmcp completion bash|zsh|fish`: shell completion generated from the argparse parser, so every command is
covered.

The script lists each command's options and positional choices (a command with subcommands, like ``dev``, offers
their names and all their options); options that take a path complete files (or directories for --project-dir).
Hidden options are left out. The modes (controller, adapter) parse their argv themselves: their own parsers are
handed in, so their flags complete like any command's.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field

SHELLS = ("bash", "zsh", "fish")
# Options whose value is a path; everything else that takes a value gets no word list.
FILE_OPTIONS = frozenset({"-f", "--file", "--kubeconfig", "--dockerfile", "--values"})
DIR_OPTIONS = frozenset({"--project-dir", "--dir"})


@dataclass
class CommandInfo:
    name: str
    help: str
    flags: list[str] = field(default_factory=list)          # options that take no value
    value_options: list[str] = field(default_factory=list)  # options followed by a value
    option_help: dict[str, str] = field(default_factory=dict)
    option_choices: dict[str, list[str]] = field(default_factory=dict)
    positional_choices: list[str] = field(default_factory=list)


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def describe(parser: argparse.ArgumentParser,
             modes: Mapping[str, argparse.ArgumentParser] | None = None) -> list[CommandInfo]:
    """Every command of the top-level parser with its options, in the parser's order; a name in ``modes`` takes
    its options from that parser instead (the top-level one only holds its name)."""
    sub = _subparsers(parser)
    if sub is None:
        return []
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    infos: list[CommandInfo] = []
    for name, command in sub.choices.items():
        info = CommandInfo(name, helps.get(name, ""))
        _add_actions(info, (modes or {}).get(name, command))
        infos.append(info)
    return infos


def _add_actions(info: CommandInfo, parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._SubParsersAction):  # `dev up|down|...`: the names, then their options
            info.positional_choices += [str(c) for c in action.choices]
            for subcommand in action.choices.values():
                _add_actions(info, subcommand)
            continue
        if not action.option_strings:
            if action.choices:
                info.positional_choices += [str(c) for c in action.choices]
            continue
        takes_value = action.nargs != 0
        for option in action.option_strings:
            if option in info.option_help:
                continue  # the same option in two subcommands
            (info.value_options if takes_value else info.flags).append(option)
            info.option_help[option] = (action.help or "").replace("%(default)s", str(action.default))
            if action.choices:
                info.option_choices[option] = [str(c) for c in action.choices]


def _words(items: list[str]) -> str:
    return " ".join(items)


def bash_script(parser: argparse.ArgumentParser,
                modes: Mapping[str, argparse.ArgumentParser] | None = None) -> str:
    infos = describe(parser, modes)
    prog = parser.prog
    fn = f"_{prog.replace('-', '_')}_complete"
    lines = [
        f"# bash completion for {prog}; load it with: source <({prog} completion bash)",
        f"{fn}() {{",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" words=""',
        "    COMPREPLY=()",
        "    if [[ $COMP_CWORD -eq 1 ]]; then",
        f'        COMPREPLY=( $(compgen -W "{_words([i.name for i in infos])} --help --version" -- "$cur") )',
        "        return",
        "    fi",
        '    case "$prev" in',
    ]
    files = sorted({o for i in infos for o in i.value_options if o in FILE_OPTIONS})
    dirs = sorted({o for i in infos for o in i.value_options if o in DIR_OPTIONS})
    if files:
        lines.append(f'        {"|".join(files)}) COMPREPLY=( $(compgen -f -- "$cur") ); return ;;')
    if dirs:
        lines.append(f'        {"|".join(dirs)}) COMPREPLY=( $(compgen -d -- "$cur") ); return ;;')
    lines += ["    esac", '    case "${COMP_WORDS[1]}" in']
    for info in infos:
        cases = []
        for option, choices in info.option_choices.items():
            cases.append(f'            {option}) COMPREPLY=( $(compgen -W "{_words(choices)}" -- "$cur") ); return ;;')
        body = [f"        {info.name})"]
        if cases:
            body += ['            case "$prev" in', *["    " + c for c in cases], "            esac"]
        body.append(f'            words="{_words(info.flags + info.value_options + info.positional_choices)}" ;;')
        lines += body
    lines += [
        "    esac",
        '    COMPREPLY=( $(compgen -W "$words" -- "$cur") )',
        "}",
        f"complete -o default -F {fn} {prog}",
        "",
    ]
    return "\n".join(lines)


def _sq(text: str) -> str:
    """Text for inside a single-quoted shell word."""
    return text.replace("'", "'\\''")


def _zsh_quote(text: str) -> str:
    """An _arguments option description: brackets and colons are its syntax."""
    return text.replace("\\", "\\\\").replace("'", "'\\''").replace("[", "\\[").replace("]", "\\]").replace(":", "\\:")


def zsh_script(parser: argparse.ArgumentParser,
               modes: Mapping[str, argparse.ArgumentParser] | None = None) -> str:
    infos = describe(parser, modes)
    prog = parser.prog
    lines = [
        f"#compdef {prog}",
        f"# zsh completion for {prog}; load it with: source <({prog} completion zsh)",
        f"_{prog}() {{",
        "    local -a commands",
        "    commands=(",
        *[f"        '{i.name}:{_sq(i.help)}'" for i in infos],
        "    )",
        "    if (( CURRENT == 2 )); then",
        "        _describe -t commands 'kmcp command' commands",
        "        return",
        "    fi",
        "    shift words; (( CURRENT-- ))  # positions below are relative to the command",
        "    case $words[1] in",
    ]
    for info in infos:
        specs = []
        for option in info.flags:
            specs.append(f"'{option}[{_zsh_quote(info.option_help.get(option, ''))}]'")
        for option in info.value_options:
            if option in info.option_choices:
                action = f"({' '.join(info.option_choices[option])})"
            elif option in DIR_OPTIONS:
                action = "_files -/"
            elif option in FILE_OPTIONS:
                action = "_files"
            else:
                action = " "
            specs.append(f"'{option}[{_zsh_quote(info.option_help.get(option, ''))}]:value:{action}'")
        if info.positional_choices:
            specs.append(f"'1:argument:({' '.join(info.positional_choices)})'")
        specs.append("'*:file:_files'")
        lines.append(f"        {info.name})")
        lines.append("            _arguments -s \\")
        lines += [f"                {s} \\" for s in specs[:-1]]
        lines.append(f"                {specs[-1]} ;;")
    lines += [
        "    esac",
        "}",
        f'if [[ "$funcstack[1]" = "_{prog}" ]]; then',
        f'    _{prog} "$@"',
        "else",
        f"    compdef _{prog} {prog}",
        "fi",
        "",
    ]
    return "\n".join(lines)


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_option(option: str) -> str:
    return f"-l {option[2:]}" if option.startswith("--") else f"-s {option[1:]}"


def fish_script(parser: argparse.ArgumentParser,
                modes: Mapping[str, argparse.ArgumentParser] | None = None) -> str:
    infos = describe(parser, modes)
    prog = parser.prog
    lines = [f"# fish completion for {prog}; load it with: {prog} completion fish | source",
             f"complete -c {prog} -f"]
    for info in infos:
        lines.append(f"complete -c {prog} -n __fish_use_subcommand -a {info.name} -d {_fish_quote(info.help)}")
    for info in infos:
        head = f"complete -c {prog} -n '__fish_seen_subcommand_from {info.name}'"
        if info.positional_choices:
            lines.append(f"{head} -a {_fish_quote(' '.join(info.positional_choices))}")
        for option in info.flags:
            lines.append(f"{head} {_fish_option(option)} -d {_fish_quote(info.option_help.get(option, ''))}")
        for option in info.value_options:
            if option in info.option_choices:
                value = f"-x -a {_fish_quote(' '.join(info.option_choices[option]))}"
            elif option in DIR_OPTIONS:
                value = "-x -a '(__fish_complete_directories)'"
            elif option in FILE_OPTIONS:
                value = "-r -F"
            else:
                value = "-x"
            lines.append(f"{head} {_fish_option(option)} {value} -d {_fish_quote(info.option_help.get(option, ''))}")
    return "\n".join(lines) + "\n"


def completion_script(parser: argparse.ArgumentParser, shell: str,
                      modes: Mapping[str, argparse.ArgumentParser] | None = None) -> str:
    scripts = {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}
    return scripts[shell](parser, modes)
