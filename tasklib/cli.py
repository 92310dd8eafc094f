"""The ``tasklib`` command line (also ``python -m tasklib``)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Sequence

from .errors import TaskError
from .tracker import TaskTracker

__all__ = ["main"]

DEFAULT_DATABASE = "tasks.db"


def _demo(tracker: TaskTracker, args: argparse.Namespace) -> int:
    task = tracker.submit(description="Demo: delete project FOO", submitted_by=10000)
    print(f"submitted task {task.id}: {task.status.value}")
    tracker.start(task.id)
    total = 5
    for done in range(1, total + 1):
        time.sleep(args.step)
        task = tracker.update_progress(task.id, done * 100 // (total + 1), message=f"{done} of {total} issues deleted")
        print(f"  {task.progress:3d}%  {task.message}")
    task = tracker.complete(task.id, result={"deleted": total}, message=f"{total} of {total} issues deleted")
    print(task.to_json())
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tasklib", description="Track long-running tasks.")
    parser.add_argument(
        "--db",
        default=os.environ.get("TASKLIB_DATABASE", DEFAULT_DATABASE),
        help="SQLite file or database URL (default: $TASKLIB_DATABASE or %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser("demo", help="run a sample task and print its JSON")
    demo.add_argument("--step", type=float, default=0.3, help="seconds per progress step")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status. Errors are one line on stderr."""
    args = _parser().parse_args(argv)
    try:
        with TaskTracker(args.db) as tracker:
            return int(args.run(tracker, args))
    except TaskError as exc:
        print(f"tasklib: {exc}", file=sys.stderr)
        return 1
