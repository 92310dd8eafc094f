"""Ids, permissions, retention and bad input through the public API."""

from __future__ import annotations

import datetime
import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

import pytest
from freezegun import freeze_time

import tasklib
from tasklib import (
    PermissionDenied,
    TaskError,
    TaskNotFound,
    TaskStatus,
    TaskTracker,
    TrackerClosed,
)

from .helpers import reach, rows

BAD_IDS = [
    "abc",
    "",
    "-1",
    "0",
    "01",
    "+1",
    " 1",
    "1 ",
    "1\n",
    "1.0",
    "1e3",
    "1 OR 1=1",
    "1; DROP TABLE tasklib_task",
    "١",  # an Arabic-Indic digit: str.isdigit() says yes, Jira ids are ASCII
    "9" * 19,
    "9223372036854775808",  # 2**63
    "9" * 400,
    "7" * 10_000_000,
    "../1",
    "1/cancel",
    "\x00",
]


@pytest.mark.parametrize("bad", BAD_IDS, ids=lambda s: repr(s[:24]))
def test_malformed_ids_are_not_found(tracker: TaskTracker, bad: str) -> None:
    """Any string that is not a stored task's id gives TaskNotFound from every method."""
    tracker.submit()
    before = rows(tracker)
    for call in (
        lambda: tracker.get(bad),
        lambda: tracker.get(bad, as_user=5),
        lambda: tracker.cancel(bad),
        lambda: tracker.start(bad),
        lambda: tracker.update_progress(bad, 1),
        lambda: tracker.complete(bad),
        lambda: tracker.fail(bad, "x"),
    ):
        with pytest.raises(TaskNotFound) as info:
            call()
        assert isinstance(info.value, LookupError) and isinstance(info.value, TaskError)
        assert len(str(info.value)) < 100
    assert rows(tracker) == before


def test_unknown_numeric_id_is_not_found(tracker: TaskTracker) -> None:
    """A well-formed id that no task has is TaskNotFound, for a trusted call and a user alike."""
    with pytest.raises(TaskNotFound):
        tracker.get("42")
    with pytest.raises(TaskNotFound):
        tracker.cancel("42", as_user=1)


@pytest.mark.parametrize("bad", [1, None, b"1", 1.0, ["1"]], ids=repr)
def test_non_string_id_is_a_type_error(tracker: TaskTracker, bad: Any) -> None:
    """An id that is not a str is a programming error: TypeError."""
    with pytest.raises(TypeError):
        tracker.get(bad)


def test_ids_are_assigned_in_order_and_never_reused(tracker: TaskTracker) -> None:
    """Ids count up from "1"; a purged task's id is not given to a new task."""
    ids = [tracker.submit().id for _ in range(3)]
    assert ids == ["1", "2", "3"]
    tracker.complete("3")
    assert tracker.purge(now=datetime.datetime(2100, 1, 1)) == 1
    assert tracker.submit().id == "4"
    with pytest.raises(TaskNotFound):
        tracker.get("3")


# -- permissions ------------------------------------------------------------


@pytest.fixture
def guarded(make_tracker: Callable[..., TaskTracker]) -> TaskTracker:
    return make_tracker(is_admin=lambda user: user == 1)


def test_submitter_and_admin_may_read_and_cancel(guarded: TaskTracker) -> None:
    """The creator and an administrator may get and cancel; the trusted host may too."""
    task = guarded.submit(submitted_by=10000)
    assert guarded.get(task.id, as_user=10000).id == task.id
    assert guarded.get(task.id, as_user=1).id == task.id
    assert guarded.get(task.id).id == task.id
    assert guarded.cancel(task.id, as_user=1).status is TaskStatus.CANCELLED
    other = guarded.submit(submitted_by=10000)
    assert guarded.cancel(other.id, as_user=10000).status is TaskStatus.CANCELLED


def test_other_users_are_denied_and_nothing_changes(guarded: TaskTracker) -> None:
    """Another user gets PermissionDenied from get and cancel, and the task is untouched."""
    task = guarded.submit(submitted_by=10000)
    guarded.start(task.id)
    before = rows(guarded)
    with pytest.raises(PermissionDenied):
        guarded.get(task.id, as_user=20000)
    with pytest.raises(PermissionDenied):
        guarded.cancel(task.id, as_user=20000)
    assert rows(guarded) == before


def test_without_is_admin_only_the_submitter_is_allowed(tracker: TaskTracker) -> None:
    """With no is_admin callable, no user is an administrator."""
    task = tracker.submit(submitted_by=7)
    with pytest.raises(PermissionDenied):
        tracker.get(task.id, as_user=1)


# -- retention --------------------------------------------------------------

DAY = datetime.timedelta(days=1)
MS = datetime.timedelta(milliseconds=1)


@pytest.mark.parametrize("status", [s for s in TaskStatus if s.is_terminal], ids=str)
def test_retention_boundary(tracker: TaskTracker, status: TaskStatus) -> None:
    """A task finished 14 days - 1 ms ago is kept; 14 days + 1 ms ago it is purged."""
    finished_at = datetime.datetime(2026, 5, 1, 8, 30)
    with freeze_time(finished_at):
        task = reach(tracker, status)
    assert tracker.purge(now=finished_at + 14 * DAY - MS) == 0
    assert tracker.purge(now=finished_at + 14 * DAY) == 0
    assert tracker.get(task.id).status is status
    assert tracker.purge(now=finished_at + 14 * DAY + MS) == 1
    with pytest.raises(TaskNotFound):
        tracker.get(task.id)


@pytest.mark.parametrize("status", [s for s in TaskStatus if not s.is_terminal], ids=str)
def test_unfinished_tasks_are_never_purged(tracker: TaskTracker, status: TaskStatus) -> None:
    """However old, a task that has not finished is kept."""
    with freeze_time("2020-01-01"):
        task = reach(tracker, status)
    assert tracker.purge(now=datetime.datetime(2100, 1, 1)) == 0
    assert tracker.get(task.id).status is status


def test_custom_retention_and_epoch_ms_now(make_tracker: Callable[..., TaskTracker]) -> None:
    """retention= sets the period; now= also takes epoch milliseconds."""
    tracker = make_tracker(retention=datetime.timedelta(hours=1))
    done = tracker.complete(tracker.submit().id)
    assert tracker.purge(now=done.finished + 3_600_000) == 0
    assert tracker.purge(now=done.finished + 3_600_001) == 1


def test_purge_deletes_in_batches(tracker: TaskTracker) -> None:
    """More expired tasks than one batch are all purged, and the count is exact."""
    from tasklib.storage import PURGE_BATCH_MIN

    for _ in range(3 * PURGE_BATCH_MIN + 7):
        tracker.complete(tracker.submit().id)
    keep = tracker.submit()
    assert tracker.purge(now=datetime.datetime(2100, 1, 1)) == 3 * PURGE_BATCH_MIN + 7
    assert [r[0] for r in rows(tracker)] == [int(keep.id)]


# -- bad input ----------------------------------------------------------------


def bad_calls(tracker: TaskTracker, task_id: str) -> list[tuple[Callable[[], object], type[Exception]]]:
    return [
        (lambda: tracker.submit(description=5), TypeError),
        (lambda: tracker.submit(description=b"x"), TypeError),
        (lambda: tracker.submit(submitted_by="10000"), TypeError),
        (lambda: tracker.submit(submitted_by=True), TypeError),
        (lambda: tracker.submit(submitted_by=1.0), TypeError),
        (lambda: tracker.submit(submitted_by=2**63), ValueError),
        (lambda: tracker.list(submitted_by=-(2**63) - 1), ValueError),
        (lambda: tracker.get(task_id, as_user=2**64), ValueError),
        (lambda: tracker.submit(description="a\x00b"), ValueError),
        (lambda: tracker.update_progress(task_id, 5, message="\x00"), ValueError),
        (lambda: tracker.submit(None, 1), TypeError),
        (lambda: tracker.update_progress(task_id, 101), ValueError),
        (lambda: tracker.update_progress(task_id, -1), ValueError),
        (lambda: tracker.update_progress(task_id, 50.0), TypeError),
        (lambda: tracker.update_progress(task_id, "50"), TypeError),
        (lambda: tracker.update_progress(task_id, True), TypeError),
        (lambda: tracker.update_progress(task_id, None), TypeError),
        (lambda: tracker.update_progress(task_id, 5, message=5), TypeError),
        (lambda: tracker.complete(task_id, message=1), TypeError),
        (lambda: tracker.fail(task_id, message=["x"]), TypeError),
        (lambda: tracker.mark_dead(task_id, None), TypeError),
        (lambda: tracker.acknowledge_cancel(task_id, message=3), TypeError),
        (lambda: tracker.get(task_id, as_user="1"), TypeError),
        (lambda: tracker.get(task_id, as_user=True), TypeError),
        (lambda: tracker.cancel(task_id, as_user=1.5), TypeError),
        (lambda: tracker.purge(now="yesterday"), TypeError),
        (lambda: tracker.purge(now=1.5), TypeError),
    ]


def test_bad_arguments_raise_and_write_nothing(tracker: TaskTracker) -> None:
    """Every public method refuses bad arguments with TypeError/ValueError and leaves the store as it was."""
    task = reach(tracker, TaskStatus.RUNNING)
    before = rows(tracker)
    for call, error in bad_calls(tracker, task.id):
        with pytest.raises(error):
            call()
        assert rows(tracker) == before


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"base_url": 5}, TypeError),
        ({"retention": 14}, TypeError),
        ({"retention": datetime.timedelta(0)}, ValueError),
        ({"retention": -DAY}, ValueError),
        ({"is_admin": "root"}, TypeError),
    ],
    ids=repr,
)
def test_bad_constructor_arguments(db_path: Any, kwargs: dict[str, Any], error: type[Exception]) -> None:
    """TaskTracker refuses bad options before creating anything."""
    with pytest.raises(error):
        TaskTracker(str(db_path), **kwargs)
    assert not db_path.exists()


def test_closed_tracker_refuses_calls(tracker: TaskTracker) -> None:
    """After close(), calls raise TrackerClosed; close() is idempotent."""
    task = tracker.submit()
    tracker.close()
    tracker.close()
    for call in (tracker.submit, lambda: tracker.get(task.id), lambda: tracker.cancel(task.id), tracker.purge):
        with pytest.raises(TrackerClosed):
            call()


def test_context_manager_opens_and_closes(db_path: Any) -> None:
    """`with TaskTracker(...)` gives an open tracker and closes it on exit."""
    with TaskTracker(str(db_path)) as tracker:
        task = tracker.submit()
    with pytest.raises(TrackerClosed):
        tracker.get(task.id)
    with TaskTracker(str(db_path)) as again:
        assert again.get(task.id).status is TaskStatus.ENQUEUED


# -- listing --------------------------------------------------------------------


def test_list_newest_first_filtered_and_paged(tracker: TaskTracker) -> None:
    """list() gives tasks newest first, filters by status and submitter, and pages by id."""
    ids = [tracker.submit(submitted_by=1 + i % 2).id for i in range(7)]
    tracker.complete(ids[0])
    tracker.complete(ids[3])
    assert [t.id for t in tracker.list()] == ids[::-1]
    assert [t.id for t in tracker.list(status=TaskStatus.COMPLETE)] == [ids[3], ids[0]]
    assert [t.id for t in tracker.list(status="ENQUEUED", submitted_by=1)] == [ids[6], ids[4], ids[2]]
    assert [t.id for t in tracker.list(submitted_by=2)] == [ids[5], ids[3], ids[1]]
    first = tracker.list(limit=3)
    second = tracker.list(limit=3, after=first[-1].id)
    third = tracker.list(limit=3, after=second[-1].id)
    assert [t.id for t in first + second + third] == ids[::-1]
    assert tracker.list(after="1") == []


def test_list_pages_do_not_scan_the_table(tracker: TaskTracker, is_sqlite: bool) -> None:
    """Each list query can be served by an index (no full scan of the task table)."""
    store = tracker._store
    for stmt in store._lists.values():
        params = stmt.bind({"status": "RUNNING", "submitted_by": 1, "before": 10, "limit": 5})
        if is_sqlite:
            plan = " ".join(str(r[-1]) for r in store.db.execute_sql("EXPLAIN QUERY PLAN " + stmt.sql, params))
            assert "SCAN t1" not in plan and "SCAN tasklib_task" not in plan, plan
        else:
            with store.db.atomic():
                # Tiny tables make a sequential scan cheapest; forbid it to see whether an index serves.
                store.db.execute_sql("SET LOCAL enable_seqscan = off")
                plan = " ".join(r[0] for r in store.db.execute_sql("EXPLAIN " + stmt.sql, params))
            assert "Seq Scan on tasklib_task" not in plan, plan


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"status": "DONE"}, ValueError),
        ({"status": 3}, ValueError),
        ({"submitted_by": "1"}, TypeError),
        ({"limit": 0}, ValueError),
        ({"limit": 1001}, ValueError),
        ({"limit": 2.0}, TypeError),
        ({"after": "abc"}, ValueError),
        ({"after": 5}, TypeError),
    ],
    ids=repr,
)
def test_list_bad_arguments(tracker: TaskTracker, kwargs: dict[str, Any], error: type[Exception]) -> None:
    """list() refuses bad filters and paging with TypeError/ValueError."""
    with pytest.raises(error):
        tracker.list(**kwargs)


def test_purge_dry_run_counts_and_deletes_nothing(tracker: TaskTracker) -> None:
    """purge(dry_run=True) says how many tasks a purge would delete, and deletes none."""
    with freeze_time("2020-01-01"):
        for _ in range(3):
            tracker.complete(tracker.submit().id)
        tracker.start(tracker.submit().id)
    before = rows(tracker)
    assert tracker.purge(now=datetime.datetime(2021, 1, 1), dry_run=True) == 3
    assert rows(tracker) == before
    assert tracker.purge(now=datetime.datetime(2021, 1, 1)) == 3


def _isort_key(name: str) -> tuple[int, str]:
    # ruff's RUF022 order, as isort sorts imports: CONSTANTS, then Classes, then functions.
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


@pytest.mark.parametrize(
    "module",
    [
        *sorted(
            f"tasklib.{info.name}" for info in pkgutil.iter_modules(tasklib.__path__) if info.name not in {"__main__"}
        ),
        "tasklib",
    ],
)
def test_public_names_are_sorted_and_exist(module: str) -> None:
    """Every module's __all__ is sorted (constants, classes, functions) and names only what it defines."""
    mod = importlib.import_module(module)
    names = list(getattr(mod, "__all__", []))
    assert names == sorted(names, key=_isort_key)
    assert len(set(names)) == len(names)
    assert [name for name in names if not hasattr(mod, name)] == []
