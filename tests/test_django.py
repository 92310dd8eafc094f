"""tasklib.contrib.django: settings, the Jira routes, manage.py tasklib, the admin; then a real runserver."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tasklib import TaskStatus, TaskTracker
from tasklib.web import wsgi_app

from .helpers import TASK, WAIT, bearer, body_checker, eventually, fuzz_paths, interruptible, submit

django = pytest.importorskip("django")
pytest.importorskip("pytest_django")

from django.contrib.auth import get_user_model  # noqa: E402  (after the skip: Django is optional)
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from tasklib.contrib.django import close_tracker, get_tracker  # noqa: E402
from tasklib.contrib.django.conf import build_tracker, database_target  # noqa: E402

PROJECT = Path(__file__).parent / "djangoproject"
TASKLIB_TABLES = ("tasklib_task", "tasklib_meta", "tasklib_runner", "tasklib_lease")

# Every test here may reach every database of the project; transactional, so that
# tasklib's own connection sees the users Django wrote.
pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def nobody_is_admin(user: Any) -> bool:
    """An IS_ADMIN of the host's, by dotted path: no administrators at all."""
    return False


@pytest.fixture
def alias(store_url: str, is_sqlite: bool) -> Iterator[str]:
    """The Django database holding tasklib's tables, without them: SQLite, then PostgreSQL when configured.

    The suite's ``store_url`` skips the PostgreSQL run without a server and
    empties it; the project's "pg" alias is that same database.
    """
    name = "default" if is_sqlite else "pg"
    with connections[name].cursor() as cursor:
        for table in TASKLIB_TABLES:
            cursor.execute(f'DROP TABLE IF EXISTS "{table}"')
    with override_settings(TASKLIB={"DATABASE": name, "PROGRESS_INTERVAL": 0.05}):
        yield name
    close_tracker()


@pytest.fixture
def tracker(alias: str) -> TaskTracker:
    return get_tracker()


@pytest.fixture
def users() -> dict[str, Any]:
    model = get_user_model()
    return {
        "owner": model.objects.create_user("owner", password="pw"),
        "other": model.objects.create_user("other", password="pw"),
        "staff": model.objects.create_user("staff", password="pw", is_staff=True),
        "root": model.objects.create_superuser("root", password="pw"),
    }


def client_as(user: Any | None, **options: Any) -> Client:
    client = Client(**options)
    if user is not None:
        client.force_login(user)
    return client


# -- the setting and the process's tracker -------------------------------------------


def test_importing_and_commands_that_never_use_it_build_no_tracker(tmp_path: Path) -> None:
    script = (
        "import threading, django\n"
        "django.setup()\n"
        "import tasklib.contrib.django, tasklib.contrib.django.admin, tasklib.contrib.django.urls\n"
        "from django.core.management import call_command\n"
        "call_command('check', verbosity=0)\n"
        "call_command('migrate', verbosity=0)\n"
        "print(threading.active_count())\n"
    )
    env = {
        **os.environ,
        "TASKLIB_TEST_DJANGO_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "tests.djangoproject.settings",
    }
    env.pop("TASKLIB_TEST_POSTGRES_URL", None)
    root = str(PROJECT.parents[1])
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=WAIT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "1"  # the main thread alone
    with sqlite3.connect(tmp_path / "project.db") as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "auth_user" in tables  # migrate ran on this file...
    assert not {t for t in tables if t.startswith("tasklib_")}  # ...and no tracker opened it


def test_one_tracker_per_process_built_once_under_concurrent_first_use(alias: str) -> None:
    close_tracker()
    start = threading.Barrier(8)
    seen: list[TaskTracker] = []

    def first_use() -> None:
        start.wait()
        seen.append(get_tracker())

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8 and all(t is seen[0] for t in seen)
    assert get_tracker() is seen[0]
    close_tracker()
    assert get_tracker() is not seen[0]  # a closed tracker is replaced, not handed out


def test_the_alias_database_holds_tasklib_tables(tracker: TaskTracker, alias: str) -> None:
    task = tracker.submit(description="in Django's database", submitted_by=7)
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT description, submitted_by FROM tasklib_task WHERE id = %s", [int(task.id)])
        assert cursor.fetchall() == [("in Django's database", 7)]


def test_a_path_is_a_store_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "own.db"
    with override_settings(TASKLIB={"DATABASE": str(path)}):
        task = get_tracker().submit(description="own file")
        close_tracker()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT description FROM tasklib_task WHERE id = ?", (int(task.id),)).fetchall() == [
            ("own file",)
        ]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"DATABASE": "default", "RETENTON": 3}, r"unknown TASKLIB key\(s\) 'RETENTON'.* RETENTION,"),
        ({"MAX_WORKERS": 0}, "max_workers must be a positive int"),
        ({"IS_ADMIN": "no.such.module.check"}, "cannot import"),
        ({"IS_ADMIN": 3}, "must be a callable"),
        ("default", "must be a dict"),
    ],
)
def test_a_bad_setting_is_improperly_configured(setting: Any, message: str) -> None:
    with override_settings(TASKLIB=setting), pytest.raises(ImproperlyConfigured, match=message):
        build_tracker()


def test_an_alias_tasklib_cannot_share_is_improperly_configured() -> None:
    databases = {
        "memory": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
        "shared-memory": {"ENGINE": "django.db.backends.sqlite3", "NAME": "file:x?mode=memory&cache=shared"},
        "mysql": {"ENGINE": "django.db.backends.mysql", "NAME": "x"},
    }
    for alias in ("memory", "shared-memory"):
        with pytest.raises(ImproperlyConfigured, match="in-memory SQLite database"):
            database_target(alias, databases)
    with pytest.raises(ImproperlyConfigured, match="supports SQLite and PostgreSQL"):
        database_target("mysql", databases)


def test_a_postgresql_alias_becomes_a_url() -> None:
    databases = {
        "pg": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "my db",
            "USER": "me",
            "PASSWORD": "p@ss:word",
            "HOST": "db.example.com",
            "PORT": 5433,
            "OPTIONS": {"sslmode": "require", "pool": {"min_size": 2}},
        },
        "socket": {"ENGINE": "django.db.backends.postgresql", "NAME": "tasks"},
    }
    assert (
        database_target("pg", databases) == "postgresql://me:p%40ss%3Aword@db.example.com:5433/my%20db?sslmode=require"
    )
    assert database_target("socket", databases) == "postgresql:///tasks"


# -- Jira's routes, through Django's test client -------------------------------------


def test_codes_and_bodies(tracker: TaskTracker, users: dict[str, Any], task_schema: dict[str, Any]) -> None:
    check = body_checker(task_schema)
    owner, other, staff = users["owner"], users["other"], users["staff"]
    running = tracker.submit(description="mine", submitted_by=owner.pk)
    tracker.start(running.id)
    done = tracker.submit(description="done", submitted_by=owner.pk)
    tracker.complete(done.id, result={"n": 1})

    def call(user: Any | None, method: str, path: str) -> tuple[int, Any]:
        response = client_as(user).generic(method, path)
        return response.status_code, check(
            response.status_code, response["Content-Type"], response.content, cancel=path.endswith("/cancel")
        )

    assert call(None, "GET", TASK + running.id) == (
        401,
        {
            "errorMessages": ["You are not authenticated. Authentication required to perform this operation."],
            "errors": {},
        },
    )
    assert call(None, "POST", TASK + running.id + "/cancel")[0] == 401
    status, body = call(owner, "GET", TASK + running.id)
    assert (status, body["status"], body["self"]) == (200, "RUNNING", f"http://testserver/rest/api/3/task/{running.id}")
    assert call(other, "GET", TASK + running.id)[0] == 403
    assert call(other, "POST", TASK + running.id + "/cancel") == (
        403,
        ["You do not have permission to access this task."],
    )
    assert tracker.get(running.id).status is TaskStatus.RUNNING  # the refusal changed nothing
    assert call(staff, "GET", TASK + running.id)[0] == 200  # is_staff: an administrator
    status, body = call(staff, "POST", TASK + running.id + "/cancel")
    assert (status, body["status"]) == (202, "CANCEL_REQUESTED")
    assert call(owner, "POST", TASK + done.id + "/cancel") == (400, ["Cancellation of the task is not possible."])
    assert call(owner, "GET", TASK + "999999")[0] == 404
    response = client_as(owner).put(TASK + done.id)
    assert (response.status_code, response["Allow"]) == (405, "GET, HEAD, OPTIONS")


def test_cancel_needs_no_csrf_token(tracker: TaskTracker, users: dict[str, Any]) -> None:
    task = tracker.submit(description="queued", submitted_by=users["owner"].pk)
    response = client_as(users["owner"], enforce_csrf_checks=True).post(TASK + task.id + "/cancel")
    assert response.status_code == 202
    assert tracker.get(task.id).status is TaskStatus.CANCELLED


def test_is_admin_can_be_the_hosts_own(alias: str, users: dict[str, Any]) -> None:
    with override_settings(TASKLIB={"DATABASE": alias, "IS_ADMIN": f"{__name__}.nobody_is_admin"}):
        task = get_tracker().submit(description="t", submitted_by=users["owner"].pk)
        assert client_as(users["root"]).get(TASK + task.id).status_code == 403
        assert client_as(users["owner"]).get(TASK + task.id).status_code == 200
    close_tracker()


def test_same_answers_as_the_wsgi_adapter(tracker: TaskTracker, users: dict[str, Any]) -> None:
    owner, other, root = users["owner"], users["other"], users["root"]
    # No task that runs, whose elapsedRuntime moves between the two answers, and
    # nothing a cancel changes: each request must meet the same state twice.
    ids = [submit(tracker, s, owner.pk) for s in (TaskStatus.FAILED, TaskStatus.COMPLETE, TaskStatus.CANCELLED)]
    app = wsgi_app(tracker, authenticate=bearer)
    paths = [TASK + i for i in ids] + [TASK + i + "/cancel" for i in ids]
    paths += [TASK + submit(tracker, TaskStatus.ENQUEUED, owner.pk)]
    paths += [p for p in fuzz_paths(14, 40, encode=True) if p.startswith(TASK)]
    clients = {user: client_as(user) for user in (None, owner, other, root)}
    compared = 0
    for method in ("GET", "POST"):
        for path in paths:
            for user, client in clients.items():
                ours = client.generic(method, path)
                theirs = call_wsgi(
                    app, method, path, {} if user is None else {"HTTP_AUTHORIZATION": f"Bearer {user.pk}"}
                )
                assert (ours.status_code, ours["Content-Type"], ours.content) == theirs, (method, path, user)
                compared += 1
    assert compared > 400


def call_wsgi(app: Any, method: str, path: str, extra: dict[str, str]) -> tuple[int, str, bytes]:
    from urllib.parse import unquote_to_bytes

    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "SCRIPT_NAME": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "wsgi.url_scheme": "http",
        **extra,
    }
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer["status"], answer["headers"] = int(status.split()[0]), dict(headers)

    body = b"".join(app(environ, start_response))
    return answer["status"], answer["headers"]["Content-Type"], body


# -- manage.py tasklib -------------------------------------------------------------------


def tasklib_command(*args: str) -> int:
    try:
        call_command("tasklib", *args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_management_command(tracker: TaskTracker, capsys: pytest.CaptureFixture[str]) -> None:
    done = tracker.submit(description="finished work", submitted_by=5)
    tracker.complete(done.id, result=[1])
    failed = tracker.submit(description="broken work", submitted_by=6)
    tracker.fail(failed.id, "disk full")
    queued = tracker.submit(description="queued work", submitted_by=5)
    capsys.readouterr()

    assert tasklib_command("list", "--user", "5", "--json") == 0
    assert [t["id"] for t in json.loads(capsys.readouterr().out)] == [queued.id, done.id]
    assert tasklib_command("list") == 0
    table = capsys.readouterr().out
    assert "broken work" in table and table.startswith("ID")
    assert tasklib_command("show", done.id) == 0
    assert json.loads(capsys.readouterr().out)["result"] == [1]
    assert tasklib_command("cancel", queued.id) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "CANCELLED"
    assert tasklib_command("watch", done.id) == 0
    assert tasklib_command("watch", failed.id) == 3
    capsys.readouterr()
    assert tasklib_command("purge", "--dry-run") == 0
    assert capsys.readouterr().out.startswith("would delete 0 tasks finished before ")
    assert tasklib_command("show", "424242") == 1
    assert capsys.readouterr().err == "tasklib: no task with id '424242'\n"
    assert tasklib_command("cancel", done.id) == 1
    assert tasklib_command("list", "--limit", "0") == 2  # argparse's usage error
    assert tasklib_command("serve") == 2  # not offered inside Django
    assert tasklib_command() == 2


def test_purge_counts_from_the_trackers_retention_or_the_option(alias: str, capsys: pytest.CaptureFixture[str]) -> None:
    with override_settings(TASKLIB={"DATABASE": alias, "RETENTION": timedelta(milliseconds=1)}):
        tracker = get_tracker()
        task = tracker.submit(description="old")
        tracker.complete(task.id)

        def counted(*args: str) -> str:
            capsys.readouterr()
            assert tasklib_command("purge", *args) == 0
            return capsys.readouterr().out

        # Older than the tracker's retention of 1 ms (once that has passed), not than a day.
        eventually(lambda: counted("--dry-run").startswith("would delete 1 task finished before "))
        assert counted("--retention-days", "1").startswith("deleted 0 tasks")
        assert counted().startswith("deleted 1 task ")
        assert tracker.list() == []
    close_tracker()


# -- the admin ---------------------------------------------------------------------------


def test_admin_lists_filters_searches_and_shows(tracker: TaskTracker, users: dict[str, Any]) -> None:
    admin = client_as(users["root"])
    a = tracker.submit(description="Reindex ALPHA", submitted_by=users["owner"].pk)
    b = tracker.submit(description="Delete project BETA", submitted_by=users["other"].pk)
    tracker.complete(b.id, result={"deleted": 3})
    page = admin.get("/admin/tasklib/task/")
    assert page.status_code == 200
    assert b"Reindex ALPHA" in page.content and b"Delete project BETA" in page.content
    only_complete = admin.get("/admin/tasklib/task/", {"status__exact": "COMPLETE"}).content
    assert b"Delete project BETA" in only_complete and b"Reindex ALPHA" not in only_complete
    by_owner = admin.get("/admin/tasklib/task/", {"submitted_by": str(users["owner"].pk)}).content
    assert b"Reindex ALPHA" in by_owner and b"Delete project BETA" not in by_owner
    found = admin.get("/admin/tasklib/task/", {"q": "alpha"}).content
    assert b"Reindex ALPHA" in found and b"Delete project BETA" not in found
    detail = admin.get(f"/admin/tasklib/task/{b.id}/change/")
    assert detail.status_code == 200 and b"deleted" in detail.content
    assert b'name="_save"' not in detail.content  # read-only
    assert admin.get("/admin/tasklib/task/add/").status_code == 403
    assert admin.get(f"/admin/tasklib/task/{a.id}/delete/").status_code == 403
    # Staff without the view permission see nothing of it.
    assert client_as(users["staff"]).get("/admin/tasklib/task/").status_code == 403


def test_staff_given_the_view_permission_see_tasks(tracker: TaskTracker, users: dict[str, Any]) -> None:
    from django.contrib.auth.models import Permission

    staff = users["staff"]
    staff.user_permissions.add(Permission.objects.get(codename="view_task", content_type__app_label="tasklib"))
    tracker.submit(description="seen by staff", submitted_by=users["owner"].pk)
    assert b"seen by staff" in client_as(staff).get("/admin/tasklib/task/").content
    assert not Permission.objects.filter(content_type__app_label="tasklib").exclude(codename="view_task").exists()


def test_admin_cancel_action_reports_what_it_could_not_cancel(tracker: TaskTracker, users: dict[str, Any]) -> None:
    admin = client_as(users["root"])
    queued = tracker.submit(description="q", submitted_by=users["owner"].pk)
    running = tracker.submit(description="r", submitted_by=users["owner"].pk)
    tracker.start(running.id)
    done = tracker.submit(description="d", submitted_by=users["owner"].pk)
    tracker.complete(done.id)
    response = admin.post(
        "/admin/tasklib/task/",
        {"action": "cancel_tasks", "_selected_action": [queued.id, running.id, done.id]},
        follow=True,
    )
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    assert shown == [
        f"Cancelled: {queued.id}.",
        f"Cancel requested (running; they stop shortly): {running.id}.",
        f"Could not cancel: {done.id} (COMPLETE).",
    ]
    assert tracker.get(queued.id).status is TaskStatus.CANCELLED
    assert tracker.get(running.id).status is TaskStatus.CANCEL_REQUESTED
    assert tracker.get(done.id).status is TaskStatus.COMPLETE


def test_admin_cancel_obeys_is_admin(alias: str, users: dict[str, Any]) -> None:
    with override_settings(TASKLIB={"DATABASE": alias, "IS_ADMIN": f"{__name__}.nobody_is_admin"}):
        task = get_tracker().submit(description="someone else's", submitted_by=users["owner"].pk)
        response = client_as(users["root"]).post(
            "/admin/tasklib/task/", {"action": "cancel_tasks", "_selected_action": [task.id]}, follow=True
        )
        assert [str(m) for m in response.context["messages"]] == [f"Could not cancel: {task.id} (not yours to cancel)."]
        assert get_tracker().get(task.id).status is TaskStatus.ENQUEUED
    close_tracker()


def test_no_admin_when_tasks_live_outside_djangos_databases(tmp_path: Path, users: dict[str, Any]) -> None:
    with override_settings(TASKLIB={"DATABASE": str(tmp_path / "own.db")}):
        admin = client_as(users["root"])
        assert b"/admin/tasklib/" not in admin.get("/admin/").content
        assert admin.get("/admin/tasklib/task/").status_code == 403
    close_tracker()


# -- a real server -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(url: str, method: str = "GET", user: str | None = None) -> tuple[int, dict[str, str], Any]:
    headers = {"X-Remote-User": user} if user else {}
    call = urllib.request.Request(url, method=method, headers=headers)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(call, timeout=WAIT) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


@pytest.fixture
def runserver(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """The test project under ``manage.py runserver`` on its own SQLite file; stopped with Ctrl-C."""
    env = {**os.environ, "TASKLIB_TEST_DJANGO_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    env.pop("TASKLIB_TEST_POSTGRES_URL", None)
    manage = [sys.executable, str(PROJECT / "manage.py")]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*manage, *args], env=env, capture_output=True, text=True, timeout=WAIT)

    assert run("migrate", "--verbosity", "0").returncode == 0
    port = free_port()
    server = subprocess.Popen(
        [*manage, "runserver", "--noreload", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            request(base + "/rest/api/3/task/1")
        except OSError:
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            return False
        return True

    try:
        eventually(answers)
        run.base = base  # type: ignore[attr-defined]
        run.server = server  # type: ignore[attr-defined]
        yield run
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        if server.stdout:
            server.stdout.close()


@interruptible
def test_end_to_end_under_runserver(runserver: Any) -> None:
    base = runserver.base
    status, headers, body = request(base + "/work/?steps=3&seconds=0.1", "POST", user="alice")
    assert status == 303 and body["status"] in ("ENQUEUED", "RUNNING", "COMPLETE")
    url = headers["Location"]
    assert url == body["self"] and url.startswith(base + "/rest/api/3/task/")

    def complete() -> bool:
        status, _, body = request(url, user="alice")
        assert status == 200
        return body["status"] == "COMPLETE"

    eventually(complete)
    assert request(url, user="alice")[2]["result"] == {"steps": 3}
    assert request(url)[0] == 401
    assert request(url, user="bob")[0] == 403
    status, _, body = request(url + "/cancel", "POST", user="alice")
    assert (status, body) == (400, ["Cancellation of the task is not possible."])

    _, headers, long = request(base + "/work/?steps=100&seconds=1", "POST", user="alice")
    status, _, body = request(long["self"] + "/cancel", "POST", user="alice")
    assert status == 202 and body["status"] in ("CANCEL_REQUESTED", "CANCELLED")
    eventually(lambda: request(long["self"], user="alice")[2]["status"] == "CANCELLED")

    # A task the host started and never finished when the server stops: the
    # tracker, closed at exit, says so (a crash would leave it to the heartbeat sweep).
    _, _, driven = request(base + "/work/?driven=1", "POST", user="alice")
    assert driven["status"] == "RUNNING"
    runserver.server.send_signal(signal.SIGINT)
    runserver.server.wait(timeout=WAIT)
    shown = runserver("tasklib", "show", driven["id"])
    assert shown.returncode == 0, shown.stderr
    assert {k: json.loads(shown.stdout)[k] for k in ("status", "message")} == {
        "status": "DEAD",
        "message": "its tracker was closed before it finished",
    }
    listed = runserver("tasklib", "list", "--json")
    assert [t["status"] for t in json.loads(listed.stdout)] == ["DEAD", "CANCELLED", "COMPLETE"]
    assert runserver("tasklib", "show", "999").returncode == 1


# -- the live task page ---------------------------------------------------------------------


def test_the_task_page_in_django(tracker: TaskTracker, users: dict[str, Any]) -> None:
    mine = tracker.submit(description="my export", submitted_by=users["owner"].pk)
    tracker.submit(description="their export", submitted_by=users["other"].pk)
    page = client_as(users["owner"]).get("/tasks/")
    assert page.status_code == 200 and page["Content-Type"] == "text/html;charset=UTF-8"
    text = page.content.decode()
    assert "my export" in text and "their export" not in text
    assert 'data-api="/rest/api/3/task/"' in text and 'src="/tasks/page.js"' in text
    feed = client_as(users["staff"]).get("/tasks/tasks.json").json()  # staff: an administrator
    assert [t["description"] for t in feed["tasks"]] == ["their export", "my export"]
    assert client_as(None).get("/tasks/").status_code == 401
    assert client_as(users["owner"]).get("/tasks/tasks.json?status=RUNNING").json()["tasks"] == []
    assert client_as(users["owner"]).get("/tasks/tasklib-progress.js").status_code == 200
    assert mine.id in text
