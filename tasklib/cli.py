"""The ``tasklib`` command line (also ``python -m tasklib``): see and steer tasks without code."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, NoReturn

from tqdm import tqdm

from .checks import parse_id
from .clock import now_ms
from .errors import TaskError, TaskNotCancellable
from .status import TaskStatus
from .storage import DEFAULT_DURABILITY, DURABILITIES
from .task import Task
from .tracker import DEFAULT_RETENTION, TaskTracker
from .workers import current_task

__all__ = ["TRACKER_COMMANDS", "main", "parser", "run"]

DEFAULT_DATABASE = "tasks.db"
#: The commands on stored tasks, which :func:`run` offers on a host's own tracker.
TRACKER_COMMANDS = ("list", "show", "cancel", "purge", "watch")
POLL_SECONDS = 0.15

EXIT_ERROR = 1  # argparse itself exits 2 for a usage error
EXIT_INTERRUPTED = 130  # the shell's code for a process ended by SIGINT
# Distinct from EXIT_ERROR and the usage error, so a script can tell "the task
# failed" from "the command failed".
EXIT_BY_STATUS = {
    TaskStatus.COMPLETE: 0,
    TaskStatus.FAILED: 3,
    TaskStatus.CANCELLED: 4,
    TaskStatus.DEAD: 5,
}

EPILOG = """\
exit status:
  0    success (watch, demo: the task ended COMPLETE)
  1    error: unknown task, unusable database, a port in use, ...
  2    bad arguments
  3    watch, demo: the task ended FAILED
  4    watch, demo: the task ended CANCELLED
  5    watch, demo: the task ended DEAD (whatever ran it is gone)
  130  interrupted (Ctrl-C)
"""


class CommandError(Exception):
    """A failure to report as one line on stderr, with the exit status to end with."""

    def __init__(self, message: str, status: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.status = status


# -- output --------------------------------------------------------------------


def _one_line(text: str | None) -> str:
    # A newline or tab in a description or message would break a table row or the bar.
    return " ".join((text or "").split())


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _print_table(tasks: list[Task]) -> None:
    header = ("ID", "STATUS", "PROGRESS", "SUBMITTED BY", "LAST UPDATE (UTC)", "DESCRIPTION")
    rows = [
        (t.id, t.status.value, f"{t.progress}%", str(t.submitted_by), _utc(t.last_update), _one_line(t.description))
        for t in tasks
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())


def _is_terminal(stream: Any) -> bool:
    # A pseudo-terminal of size 0x0 (a bare `script`, some CI runners) makes tqdm
    # draw nothing at all; plain lines are better there.
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return bool(stream.isatty() and size.columns and size.lines)


class _ProgressBar:
    """A tqdm bar of a task's progress on stderr; plain lines, one per change, when stderr is no terminal."""

    def __init__(self, task_id: str) -> None:
        self._live = _is_terminal(sys.stderr)
        self._seen: tuple[int, TaskStatus, str | None] | None = None
        # Off a terminal tqdm would write carriage returns; it then only formats
        # the lines, and the bar's own output goes nowhere.
        self._bar = tqdm(
            total=100,
            desc=f"task {task_id}",
            bar_format="{l_bar}{bar}| [{elapsed}{postfix}]",
            file=sys.stderr if self._live else io.StringIO(),
            dynamic_ncols=self._live,
        )

    def show(self, task: Task) -> None:
        seen = (task.progress, task.status, task.message)
        if seen == self._seen and not self._live:
            return
        self._seen = seen
        self._bar.n = task.progress
        message = _one_line(task.message)
        self._bar.set_postfix_str(f"{task.status.value}: {message}" if message else task.status.value, refresh=False)
        if self._live:
            self._bar.refresh()
        else:
            print(self._bar, file=sys.stderr, flush=True)

    def close(self) -> None:
        self._bar.close()


def _follow(tracker: TaskTracker, task_id: str) -> Task:
    """Show the task's progress until it has finished, and return it finished."""
    task = tracker.get(task_id)
    bar = _ProgressBar(task.id)
    try:
        while True:
            bar.show(task)
            if task.status.is_terminal:
                return task
            time.sleep(POLL_SECONDS)
            task = tracker.get(task_id)
    finally:
        bar.close()


def _finish(task: Task) -> int:
    _print_json(task.to_dict())
    return EXIT_BY_STATUS[task.status]


# -- opening the store -----------------------------------------------------------


def _is_plain_path(database: str) -> bool:
    return "://" not in database and database != ":memory:"


@contextlib.contextmanager
def _existing_store(args: argparse.Namespace) -> Iterator[TaskTracker]:
    """A tracker for the commands on tasks already stored: it starts no thread and creates no file.

    The host's own tracker when :func:`run` was given one; it is the host's to close.
    """
    if args.tracker is not None:
        yield args.tracker
        return
    # SQLite would create a missing file, so a mistyped path would look like an empty store.
    if _is_plain_path(args.db) and not os.path.exists(args.db):
        raise CommandError(f"no database file {args.db} (it is created when the first task is submitted)")
    tracker = TaskTracker(args.db, retention=timedelta(days=args.retention_days), durability=args.durability)
    try:
        yield tracker
    finally:
        tracker.close()


# -- commands --------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    with _existing_store(args) as tracker:
        tasks = tracker.list(status=args.status, submitted_by=args.user, limit=args.limit, after=args.after)
    if args.json:
        _print_json([task.to_dict() for task in tasks])
    else:
        _print_table(tasks)
    return 0


def _show(args: argparse.Namespace) -> int:
    with _existing_store(args) as tracker:
        task = tracker.get(args.id)
    _print_json(task.to_dict())
    return 0


def _cancel(args: argparse.Namespace) -> int:
    with _existing_store(args) as tracker:
        task = tracker.cancel(args.id)
    _print_json(task.to_dict())
    return 0


def _purge(args: argparse.Namespace) -> int:
    now = now_ms()
    with _existing_store(args) as tracker:
        retention = tracker.retention if args.retention_days is None else timedelta(days=args.retention_days)
        cutoff = now - retention // timedelta(milliseconds=1)
        # purge() counts back from now by the tracker's own retention: moving now
        # by the difference makes it delete what finished before this cutoff.
        count = tracker.purge(now=cutoff + tracker.retention // timedelta(milliseconds=1), dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {count} task{'' if count == 1 else 's'} finished before {_utc(cutoff)} UTC")
    return 0


def _watch(args: argparse.Namespace) -> int:
    with _existing_store(args) as tracker:
        try:
            task = _follow(tracker, args.id)
        except KeyboardInterrupt:
            raise CommandError(f"stopped watching task {args.id}, which carries on", EXIT_INTERRUPTED) from None
    return _finish(task)


def _pause(seconds: float) -> None:
    """Sleep, in slices short enough that a cancel request is answered at once."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        current_task().raise_if_cancelled()
        time.sleep(min(left, 0.05))


def _demo_work(steps: int, step_seconds: float) -> dict[str, int]:
    """The demo's task: processes ``steps`` imaginary items, reporting each one."""
    task = current_task()
    task.update_progress(0, f"0 of {steps} items processed")
    for done in range(1, steps + 1):
        _pause(step_seconds)
        task.raise_if_cancelled()
        task.update_progress(done * 100 // steps, f"{done} of {steps} items processed")
    return {"processed": steps}


def _cancel_and_wait(tracker: TaskTracker, task_id: str) -> Task:
    with contextlib.suppress(TaskNotCancellable):  # it finished meanwhile
        tracker.cancel(task_id)
    return tracker.wait(task_id)


def _demo(args: argparse.Namespace) -> int:
    tracker = TaskTracker(args.db, durability=args.durability)
    try:
        task = tracker.submit(
            _demo_work,
            args.steps,
            args.step_seconds,
            description=f"Demo: process {args.steps} items",
            submitted_by=10000,
        )
        try:
            final = _follow(tracker, task.id)
        except KeyboardInterrupt:
            final = _cancel_and_wait(tracker, task.id)
            _print_json(final.to_dict())
            raise CommandError(f"interrupted: task {task.id} is {final.status.value}", EXIT_INTERRUPTED) from None
    finally:
        # Nothing is left running after an ordinary end, so this only matters when interrupted.
        tracker.close(wait=False)
    return _finish(final)


def _without_password(database: str) -> str:
    """A database URL fit for a terminal or a log: its password replaced by ***."""
    scheme, sep, rest = database.partition("://")
    userinfo, at, place = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return database
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{place}"


def _serve(args: argparse.Namespace) -> int:
    from .server import ADMIN_USER, make_server, parse_user_token
    from .web import TRUST_ALL

    token = args.token if args.token is not None else os.environ.get("TASKLIB_TOKEN") or None
    pairs = args.user_token
    if pairs is None:
        pairs = [pair for pair in os.environ.get("TASKLIB_USER_TOKENS", "").split(",") if pair.strip()]
    user_tokens: dict[int, str] = {}
    for pair in pairs:
        try:
            user, user_token = parse_user_token(pair.strip())
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if user in user_tokens:
            raise CommandError(f"user {user} is given two tokens")
        user_tokens[user] = user_token
    tracker = TaskTracker(
        args.db, base_url=args.base_url, durability=args.durability, is_admin=lambda user: user == ADMIN_USER
    )
    try:
        try:
            server = make_server(
                tracker,
                args.host,
                args.port,
                # The token, when given, is the authentication: its holder is trusted with every task.
                authenticate=TRUST_ALL,
                token=token,
                user_tokens=user_tokens,
                insecure=args.insecure,
                timeout=args.timeout,
                allowed_origins=args.allowed_origin or (),
            )
        except OSError as exc:
            raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        # A service manager stops servers with SIGTERM: end as cleanly as on Ctrl-C.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        with server:
            where = f"[{args.host}]" if ":" in args.host else args.host
            url = f"http://{where}:{server.server_port}/"
            guard = "no authentication"
            if token:
                guard = f"tokens for the administrator and {len(user_tokens)} users" if user_tokens else "a token"
            store = _without_password(args.db)
            print(
                f"serving the tasks of {store} at {url} (Jira's API at {url}rest/api/3/task/<id>) "
                f"with {guard} (Ctrl-C stops)",
                file=sys.stderr,
                flush=True,
            )
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                print("stopped", file=sys.stderr)
    finally:
        tracker.close()
    return 0


# -- arguments ---------------------------------------------------------------------


def _int_from(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be from {low}" + (f" to {high}" if high is not None else " up"))
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < 3600:
        raise argparse.ArgumentTypeError("must be from 0 to 3600 seconds")
    return value


def _page_after(text: str) -> str:
    try:
        parse_id(text)
    except TaskError:
        raise argparse.ArgumentTypeError(f"not a task id: {text!r}") from None
    return text


def _database(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("empty database path")
    if "\x00" in text:
        raise argparse.ArgumentTypeError("a database path cannot hold a NUL character")
    return text


def _user(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a user id: {text[:40]!r}") from None
    if not -(2**63) <= value < 2**63:
        raise argparse.ArgumentTypeError("a user id must fit in 64 bits")
    return value


def _origin(text: str) -> str:
    from .web import origin_of

    if origin_of(text) is None:
        raise argparse.ArgumentTypeError(f"not an http(s) origin such as https://example.com: {text[:80]!r}")
    return text


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2), as every other error is."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(2, f"{self.prog.split()[0]}: {text} (see {self.prog} --help)\n")


def _parser(tracker: TaskTracker | None = None, prog: str = "tasklib") -> argparse.ArgumentParser:
    """The program's parser; with the host's ``tracker``, only :data:`TRACKER_COMMANDS` and no ``--db``."""
    parser = _Parser(
        prog=prog,
        description="See and steer the tasks in a tasklib store.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if tracker is None:
        parser.add_argument(
            "--db",
            type=_database,
            default=os.environ.get("TASKLIB_DATABASE") or DEFAULT_DATABASE,
            metavar="PATH",
            help="SQLite file or database URL (default: $TASKLIB_DATABASE, else %(default)s)",
        )
        parser.add_argument(
            "--durability",
            choices=DURABILITIES,
            default=DEFAULT_DURABILITY,
            help="SQLite: 'full' makes every write survive a power loss, at one fsync each (default: %(default)s)",
        )
    # retention_days for the commands without --retention-days; None: the host's tracker's.
    parser.set_defaults(retention_days=DEFAULT_RETENTION.days if tracker is None else None, tracker=tracker)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    retention = _Parser(add_help=False)
    retention.add_argument(
        "--retention-days",
        type=_int_from(1, 100_000),
        default=DEFAULT_RETENTION.days if tracker is None else None,
        metavar="N",
        help="finished tasks are kept N days (default: %(default)s)"
        if tracker is None
        else "finished tasks are kept N days (default: the tracker's retention)",
    )

    listing = commands.add_parser("list", parents=[retention], help="list tasks, newest first")
    listing.add_argument(
        "--status", type=str.upper, choices=[s.value for s in TaskStatus], help="only tasks in this status"
    )
    listing.add_argument("--user", type=_user, metavar="ID", help="only tasks submitted by this user id")
    listing.add_argument(
        "--limit",
        type=_int_from(1, 1000),
        default=50,
        metavar="N",
        help="at most N tasks (1-1000, default: %(default)s)",
    )
    listing.add_argument("--after", type=_page_after, metavar="ID", help="the next page: tasks older than task ID")
    listing.add_argument("--json", action="store_true", help="print a JSON array of the tasks")
    listing.set_defaults(run=_list)

    show = commands.add_parser("show", help="print a task's JSON")
    show.add_argument("id", help="task id")
    show.set_defaults(run=_show)

    cancel = commands.add_parser("cancel", help="cancel a task and print its JSON")
    cancel.add_argument("id", help="task id")
    cancel.set_defaults(run=_cancel)

    purge = commands.add_parser(
        "purge", parents=[retention], help="delete tasks finished longer ago than the retention"
    )
    purge.add_argument("--dry-run", action="store_true", help="only count the tasks that would be deleted")
    purge.set_defaults(run=_purge)

    watch = commands.add_parser(
        "watch",
        help="show a task's progress until it ends, then print its JSON",
        description="Show a task's progress on stderr until it ends, then print its JSON. "
        "Exits 0 if it ended COMPLETE, 3 FAILED, 4 CANCELLED, 5 DEAD; 130 on Ctrl-C (the task carries on).",
    )
    watch.add_argument("id", help="task id")
    watch.set_defaults(run=_watch)
    if tracker is not None:
        return parser

    demo = commands.add_parser(
        "demo",
        help="run a sample task, show its progress, print its JSON",
        description="Submit a sample task (user 10000), show its progress on stderr, then print its JSON. "
        "Exits as watch does; Ctrl-C cancels the task.",
    )
    demo.add_argument(
        "--steps", type=_int_from(1, 1000), default=5, metavar="N", help="items to process (default: %(default)s)"
    )
    demo.add_argument(
        "--step-seconds", type=_seconds, default=0.6, metavar="S", help="seconds per item (default: %(default)s)"
    )
    demo.set_defaults(run=_demo)

    serve = commands.add_parser(
        "serve", help="serve the task page at / and GET /rest/api/3/task/{id}, POST .../cancel over HTTP"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument(
        "--port", type=_int_from(0, 65535), default=8080, help="port to listen on (default: %(default)s)"
    )
    serve.add_argument(
        "--base-url",
        metavar="URL",
        help="prefix of each task's self URL, e.g. https://example.com/rest/api/3/task/ (default: from the request)",
    )
    serve.add_argument(
        "--token",
        help="the administrator's token: require it ('Authorization: Bearer TOKEN' or the /login cookie) "
        "on every request (default: $TASKLIB_TOKEN; none)",
    )
    serve.add_argument(
        "--user-token",
        action="append",
        metavar="USER_ID=TOKEN",
        help="a user's token: its holder sees and cancels only the tasks submitted by USER_ID "
        "(repeatable; needs --token; default: $TASKLIB_USER_TOKENS, comma-separated)",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="allow an address other than loopback without a token: anyone who reaches it sees and cancels every task",
    )
    serve.add_argument(
        "--allowed-origin",
        action="append",
        type=_origin,
        metavar="ORIGIN",
        help="a web origin whose pages may cancel tasks, e.g. https://app.example.com (repeatable)",
    )
    serve.add_argument(
        "--timeout",
        type=_seconds,
        default=10.0,
        metavar="S",
        help="close a connection idle or half-sent this long (default: %(default)s)",
    )
    serve.set_defaults(run=_serve)
    return parser


# -- entry point -------------------------------------------------------------------


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc)


def _fail(message: str, status: int = EXIT_ERROR) -> int:
    # One line, whatever the message holds (a newline in a stored text, a database's own report).
    line = " ".join(message.split())
    if len(line) > 500:
        line = line[:497] + "..."
    print(f"tasklib: {line}", file=sys.stderr, flush=True)
    return status


def _silence_stdout() -> None:
    # Python flushes stdout once more at exit, which would complain again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def run(tracker: TaskTracker, argv: Sequence[str], *, prog: str = "tasklib") -> int:
    """Run one of :data:`TRACKER_COMMANDS` on the host's own ``tracker``; return the exit status.

    The same options, output and exit statuses as :func:`main`, without ``--db``
    (the tracker is the store) and with ``purge --retention-days`` defaulting to
    the tracker's retention. For a host's own command line, such as Django's
    ``manage.py tasklib``; ``prog`` names it in usage and help. The tracker is
    left open. Errors are one line on stderr starting ``tasklib: ``; bad
    arguments end in argparse's usage message and SystemExit(2).
    """
    if not isinstance(tracker, TaskTracker):
        raise TypeError(f"tracker must be a TaskTracker, not {type(tracker).__name__}")
    return _execute(_parser(tracker, prog).parse_args(list(argv)))


def parser(tracker: TaskTracker | None = None, *, prog: str = "tasklib") -> argparse.ArgumentParser:
    """The ``tasklib`` command line's argument parser, as :func:`main` parses ``argv`` with it.

    With a ``tracker``, the parser :func:`run` uses: only :data:`TRACKER_COMMANDS`,
    no ``--db``; ``prog`` names the program in usage and help. For tools that
    check command lines against the program (the documentation tests do);
    nothing runs until :func:`main` or :func:`run`.
    """
    return _parser(tracker, prog)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tasklib`` command line on ``argv`` (default ``sys.argv[1:]``); return the exit status.

    Commands: list, show, cancel, purge, watch, demo, serve (``tasklib --help``).
    Every error is one line on stderr starting ``tasklib: ``, never a traceback;
    bad arguments end in argparse's usage message and SystemExit(2).
    """
    return _execute(_parser().parse_args(argv))


def _execute(args: argparse.Namespace) -> int:
    try:
        status = int(args.run(args))
        # A reader that went away shows here, where it is handled, not at exit.
        sys.stdout.flush()
        return status
    except CommandError as exc:
        return _fail(str(exc), exc.status)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        # Whoever read stdout went away (`tasklib list | head`): nobody is left to tell.
        _silence_stdout()
        return EXIT_ERROR
    except (TaskError, OSError, ValueError, TypeError) as exc:
        return _fail(_describe(exc))
    except RecursionError:
        return _fail("a stored task is nested too deeply to print")
    except MemoryError:
        return _fail("out of memory")
    except Exception as exc:  # the promise is one line, never a traceback: even for a bug of ours
        return _fail(f"unexpected {type(exc).__name__}: {_describe(exc)}")
