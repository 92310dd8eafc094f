"""A task's JSON is exactly Jira's TaskProgressBeanObject."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import json
import math
from typing import Any

import jsonschema
import pytest
from freezegun import freeze_time

from tasklib import Task, TaskStatus, TaskTracker

from .helpers import reach, rows

EXAMPLE = {
    "self": "https://your-domain.atlassian.net/rest/api/3/task/1",
    "id": "1",
    "description": "Task description",
    "status": "COMPLETE",
    "result": "the task result, this may be any JSON",
    "submittedBy": 10000,
    "progress": 100,
    "elapsedRuntime": 156,
    "submitted": 1501708132800,
    "started": 1501708132900,
    "finished": 1501708133000,
    "lastUpdate": 1501708133000,
}


def ms_to_datetime(ms: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)


@pytest.mark.parametrize("status", list(TaskStatus), ids=str)
def test_every_status_validates_against_the_schema(
    tracker: TaskTracker, task_schema: dict[str, Any], status: TaskStatus
) -> None:
    """to_dict() in every status is valid against Jira's schema, additionalProperties false included."""
    task = reach(tracker, status)
    for snapshot in (task, tracker.get(task.id)):
        jsonschema.validate(snapshot.to_dict(), task_schema)
        assert json.loads(snapshot.to_json()) == snapshot.to_dict()


def test_documented_example_is_reproduced(tracker: TaskTracker) -> None:
    """A task built with the example's values gives the documented 200 body but for elapsedRuntime."""
    with freeze_time(ms_to_datetime(EXAMPLE["submitted"])) as clock:
        task = tracker.submit(description=EXAMPLE["description"], submitted_by=EXAMPLE["submittedBy"])
        clock.move_to(ms_to_datetime(EXAMPLE["started"]))
        tracker.start(task.id)
        clock.move_to(ms_to_datetime(EXAMPLE["finished"]))
        tracker.complete(task.id, result=EXAMPLE["result"])
        clock.tick(3600)
        body = tracker.get(task.id).to_dict()
    assert list(body) == list(EXAMPLE)
    # The example says 156 where finished - started is 100; tasklib reports finished - started.
    assert body["elapsedRuntime"] == EXAMPLE["finished"] - EXAMPLE["started"] == 100
    assert {**body, "elapsedRuntime": 156} == EXAMPLE


def test_optional_fields_are_omitted_never_null(tracker: TaskTracker) -> None:
    """A fresh task has no description, message, result, started or finished key at all."""
    body = tracker.submit().to_dict()
    assert set(body) == {"self", "id", "status", "submittedBy", "progress", "elapsedRuntime", "submitted", "lastUpdate"}
    assert None not in body.values()


def test_timestamps_and_elapsed_runtime(tracker: TaskTracker) -> None:
    """submitted/started/finished/lastUpdate follow the clock; elapsedRuntime is 0, then now - started, then fixed."""
    with freeze_time("2026-03-01 12:00:00") as clock:
        t0 = int(datetime.datetime(2026, 3, 1, 12, tzinfo=datetime.timezone.utc).timestamp() * 1000)
        task = tracker.submit()
        assert (task.submitted, task.last_update, task.elapsed_runtime) == (t0, t0, 0)
        clock.tick(5)
        assert tracker.get(task.id).elapsed_runtime == 0
        task = tracker.start(task.id)
        assert (task.started, task.last_update) == (t0 + 5000, t0 + 5000)
        clock.tick(2.25)
        assert tracker.get(task.id).elapsed_runtime == 2250
        task = tracker.update_progress(task.id, 10)
        assert task.last_update == t0 + 7250 and task.started == t0 + 5000
        clock.tick(1)
        task = tracker.complete(task.id)
        assert (task.finished, task.last_update, task.elapsed_runtime) == (t0 + 8250, t0 + 8250, 3250)
        clock.tick(100)
        assert tracker.get(task.id).elapsed_runtime == 3250
        assert tracker.get(task.id).submitted == t0


@pytest.mark.parametrize(
    "result",
    [
        "text",
        "ünïcødé ✓",
        0,
        -(2**63),
        2**70,
        1.5,
        True,
        False,
        [],
        {},
        [1, "two", 3.0, None, {"a": [True]}],
        {"deleted": 100, "keys": ["FOO-1", "FOO-2"], "nested": {"x": {"y": None}}},
    ],
    ids=repr,
)
def test_result_round_trips_equal(tracker: TaskTracker, result: Any) -> None:
    """Any JSON value stored as result is given back equal, and shows in the JSON."""
    task = tracker.submit()
    assert tracker.complete(task.id, result=result).result == result
    stored = tracker.get(task.id)
    assert stored.result == result and type(stored.result) is type(result)
    assert json.loads(stored.to_json())["result"] == result


@pytest.mark.parametrize(
    "bad, error",
    [
        ({1, 2}, TypeError),
        (datetime.datetime(2026, 1, 1), TypeError),
        (object(), TypeError),
        (decimal.Decimal("1.5"), TypeError),
        ((1, 2), TypeError),
        ({1: "int key"}, TypeError),
        ({"deep": [1, {"x": {1, 2}}]}, TypeError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        ([1, -math.inf], ValueError),
    ],
    ids=repr,
)
def test_unrepresentable_result_is_refused_before_writing(tracker: TaskTracker, bad: Any, error: type) -> None:
    """complete() and fail() refuse a value JSON cannot represent and leave the task as it was."""
    task = reach(tracker, TaskStatus.RUNNING)
    before = rows(tracker)
    with pytest.raises(error):
        tracker.complete(task.id, result=bad)
    with pytest.raises(error):
        tracker.fail(task.id, "no", result=bad)
    assert rows(tracker) == before


def test_error_names_where_the_bad_value_is(tracker: TaskTracker) -> None:
    """The refusal message points at the offending part of the result."""
    task = tracker.submit()
    with pytest.raises(TypeError, match=r"result\['deep'\]\[1\]\['x'\] is a set"):
        tracker.complete(task.id, result={"deep": [1, {"x": {1}}]})


def test_task_is_immutable(tracker: TaskTracker) -> None:
    """A Task snapshot cannot be changed."""
    task = tracker.submit()
    with pytest.raises(AttributeError):
        task.status = TaskStatus.COMPLETE  # type: ignore[misc]
    assert isinstance(task, Task)


def test_self_is_relative_without_base_url(make_tracker: Any) -> None:
    """Without base_url, self is Jira's path for the task."""
    tracker = make_tracker(base_url=None)
    assert tracker.submit().url == "/rest/api/3/task/1"


def test_read_path_builds_the_same_task_and_text() -> None:
    """A task built from a driver's row equals Task(...) field by field; the fast encoder writes dumps' text."""
    from tasklib.jsonvalue import dumps, dumps_acyclic
    from tasklib.storage import Record

    record = Record(7, "RUNNING", "d\u00e9", None, '{"k":[1,2.5,"\u2603"]}', 3, 40, 1, 10, None, 2, "token")
    row = (*record, "host", 99, 5, 6)  # a row carries its runner's heartbeat after the task's columns
    made = Task("7", "/t/7", TaskStatus.RUNNING, 3, 40, 15, 1, 2, "d\u00e9", None, {"k": [1, 2.5, "\u2603"]}, 10)
    for source in (record, row):
        built = Task.from_record(source, url_prefix="/t/", now=25)
        assert built == made and repr(built) == repr(made)
    with pytest.raises(AttributeError):
        built.progress = 1  # type: ignore[misc]
    assert type(built) is Task

    # A subclass of its own layout gets its own class, through its own constructor.
    @dataclasses.dataclass(frozen=True)
    class Annotated(Task):
        note: str = "none"

    annotated = Annotated.from_record(record, url_prefix="/t/", now=25)
    assert type(annotated) is Annotated and annotated.note == "none"
    assert dataclasses.astuple(annotated)[:-1] == dataclasses.astuple(made)
    for value in (built.to_dict(), 'x\u2028"\\', 1e300, -0.0, [None, True, {}], 10**30):
        assert dumps_acyclic(value) == dumps(value)
    with pytest.raises(ValueError):
        dumps_acyclic([math.nan])


def test_to_json_writes_the_text_of_dumps_of_to_dict() -> None:
    """to_json() spells out Jira's keys itself: the same text as the encoder's, whatever a task holds.

    Every optional key present and absent; texts with quotes, backslashes, control
    characters, non-ASCII and a lone surrogate; results of every JSON type; a task
    built by hand with a bool or a float where an int belongs.
    """
    from tasklib.jsonvalue import dumps

    texts = [None, "", 'say "hi"\\', "tab\there\nnew\x01\x1f", "d\u00e9j\u00e0 \u2603 \U0001f600", "\ud800", "\u2028"]
    results = [None, 0, -1.5, 10**30, "text", [1, None, True], {"k": {"n": [False]}}, {}]
    tasks = []
    for i, status in enumerate(TaskStatus):
        for j, text in enumerate(texts):
            started = None if j % 3 == 0 else 1_700_000_000_001
            finished = None if j % 2 == 0 else 1_700_000_000_009
            tasks.append(
                Task(
                    str(i * 100 + j + 1),
                    f"https://example.com/{text or ''}/task/{i}",
                    status,
                    -(2**63),
                    j * 10,
                    8,
                    1_700_000_000_000,
                    1_700_000_000_009,
                    description=text,
                    message=texts[-1 - j],
                    result=results[j % len(results)],
                    started=started,
                    finished=finished,
                )
            )
    base = tasks[0]
    tasks += [
        Task(base.id, base.url, base.status, True, False, 1.5, 1, 2),  # type: ignore[arg-type]
        Task(base.id, base.url, base.status, 1, 2, 3, 4, 5, started=True, finished=2.5),  # type: ignore[arg-type]
    ]
    for task in tasks:
        assert task.to_json() == dumps(task.to_dict()), task
    assert json.loads(tasks[-2].to_json())["submittedBy"] is True
