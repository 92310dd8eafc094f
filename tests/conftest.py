"""Shared fixtures: trackers on a real SQLite file (and PostgreSQL where configured)."""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import pytest

from tasklib import TaskTracker

from .helpers import BASE_URL

DATA = pathlib.Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def task_schema() -> dict[str, Any]:
    """Jira's TaskProgressBeanObject JSON Schema, as copied into tests/data."""
    return json.loads((DATA / "task-progress-bean.schema.json").read_text())


@pytest.fixture
def db_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "tasks.db"


#: The PostgreSQL server the suite runs against a second time, when set.
POSTGRES_URL = os.environ.get("TASKLIB_TEST_POSTGRES_URL")
TASKLIB_TABLES = ("tasklib_task", "tasklib_meta", "tasklib_runner", "tasklib_lease")
POSTGRES_SKIP = "PostgreSQL run: set TASKLIB_TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/test)"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Report every skipped PostgreSQL run at one place, so ``-ra`` shows one line for all of them.

    pytest groups skips by location and reason; a skip in a fixture is located at
    each test, which would print a line per test.
    """
    report = yield
    if report.skipped and isinstance(report.longrepr, tuple) and report.longrepr[2] == f"Skipped: {POSTGRES_SKIP}":
        where = pathlib.Path(__file__).relative_to(item.config.rootpath)
        report.longrepr = (str(where), skip_postgres.__code__.co_firstlineno, report.longrepr[2])
    return report


def skip_postgres() -> NoReturn:
    """Skip this test's PostgreSQL run: no server is configured."""
    pytest.skip(POSTGRES_SKIP)


def reset_postgres(url: str) -> None:
    """Drop tasklib's tables, so each test starts from an empty store."""
    import peewee
    from playhouse.db_url import connect

    from tasklib.storage import SCHEMA_LOCK_KEY

    db = connect(url)
    try:
        with db.atomic():
            db.execute_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})")  # tasklib's schema lock
            for table in TASKLIB_TABLES:
                db.execute_sql(f'DROP TABLE IF EXISTS "{table}" CASCADE')
    except peewee.OperationalError as exc:
        pytest.fail(f"TASKLIB_TEST_POSTGRES_URL is set but the server does not answer: {exc}")
    finally:
        db.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, db_path: pathlib.Path) -> str:
    """Where this test's store lives: a SQLite file, and again a PostgreSQL database when configured."""
    if request.param == "sqlite":
        return str(db_path)
    if not POSTGRES_URL:
        skip_postgres()
    reset_postgres(POSTGRES_URL)
    return POSTGRES_URL


@pytest.fixture
def is_sqlite(store_url: str) -> bool:
    return "://" not in store_url


@pytest.fixture
def make_tracker(store_url: str) -> Iterator[Callable[..., TaskTracker]]:
    """Build trackers on this test's store; all are closed at the end."""
    made: list[TaskTracker] = []

    def make(**kwargs: Any) -> TaskTracker:
        kwargs.setdefault("base_url", BASE_URL)
        tracker = TaskTracker(store_url, **kwargs)
        made.append(tracker)
        return tracker

    yield make
    for tracker in made:
        tracker.close(wait=False)


@pytest.fixture
def tracker(make_tracker: Callable[..., TaskTracker]) -> TaskTracker:
    return make_tracker()


@pytest.fixture(scope="session")
def django_db_setup(django_db_blocker: Any) -> None:
    """pytest-django's database setup, replaced: the test project's own databases, migrated once.

    The SQLite file is the project's (in a temporary directory); the PostgreSQL
    database is the suite's own, never a ``test_...`` copy that Django would
    create and drop. Tests that use them are transactional, so tasklib's own
    connection sees Django's rows and Django flushes its tables after each test.
    """
    from django.conf import settings
    from django.core.management import call_command

    with django_db_blocker.unblock():
        for alias in settings.DATABASES:
            call_command("migrate", database=alias, verbosity=0, interactive=False)
