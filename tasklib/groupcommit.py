"""Group commit: writes that meet on one SQLite store are committed together.

SQLite lets one connection write at a time. When threads of one process write at
once, all but one would wait in SQLite's busy handler, which sleeps in steps of
1 to 100 ms, and each would then pay a commit of its own: a WAL append of every
page it touched (and a sync of the WAL under ``synchronous=FULL``). Instead the
first writer leads: it runs its write at once, alone. Writers that come while it
runs queue behind it, and the leader then commits every queued write in one
transaction, on its own connection, as long as writes keep queueing (up to
``LEAD_BATCHES`` batches, after which the first queued writer leads on). A
writer returns only once its write is committed, so a batch acknowledges nothing
earlier than a write of its own would.

A write that fails in a batch undoes the batch, whose writes then run again one
by one, each in its own transaction: every caller gets the outcome its write
alone would have had, and a rejected write changes nothing. A leader interrupted
(KeyboardInterrupt) while it commits other threads' writes undoes what it has not
committed and hands those writes on to the next leader; only its own caller sees
the interrupt.

A write nobody waits for (:meth:`GroupCommit.write_detached`: a task's final
write, whose worker goes on to its next task) is queued only behind a write
under way, and the leader tells its outcome to a callback. It never leads: when
only such writes are left to hand on (the leader was interrupted, its own write
failed, or it has led its share of batches), they are given back unwritten, and
their callbacks have them written again.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any

from .telemetry import log

__all__ = ["GroupCommit"]

#: What a write gives back: its rows (an INSERT or UPDATE ... RETURNING) and row count.
Outcome = tuple[list[tuple[Any, ...]], int]
#: Told the outcome of a detached write once it is committed, or None: nothing was written.
Settled = Callable[[Outcome | None], None]

#: How many batches one writer commits in a row, its own first, before it hands the
#: lead to the first writer queued: the thread that already holds the GIL and the
#: connection goes on while writes keep coming, yet no caller waits on others for long.
LEAD_BATCHES = 8


class _Write:
    """One queued write, and the lock its caller waits on until it is done or leads."""

    __slots__ = ("after", "batch", "done", "error", "outcome", "params", "settled", "sql", "then")

    def __init__(self, sql: str, params: Sequence[Any], then: Settled | None = None) -> None:
        self.sql = sql
        self.params = params
        self.outcome: Outcome = ([], 0)
        self.error: Exception | None = None
        self.settled = False  # its outcome or error is set
        self.done = threading.Lock()
        self.done.acquire()
        self.batch: list[_Write] | None = None  # set when this write's thread is to lead them
        self.after: _Write | None = None  # the next writer of its batch, whom this one wakes
        self.then = then  # set for a detached write: nobody waits on ``done``

    def result(self) -> Outcome:
        if self.error is not None:
            raise self.error
        return self.outcome


def _run_one(conn: sqlite3.Connection, write: _Write) -> None:
    # In autocommit mode: one statement, one transaction.
    try:
        cursor = conn.execute(write.sql, write.params)
        # Every row: an UPDATE ... RETURNING is not finished, nor committed, until read.
        write.outcome = (cursor.fetchall(), cursor.rowcount)
    except Exception as exc:
        write.error = exc
    write.settled = True


def _wake(batch: list[_Write], leader: _Write | None) -> None:
    """Let the writers of a settled batch go, but the ``leader``'s own; tell the detached writes' callbacks.

    Each woken writer wakes the next (see :meth:`GroupCommit.write`): waking a
    thread is a system call, and the leader, which may be the busiest thread of
    the host (a loop submitting tasks), makes one, not one per writer.
    """
    if leader is None and len(batch) == 1 and batch[0].then is None:  # the usual batch: one other thread's write
        batch[0].done.release()
        return
    waiting = [write for write in batch if write is not leader and write.then is None]
    for write, after in itertools.pairwise(waiting):
        write.after = after
    if waiting:
        waiting[0].done.release()
    for write in batch:
        if write.then is not None:
            _tell(write, None if write.error is not None else write.outcome)


def _tell(write: _Write, outcome: Outcome | None) -> None:
    assert write.then is not None
    try:
        write.then(outcome)
    except Exception:  # the write stands (or was not made); the leader's own caller must not see this
        log(logging.ERROR, "a detached write's callback failed", exc_info=True)


def _settle(batch: list[_Write], outcomes: list[Outcome]) -> None:
    for write, outcome in zip(batch, outcomes, strict=True):
        write.outcome = outcome
        write.settled = True


class GroupCommit:
    """The writes of one store's threads, committed in batches when they meet.

    ``connection()`` gives the calling thread's own connection, in autocommit
    mode. Each thread may have one write under way at a time (a thread waits
    for its own write), which is how every caller of a store uses it.
    """

    def __init__(self, connection: Callable[[], sqlite3.Connection]) -> None:
        self._connection = connection
        self._lock = threading.Lock()
        self._leading = False
        self._queued: list[_Write] = []

    @property
    def leading(self) -> bool:
        """Whether a write is being committed now: a hint, read without the lock."""
        return self._leading

    @property
    def waiting(self) -> int:
        """How many writes are queued behind the one being committed now."""
        with self._lock:
            return len(self._queued)

    def write(self, sql: str, params: Sequence[Any]) -> Outcome:
        """Run one write statement, committed when this returns: its rows and row count.

        Raises what the driver raised for this statement.
        """
        conn = self._connection()
        if conn.in_transaction:
            # Part of a transaction of the caller's own: it commits with it, not with a batch.
            cursor = conn.execute(sql, params)
            return cursor.fetchall(), cursor.rowcount
        lock = self._lock
        with lock:
            leading = self._leading
            if leading:
                mine = _Write(sql, params)
                self._queued.append(mine)
            else:
                self._leading = True
        if not leading:
            # The lead: this write at once, alone, then what queued behind it.
            try:
                cursor = conn.execute(sql, params)
                # Every row: an UPDATE ... RETURNING is not finished, nor committed, until read.
                outcome = cursor.fetchall(), cursor.rowcount
            except BaseException:
                self._hand_on(self._take())
                raise
            with lock:  # what _take does, inline for the usual case: nothing queued
                queued = self._queued
                if not queued:
                    self._leading = False
                    return outcome
                self._queued = []
            self._lead(conn, queued, LEAD_BATCHES - 1, None)
            return outcome
        mine.done.acquire()  # released when done (by the leader or the writer before), or to lead
        if mine.batch is not None:
            self._lead(conn, mine.batch, LEAD_BATCHES, mine)
        elif mine.after is not None:
            mine.after.done.release()
        return mine.result()

    def write_detached(self, sql: str, params: Sequence[Any], then: Settled) -> bool:
        """Queue one write behind the write under way, and return at once; False, queueing nothing, if none is.

        The thread committing the batch calls ``then(outcome)`` once the write is
        committed, or ``then(None)`` when it was not written (it failed alone, or
        was given back unwritten); ``then`` must be quick. With no write under way
        the caller writes it with :meth:`write`: no other thread would commit it
        sooner. Not for a write inside a transaction of the caller's own, which
        must commit with it.
        """
        with self._lock:
            if not self._leading:
                return False
            self._queued.append(_Write(sql, params, then))
        return True

    def _take(self, unsettled: Sequence[_Write] = ()) -> list[_Write]:
        """``unsettled`` and the writes queued now, which the caller is to lead; with none, the lead is given up."""
        with self._lock:
            queued, self._queued = [*unsettled, *self._queued], []
            if not queued:
                self._leading = False
        return queued

    def _hand_on(self, queued: list[_Write]) -> None:
        """Give the lead to the first writer waiting in ``queued``, to lead them all, on its own thread.

        Detached writes cannot lead: while no writer waits, they are given back
        unwritten (their callbacks write them again) and what queued meanwhile
        is looked at, until a writer takes the lead or none is left.
        """
        while queued:
            for write in queued:
                if write.then is None:
                    write.batch = queued
                    write.done.release()
                    return
            for write in queued:
                _tell(write, None)
            queued = self._take()

    def _lead(self, conn: sqlite3.Connection, batch: list[_Write], batches: int, mine: _Write | None) -> None:
        """Commit ``batch``, then what queues meanwhile, up to ``batches`` batches; then hand the lead on.

        ``mine`` is the leader's own write when ``batch`` holds it (it is not woken), else None.
        """
        for _ in range(batches):
            try:
                self._run(conn, batch)
            except BaseException:
                # Interrupted: the writes it settled go; the others (undone) are led
                # by the next writer, with what queued meanwhile.
                _wake([write for write in batch if write.settled], mine)
                self._hand_on(self._take([write for write in batch if not write.settled and write is not mine]))
                raise
            _wake(batch, mine)
            mine = None
            batch = self._take()
            if not batch:
                return
        self._hand_on(batch)

    @staticmethod
    def _run(conn: sqlite3.Connection, batch: list[_Write]) -> None:
        if len(batch) == 1:
            _run_one(conn, batch[0])
            return
        outcomes: list[Outcome] = []
        try:
            # IMMEDIATE: the write lock up front, as every write transaction of the store takes it.
            conn.execute("BEGIN IMMEDIATE")
            for write in batch:
                cursor = conn.execute(write.sql, write.params)
                outcomes.append((cursor.fetchall(), cursor.rowcount))
            conn.execute("COMMIT")
        except Exception:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            # Each write again on its own: each gets the outcome it alone would have.
            for write in batch:
                _run_one(conn, write)
            return
        except BaseException:
            # Interrupted: undone if not yet committed (its writes stay unsettled, for
            # the next leader); committed if it got as far, and then settled.
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            elif len(outcomes) == len(batch):
                _settle(batch, outcomes)
            raise
        _settle(batch, outcomes)
