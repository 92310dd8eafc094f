"""Runners, and the rules that make a task DEAD when its runner is gone.

A runner is one open tracker in one process: a host name, a process id and a
random token (a pid alone is reused by the operating system), registered in the
store's runner table with a heartbeat. A task started through a tracker records
that tracker's runner token; when the runner stops renewing its heartbeat, or its
process no longer exists, or its tracker closes, its unfinished tasks become DEAD.
With ``stale_after`` set, a host-driven task no runner owns also becomes DEAD
once it has not been updated for that long.

Every rule takes ``now`` (epoch milliseconds) as an argument; heartbeats are
written and aged on the store's clock, never by comparing two hosts' clocks.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from .errors import TaskNotFound
from .status import UNFINISHED, Event
from .telemetry import log

if TYPE_CHECKING:
    from .storage import Heartbeat, Record, Store

__all__ = ["Liveness", "Runner", "gone_message", "process_exists"]

_MS = timedelta(milliseconds=1)


@dataclass(frozen=True)
class Runner:
    """This process's identity in the store: one open tracker's runner row."""

    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def label(self) -> str:
        """``host:pid``, as messages and logs name a runner."""
        return f"{self.host}:{self.pid}"


def process_exists(pid: int) -> bool:
    """Whether a process with this id exists on this host (POSIX)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by another user
    except OSError:
        return True  # cannot tell: assume alive, the heartbeat age decides
    return True


def gone_message(label: str) -> str:
    """The message of a task whose runner ``label`` (``host:pid``) stopped heartbeating."""
    return f"runner {label} stopped responding"


class Liveness:
    """The DEAD rules of one tracker's runner on one store.

    ``alive`` is whether this runner is registered and heartbeating (its tracker
    is open): its own tasks are never dead to it then. ``buried``, when set, is
    called with the rows each bulk round (a sweep, a neighbour's or this runner's
    burial) made DEAD and its ``now``, after the write committed.
    """

    def __init__(self, store: Store, runner: Runner, *, dead_after: timedelta, stale_after: timedelta | None) -> None:
        self.store = store
        self.runner = runner
        self.dead_after = dead_after
        self.stale_after = stale_after
        self.alive = False
        self.buried: Callable[[list[Record], int], None] | None = None

    def _bury(self, records: list[Record], now: int) -> int:
        if records and self.buried is not None:
            self.buried(records, now)
        return len(records)

    def register(self) -> None:
        """Record this runner and its first heartbeat; StoreError."""
        self.store.add_runner(self.runner.token, self.runner.host, self.runner.pid)

    def stale_message(self) -> str:
        """The message of a host-driven task that went stale."""
        return f"no update for {self.stale_after}: its host code stopped reporting"

    def why_dead(self, record: Record, beat: Heartbeat, now: int) -> str | None:
        """Why the unfinished task ``record`` is dead at ``now``, or None while it is alive.

        ``beat`` is its runner's heartbeat, read with the row on the store's clock.
        """
        if record.runner is not None:
            if record.runner == self.runner.token and self.alive:
                return None  # ours, and we are alive
            if beat.beat is None:
                return "its runner stopped responding"
            if beat.beat < beat.clock - self.dead_after // _MS:  # both on the store's clock
                return gone_message(f"{beat.host}:{beat.pid}")
            return None
        if self.stale_after is not None and record.last_update < now - self.stale_after // _MS:
            return self.stale_message()
        return None

    def reconcile(self, record: Record, beat: Heartbeat, now: int) -> Record:
        """The record, made DEAD first if its runner is gone: a reader never sees a dead task alive.

        Raises TaskNotFound if the task was deleted meanwhile, StoreError.
        """
        while record.status in UNFINISHED:
            why = self.why_dead(record, beat, now)
            if why is None:
                break
            dead = self.store.apply(record.id, Event.DIE, now, message=why)
            if dead is not None:
                return dead
            found = self.store.fetch(record.id)  # it moved meanwhile: judge it again
            if found is None:
                raise TaskNotFound(str(record.id))
            record, beat = found
        return record

    def sweep(self, now: int, *, shift_ms: int = 0) -> int:
        """Mark DEAD the unfinished tasks of silent runners (and stale ones); how many.

        ``shift_ms`` moves the store's clock for judging heartbeats: a caller judging
        at a ``now`` later than this process's clock passes the difference.
        """
        count = 0
        dead = self.store.dead_runners(self.dead_after // _MS, me=self.runner.token, shift_ms=shift_ms)
        for token, host, pid in dead:
            count += self._bury(self.store.bury_runner(token, gone_message(f"{host}:{pid}"), now), now)
        if self.stale_after is not None:
            count += self._bury(self.store.bury_stale(now - self.stale_after // _MS, self.stale_message(), now), now)
        return count

    def bury_vanished_neighbours(self, now: int) -> list[Record]:
        """Mark DEAD the tasks of the runners on this host whose process no longer exists; those tasks.

        ``buried`` is not called: the caller announces them (its tracker's open()
        does, once it no longer holds its lock, so a hook may call the tracker).
        """
        buried: list[Record] = []
        for token, pid in self.store.runners_on_host(self.runner.host, me=self.runner.token):
            if not process_exists(pid):
                message = f"runner {self.runner.host}:{pid} is no longer running"
                buried += self.store.bury_runner(token, message, now)
        return buried

    def heartbeat_round(self, now: int) -> int:
        """The heartbeat job: renew this runner's heartbeat, then sweep; how many tasks became DEAD."""
        if not self.store.heartbeat(self.runner.token):
            # Declared dead by another process (we were silent too long): our running
            # tasks were marked DEAD and stop at their next report; carry on as new.
            label = self.runner.label
            log(logging.WARNING, "runner %s was declared dead; registering again", label, runner=label)
            self.register()
        return self.sweep(now)

    def bury_self(self, message: str, now: int) -> int:
        """End this runner: its unfinished tasks become DEAD with ``message``; StoreError."""
        self.alive = False
        return self._bury(self.store.bury_runner(self.runner.token, message, now), now)
