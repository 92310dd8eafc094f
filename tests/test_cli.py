"""The command line: ``main(argv)`` called in-process, and a few runs as operators run it.

Most tests call :func:`tasklib.cli.main` in the test's process (output through
capsys). The end-to-end ones start ``python -m tasklib`` as a real process: the
README's demo, ``serve``, Ctrl-C, the default database in the working directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import pathlib
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from freezegun import freeze_time

from tasklib import TaskStatus, TaskTracker
from tasklib.cli import main

from .helpers import interruptible

ROOT = pathlib.Path(__file__).resolve().parent.parent
WAIT = 30  # seconds: generous, only reached when something is broken
S = TaskStatus

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="stops a child process with a signal")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TASKLIB_DATABASE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tasklib", *args]


def run(cwd: pathlib.Path, *args: str, timeout: float = WAIT, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m tasklib`` to its end; whatever it did, it printed no traceback."""
    result = subprocess.run(_command(*args), capture_output=True, text=True, timeout=timeout, cwd=cwd, env=_env(**env))
    assert "Traceback" not in result.stderr, result.stderr
    return result


def tasklib(cwd: pathlib.Path, db: str | pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(cwd, "--db", str(db), *args)


@dataclasses.dataclass(frozen=True)
class Ran:
    """How an in-process run of ``main(argv)`` ended: as a process's exit status and output."""

    returncode: int
    stdout: str
    stderr: str


#: Runs ``main(argv)`` in-process from a working directory, with extra environment variables.
RunMain = Callable[..., Ran]


@pytest.fixture
def run_main(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> RunMain:
    """``main(argv)`` in the test's process, from ``cwd``, without $TASKLIB_DATABASE unless given."""

    def run_in_process(cwd: pathlib.Path, *args: str, **env: str) -> Ran:
        monkeypatch.delenv("TASKLIB_DATABASE", raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        try:
            status = main(list(args))
        except SystemExit as exc:  # argparse's usage errors and --help
            status = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return Ran(status, out, err)

    return run_in_process


def error_line(result: Ran | subprocess.CompletedProcess[str]) -> str:
    """The one line a failed command printed on stderr."""
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tasklib: "), result.stderr
    return lines[0]


class Spawned:
    """A command line running in the background, its stderr collected line by line as it comes."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + WAIT
        while text not in self.stderr:
            if self.proc.poll() is not None:
                self._reader.join(WAIT)  # what it printed last may not be read yet
                assert text in self.stderr, f"exited without printing {text!r}: {self.stderr}"
                return
            assert time.monotonic() < deadline, f"{text!r} not printed in time: {self.stderr}"
            time.sleep(0.01)

    def finish(self) -> tuple[int, str]:
        """Wait for the exit; the exit status and stdout. Stderr never shows a traceback."""
        assert self.proc.stdout is not None
        status = self.proc.wait(WAIT)  # stdout is a little JSON at most: it cannot fill the pipe
        out = self.proc.stdout.read()
        self._reader.join(WAIT)
        assert "Traceback" not in self.stderr, self.stderr
        return status, out


@contextlib.contextmanager
def spawn(where: Where, *args: str) -> Iterator[Spawned]:
    proc = subprocess.Popen(
        _command("--db", where.db, *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=where.cwd,
        env=_env(),
    )
    with proc:
        try:
            yield Spawned(proc)
        finally:
            if proc.poll() is None:
                proc.kill()


@dataclasses.dataclass(frozen=True)
class Where:
    """Where the command line runs: its working directory and its --db."""

    cwd: pathlib.Path
    db: str


@pytest.fixture
def where(tmp_path: pathlib.Path, store_url: str) -> Where:
    """The test's store (a SQLite file, or PostgreSQL when configured), from a scratch directory."""
    return Where(tmp_path, store_url)


Cli = Callable[..., Ran]


@pytest.fixture
def cli(where: Where, run_main: RunMain) -> Cli:
    """Run ``main(argv)`` in-process on the test's store."""
    return lambda *args: run_main(where.cwd, "--db", where.db, *args)


@pytest.fixture
def store(make_tracker: Callable[..., TaskTracker]) -> TaskTracker:
    """A tracker on the store the command line is pointed at, with self URLs as the CLI makes them."""
    return make_tracker(base_url=None)


def finished_task(store: TaskTracker, status: TaskStatus, **kwargs: Any) -> str:
    task = store.submit(**kwargs)
    if status is S.COMPLETE:
        store.complete(task.id, result={"done": True})
    elif status is S.FAILED:
        store.fail(task.id, "ValueError: bad input")
    elif status is S.CANCELLED:
        store.cancel(task.id)
    elif status is S.DEAD:
        store.mark_dead(task.id, "its runner is gone")
    return task.id


# -- list ---------------------------------------------------------------------------


def test_list_prints_a_table_newest_first(store: TaskTracker, cli: Cli) -> None:
    """list prints a header and one row per task, newest first, with progress and a UTC time."""
    with freeze_time("2024-05-06 07:08:09"):
        first = store.submit(description="Export\tproject FOO", submitted_by=7)
        second = store.submit(description="Delete project BAR", submitted_by=8)
        store.update_progress(second.id, 40, message="4 of 10")
    result = cli("list")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["ID", "STATUS", "PROGRESS", "SUBMITTED", "BY", "LAST", "UPDATE", "(UTC)", "DESCRIPTION"]
    assert rows[0].split() == [second.id, "RUNNING", "40%", "8", "2024-05-06", "07:08:09", "Delete", "project", "BAR"]
    assert rows[1].split() == [first.id, "ENQUEUED", "0%", "7", "2024-05-06", "07:08:09", "Export", "project", "FOO"]
    assert len(rows) == 2


def test_list_json_is_the_tasks_json(store: TaskTracker, cli: Cli) -> None:
    """list --json prints a JSON array of the tasks' Jira JSON, newest first."""
    ids = [finished_task(store, S.COMPLETE, description=f"job {i}") for i in range(3)]
    result = cli("list", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [store.get(task_id).to_dict() for task_id in reversed(ids)]


def test_list_json_of_an_empty_store_is_an_empty_array(store: TaskTracker, cli: Cli) -> None:
    """list --json on a store without tasks prints []."""
    result = cli("list", "--json")
    assert (result.returncode, json.loads(result.stdout)) == (0, [])


def test_list_filters_by_status_and_user(store: TaskTracker, cli: Cli) -> None:
    """--status (any case) and --user keep only the matching tasks."""
    done_by_1 = finished_task(store, S.COMPLETE, submitted_by=1)
    failed_by_1 = finished_task(store, S.FAILED, submitted_by=1)
    done_by_2 = finished_task(store, S.COMPLETE, submitted_by=2)

    def ids(*args: str) -> list[str]:
        result = cli("list", "--json", *args)
        assert result.returncode == 0, result.stderr
        return [task["id"] for task in json.loads(result.stdout)]

    assert ids("--status", "complete") == [done_by_2, done_by_1]
    assert ids("--user", "1") == [failed_by_1, done_by_1]
    assert ids("--status", "COMPLETE", "--user", "1") == [done_by_1]


def test_list_pages_with_limit_and_after(store: TaskTracker, cli: Cli) -> None:
    """--limit cuts a page; --after the last id of a page gives the next one."""
    ids = [store.submit().id for _ in range(5)][::-1]
    first = [t["id"] for t in json.loads(cli("list", "--json", "--limit", "2").stdout)]
    second = [t["id"] for t in json.loads(cli("list", "--json", "--limit", "2", "--after", first[-1]).stdout)]
    assert (first, second) == (ids[:2], ids[2:4])


def test_database_comes_from_the_environment(store: TaskTracker, where: Where, run_main: RunMain) -> None:
    """Without --db, the store is $TASKLIB_DATABASE."""
    task = store.submit(description="from the environment")
    result = run_main(where.cwd, "list", "--json", TASKLIB_DATABASE=where.db)
    assert [t["id"] for t in json.loads(result.stdout)] == [task.id]


# -- show and cancel ----------------------------------------------------------------


def test_show_prints_the_task_json(store: TaskTracker, cli: Cli) -> None:
    """show ID prints the task's JSON, as the tracker gives it."""
    task_id = finished_task(store, S.COMPLETE, description="Delete project FOO", submitted_by=10000)
    result = cli("show", task_id)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == store.get(task_id).to_dict()


def test_cancel_cancels_an_enqueued_task(store: TaskTracker, cli: Cli) -> None:
    """cancel of an ENQUEUED task prints it CANCELLED, and the store agrees."""
    task = store.submit(description="not started")
    result = cli("cancel", task.id)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "CANCELLED"
    assert store.get(task.id).status is S.CANCELLED


def test_cancel_of_a_running_task_requests_it(store: TaskTracker, cli: Cli) -> None:
    """cancel of a RUNNING task leaves it CANCEL_REQUESTED, for its code to stop."""
    task = store.submit()
    store.start(task.id)
    result = cli("cancel", task.id)
    assert json.loads(result.stdout)["status"] == "CANCEL_REQUESTED"
    assert store.get(task.id).cancel_requested


def test_cancel_of_a_finished_task_is_refused(store: TaskTracker, cli: Cli) -> None:
    """cancel of a COMPLETE task fails with one line and leaves it COMPLETE."""
    task_id = finished_task(store, S.COMPLETE)
    assert error_line(cli("cancel", task_id)) == f"tasklib: task {task_id} is COMPLETE: cannot cancel"
    assert store.get(task_id).status is S.COMPLETE


# -- purge ----------------------------------------------------------------------------


@pytest.fixture
def old_and_new(store: TaskTracker) -> dict[str, str]:
    """Three tasks finished in 2020, one submitted then and never finished, one finished now."""
    with freeze_time("2020-01-01"):
        tasks = {status.value: finished_task(store, status) for status in (S.COMPLETE, S.FAILED, S.CANCELLED)}
        tasks["old unfinished"] = store.submit().id
    tasks["recent"] = finished_task(store, S.COMPLETE)
    return tasks


def stored_ids(cli: Cli) -> set[str]:
    return {t["id"] for t in json.loads(cli("list", "--json").stdout)}


def test_purge_dry_run_counts_without_deleting(old_and_new: dict[str, str], cli: Cli) -> None:
    """purge --dry-run says how many finished tasks are past the retention, and deletes none."""
    result = cli("purge", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("would delete 3 tasks finished before ")
    assert stored_ids(cli) == set(old_and_new.values())


def test_purge_deletes_old_finished_tasks(old_and_new: dict[str, str], cli: Cli) -> None:
    """purge deletes the finished tasks past the retention, keeps the rest, and says how many."""
    result = cli("purge")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("deleted 3 tasks finished before ")
    assert stored_ids(cli) == {old_and_new["old unfinished"], old_and_new["recent"]}
    assert cli("purge", "--dry-run").stdout.startswith("would delete 0 tasks")


def test_purge_honours_retention_days(store: TaskTracker, cli: Cli) -> None:
    """A task finished 10 days ago outlives the default 14 days, not --retention-days 7."""
    with freeze_time(datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=10)):
        task_id = finished_task(store, S.COMPLETE)
    assert cli("purge").stdout.startswith("deleted 0 tasks")
    assert cli("purge", "--dry-run", "--retention-days", "7").stdout.startswith("would delete 1 task ")
    assert cli("purge", "--retention-days", "7").stdout.startswith("deleted 1 task ")
    assert task_id not in stored_ids(cli)


# -- watch ----------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "exit_status"), [(S.COMPLETE, 0), (S.FAILED, 3), (S.CANCELLED, 4), (S.DEAD, 5)])
def test_watch_of_a_finished_task_exits_by_its_status(
    store: TaskTracker, cli: Cli, status: TaskStatus, exit_status: int
) -> None:
    """watch of a finished task prints its JSON at once and exits 0 only for COMPLETE (3, 4, 5 otherwise)."""
    task_id = finished_task(store, status)
    result = cli("watch", task_id)
    assert result.returncode == exit_status, result.stderr
    assert json.loads(result.stdout) == store.get(task_id).to_dict()
    assert status.value in result.stderr  # the bar's one line


def test_watch_follows_progress_until_the_task_ends(store: TaskTracker, where: Where, cli: Cli) -> None:
    """watch shows each progress report on stderr while the task runs, then prints the finished task."""
    task = store.submit(description="copy")
    store.start(task.id)
    with spawn(where, "watch", task.id) as watch:
        watch.wait_for("RUNNING")
        store.update_progress(task.id, 40, message="40 of 100 copied")
        watch.wait_for("40 of 100 copied")
        store.complete(task.id, result={"copied": 100})
        status, out = watch.finish()
    assert status == 0
    assert json.loads(out)["result"] == {"copied": 100}
    progress_line = next(line for line in watch.lines if "40 of 100 copied" in line)
    assert " 40%" in progress_line
    assert "100%" in watch.lines[-1]


@interruptible
def test_watch_ctrl_c_stops_watching_only(store: TaskTracker, where: Where, cli: Cli) -> None:
    """Ctrl-C during watch exits 130 with one line, and leaves the task running."""
    task = store.submit()
    store.start(task.id)
    with spawn(where, "watch", task.id) as watch:
        watch.wait_for("RUNNING")
        watch.proc.send_signal(signal.SIGINT)
        status, out = watch.finish()
    assert (status, out) == (130, "")
    assert watch.lines[-1] == f"tasklib: stopped watching task {task.id}, which carries on\n"
    assert store.get(task.id).status is S.RUNNING


# -- demo -----------------------------------------------------------------------------


def test_demo_runs_a_task_to_complete(store: TaskTracker, cli: Cli) -> None:
    """demo runs a sample task, shows its progress on stderr, and prints it COMPLETE with 100%."""
    result = cli("demo", "--steps", "4", "--step-seconds", "0.05")
    assert result.returncode == 0, result.stderr
    task = json.loads(result.stdout)
    assert (task["status"], task["progress"], task["submittedBy"]) == ("COMPLETE", 100, 10000)
    assert task["description"].startswith("Demo: ")
    assert task["message"] == "4 of 4 items processed"
    assert "100%" in result.stderr and "4 of 4 items processed" in result.stderr
    assert store.get(task["id"]).to_dict() == task


def test_demo_as_the_readme_runs_it(tmp_path: pathlib.Path) -> None:
    """The README's `python -m tasklib --db demo-tasks.db demo` takes about 3 s and ends COMPLETE."""
    result = run(tmp_path, "--db", "demo-tasks.db", "demo")
    assert result.returncode == 0, result.stderr
    task = json.loads(result.stdout)
    assert task["status"] == "COMPLETE"
    assert 2500 <= task["elapsedRuntime"] <= 5000
    assert " 40%" in result.stderr
    assert (tmp_path / "demo-tasks.db").is_file()


def test_default_database_is_tasks_db(tmp_path: pathlib.Path) -> None:
    """Without --db or $TASKLIB_DATABASE the store is tasks.db in the current directory."""
    result = run(tmp_path, "demo", "--steps", "1", "--step-seconds", "0")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "tasks.db").is_file()


@interruptible
def test_demo_ctrl_c_cancels_its_task(store: TaskTracker, where: Where, cli: Cli) -> None:
    """Ctrl-C during demo cancels its task, prints it CANCELLED, and exits 130 with one line."""
    with spawn(where, "demo", "--step-seconds", "5") as demo:
        demo.wait_for("RUNNING")
        demo.proc.send_signal(signal.SIGINT)
        status, out = demo.finish()
    task = json.loads(out)
    assert (status, task["status"]) == (130, "CANCELLED")
    assert demo.lines[-1] == f"tasklib: interrupted: task {task['id']} is CANCELLED\n"
    assert store.get(task["id"]).status is S.CANCELLED


# -- serve ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_when_up(url: str, server: Spawned) -> Any:
    deadline = time.monotonic() + WAIT
    while True:
        assert server.proc.poll() is None, f"the server exited: {server.stderr}"
        try:
            return urllib.request.urlopen(url, timeout=WAIT)
        except urllib.error.HTTPError:
            raise
        except urllib.error.URLError:
            pass  # not listening yet
        assert time.monotonic() < deadline, "the server did not answer in time"
        time.sleep(0.05)


@posix_only
def test_serve_answers_task_requests(store: TaskTracker, where: Where, cli: Cli) -> None:
    """serve answers GET /rest/api/3/task/{id} with the task's JSON until SIGTERM; a second serve on its port fails."""
    task_id = finished_task(store, S.COMPLETE, description="served")
    port = str(free_port())
    base = "https://jira.example.com/rest/api/3/task/"
    with spawn(where, "serve", "--port", port, "--base-url", base) as server:
        with get_when_up(f"http://127.0.0.1:{port}/rest/api/3/task/{task_id}", server) as response:
            assert response.status == 200
            body = json.loads(response.read())
        assert body == {**store.get(task_id).to_dict(), "self": base + task_id}
        server.wait_for(f"at http://127.0.0.1:{port}/rest/api/3/task/")

        second = tasklib(where.cwd, where.db, "serve", "--port", port)
        assert error_line(second).startswith(f"tasklib: cannot listen on 127.0.0.1:{port}: ")

        server.proc.terminate()
        status, _ = server.finish()
    assert (status, server.lines[-1]) == (0, "stopped\n")


# -- errors ---------------------------------------------------------------------------


def test_unknown_id_is_one_line(store: TaskTracker, cli: Cli) -> None:
    """show, cancel and watch of an id no task has exit 1 with one line naming the id."""
    store.submit()
    for command in ("show", "cancel", "watch"):
        result = cli(command, "999")
        assert (result.returncode, error_line(result)) == (1, "tasklib: no task with id '999'")


@pytest.mark.usefixtures("store")
def test_malformed_id_is_one_line(cli: Cli) -> None:
    """A malformed id ("abc") is an unknown task: exit 1 and one line, never a traceback."""
    for command in ("show", "cancel", "watch"):
        result = cli(command, "abc")
        assert (result.returncode, error_line(result)) == (1, "tasklib: no task with id 'abc'")


def test_missing_directory_in_database_path(tmp_path: pathlib.Path, run_main: RunMain) -> None:
    """A --db in a directory that does not exist fails with one line, for reading and for demo."""
    db = str(tmp_path / "no-such-dir" / "tasks.db")
    assert "no-such-dir" in error_line(run_main(tmp_path, "--db", db, "list"))
    assert "unable to open database file" in error_line(run_main(tmp_path, "--db", db, "demo", "--step-seconds", "0"))
    assert not pathlib.Path(db).parent.exists()


def test_reading_commands_do_not_create_a_database(tmp_path: pathlib.Path, run_main: RunMain) -> None:
    """list, show, cancel, watch and purge on a missing file say so, and create no file."""
    db = tmp_path / "typo.db"
    for args in (["list"], ["show", "1"], ["cancel", "1"], ["watch", "1"], ["purge"]):
        assert error_line(run_main(tmp_path, "--db", str(db), *args)) == (
            f"tasklib: no database file {db} (it is created when the first task is submitted)"
        )
    assert not db.exists()


def test_file_that_is_not_a_database(tmp_path: pathlib.Path, run_main: RunMain) -> None:
    """A --db file that is not a SQLite database fails with one line, and is left as it was."""
    db = tmp_path / "notes.txt"
    db.write_text("these are notes, not a database\n" * 100)
    for args in (["list"], ["demo"]):
        assert "file is not a database" in error_line(run_main(tmp_path, "--db", str(db), *args))
    # serve as its own process: it would otherwise take over the test process's signals.
    assert "file is not a database" in error_line(tasklib(tmp_path, db, "serve", "--port", str(free_port())))
    assert db.read_text() == "these are notes, not a database\n" * 100


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["frobnicate"],
        ["list", "--limit", "0"],
        ["list", "--status", "DONE"],
        ["list", "--after", "abc"],
        ["list", "--user", "me"],
        ["show"],
        ["demo", "--steps", "x"],
        ["serve", "--port", "70000"],
        ["--db", "", "list"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path: pathlib.Path, args: list[str], run_main: RunMain) -> None:
    """Bad arguments exit 2 with one line naming the problem and pointing at --help, and no traceback."""
    result = run_main(tmp_path, *args)
    assert result.returncode == 2
    assert error_line(result).endswith("--help)")


def test_help_documents_the_exit_statuses(tmp_path: pathlib.Path, run_main: RunMain) -> None:
    """--help lists every command and the exit status of each way a watched task ends."""
    result = run_main(tmp_path, "--help")
    assert result.returncode == 0
    for text in (
        "list",
        "show",
        "cancel",
        "purge",
        "watch",
        "demo",
        "serve",
        "3    watch, demo: the task ended FAILED",
    ):
        assert text in result.stdout


def test_importing_main_module_runs_nothing(tmp_path: pathlib.Path) -> None:
    """Importing tasklib.__main__ (as tools do) does not run the command line."""
    result = subprocess.run(
        [sys.executable, "-c", "import tasklib.__main__"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        cwd=tmp_path,
        env=_env(),
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


# -- hostile arguments --------------------------------------------------------------------

BIG = "9" * 30
#: (arguments, exit status, text of the one line on stderr; None: a success, at most one line)
HOSTILE: list[tuple[list[str], int, str | None]] = [
    (["list", "--user", BIG], 2, "a user id must fit in 64 bits"),
    (["list", "--user", "-" + BIG], 2, "a user id must fit in 64 bits"),
    (["list", "--user", "1e3"], 2, "not a user id"),
    (["list", "--limit", "-1"], 2, "must be from 1 to 1000"),
    (["list", "--limit", BIG], 2, "must be from 1 to 1000"),
    (["list", "--after", BIG], 2, "not a task id"),
    (["list", "--after", "-1"], 2, "not a task id"),
    (["list", "--status", "X" * 10000], 2, "invalid choice"),
    (["show", BIG], 1, f"no task with id '{BIG}'"),
    (["show", "-1"], 1, "no task with id '-1'"),
    (["show", "1" * 5000], 1, "no task with id"),
    (["cancel", "%31"], 1, "no task with id '%31'"),
    (["watch", "١"], 1, "no task with id"),
    (["purge", "--retention-days", "0"], 2, "must be from 1 to 100000"),
    (["purge", "--retention-days", BIG], 2, "must be from 1 to 100000"),
    (["demo", "--steps", BIG], 2, "must be from 1 to 1000"),
    (["demo", "--step-seconds", "nan"], 2, "must be from 0 to 3600"),
    (["demo", "--step-seconds", "inf"], 2, "must be from 0 to 3600"),
    (["demo", "--step-seconds", "-1"], 2, "must be from 0 to 3600"),
    (["serve", "--port", "-1"], 2, "must be from 0 to 65535"),
    (["serve", "--port", BIG], 2, "must be from 0 to 65535"),
    (["serve", "--host", "0.0.0.0"], 1, "without a token"),
    (["serve", "--host", "::"], 1, "without a token"),
    (["serve", "--token", ""], 1, "the token must be printable ASCII"),
    (["serve", "--token", "a", "--user-token", "7"], 1, "must be USER_ID=TOKEN"),
    (["serve", "--token", "a", "--user-token=-7=b"], 1, "whole number from 0 up"),
    (["serve", "--token", "a", "--user-token", "7="], 1, "the token of user 7 must be printable"),
    (["serve", "--token", "a", "--user-token", "7=b", "--user-token", "7=c"], 1, "user 7 is given two tokens"),
    (["serve", "--token", "a", "--user-token", "7=a"], 1, "two users have the same token"),
    (["serve", "--user-token", "7=b"], 1, "need an administrator's token"),
    (["serve", "--token", "a b"], 1, "the token must be printable ASCII"),
    (["serve", "--host", "999.1.1.1", "--insecure"], 1, "cannot listen on 999.1.1.1:8080"),
    (["serve", "--allowed-origin", "evil.example"], 2, "not an http(s) origin"),
    (["serve", "--timeout", "0"], 1, "timeout must be from 0 to 3600"),
    (["--db", "mysql://root@127.0.0.1/tasks", "list"], 1, "cannot use a mysql:// database"),
    (["--db", "ftp://example.com/tasks", "show", "1"], 1, "cannot use a ftp:// database"),
    (["--db", "redis://127.0.0.1:6379/0", "demo"], 1, "cannot use a redis:// database"),
    (["--db", "postgresql://nobody@127.0.0.1:1/none", "list"], 1, "cannot open the store"),
    (["--db", "missing.db", "show", "1"], 1, "no database file missing.db"),
    (["--db", "nowhere/tasks.db", "demo"], 1, "unable to open database file"),
    (["--db", "notes.txt", "list"], 1, "file is not a database"),
    (["--db", ".", "list"], 1, "cannot open the store"),
    (["--db", "x" * 5000, "list"], 1, "no database file"),
    (["show", "2"], 0, None),  # its result is nested too deeply to read back: shown as absent
    (["list", "--json"], 0, None),
    # A NUL, which exec cannot pass but a caller of main() can.
    (["--db", "tasks\x00.db", "list"], 2, "cannot hold a NUL"),
    (["show", "1\x00"], 1, "no task with id"),
    (["list", "--user", "1\x00"], 2, "not a user id"),
]


@pytest.fixture
def hostile_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """tasks.db with task 1 ENQUEUED and task 2 COMPLETE with a result nested 200,000 deep; notes.txt."""
    tracker = TaskTracker(str(tmp_path / "tasks.db"))
    tracker.submit(description="hostile")
    tracker.complete(tracker.submit().id, result=[1])
    tracker.close()
    # Written past tasklib's own checks, as another program (or a corrupted file) could.
    with contextlib.closing(sqlite3.connect(tmp_path / "tasks.db")) as db, db:
        db.execute("UPDATE tasklib_task SET result = ? WHERE id = 2", ("[" * 200_000 + "]" * 200_000,))
    (tmp_path / "notes.txt").write_text("not a database\n" * 100)
    return tmp_path


@pytest.mark.parametrize("args, code, text", HOSTILE, ids=lambda value: repr(value)[:50])
def test_hostile_arguments_give_one_line_and_an_exit_status(
    hostile_dir: pathlib.Path, run_main: RunMain, args: list[str], code: int, text: str | None
) -> None:
    """Huge, negative and odd numbers, NUL, unknown schemes, missing and wrong files: one line, never a traceback."""
    result = run_main(hostile_dir, *args)
    assert result.returncode == code, result.stderr
    if text is None:
        assert len(result.stderr.splitlines()) <= 1, result.stderr
    else:
        assert text in error_line(result)


@pytest.mark.skipif(sys.platform == "win32", reason="limits the file size with setrlimit")
@pytest.mark.parametrize("args", [["cancel", "1"], ["purge"], ["demo"]], ids=" ".join)
def test_a_full_disk_gives_one_line(hostile_dir: pathlib.Path, args: list[str]) -> None:
    """A store that cannot grow (a file size limit: the kernel's "file too large", as a full disk) is one line."""
    import resource

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))

    before = (hostile_dir / "tasks.db").read_bytes()
    result = subprocess.run(
        _command("--db", "tasks.db", *args),
        capture_output=True,
        text=True,
        timeout=WAIT,
        cwd=hostile_dir,
        env=_env(),
        preexec_fn=limit,
    )
    assert result.returncode == 1
    assert "disk I/O error" in error_line(result) or "full" in error_line(result)
    assert (hostile_dir / "tasks.db").read_bytes() == before


def test_a_locked_store_gives_no_traceback(hostile_dir: pathlib.Path, run_main: RunMain) -> None:
    """While another process holds the write lock, list answers at once and cancel waits for the lock, then applies."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "db = sqlite3.connect('tasks.db', isolation_level=None)\n"
            "db.execute('BEGIN IMMEDIATE')\n"
            "db.execute('UPDATE tasklib_task SET progress = progress')\n"
            "print('locked', flush=True)\n"
            "time.sleep(2)\n"
            "db.execute('COMMIT')\n",
        ],
        cwd=hostile_dir,
        stdout=subprocess.PIPE,
        text=True,
    )
    with holder:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        listed = run_main(hostile_dir, "--db", "tasks.db", "list", "--json")
        cancelled = run_main(hostile_dir, "--db", "tasks.db", "cancel", "1")
    assert (listed.returncode, len(json.loads(listed.stdout))) == (0, 2)
    assert (cancelled.returncode, json.loads(cancelled.stdout)["status"]) == (0, "CANCELLED")


@posix_only
def test_serve_with_a_token_from_the_environment(store: TaskTracker, where: Where) -> None:
    """TASKLIB_TOKEN protects serve: without the bearer token 401 with Jira's body, with it 200."""
    task_id = finished_task(store, S.COMPLETE)
    port = str(free_port())
    proc = subprocess.Popen(
        _command("--db", where.db, "serve", "--port", port),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=where.cwd,
        env=_env(TASKLIB_TOKEN="t0ken"),
    )
    with proc:
        server = Spawned(proc)
        try:
            server.wait_for("with a token")
            url = f"http://127.0.0.1:{port}/rest/api/3/task/{task_id}"
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(url, timeout=WAIT)
            assert refused.value.code == 401
            assert json.loads(refused.value.read())["errorMessages"][0].startswith("You are not authenticated")
            request = urllib.request.Request(url, headers={"Authorization": "Bearer t0ken"})
            with urllib.request.urlopen(request, timeout=WAIT) as response:
                assert json.loads(response.read())["id"] == task_id
        finally:
            proc.terminate()
        status, _ = server.finish()
    assert status == 0


@posix_only
def test_serve_does_not_print_the_database_password(store: TaskTracker, where: Where, is_sqlite: bool) -> None:
    """serve names its store on stderr with the URL's password masked."""
    if is_sqlite:
        pytest.skip("a SQLite path has no password")
    scheme, _, rest = where.db.partition("://")
    user, _, place = rest.partition("@")
    with_password = f"{scheme}://{user.split(':')[0]}:hunter2@{place}"  # a trusting server ignores it
    with spawn(Where(where.cwd, with_password), "serve", "--port", str(free_port())) as server:
        server.wait_for("serving the tasks of")
        server.proc.terminate()
        server.finish()
    assert "hunter2" not in server.stderr and ":***@" in server.stderr


# -- run(): the commands on a host's own tracker ------------------------------------


def test_run_uses_the_hosts_tracker_and_leaves_it_open(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tasklib.cli import run as run_on

    with TaskTracker(tmp_path / "host.db", retention=datetime.timedelta(days=2)) as tracker:
        task = tracker.submit(description="host's", submitted_by=3)
        assert run_on(tracker, ["show", task.id]) == 0
        assert json.loads(capsys.readouterr().out)["description"] == "host's"
        assert run_on(tracker, ["cancel", task.id]) == 0
        assert tracker.get(task.id).status is S.CANCELLED  # the tracker is still open
        assert run_on(tracker, ["purge", "--dry-run"]) == 0
        out = capsys.readouterr().out
        # The cutoff is counted back from the tracker's retention of 2 days, not the program's 14.
        cutoff = datetime.datetime.strptime(out.split(" before ")[1], "%Y-%m-%d %H:%M:%S UTC\n")
        age = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - cutoff
        assert datetime.timedelta(days=2) - datetime.timedelta(minutes=5) < age < datetime.timedelta(days=2, minutes=5)
        assert run_on(tracker, ["show", "77"]) == 1
        assert capsys.readouterr().err == "tasklib: no task with id '77'\n"
        for argv in (["--db", "x.db", "list"], ["serve"], ["demo"], []):
            with pytest.raises(SystemExit) as exit:
                run_on(tracker, argv, prog="host tasklib")
            assert exit.value.code == 2
        assert "(see host tasklib" in capsys.readouterr().err  # one line per usage error, naming the program
    with pytest.raises(TypeError, match="TaskTracker"):
        run_on("tasks.db", ["list"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "pairs, text",
    [("7", "must be USER_ID=TOKEN"), ("7=a,8=a", "two users have the same token"), ("7=a, 7=b", "given two tokens")],
)
def test_user_tokens_from_the_environment_are_checked(
    hostile_dir: pathlib.Path, run_main: RunMain, pairs: str, text: str
) -> None:
    """TASKLIB_USER_TOKENS is read as comma-separated USER_ID=TOKEN pairs, each checked like --user-token."""
    result = run_main(hostile_dir, "--db", "tasks.db", "serve", "--token", "admin", TASKLIB_USER_TOKENS=pairs)
    assert result.returncode == 1 and text in error_line(result)
