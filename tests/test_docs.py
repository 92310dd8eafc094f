"""The documentation runs: every Python example in README.md and docs/, every tasklib command shown.

The convention: each fenced ``python`` block runs on its own, as written, in a
fresh namespace (``__name__ == "__main__"``, as a script) and a fresh empty
working directory. So every example carries its own imports and definitions, and
a reader can copy any one of them. Trackers an example leaves open are closed
afterwards. A block that cannot run here (it needs a server, say) is preceded by
``<!-- not-run: the reason -->``; it is reported as a skip with that reason.

Every command of a ``sh`` block that runs the tasklib program (``tasklib``,
``.venv/bin/tasklib``, ``python -m tasklib``) must parse with the program's own
argument parser.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import pathlib
import re
import shlex
from collections import Counter
from types import ModuleType
from typing import Any

import pytest

from tasklib import TaskTracker
from tasklib.status import TRANSITIONS

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(?P<reason>.*?)\s*-->")
# At most this many blocks may be left unrun; raise it only with a reason in the page.
NOT_RUN_BUDGET = 2


@dataclasses.dataclass(frozen=True)
class Block:
    """A fenced code block of a page: where it starts, its language, its text."""

    page: str
    line: int  # of the first line of code, 1-based
    lang: str
    code: str = dataclasses.field(repr=False)
    not_run: str | None = None

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(path: pathlib.Path) -> list[Block]:
    """The fenced blocks of a Markdown page, with the not-run reason written just before each."""
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    previous = ""  # the last non-blank line before the current one
    i = 0
    while i < len(lines):
        opening = re.match(r"^(\s*)(`{3,})\s*([\w+-]*)", lines[i])
        if not opening:
            if lines[i].strip():
                previous = lines[i].strip()
            i += 1
            continue
        indent, fence, lang = opening.groups()
        start = i + 1
        i = start
        while i < len(lines) and not lines[i].strip().startswith(fence):
            i += 1
        code = "\n".join(line[len(indent) :] for line in lines[start:i])
        skip = NOT_RUN.fullmatch(previous)
        found.append(
            Block(
                page=str(path.relative_to(ROOT)),
                line=start + 1,
                lang=lang.lower(),
                code=code,
                not_run=skip.group("reason") if skip else None,
            )
        )
        previous = ""
        i += 1
    return found


ALL = [block for page in PAGES for block in blocks(page)]
PYTHON = [block for block in ALL if block.lang in ("python", "py")]
SHELL = [block for block in ALL if block.lang in ("sh", "bash", "shell", "console")]


def test_the_pages_have_examples() -> None:
    """The examples are found at all: README.md and every docs page that shows code."""
    pages = {block.page for block in PYTHON}
    assert "README.md" in pages
    assert {"docs/getting-started.md", "docs/running-work.md", "docs/web.md"} <= pages
    assert len(PYTHON) >= 10


def test_few_blocks_are_left_unrun() -> None:
    """Every not-run block gives a reason, and there are few of them."""
    skipped = [block for block in PYTHON if block.not_run is not None]
    assert all(block.not_run for block in skipped), "a not-run comment needs a reason"
    assert len(skipped) <= NOT_RUN_BUDGET, [str(block) for block in skipped]


@pytest.mark.parametrize("block", PYTHON, ids=str)
def test_python_example_runs_as_written(block: Block, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example runs in a fresh namespace and an empty directory, without an error."""
    if block.not_run is not None:
        pytest.skip(f"not run: {block.not_run}")
    monkeypatch.chdir(tmp_path)
    # Leading newlines make a traceback's line numbers those of the page.
    code = compile("\n" * (block.line - 1) + block.code, block.page, "exec")
    namespace: dict[str, Any] = {"__name__": "__main__"}
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(code, namespace)
    finally:
        for value in namespace.values():
            if isinstance(value, TaskTracker):
                value.close(wait=False)


def program_arguments(command: str, *, django: bool = False) -> list[str] | None:
    """The arguments given to the tasklib program by one shell command, or None if it runs something else.

    With ``django``, those given to ``manage.py tasklib`` instead.
    """
    words = shlex.split(command, comments=True)
    if django:
        manage = re.fullmatch(r"(\S*/)?python3?", words[0]) if words else None
        words = words[1:] if manage else words
        if len(words) >= 2 and re.fullmatch(r"(\S*/)?manage\.py", words[0]) and words[1] == "tasklib":
            return words[2:]
        return None
    if words[:1] in (["tasklib"], [".venv/bin/tasklib"]):
        return words[1:]
    if len(words) >= 3 and re.fullmatch(r"(\S*/)?python3?", words[0]) and words[1:3] == ["-m", "tasklib"]:
        return words[3:]
    return None


def commands(block: Block, *, django: bool = False) -> list[tuple[str, list[str]]]:
    """Where each tasklib (or with ``django``, ``manage.py tasklib``) command of a shell block is, and its arguments."""
    found = []
    for offset, line in enumerate(block.code.splitlines()):
        for command in re.split(r"&&|\|\||;|\|", line):
            arguments = program_arguments(command, django=django) if command.strip() else None
            if arguments is not None:
                found.append((f"{block.page}:{block.line + offset}", arguments))
    return found


COMMANDS = [command for block in SHELL for command in commands(block)]
DJANGO_COMMANDS = [command for block in SHELL for command in commands(block, django=True)]


def cli_parser() -> Any:
    # The program's parser itself, so the check cannot drift from it.
    from tasklib.cli import parser

    return parser()


def test_the_pages_show_commands() -> None:
    """The command checks below are not vacuous: the README and the CLI page show commands."""
    assert {"README.md", "docs/cli.md"} <= {where.split(":")[0] for where, _ in COMMANDS}


@pytest.mark.parametrize(("where", "arguments"), COMMANDS, ids=[f"{w}:{' '.join(a)}" for w, a in COMMANDS])
def test_command_shown_parses(where: str, arguments: list[str]) -> None:
    """Each tasklib command shown is one the program accepts."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            cli_parser().parse_args(arguments)
    except SystemExit as exit:
        pytest.fail(f"{where}: tasklib {shlex.join(arguments)} does not parse (exit {exit.code}): {stderr.getvalue()}")


def load_hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_status_diagram_has_one_edge_per_table_entry() -> None:
    """The site's status diagram, drawn from TRANSITIONS, has exactly the table's moves, each once."""
    diagram = load_hooks().status_diagram()
    assert diagram.splitlines()[0] == "stateDiagram-v2"
    edges = Counter(re.findall(r"^\s*(\w+) --> (\w+) : (\w+)$", diagram, re.MULTILINE))
    table = Counter(
        (src.value, dst.value, event.value) for src, row in TRANSITIONS.items() for event, dst in row.items()
    )
    assert edges == table
    assert sum(table.values()) == 19  # 6 from ENQUEUED, 6 from RUNNING, 7 from CANCEL_REQUESTED
    # The pseudo-state [*]: the start (submit) and one end per terminal status, and nothing else.
    ends = re.findall(r"^\s*(\S+) --> \[\*\]$", diagram, re.MULTILINE)
    assert sorted(ends) == sorted(status.value for status, row in TRANSITIONS.items() if not row)


def test_status_page_holds_the_diagram_marker() -> None:
    """The page the diagram is drawn into still asks for it."""
    hooks = load_hooks()
    assert hooks.MARKER in (ROOT / "docs" / "status-machine.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("where", "arguments"), DJANGO_COMMANDS, ids=[f"{w}:{' '.join(a)}" for w, a in DJANGO_COMMANDS]
)
def test_django_command_shown_parses(where: str, arguments: list[str]) -> None:
    """Each ``manage.py tasklib`` command shown is one the Django command accepts (it has no --db)."""
    from tasklib.cli import parser

    assert {w.split(":")[0] for w, _ in DJANGO_COMMANDS} == {"docs/django.md"}
    stderr = io.StringIO()
    with TaskTracker(":memory:") as tracker:
        try:
            with contextlib.redirect_stderr(stderr):
                parser(tracker, prog="manage.py tasklib").parse_args(arguments)
        except SystemExit:
            pytest.fail(f"{where}: manage.py tasklib {shlex.join(arguments)} does not parse: {stderr.getvalue()}")
