"""Every ``upkeep <command ...>`` that upkeep itself tells a user names a real command.

A Redis restore refusal told users to run ``upkeep backup export``, which never existed.
This reads every string literal in ``src/`` (messages, hints, help text, docstrings that
become help, the starter config ``upkeep init`` writes) and checks each mention against
the typer app's own command tree.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import typer.main
from typer.core import TyperGroup

from upkeep.cli.main import app

SOURCES = Path(__file__).resolve().parents[3] / "src" / "upkeep"
MENTION = re.compile(r"(?<![\w./-])(`?)upkeep((?: [a-z][a-z0-9-]*)+)")
"""``upkeep`` followed by words; the backtick, if any, marks a quoted command."""


ALSO_A_VERB = frozenset({"runs"})
"""Groups whose name is also an English verb: unquoted, ``upkeep runs on …`` is prose when
the next word is no subcommand (quoted, ```upkeep runs on``` is still checked)."""


def command_tree() -> TyperGroup:
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    return root


def literals() -> Iterator[tuple[Path, int, str]]:
    for path in sorted(SOURCES.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                yield path, node.lineno, node.value


def problem(root: TyperGroup, quoted: bool, words: list[str]) -> str | None:
    """Given the words after ``upkeep``, return what is wrong with the command they name,
    or None. Prose (``upkeep keeps …``) is not a command unless it is quoted."""
    group: TyperGroup = root
    for depth, word in enumerate(words):
        command = group.commands.get(word)
        if command is None:
            if not quoted and (depth == 0 or (depth == 1 and words[0] in ALSO_A_VERB)):
                return None
            known = ", ".join(sorted(group.commands))
            return f"no command {word!r} under {group.name!r} (it has: {known})"
        if not isinstance(command, TyperGroup):
            return None  # a leaf: what follows are its arguments
        group = command
    return None


def test_every_mentioned_command_exists() -> None:
    root = command_tree()
    found = []
    wrong = []
    for path, line, text in literals():
        for match in MENTION.finditer(text):
            words = match.group(2).split()
            found.append(words)
            reason = problem(root, bool(match.group(1)), words)
            if reason is not None:
                wrong.append(
                    f"{path.relative_to(SOURCES)}:{line}: upkeep {' '.join(words)}: {reason}"
                )
    assert not wrong, "\n".join(wrong)
    # The scan sees the mentions it is meant to: commands, groups and their subcommands.
    heads = {tuple(words[:2]) for words in found}
    assert ("init",) in {head[:1] for head in heads}
    assert any(head[0] in ("backup", "logs") and len(head) == 2 for head in heads)


def test_the_checker_catches_the_class() -> None:
    root = command_tree()
    assert problem(root, False, ["backup", "export"]) is not None
    assert problem(root, True, ["exportall"]) is not None
    assert problem(root, False, ["keeps", "its", "store"]) is None
    assert problem(root, False, ["run", "daily-health-check"]) is None
    assert problem(root, False, ["backup", "restore", "ID"]) is None
    assert problem(root, False, ["runs", "on", "a", "host"]) is None
    assert problem(root, True, ["runs", "on"]) is not None
    assert problem(root, False, ["window", "lists"]) is not None
