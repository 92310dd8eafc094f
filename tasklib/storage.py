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

import os
import threading
from typing import Any, Callable, Iterable, NamedTuple

import peewee
from peewee import SQL, Case, Value, fn
from playhouse import db_url

from .errors import StoreError
from .status import Event, TaskStatus, moves, writes

__all__ = ["Record", "Store", "SCHEMA_VERSION"]

#: The version of the tables this tasklib writes; stored in ``tasklib_meta``.
SCHEMA_VERSION = 1

#: Pragmas of a SQLite database that tasklib opens itself. WAL lets readers run
#: beside the writer; synchronous=FULL makes every commit survive a power loss, not
#: only a crash; incremental auto-vacuum lets a purge give space back without a VACUUM.
SQLITE_PRAGMAS: tuple[tuple[str, Any], ...] = (
    ("journal_mode", "wal"),
    ("synchronous", "full"),
    ("auto_vacuum", "incremental"),
    ("foreign_keys", 1),
)
#: Seconds a SQLite connection waits for another writer's lock before giving up.
SQLITE_BUSY_TIMEOUT = 10.0

PURGE_BATCH = 1000

_TERMINAL = [s.value for s in TaskStatus if s.is_terminal]


class Record(NamedTuple):
    """One stored task row, columns in :data:`_COLUMNS` order."""

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
    """A query rendered once to (sql, params); :meth:`run` fills the named placeholders."""

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


def _models(db: peewee.Database) -> tuple[type[peewee.Model], type[peewee.Model]]:
    """tasklib's model classes, built anew and bound to ``db``."""
    id_field = _SqliteAutoIncrement() if isinstance(db, peewee.SqliteDatabase) else peewee.BigAutoField()

    class TaskRow(peewee.Model):
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

        class Meta:
            database = db
            table_name = "tasklib_task"
            legacy_table_names = False

    class MetaRow(peewee.Model):
        key = peewee.CharField(max_length=64, primary_key=True)
        value = peewee.TextField()

        class Meta:
            database = db
            table_name = "tasklib_meta"
            legacy_table_names = False

    return TaskRow, MetaRow


def open_database(target: str | peewee.Database) -> tuple[peewee.Database, bool]:
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
    if "://" in target:
        scheme = target.split("://", 1)[0]
        extra: dict[str, Any] = {}
        if scheme.startswith("sqlite"):
            extra = {"pragmas": SQLITE_PRAGMAS, "timeout": SQLITE_BUSY_TIMEOUT}
        try:
            return db_url.connect(target, **extra), True
        except (RuntimeError, ValueError) as exc:
            raise StoreError(f"cannot open database URL {scheme}://...: {exc}") from exc
    return peewee.SqliteDatabase(target, pragmas=SQLITE_PRAGMAS, timeout=SQLITE_BUSY_TIMEOUT), True


class Store:
    """The tasks of one tracker, in the database given."""

    def __init__(self, target: str | peewee.Database) -> None:
        self.db, self._owned = open_database(target)
        self._is_sqlite = isinstance(self.db, peewee.SqliteDatabase)
        self._Task, self._Meta = _models(self.db)
        self._ensure_schema()
        self._build_statements()

    # -- schema -----------------------------------------------------------

    def _write_transaction(self) -> Any:
        # BEGIN IMMEDIATE takes SQLite's write lock up front, so two processes that
        # both read then write cannot deadlock each other into SQLITE_BUSY.
        if self._is_sqlite:
            return self.db.atomic("IMMEDIATE")
        return self.db.atomic()

    def _ensure_schema(self) -> None:
        try:
            with self._write_transaction():
                self.db.create_tables([self._Task, self._Meta], safe=True)
                row = self._Meta.get_or_none(self._Meta.key == "schema_version")
                if row is None:
                    self._Meta.create(key="schema_version", value=str(SCHEMA_VERSION))
                elif int(row.value) > SCHEMA_VERSION:
                    raise StoreError(
                        f"the store {self.name} was written by a newer tasklib "
                        f"(schema {row.value}; this tasklib reads up to {SCHEMA_VERSION})"
                    )
        except peewee.DatabaseError as exc:
            raise StoreError(f"cannot open the store {self.name}: {exc}") from exc

    @property
    def name(self) -> str:
        """The database's file name or name, for error messages."""
        return str(self.db.database)

    # -- statements -------------------------------------------------------

    def _build_statements(self) -> None:
        T = self._Task
        cols = [T.id, T.status, T.description, T.message, T.result, T.submitted_by,
                T.progress, T.submitted, T.started, T.finished, T.last_update]
        self._insert = _Statement(
            T.insert(
                status=TaskStatus.ENQUEUED.value,
                description=_p("description"),
                submitted_by=_p("submitted_by"),
                progress=0,
                submitted=_p("now"),
                last_update=_p("now"),
            ).returning(*cols)
        )
        self._select = _Statement(T.select(*cols).where(T.id == _p("id")))
        self._events = {event: self._transition(event, cols) for event in Event}
        self._purge = _Statement(
            T.delete().where(
                T.id.in_(
                    T.select(T.id)
                    .where(T.finished < _p("cutoff"), T.status.in_(_TERMINAL))
                    .order_by(T.finished)
                    .limit(PURGE_BATCH)
                )
            )
        )

    def _transition(self, event: Event, cols: list[Any]) -> _Statement:
        """One compare-and-set UPDATE for ``event``, read off the status table."""
        T = self._Task
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
        # Only the fields an event carries; a None message keeps the one stored.
        if event is Event.COMPLETE:
            updates[T.progress] = 100
        elif event is not Event.CANCEL:
            # A task's last report rides on its final write instead of costing one more.
            updates[T.progress] = fn.COALESCE(_p("progress"), T.progress)
        if event in (Event.COMPLETE, Event.FAIL):
            updates[T.result] = fn.COALESCE(_p("result"), T.result)
        if event is not Event.CANCEL:
            updates[T.message] = fn.COALESCE(_p("message"), T.message)
        query = (
            T.update(updates)
            .where(T.id == _p("id"), T.status.in_([src.value for src in move]))
            .returning(*cols)
        )
        return _Statement(query)

    # -- operations -------------------------------------------------------

    def _execute(self, stmt: _Statement, values: dict[str, Any]) -> Any:
        try:
            return self.db.execute_sql(stmt.sql, stmt.bind(values))
        except peewee.DatabaseError as exc:
            raise StoreError(f"the store {self.name} could not run a statement: {exc}") from exc

    def _rows(self, stmt: _Statement, values: dict[str, Any]) -> list[tuple[Any, ...]]:
        cursor = self._execute(stmt, values)
        try:
            # Fetch every row: an UPDATE ... RETURNING is not finished, nor its
            # autocommit transaction committed, until its cursor is exhausted.
            return cursor.fetchall()
        finally:
            cursor.close()

    def insert(self, *, description: str | None, submitted_by: int, now: int) -> Record:
        """Add an ENQUEUED task and give back its row."""
        rows = self._rows(self._insert, {"description": description, "submitted_by": submitted_by, "now": now})
        return Record._make(rows[0])

    def fetch(self, task_id: int) -> Record | None:
        """The row of task ``task_id``, or None."""
        rows = self._rows(self._select, {"id": task_id})
        return Record._make(rows[0]) if rows else None

    def apply(self, task_id: int, event: Event, now: int, **data: Any) -> Record | None:
        """Apply ``event`` if the task's status allows it, in one compare-and-set statement.

        Returns the changed row, or None when nothing was written (no such task,
        or its status does not allow a write for ``event``; :meth:`fetch` tells which).
        ``data`` gives the event's fields: progress, message, result.
        """
        values = {"id": task_id, "now": now, "progress": None, "message": None, "result": None}
        values.update(data)
        rows = self._rows(self._events[event], values)
        return Record._make(rows[0]) if rows else None

    def purge(self, cutoff: int) -> int:
        """Delete terminal tasks finished before ``cutoff``, a batch per transaction."""
        total = 0
        while True:
            cursor = self._execute(self._purge, {"cutoff": cutoff})
            count = self.db.rows_affected(cursor)
            total += count
            if count < PURGE_BATCH:
                return total

    def close(self) -> None:
        """Close this thread's connection to a database tasklib opened itself."""
        if self._owned and not self.db.is_closed():
            self.db.close()
