"""``manage.py tasklib list|show|cancel|purge|watch``: tasklib's command line on the project's tracker."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from tasklib.cli import TRACKER_COMMANDS, run
from tasklib.contrib.django import get_tracker

__all__ = ["Command"]


class Command(BaseCommand):
    """The ``tasklib`` program's commands on stored tasks, with its options and exit statuses."""

    help = (
        f"tasklib's command line on this project's tracker: {', '.join(TRACKER_COMMANDS)}. "
        "'manage.py tasklib COMMAND --help' shows a command's options."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        # Everything after the command name goes to tasklib's own parser, unchanged.
        parser.add_argument("args", nargs=argparse.REMAINDER, metavar="COMMAND ...")

    def handle(self, *args: Any, **options: Any) -> None:
        prog = f"{os.path.basename(sys.argv[0])} tasklib"
        status = run(get_tracker(), [str(a) for a in args], prog=prog)
        if status:
            # The message is on stderr already; manage.py ends with the same status as tasklib.
            raise SystemExit(status)
