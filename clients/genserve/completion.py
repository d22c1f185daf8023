"""``genserve completion bash|zsh|fish``: a completion script written from the parser itself.

Every subcommand (the operator ones too, where installed), its subcommands and its options
come from the same ``argparse`` tree ``genserve`` parses with, so the script never lags.

    eval "$(genserve completion bash)"                  # ~/.bashrc
    eval "$(genserve completion zsh)"                   # ~/.zshrc (bash completion in zsh)
    genserve completion fish > ~/.config/fish/completions/genserve.fish
"""

from __future__ import annotations

import argparse

SHELLS = ("bash", "zsh", "fish")


def _children(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(o for a in parser._actions for o in a.option_strings if o.startswith("--"))


def tree(parser: argparse.ArgumentParser, path: str = "") -> dict[str, tuple[list[str], list[str]]]:
    """``"models"`` -> (its subcommands, its options), for every command path."""
    children = _children(parser)
    found = {path: (sorted(children), _options(parser))}
    for name, child in children.items():
        found.update(tree(child, f"{path} {name}".strip()))
    return found


def bash_script(parser: argparse.ArgumentParser) -> str:
    cases = []
    for path, (subcommands, options) in sorted(tree(parser).items()):
        words = " ".join(subcommands + options)
        cases.append(f'        "{path}") words="{words}" ;;')
    return "\n".join(
        [
            "# genserve completion for bash (and zsh through bashcompinit)",
            "_genserve() {",
            '    local cur="${COMP_WORDS[COMP_CWORD]}" path="" word i words=""',
            "    for ((i = 1; i < COMP_CWORD; i++)); do",
            '        word="${COMP_WORDS[i]}"',
            '        [[ "$word" == -* ]] && continue',
            '        case " $(_genserve_words "${path}") " in',
            '            *" $word "*) path="${path:+$path }$word" ;;',
            "        esac",
            "    done",
            '    words="$(_genserve_words "$path")"',
            '    COMPREPLY=($(compgen -W "$words" -- "$cur"))',
            "}",
            "_genserve_words() {",
            '    local words=""',
            '    case "$1" in',
            *cases,
            "    esac",
            '    echo "$words"',
            "}",
            "complete -o default -F _genserve genserve",
            "",
        ]
    )


def zsh_script(parser: argparse.ArgumentParser) -> str:
    return (
        "# genserve completion for zsh\nautoload -U +X bashcompinit && bashcompinit\n"
        + bash_script(parser)
    )


def fish_script(parser: argparse.ArgumentParser) -> str:
    lines = ["# genserve completion for fish", "complete -c genserve -f"]
    for path, (subcommands, options) in sorted(tree(parser).items()):
        words = path.split()
        if words:
            condition = f"__fish_seen_subcommand_from {words[-1]}"
            if len(words) > 1:
                condition = f"__fish_seen_subcommand_from {words[0]}; and {condition}"
        else:
            condition = "__fish_use_subcommand"
        for sub in subcommands:
            lines.append(f"complete -c genserve -n '{condition}' -a {sub}")
        for option in options:
            lines.append(f"complete -c genserve -n '{condition}' -l {option[2:]}")
    return "\n".join(lines) + "\n"


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    return {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}[shell](parser)
