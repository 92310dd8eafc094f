"""The task status machine: the seven Jira statuses and the one table of legal moves.

Every change to a task is an :class:`Event`. ``TRANSITIONS[status][event]`` is the
status the event leads to; an event missing from a status's row is illegal there.
The storage layer turns each event's column of this table into one compare-and-set
``UPDATE``, so this table is the only place the rules live.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["TRANSITIONS", "UNFINISHED", "Event", "TaskStatus"]


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
            }
        ),
        _S.COMPLETE: MappingProxyType({}),
        _S.FAILED: MappingProxyType({}),
        _S.CANCELLED: MappingProxyType({}),
        _S.DEAD: MappingProxyType({}),
    }
)

#: The stored values of the statuses a task can still leave: what liveness may
#: make DEAD and a purge never deletes.
UNFINISHED: frozenset[str] = frozenset(status.value for status in TaskStatus if not status.is_terminal)


def moves(event: Event) -> dict[TaskStatus, TaskStatus]:
    """The column of the table for ``event``: each status it is legal in, and where it leads."""
    return {src: row[event] for src, row in TRANSITIONS.items() if event in row}


def writes(event: Event, src: TaskStatus) -> bool:
    """Whether ``event`` in status ``src`` changes the stored task.

    A move that keeps the status writes only when it carries data (a progress
    report); a repeated cancel request is a no-op, so ``lastUpdate`` stays put.
    """
    return TRANSITIONS[src][event] is not src or event is Event.PROGRESS
