"""The status machine: every event in every status, legal and illegal."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from freezegun import freeze_time

from tasklib import InvalidTransition, TaskNotCancellable, TaskStatus, TaskTracker
from tasklib.status import TRANSITIONS, Event

from .helpers import act, reach, rows

S = TaskStatus


def test_table_covers_every_status_and_the_documented_moves() -> None:
    """The table has a row per status and exactly the moves the design names."""
    targets = {src: set(row.values()) for src, row in TRANSITIONS.items()}
    assert targets == {
        S.ENQUEUED: {S.RUNNING, S.CANCELLED, S.COMPLETE, S.FAILED, S.DEAD},
        S.RUNNING: {S.RUNNING, S.CANCEL_REQUESTED, S.COMPLETE, S.FAILED, S.DEAD},
        S.CANCEL_REQUESTED: {S.CANCEL_REQUESTED, S.CANCELLED, S.COMPLETE, S.FAILED, S.DEAD},
        S.COMPLETE: set(),
        S.FAILED: set(),
        S.CANCELLED: set(),
        S.DEAD: set(),
    }
    assert {s for s in S if s.is_terminal} == {S.COMPLETE, S.FAILED, S.CANCELLED, S.DEAD}


@pytest.mark.parametrize("event", list(Event), ids=str)
@pytest.mark.parametrize("status", list(TaskStatus), ids=str)
def test_every_event_in_every_status(tracker: TaskTracker, status: TaskStatus, event: Event) -> None:
    """A legal event moves the stored task as the table says; an illegal one raises and changes nothing."""
    with freeze_time("2026-01-01 00:00:00") as clock:
        task = reach(tracker, status)
        clock.tick(1.5)
        before_rows = rows(tracker)
        before = tracker.get(task.id)
        expected = TRANSITIONS[status].get(event)
        if expected is None:
            error = TaskNotCancellable if event is Event.CANCEL else InvalidTransition
            with pytest.raises(error) as info:
                act(tracker, task.id, event)
            assert info.value.status is status and info.value.event is event
            assert rows(tracker) == before_rows
            assert tracker.get(task.id) == before
            return
        after = act(tracker, task.id, event)
        stored = tracker.get(task.id)
    assert after == stored
    assert stored.status is expected
    assert (stored.finished is not None) == expected.is_terminal
    if expected.is_terminal:
        assert stored.finished == stored.last_update == before.last_update + 1500
    if expected is S.RUNNING or status is not S.ENQUEUED:
        assert stored.started is not None
    if expected is status and event is Event.CANCEL:
        assert rows(tracker) == before_rows, "a repeated cancel request must write nothing"
    else:
        assert stored.last_update == before.last_update + 1500


def test_progress_never_overwrites_a_cancel_request(tracker: TaskTracker) -> None:
    """A progress report after a cancel request keeps CANCEL_REQUESTED and reports it."""
    task = reach(tracker, S.RUNNING)
    tracker.cancel(task.id)
    reported = tracker.update_progress(task.id, 70, message="still going")
    assert reported.status is S.CANCEL_REQUESTED and reported.cancel_requested
    assert reported.progress == 70
    assert tracker.acknowledge_cancel(task.id).status is S.CANCELLED


def test_first_progress_report_starts_an_enqueued_task(tracker: TaskTracker) -> None:
    """update_progress on an ENQUEUED task makes it RUNNING with a started time."""
    with freeze_time("2026-01-01 00:00:00") as clock:
        task = tracker.submit()
        clock.tick(2)
        task = tracker.update_progress(task.id, 10)
    assert task.status is S.RUNNING
    assert task.started == task.submitted + 2000


def test_complete_sets_progress_100(tracker: TaskTracker) -> None:
    """complete() records progress 100 whatever was reported before."""
    task = reach(tracker, S.RUNNING)
    tracker.update_progress(task.id, 30)
    assert tracker.complete(task.id).progress == 100


def test_message_none_keeps_the_stored_message(tracker: TaskTracker) -> None:
    """A progress report without a message leaves the last message in place."""
    task = reach(tracker, S.RUNNING)
    tracker.update_progress(task.id, 10, message="ten")
    assert tracker.update_progress(task.id, 20).message == "ten"
    assert tracker.update_progress(task.id, 30, message="thirty").message == "thirty"


def test_every_event_names_its_effects_on_real_columns() -> None:
    """EFFECTS has an entry per event, naming only columns an event may write."""
    from tasklib.status import EFFECTS, Effect

    assert set(EFFECTS) == set(Event)
    writable = {"progress", "message", "result", "started", "runner"}
    for event, effects in EFFECTS.items():
        assert set(effects) <= writable, event
        assert all(effect is None or isinstance(effect, (Effect, int)) for effect in effects.values())
    assert EFFECTS[Event.CANCEL] == {}  # a cancel request comes from outside: it carries nothing
    assert EFFECTS[Event.RELEASE]["runner"] is None  # a released task belongs to no process
    assert EFFECTS[Event.COMPLETE]["progress"] == 100


def test_a_released_task_belongs_to_no_process_and_is_taken_by_the_next_claim(
    make_tracker: Callable[..., TaskTracker],
) -> None:
    """RELEASE keeps RUNNING and clears the runner; another runner's claim then takes it, a third's does not."""
    first, second, third = make_tracker(), make_tracker(), make_tracker()
    task = reach(first, S.RUNNING)
    assert second.workers.ledger.claim(task.id) is None, "held by a live runner: not taken"
    released = first.workers.ledger.transition(task.id, Event.RELEASE, message="attempt 2 queued")
    assert released.status is S.RUNNING and released.message == "attempt 2 queued"
    first.close()  # its runner's end does not take the released task with it
    assert second.get(task.id).status is S.RUNNING
    taken = second.workers.ledger.claim(task.id)
    assert taken is not None and taken.status is S.RUNNING
    assert third.workers.ledger.claim(task.id) is None
    second.close()  # now it was second's: DEAD with it
    assert third.get(task.id).status is S.DEAD
    assert third.workers.ledger.claim(task.id) is None
