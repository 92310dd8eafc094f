"""What a type checker sees of the public API: wrong arguments for a task function are caught."""

from __future__ import annotations

import pathlib
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

SNIPPET = textwrap.dedent(
    """
    from tasklib import TaskTracker


    def resize(path: str, *, width: int) -> int:
        return width


    tracker = TaskTracker(":memory:")
    tracker.submit(resize, "a.png", width=3)
    tracker.submit(resize, "a.png", width=3, description="resize", submitted_by=7)
    tracker.submit(description="host-driven")
    tracker.submit(resize, 3, width=3)  # line 13: a path that is not a str
    tracker.submit(resize, "a.png", height=3)  # line 14: no such parameter
    TaskTracker(42)  # line 15: not a database
    """
)


def test_a_checker_catches_wrong_arguments_for_the_task_function(tmp_path: pathlib.Path) -> None:
    """mypy (strict) accepts the right calls of submit and reports each wrong one on its line."""
    api = pytest.importorskip("mypy.api", reason="mypy comes with the dev extra")
    source = tmp_path / "snippet.py"
    source.write_text(SNIPPET)
    out, err, status = api.run(
        [
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--config-file",
            str(ROOT / "pyproject.toml"),
            str(source),
        ]
    )
    errors = [line for line in out.splitlines() if ": error:" in line]
    lines = sorted({int(line.split(":")[1]) for line in errors if line.startswith(str(source))})
    assert lines == [13, 14, 15], out + err
    assert status == 1
