"""Shared fixtures: trackers on a real SQLite file (and PostgreSQL where configured)."""

from __future__ import annotations

import json
import pathlib
from typing import Any, Callable, Iterator

import pytest

from tasklib import TaskTracker

DATA = pathlib.Path(__file__).parent / "data"
BASE_URL = "https://your-domain.atlassian.net/rest/api/3/task/"


@pytest.fixture(scope="session")
def task_schema() -> dict[str, Any]:
    """Jira's TaskProgressBeanObject JSON Schema, as copied into tests/data."""
    return json.loads((DATA / "task-progress-bean.schema.json").read_text())


@pytest.fixture
def db_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "tasks.db"


@pytest.fixture
def make_tracker(db_path: pathlib.Path) -> Iterator[Callable[..., TaskTracker]]:
    """Build trackers on this test's store; all are closed at the end."""
    made: list[TaskTracker] = []

    def make(**kwargs: Any) -> TaskTracker:
        kwargs.setdefault("base_url", BASE_URL)
        tracker = TaskTracker(str(db_path), **kwargs)
        made.append(tracker)
        return tracker

    yield make
    for tracker in made:
        tracker.close()


@pytest.fixture
def tracker(make_tracker: Callable[..., TaskTracker]) -> TaskTracker:
    return make_tracker()


def rows(tracker: TaskTracker) -> list[tuple[Any, ...]]:
    """Every stored task row, read straight from the database."""
    cursor = tracker._store.db.execute_sql("SELECT * FROM tasklib_task ORDER BY id")
    return [tuple(r) for r in cursor.fetchall()]
