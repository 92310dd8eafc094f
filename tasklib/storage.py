"""The task store: tasklib's peewee models, bound to the database it is given.

This is the only module that imports peewee. Each store builds its own model
classes bound to its own database (as huey's SqlHuey and playhouse.kv do), so two
stores in one process never share state, and it touches no table but its own
``tasklib_*`` tables in a database it shares with the host.

peewee builds SQL anew for every query, which on SQLite costs far more than the
statement itself. So every statement on a hot path is built once here with named
placeholders, rendered by peewee for the database in use, and then executed with
parameters: portable, and near the speed of the driver.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any, Iterator, NamedTuple

import peewee
from peewee import SQL, Case, Value, fn
from playhouse import db_url
from playhouse.migrate import SchemaMigrator, migrate
from playhouse.pool import PooledDatabase

from .clock import now_ms
from .errors import StoreError
from .status import Event, TaskStatus, moves, writes

__all__ = ["Heartbeat", "Record", "Store", "SCHEMA_VERSION"]

#: The version of the tables this tasklib writes; stored in ``tasklib_meta``.
#: 1: tasks and meta. 2: the runner of each task, runners' heartbeats, leases.
SCHEMA_VERSION = 2

#: Pragmas of a SQLite database that tasklib opens itself. WAL lets readers run
#: beside the writer; synchronous=FULL makes every commit survive a power loss, not
#: only a crash; incremental auto-vacuum lets a purge give space back without a VACUUM.
SQLITE_PRAGMAS: tuple[tuple[str, Any], ...] = (
    ("auto_vacuum", "incremental"),  # first: it only takes before the file has its first page
    ("journal_mode", "wal"),
    ("synchronous", "full"),
)
#: Seconds a SQLite connection waits for another writer's lock before giving up.
SQLITE_BUSY_TIMEOUT = 10.0
#: Attempts of a write that SQLite refused as busy or locked before the caller is told.
WRITE_ATTEMPTS = 5

#: Purge batches are sized so that one takes about this long (seconds): long
#: enough to cost little per row, short enough that other writers barely wait.
PURGE_BATCH_SECONDS = 0.1
PURGE_BATCH_MIN, PURGE_BATCH_MAX = 500, 100_000

_UNFINISHED = [s.value for s in TaskStatus if not s.is_terminal]

# peewee's mapping of the driver's exceptions to its own, as execute_sql applies it.
_DRIVER_ERRORS = peewee.__exception_wrapper__  # type: ignore[attr-defined]


class Record(NamedTuple):
    """One stored task row."""

    id: int
    status: str
    description: str | None
    message: str | None
    result: str | None
    submitted_by: int
    progress: int
    submitted: int
    started: int | None
    finished: int | None
    last_update: int
    runner: str | None


class Heartbeat(NamedTuple):
    """The runner of a task, as last heard of; all None when its row is gone."""

    host: str | None
    pid: int | None
    beat: int | None


class _Param:
    """A named placeholder left in a query when it is built once, filled at each execution."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def _p(name: str) -> Value:
    # converter=False: peewee must pass the placeholder through untouched, not
    # coerce it with the column's db_value.
    return Value(_Param(name), converter=False)


class _Statement:
    """A query rendered once to (sql, params); :meth:`bind` fills the named placeholders."""

    __slots__ = ("sql", "_template", "_names")

    def __init__(self, query: peewee.Query) -> None:
        self.sql, params = query.sql()
        self._template = tuple(params)
        self._names = [(i, p.name) for i, p in enumerate(params) if isinstance(p, _Param)]

    def bind(self, values: dict[str, Any]) -> list[Any]:
        params = list(self._template)
        for i, name in self._names:
            params[i] = values[name]
        return params


class _SqliteAutoIncrement(peewee.AutoField):
    # Without AUTOINCREMENT SQLite may hand a purged task's id to a new task; an
    # id must keep meaning "not found" once its task is purged.
    def ddl(self, ctx: peewee.Context) -> peewee.NodeList:
        return peewee.NodeList((super().ddl(ctx), SQL("AUTOINCREMENT")))


class _Models(NamedTuple):
    Task: Any
    Meta: Any
    Runner: Any
    Lease: Any


def _models(db: peewee.Database) -> _Models:
    """tasklib's model classes, built anew and bound to ``db``."""
    id_field = _SqliteAutoIncrement() if isinstance(db, peewee.SqliteDatabase) else peewee.BigAutoField()

    class Base(peewee.Model):
        class Meta:
            database = db
            legacy_table_names = False

    class TaskRow(Base):
        id = id_field
        status = peewee.CharField(max_length=16)
        description = peewee.TextField(null=True)
        message = peewee.TextField(null=True)
        result = peewee.TextField(null=True)  # JSON text
        submitted_by = peewee.BigIntegerField()
        progress = peewee.SmallIntegerField()
        submitted = peewee.BigIntegerField()
        started = peewee.BigIntegerField(null=True)
        finished = peewee.BigIntegerField(null=True, index=True)  # set only once terminal
        last_update = peewee.BigIntegerField()
        runner = peewee.CharField(max_length=64, null=True, index=True)  # schema 2

        class Meta:
            table_name = "tasklib_task"
            # schema 2: unfinished tasks and lists by status; lists by submitter
            indexes = ((("status", "id"), False), (("submitted_by", "id"), False))

    class MetaRow(Base):
        key = peewee.CharField(max_length=64, primary_key=True)
        value = peewee.TextField()

        class Meta:
            table_name = "tasklib_meta"

    class RunnerRow(Base):
        token = peewee.CharField(max_length=64, primary_key=True)
        host = peewee.CharField(max_length=255)
        pid = peewee.IntegerField()
        started = peewee.BigIntegerField()
        heartbeat = peewee.BigIntegerField()

        class Meta:
            table_name = "tasklib_runner"

    class LeaseRow(Base):
        name = peewee.CharField(max_length=64, primary_key=True)
        owner = peewee.CharField(max_length=64, null=True)
        expires = peewee.BigIntegerField()

        class Meta:
            table_name = "tasklib_lease"

    return _Models(TaskRow, MetaRow, RunnerRow, LeaseRow)


def open_database(target: str | os.PathLike[str] | peewee.Database) -> tuple[peewee.Database, bool]:
    """The database for ``target`` and whether tasklib owns it (opened it itself).

    ``target`` is a peewee Database (the caller's, left configured as it is), a
    database URL as playhouse.db_url reads it, or a SQLite file path.
    """
    if isinstance(target, peewee.Database):
        return target, False
    if not isinstance(target, (str, os.PathLike)):
        raise TypeError(f"database must be a path, a URL or a peewee Database, not {type(target).__name__}")
    target = os.fspath(target)
    if not target:
        raise ValueError("database path is empty")
    if "://" not in target:
        return peewee.SqliteDatabase(target, pragmas=SQLITE_PRAGMAS, timeout=SQLITE_BUSY_TIMEOUT), True
    scheme = target.split("://", 1)[0]
    extra: dict[str, Any] = {}
    if scheme.startswith("sqlite"):
        extra = {"pragmas": SQLITE_PRAGMAS, "timeout": SQLITE_BUSY_TIMEOUT}
    elif scheme in ("postgres", "postgresql"):
        # Pooled: connections outlive the threads that borrow them; one unused for
        # five minutes is replaced rather than trusted.
        target = "postgresql+pool" + target[len(scheme):]
        extra = {"max_connections": 32, "stale_timeout": 300}
    try:
        return db_url.connect(target, **extra), True
    except (RuntimeError, ValueError, ImportError, peewee.ImproperlyConfigured) as exc:
        raise StoreError(f"cannot open the database {scheme}://...: {exc}") from exc


class _WriteGate:
    """Short writes pass side by side; a long write waits for them, then runs alone.

    Short writers of one process still take turns inside SQLite as usual; what the
    gate adds is that, while a long write runs, they wait on a condition and go the
    moment it ends, instead of sleeping in SQLite's busy handler. A waiting long
    write holds back new short ones, so it is not starved either.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._short = 0  # short writes under way
        self._long = False  # a long write under way
        self._long_waiting = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._long or self._long_waiting:
                self._cond.wait()
            self._short += 1
        try:
            yield
        finally:
            with self._cond:
                self._short -= 1
                if not self._short:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._long_waiting += 1
            while self._long or self._short:
                self._cond.wait()
            self._long_waiting -= 1
            self._long = True
        try:
            yield
        finally:
            with self._cond:
                self._long = False
                self._cond.notify_all()


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class Store:
    """The tasks of one tracker, in the database given.

    Raises StoreError when the database cannot be opened, is not a tasklib store
    tasklib can read, or a statement fails; a failed write changes nothing.
    """

    def __init__(self, target: str | os.PathLike[str] | peewee.Database) -> None:
        self.db, self._owned = open_database(target)
        self._is_sqlite = isinstance(self.db, peewee.SqliteDatabase)
        # A pooled connection goes back to the pool after each operation, so threads
        # that call in rarely do not each keep one.
        self._pooled = isinstance(self.db, PooledDatabase)
        self._m = _models(self.db)
        # While a long write of this process (a purge batch) runs, its short writes
        # wait at this gate rather than in SQLite's busy handler, which sleeps in steps
        # of up to 100 ms and so could starve them. A database server needs no gate.
        self._gate = _WriteGate() if self._is_sqlite else None
        self._ensure_schema()
        self._build_statements()

    @property
    def name(self) -> str:
        """The database's file name or name, for error messages."""
        return str(self.db.database)

    # -- schema -----------------------------------------------------------

    def _transaction(self) -> Any:
        # BEGIN IMMEDIATE takes SQLite's write lock up front, so two processes that
        # both read then write cannot deadlock each other into SQLITE_BUSY.
        if self._is_sqlite:
            return self.db.atomic("IMMEDIATE")
        return self.db.atomic()

    def _ensure_schema(self) -> None:
        m = self._m
        try:
            with self._transaction():
                if isinstance(self.db, peewee.PostgresqlDatabase):
                    # Two processes creating the tables at once would collide in the catalog.
                    self.db.execute_sql("SELECT pg_advisory_xact_lock(7261)")
                version = self._schema_version()
                if version is None:
                    self.db.create_tables([m.Task, m.Meta, m.Runner, m.Lease], safe=True)
                    m.Meta.insert(key="schema_version", value=str(SCHEMA_VERSION)).execute()
                elif version > SCHEMA_VERSION:
                    raise StoreError(
                        f"the store {self.name} was written by a newer tasklib "
                        f"(schema {version}; this tasklib reads schemas up to {SCHEMA_VERSION}); "
                        "upgrade tasklib to open it"
                    )
                elif version < SCHEMA_VERSION:
                    self._upgrade(version)
                m.Lease.insert(name="purge", owner=None, expires=0).on_conflict_ignore().execute()
        except peewee.DatabaseError as exc:
            raise StoreError(f"cannot open the store {self.name}: {exc}") from exc
        finally:
            if not self.db.is_closed() and (self._owned or self._pooled) and not self.db.in_transaction():
                self.db.close()  # this thread's connection; each thread opens its own

    def _schema_version(self) -> int | None:
        if not self.db.table_exists("tasklib_meta"):
            if self.db.table_exists("tasklib_task"):
                raise StoreError(f"the store {self.name} has tasklib tables but no schema version")
            return None
        row = self._m.Meta.get_or_none(self._m.Meta.key == "schema_version")
        if row is None or not row.value.isdigit():
            raise StoreError(f"the store {self.name} has no readable schema version")
        return int(row.value)

    def _upgrade(self, version: int) -> None:
        """Bring a store of an older schema to this one, in the open transaction."""
        m = self._m
        migrator = SchemaMigrator.from_database(self.db)
        if version < 2:
            migrate(
                migrator.add_column("tasklib_task", "runner", m.Task.runner),  # indexed, as the field says
                migrator.add_index("tasklib_task", ("status", "id"), False),
                migrator.add_index("tasklib_task", ("submitted_by", "id"), False),
            )
            self.db.create_tables([m.Runner, m.Lease], safe=True)
        m.Meta.update(value=str(SCHEMA_VERSION)).where(m.Meta.key == "schema_version").execute()

    # -- statements -------------------------------------------------------

    def _build_statements(self) -> None:
        T, R, L = self._m.Task, self._m.Runner, self._m.Lease
        cols = [T.id, T.status, T.description, T.message, T.result, T.submitted_by,
                T.progress, T.submitted, T.started, T.finished, T.last_update, T.runner]
        self._insert = _Statement(
            T.insert(
                status=TaskStatus.ENQUEUED.value,
                description=_p("description"),
                submitted_by=_p("submitted_by"),
                progress=0,
                submitted=_p("now"),
                last_update=_p("now"),
                runner=_p("runner"),
            ).returning(*cols)
        )
        self._select = _Statement(
            T.select(*cols, R.host, R.pid, R.heartbeat)
            .join(R, peewee.JOIN.LEFT_OUTER, on=(T.runner == R.token))
            .where(T.id == _p("id"))
        )
        # Newest first, paged by id: one statement per combination of filters, each
        # served by an index ending in id, so a page never scans the table.
        self._lists = {}
        for by_status in (False, True):
            for by_user in (False, True):
                query = (
                    T.select(*cols, R.host, R.pid, R.heartbeat)
                    .join(R, peewee.JOIN.LEFT_OUTER, on=(T.runner == R.token))
                    .where(T.id < _p("before"))
                )
                if by_status:
                    query = query.where(T.status == _p("status"))
                if by_user:
                    query = query.where(T.submitted_by == _p("submitted_by"))
                self._lists[by_status, by_user] = _Statement(query.order_by(T.id.desc()).limit(_p("limit")))
        by_id = (T.id == _p("id"),)
        self._events = {event: _Statement(self._transition(event, by_id).returning(*cols)) for event in Event}
        self._kill_runner = _Statement(self._transition(Event.DIE, (T.runner == _p("runner"),)))
        self._kill_stale = _Statement(
            self._transition(Event.DIE, (T.runner.is_null(), T.last_update < _p("cutoff")))
        )
        # Purging walks the ids of the expired tasks in ranges: tasks finish roughly
        # in id order, so a range is a run of neighbouring rows, deleted as cheaply as
        # one big DELETE would, but in short transactions. Only finished tasks have a
        # finished time; the status test keeps an unfinished task safe even so, and,
        # written NOT IN, cannot draw the planner off the id range.
        self._purge_span = _Statement(
            T.select(fn.MIN(T.id), fn.MAX(T.id)).where(T.finished < _p("cutoff"))
        )
        self._expired = _Statement(
            T.select(fn.COUNT(T.id)).where(T.finished < _p("cutoff"), T.status.not_in(_UNFINISHED))
        )
        self._purge = _Statement(
            T.delete().where(
                T.id >= _p("low"),
                T.id < _p("high"),
                T.finished < _p("cutoff"),
                T.status.not_in(_UNFINISHED),
            )
        )
        self._runner_insert = _Statement(
            R.insert(token=_p("token"), host=_p("host"), pid=_p("pid"), started=_p("now"), heartbeat=_p("now"))
        )
        self._heartbeat = _Statement(R.update(heartbeat=_p("now")).where(R.token == _p("token")))
        self._runner_delete = _Statement(R.delete().where(R.token == _p("token")))
        self._runners_dead = _Statement(
            R.select(R.token, R.host, R.pid).where(R.heartbeat < _p("cutoff"), R.token != _p("token"))
        )
        self._runners_on_host = _Statement(
            R.select(R.token, R.pid).where(R.host == _p("host"), R.token != _p("token"))
        )
        self._lease_take = _Statement(
            L.update(owner=_p("owner"), expires=_p("expires"))
            .where(L.name == _p("name"), (L.expires < _p("now")) | (L.owner == _p("owner")))
        )
        self._lease_drop = _Statement(
            L.update(owner=None, expires=0).where(L.name == _p("name"), L.owner == _p("owner"))
        )

    def _transition(self, event: Event, where: tuple[Any, ...]) -> peewee.ModelUpdate:
        """One compare-and-set UPDATE for ``event``, read off the status table."""
        T = self._m.Task
        move = {src: dst for src, dst in moves(event).items() if writes(event, src)}
        targets = set(move.values())
        now = _p("now")
        if len(targets) == 1:
            status: Any = next(iter(targets)).value
        else:
            status = Case(T.status, [(src.value, dst.value) for src, dst in move.items()])
        updates: dict[Any, Any] = {T.status: status, T.last_update: now}
        if TaskStatus.RUNNING in targets:
            updates[T.started] = fn.COALESCE(T.started, now)
        finishing = [src.value for src, dst in move.items() if dst.is_terminal]
        if len(finishing) == len(move):
            updates[T.finished] = now
        elif finishing:
            updates[T.finished] = Case(None, [(T.status.in_(finishing), now)], T.finished)
        # Only the fields an event carries; a None message or progress keeps the one stored.
        if event is Event.COMPLETE:
            updates[T.progress] = 100
        elif event is not Event.CANCEL:
            # A task's last report rides on its final write instead of costing one more.
            updates[T.progress] = fn.COALESCE(_p("progress"), T.progress)
        if event in (Event.COMPLETE, Event.FAIL):
            updates[T.result] = fn.COALESCE(_p("result"), T.result)
        if event is not Event.CANCEL:
            updates[T.message] = fn.COALESCE(_p("message"), T.message)
        return T.update(updates).where(*where, T.status.in_([src.value for src in move]))

    # -- running statements -----------------------------------------------

    def _writing(self, *, exclusive: bool = False) -> Any:
        if self._gate is None:
            return contextlib.nullcontext()
        return self._gate.exclusive() if exclusive else self._gate.shared()

    def _rows(self, stmt: _Statement, values: dict[str, Any]) -> list[tuple[Any, ...]]:
        # Reads go to the driver's cursor under peewee's exception mapping, skipping
        # execute_sql's logging and hooks: on the get() path they cost as much as SQLite.
        try:
            with _DRIVER_ERRORS:
                cursor = self.db.cursor()
                try:
                    cursor.execute(stmt.sql, stmt.bind(values))
                    return cursor.fetchall()
                finally:
                    cursor.close()
        except peewee.DatabaseError as exc:
            raise StoreError(f"the store {self.name} could not run a statement: {exc}") from exc
        finally:
            self._release()

    def _release(self) -> None:
        if self._pooled and not self.db.in_transaction():
            self.db.close()

    def _write(self, stmt: _Statement, values: dict[str, Any]) -> tuple[list[tuple[Any, ...]], int]:
        """Run a write statement: its rows (RETURNING) and its row count.

        A write SQLite refuses as busy is tried again a few times, then reported as
        StoreError; either way, a write that failed changed nothing.
        """
        params = stmt.bind(values)
        for attempt in range(WRITE_ATTEMPTS):
            try:
                with self._writing(exclusive=stmt is self._purge):
                    cursor = self.db.execute_sql(stmt.sql, params)
                    try:
                        # Fetch every row: an UPDATE ... RETURNING is not finished, nor its
                        # autocommit transaction committed, until its cursor is exhausted.
                        rows = cursor.fetchall() if cursor.description else []
                        return rows, self.db.rows_affected(cursor)
                    finally:
                        cursor.close()
                        self._release()
            except peewee.OperationalError as exc:
                if _is_busy(exc) and attempt + 1 < WRITE_ATTEMPTS:
                    time.sleep(0.05 * 2**attempt)
                    continue
                raise StoreError(f"the store {self.name} could not be written: {exc}") from exc
            except peewee.DatabaseError as exc:
                raise StoreError(f"the store {self.name} could not be written: {exc}") from exc
        raise AssertionError("unreachable")

    # -- tasks --------------------------------------------------------------

    def insert(self, *, description: str | None, submitted_by: int, now: int, runner: str | None = None) -> Record:
        """Add an ENQUEUED task and give back its row."""
        values = {"description": description, "submitted_by": submitted_by, "now": now, "runner": runner}
        rows, _ = self._write(self._insert, values)
        return Record._make(rows[0])

    def fetch(self, task_id: int) -> tuple[Record, Heartbeat] | None:
        """The row of task ``task_id`` and its runner's last heartbeat, or None."""
        rows = self._rows(self._select, {"id": task_id})
        if not rows:
            return None
        row = rows[0]
        return Record._make(row[:12]), Heartbeat._make(row[12:])

    def page(
        self, *, status: str | None, submitted_by: int | None, before: int, limit: int
    ) -> list[tuple[Record, Heartbeat]]:
        """Up to ``limit`` tasks with ids below ``before``, newest first, filtered when given."""
        stmt = self._lists[status is not None, submitted_by is not None]
        rows = self._rows(stmt, {"status": status, "submitted_by": submitted_by, "before": before, "limit": limit})
        return [(Record._make(row[:12]), Heartbeat._make(row[12:])) for row in rows]

    def apply(self, task_id: int, event: Event, now: int, **data: Any) -> Record | None:
        """Apply ``event`` if the task's status allows it, in one compare-and-set statement.

        Returns the changed row, or None when nothing was written (no such task,
        or its status does not allow a write for ``event``; :meth:`fetch` tells which).
        ``data`` gives the event's fields: progress, message, result.
        """
        values = {"id": task_id, "now": now, "progress": None, "message": None, "result": None}
        values.update(data)
        rows, _ = self._write(self._events[event], values)
        return Record._make(rows[0]) if rows else None

    def count_expired(self, cutoff: int) -> int:
        """How many tasks :meth:`purge` with this ``cutoff`` would delete now."""
        return int(self._rows(self._expired, {"cutoff": cutoff})[0][0])

    def purge(self, cutoff: int, *, lease: tuple[str, int] | None = None) -> int:
        """Delete terminal tasks finished before ``cutoff``, a short transaction per batch.

        Batches are id ranges sized to take about PURGE_BATCH_SECONDS each, and the
        write lock is let go between them so other writers get their turn. With
        ``lease=(owner, ttl_ms)`` the purge lease is renewed at every batch.
        """
        low, last = self._rows(self._purge_span, {"cutoff": cutoff})[0]
        if low is None:
            return 0
        with self._checkpoint_at_end():
            return self._purge_range(cutoff, low, last, lease)

    @contextlib.contextmanager
    def _checkpoint_at_end(self) -> Iterator[None]:
        # Left on, SQLite checkpoints the WAL into the file every 1000 pages, which
        # here means dozens of times; once at the end costs the same as one DELETE's.
        if not self._is_sqlite:
            yield
            return
        self.db.execute_sql("PRAGMA wal_autocheckpoint = 0")
        try:
            yield
        finally:
            self.db.execute_sql("PRAGMA wal_autocheckpoint = 1000")
            with self._writing(exclusive=True):
                self.db.execute_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _purge_range(self, cutoff: int, low: int, last: int, lease: tuple[str, int] | None) -> int:
        total, span = 0, PURGE_BATCH_MIN
        while low <= last:
            began = time.monotonic()
            _, count = self._write(self._purge, {"cutoff": cutoff, "low": low, "high": low + span})
            took = time.monotonic() - began
            total += count
            low += span
            if lease is not None:
                self.take_lease("purge", lease[0], now=now_ms(), ttl_ms=lease[1])
            scale = PURGE_BATCH_SECONDS / max(took, 1e-4)
            span = int(min(PURGE_BATCH_MAX, max(PURGE_BATCH_MIN, span * min(scale, 2.0))))
            time.sleep(0.001)  # let a waiting writer of this process take the lock
        return total

    def reclaim(self) -> None:
        """Give freed space back to the file system: incremental vacuum, then a WAL checkpoint.

        SQLite only; never a full VACUUM, which would lock the file for its whole run.
        """
        if not self._is_sqlite:
            return
        incremental = self.db.execute_sql("PRAGMA auto_vacuum").fetchone()[0] == 2
        while incremental:
            with self._writing(exclusive=True):
                if not self.db.execute_sql("PRAGMA freelist_count").fetchone()[0]:
                    break
                # A bounded step per transaction, so other writers wait for one step at most.
                # executescript: sqlite3's execute() steps this pragma once, freeing one page.
                self.db.connection().executescript("PRAGMA incremental_vacuum(2000);")
            time.sleep(0.001)
        with self._writing(exclusive=True):
            self.db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    # -- runners --------------------------------------------------------------

    def add_runner(self, token: str, host: str, pid: int, now: int) -> None:
        """Record a runner (one tracker's worker pool) and its first heartbeat."""
        self._write(self._runner_insert, {"token": token, "host": host, "pid": pid, "now": now})

    def heartbeat(self, token: str, now: int) -> bool:
        """Renew a runner's heartbeat; False if its row is gone (it was declared dead)."""
        _, count = self._write(self._heartbeat, {"token": token, "now": now})
        return count == 1

    def remove_runner(self, token: str) -> None:
        self._write(self._runner_delete, {"token": token})

    def dead_runners(self, cutoff: int, *, me: str) -> list[tuple[str, str, int]]:
        """Runners other than ``me`` whose last heartbeat is older than ``cutoff``: (token, host, pid)."""
        return [tuple(r) for r in self._rows(self._runners_dead, {"cutoff": cutoff, "token": me})]

    def runners_on_host(self, host: str, *, me: str) -> list[tuple[str, int]]:
        """Runners other than ``me`` recorded on ``host``: (token, pid)."""
        return [tuple(r) for r in self._rows(self._runners_on_host, {"host": host, "token": me})]

    def bury_runner(self, token: str, message: str, now: int) -> int:
        """Mark every unfinished task of a runner DEAD and forget the runner, in one transaction."""
        with self._writing():
            try:
                with self._transaction():
                    cursor = self.db.execute_sql(
                        self._kill_runner.sql,
                        self._kill_runner.bind({"runner": token, "now": now, "message": message,
                                                "progress": None, "result": None}),
                    )
                    count = self.db.rows_affected(cursor)
                    self.db.execute_sql(self._runner_delete.sql, self._runner_delete.bind({"token": token}))
                    return int(count)
            except peewee.DatabaseError as exc:
                raise StoreError(f"the store {self.name} could not be written: {exc}") from exc
            finally:
                self._release()

    def bury_stale(self, cutoff: int, message: str, now: int) -> int:
        """Mark DEAD the unfinished tasks with no runner whose last update is older than ``cutoff``."""
        values = {"cutoff": cutoff, "now": now, "message": message, "progress": None, "result": None}
        _, count = self._write(self._kill_stale, values)
        return count

    # -- leases ---------------------------------------------------------------

    def take_lease(self, name: str, owner: str, *, now: int, ttl_ms: int) -> bool:
        """Take (or renew) the lease ``name`` for ``owner`` until ``now + ttl_ms``; False if another holds it."""
        _, count = self._write(self._lease_take, {"name": name, "owner": owner, "now": now, "expires": now + ttl_ms})
        return count == 1

    def drop_lease(self, name: str, owner: str) -> None:
        self._write(self._lease_drop, {"name": name, "owner": owner})

    def close(self) -> None:
        """Close the connections of a database tasklib opened itself (a pool: all of them)."""
        if not self._owned:
            return
        if isinstance(self.db, PooledDatabase):
            self.db.close_all()
        elif not self.db.is_closed():
            self.db.close()
