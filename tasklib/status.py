"""The task status machine: the seven Jira statuses, the table of legal moves, what each move writes.

Every change to a task is an :class:`Event`. ``TRANSITIONS[status][event]`` is the
status the event leads to; an event missing from a status's row is illegal there.
``EFFECTS[event]`` is what the event writes besides the status. The storage
layer compiles each event's column of the table and its effects into one
compare-and-set ``UPDATE``, so this module is the only place the rules live.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["EFFECTS", "STATUS_BY_VALUE", "TRANSITIONS", "UNFINISHED", "Effect", "Event", "TaskStatus"]


class TaskStatus(str, enum.Enum):
    """The status of a task, as Jira's TaskProgressBeanObject names it."""

    ENQUEUED = "ENQUEUED"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    CANCEL_REQUESTED = "CANCEL_REQUESTED"
    CANCELLED = "CANCELLED"
    DEAD = "DEAD"

    @property
    def is_terminal(self) -> bool:
        """True for COMPLETE, FAILED, CANCELLED and DEAD: nothing can change such a task."""
        return not TRANSITIONS[self]

    def __str__(self) -> str:
        return self.value


class Event(str, enum.Enum):
    """Something that happens to a task."""

    START = "start"
    PROGRESS = "progress"
    CANCEL = "cancel"  # a cancel request from outside the task
    ACKNOWLEDGE_CANCEL = "acknowledge_cancel"  # the task's code gives up after a request
    COMPLETE = "complete"
    FAIL = "fail"
    DIE = "die"  # its runner vanished, or it went stale
    RELEASE = "release"  # a queue will run it again (a retry): no process holds it meanwhile

    def __str__(self) -> str:
        return self.value


_S = TaskStatus
_E = Event

TRANSITIONS: Mapping[TaskStatus, Mapping[Event, TaskStatus]] = MappingProxyType(
    {
        _S.ENQUEUED: MappingProxyType(
            {
                _E.START: _S.RUNNING,
                _E.PROGRESS: _S.RUNNING,
                _E.CANCEL: _S.CANCELLED,
                _E.COMPLETE: _S.COMPLETE,
                _E.FAIL: _S.FAILED,
                _E.DIE: _S.DEAD,
            }
        ),
        _S.RUNNING: MappingProxyType(
            {
                _E.PROGRESS: _S.RUNNING,
                _E.CANCEL: _S.CANCEL_REQUESTED,
                _E.COMPLETE: _S.COMPLETE,
                _E.FAIL: _S.FAILED,
                _E.DIE: _S.DEAD,
                _E.RELEASE: _S.RUNNING,
            }
        ),
        _S.CANCEL_REQUESTED: MappingProxyType(
            {
                # Progress keeps CANCEL_REQUESTED: a progress write never erases a cancel request.
                _E.PROGRESS: _S.CANCEL_REQUESTED,
                _E.CANCEL: _S.CANCEL_REQUESTED,
                _E.ACKNOWLEDGE_CANCEL: _S.CANCELLED,
                _E.COMPLETE: _S.COMPLETE,
                _E.FAIL: _S.FAILED,
                _E.DIE: _S.DEAD,
                _E.RELEASE: _S.CANCEL_REQUESTED,
            }
        ),
        _S.COMPLETE: MappingProxyType({}),
        _S.FAILED: MappingProxyType({}),
        _S.CANCELLED: MappingProxyType({}),
        _S.DEAD: MappingProxyType({}),
    }
)

#: Each status by its stored value: faster than ``TaskStatus(value)`` where rows become tasks.
STATUS_BY_VALUE: Mapping[str, TaskStatus] = {status.value: status for status in TaskStatus}

#: The stored values of the statuses a task can still leave: what liveness may
#: make DEAD and a purge never deletes.
UNFINISHED: frozenset[str] = frozenset(status.value for status in TaskStatus if not status.is_terminal)


class Effect(enum.Enum):
    """How an event writes one column, in :data:`EFFECTS`."""

    #: The value the event carries; None keeps the stored one.
    CARRIED = "carried"
    #: The value the event carries, only when none is stored yet: a task's first
    #: start time (the event's ``now``) and its runner are never replaced.
    FIRST = "first"


#: What each event writes besides the status, column by column: an :class:`Effect`,
#: or a constant (None writes NULL). Columns an event does not name keep what is stored. Every write
#: also sets ``last_update`` to its ``now``, and one that moves a task to a terminal
#: status sets ``finished`` to it.
EFFECTS: Mapping[Event, Mapping[str, Effect | int | None]] = MappingProxyType(
    {
        # Starting: the first start time, and the process that starts a task owns
        # it (if that process goes, the task is DEAD).
        _E.START: MappingProxyType(
            {"started": Effect.FIRST, "runner": Effect.FIRST, "progress": Effect.CARRIED, "message": Effect.CARRIED}
        ),
        _E.PROGRESS: MappingProxyType(
            {"started": Effect.FIRST, "runner": Effect.FIRST, "progress": Effect.CARRIED, "message": Effect.CARRIED}
        ),
        # A cancel request writes nothing but the status: it comes from outside the task.
        _E.CANCEL: MappingProxyType({}),
        # A task's last report rides on its final write instead of costing one more.
        _E.ACKNOWLEDGE_CANCEL: MappingProxyType({"progress": Effect.CARRIED, "message": Effect.CARRIED}),
        _E.COMPLETE: MappingProxyType({"progress": 100, "message": Effect.CARRIED, "result": Effect.CARRIED}),
        _E.FAIL: MappingProxyType({"progress": Effect.CARRIED, "message": Effect.CARRIED, "result": Effect.CARRIED}),
        _E.DIE: MappingProxyType({"progress": Effect.CARRIED, "message": Effect.CARRIED}),
        # A queue's retry is pending: the task stays RUNNING (or CANCEL_REQUESTED) and
        # belongs to no process until the attempt that takes it over (whichever worker
        # that is), so a worker that stops meanwhile does not take it down with it.
        _E.RELEASE: MappingProxyType({"runner": None, "progress": Effect.CARRIED, "message": Effect.CARRIED}),
    }
)


def moves(event: Event) -> dict[TaskStatus, TaskStatus]:
    """The column of the table for ``event``: each status it is legal in, and where it leads."""
    return {src: row[event] for src, row in TRANSITIONS.items() if event in row}


def writes(event: Event, src: TaskStatus) -> bool:
    """Whether ``event`` in status ``src`` changes the stored task.

    A move that keeps the status writes only when the event has effects (a
    progress report, a release); a repeated cancel request is a no-op, so
    ``lastUpdate`` stays put.
    """
    return TRANSITIONS[src][event] is not src or bool(EFFECTS[event])
