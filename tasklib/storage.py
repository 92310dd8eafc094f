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
import hashlib
import importlib
import logging
import operator
import os
import select
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import peewee
from peewee import SQL, Case, Value, fn
from playhouse import db_url
from playhouse.migrate import SchemaMigrator, migrate
from playhouse.pool import MaxConnectionsExceeded, PooledDatabase, PooledPostgresqlDatabase

from .clock import now_ms
from .errors import StoreError
from .groupcommit import GroupCommit
from .status import EFFECTS, UNFINISHED, Effect, Event, TaskStatus, moves, writes
from .telemetry import log

__all__ = [
    "CHANGE_CHANNEL",
    "DURABILITIES",
    "SCHEMA_VERSION",
    "ChangeProbe",
    "Heartbeat",
    "Record",
    "Store",
    "StoreTarget",
    "Version",
]


#: What a store opens: a SQLite file path, a database URL, ``":memory:"``, or a
#: peewee Database the host already uses.
StoreTarget = str | os.PathLike[str] | peewee.Database

#: The version of the tables this tasklib writes; stored in ``tasklib_meta``.
#: 1: tasks and meta. 2: the runner of each task, runners' heartbeats, leases.
#: 3: tasks indexed by runner and status, so burying a runner's unfinished tasks
#: (or the stale ones, which have none) never walks its finished ones.
SCHEMA_VERSION = 3

#: Settings of a SQLite file, made once when tasklib creates it (they persist in
#: the file). Incremental auto-vacuum lets a purge give space back without a
#: VACUUM, and takes only before the file's first page is written; WAL lets
#: readers run beside the writer. As connection pragmas both would take the write
#: lock, so every new connection, readers included, would wait for a writer.
SQLITE_FILE_PRAGMAS: tuple[tuple[str, Any], ...] = (
    ("auto_vacuum", "incremental"),
    ("journal_mode", "wal"),
)
#: The durabilities a store may be opened with, and the ``synchronous`` setting
#: each gives every connection to a SQLite file tasklib opens itself. In WAL mode
#: NORMAL never corrupts the file nor loses a commit to a process crash; only the
#: last commits before a power loss or an OS crash may be rolled back. FULL syncs
#: the WAL at every commit, so a commit survives a power loss too, at a price of
#: one fsync per write. A PostgreSQL server's commit settings are its own: tasklib
#: leaves them alone under both.
DURABILITIES = ("normal", "full")
DEFAULT_DURABILITY = "normal"
#: Pragmas set on every connection to a SQLite file tasklib opens itself, per durability.
SQLITE_PRAGMAS: dict[str, tuple[tuple[str, Any], ...]] = {
    "normal": (("synchronous", "normal"),),
    "full": (("synchronous", "full"),),
}
#: The URL schemes tasklib opens itself, and the extra that brings each one's driver.
SCHEMES = {"sqlite": None, "postgres": "postgres", "postgresql": "postgres"}
#: Connections a PostgreSQL pool opened by tasklib may hold, and seconds a caller
#: waits for one when all are in use before StoreError.
DEFAULT_POOL_SIZE = 32
DEFAULT_POOL_TIMEOUT = 10.0
#: Seconds a pooled PostgreSQL connection may have sat idle and still be handed out
#: on the evidence of its socket alone; one idle longer gets a ``SELECT 1`` first,
#: which also finds one a firewall dropped without a word (see _PostgresPool).
POOL_QUIET_CHECK = 10.0
#: Seconds a SQLite connection waits for another writer's lock before giving up.
SQLITE_BUSY_TIMEOUT = 10.0
#: Attempts of a write that SQLite refused as busy or locked before the caller is told.
WRITE_ATTEMPTS = 5
# How long close() waits for statements other threads are running.
CLOSE_TIMEOUT = 10.0
#: The key of the PostgreSQL advisory lock under which tasklib creates its tables.
SCHEMA_LOCK_KEY = 7261

#: The PostgreSQL channel every write of an existing task notifies (NOTIFY is per
#: database, as tasklib's tables are); a new task's insert does not.
CHANGE_CHANNEL = "tasklib_task"
#: Seconds between two looks of a change probe: at SQLite's data_version, or
#: for a stop while listening on PostgreSQL.
PROBE_INTERVAL = 0.2
#: Task ids whose versions one statement reads.
VERSIONS_BATCH = 250
#: The longest pause before a lost PostgreSQL listening connection is tried again.
PROBE_RECONNECT_LONGEST = 2.0

#: The lease under which one process at a time purges a store.
PURGE_LEASE = "purge"

#: Purge batches are sized so that one takes about this long (seconds): long
#: enough to cost little per row, short enough that other writers barely wait.
PURGE_BATCH_SECONDS = 0.1
PURGE_BATCH_MIN, PURGE_BATCH_MAX = 500, 100_000

# peewee's own logger (only looked at, never logged to): at DEBUG it logs every
# statement execute_sql runs.
_PEEWEE_LOG: logging.Logger = peewee.logger  # type: ignore[attr-defined]

# peewee's mapping of the driver's exceptions to its own, as execute_sql applies it.
_DRIVER_ERRORS = peewee.__exception_wrapper__  # type: ignore[attr-defined]
# What a database can raise through peewee: its mapped errors, and the pool's
# "no connection free" (a ValueError of playhouse's own).
_DATABASE_ERRORS = (peewee.PeeweeException, MaxConnectionsExceeded)

#: The store's own clock in epoch milliseconds, read by the database itself.
#: Liveness (heartbeats and their age) is judged on it alone, so hosts whose clocks
#: disagree never declare each other's runners dead; on SQLite every process shares
#: the machine's clock, read by SQLite (so an in-process fake clock cannot skew it).
_CLOCK_SQL = {
    "sqlite": "CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER)",
    "postgres": "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
}


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
    """The runner of a task, as last heard of (host, pid, beat None when its row is gone).

    ``clock`` is the store's clock when the row was read: ``clock - beat`` is the
    heartbeat's age on one clock, whatever the reader's own clock says.
    """

    host: str | None
    pid: int | None
    beat: int | None
    clock: int


#: What tells one version of a task from another: (status, last_update, progress).
Version = tuple[str, int, int]

#: Columns of a task row as the statements select them; a Heartbeat follows.
ROW_WIDTH = len(Record._fields)


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
    """A query rendered once to (sql, params); :meth:`bind` fills the named placeholders.

    On a PostgreSQL pool of tasklib's own a hot statement is also a server-side
    prepared statement (see :meth:`Store._prepare_statements`): ``prepare`` makes it
    on a connection, ``execute`` runs it with the same parameters as ``sql``.
    """

    __slots__ = ("_constants", "_get", "_names", "_template", "execute", "name", "prepare", "sql")

    def __init__(self, query: peewee.Query) -> None:
        self.sql, params = query.sql()
        self._template = tuple(params)
        self._names = [(i, p.name) for i, p in enumerate(params) if isinstance(p, _Param)]
        # The hot statements take many parameters, the statuses among them as
        # constants: one C call binds them all, from the values and the constants
        # (keys no name can be) put together.
        self._constants = {f"#{i}": p for i, p in enumerate(params) if not isinstance(p, _Param)}
        keys = [p.name if isinstance(p, _Param) else f"#{i}" for i, p in enumerate(params)]
        self._get: Callable[[dict[str, Any]], tuple[Any, ...]] | None = (
            operator.itemgetter(*keys) if len(keys) > 1 else None
        )
        self.name: str | None = None
        self.prepare: str | None = None
        self.execute: str | None = None

    def bind(self, values: dict[str, Any]) -> list[Any] | tuple[Any, ...]:
        """The statement's parameters, in order, with ``values`` for its named ones.

        ``values``, built for this one call, gets the statement's constants added.
        """
        if self._get is not None:
            values.update(self._constants)
            return self._get(values)
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
        runner = peewee.CharField(max_length=64, null=True)  # schema 2

        class Meta:
            table_name = "tasklib_task"
            # schema 2: unfinished tasks and lists by status; lists by submitter
            # schema 3: a runner's (or no runner's) tasks of a status
            indexes = ((("status", "id"), False), (("submitted_by", "id"), False), (("runner", "status"), False))

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


class _SqliteFile(peewee.SqliteDatabase):
    """A SQLite database that knows every connection it opened, so close() can close them all.

    peewee keeps one connection per thread; a worker thread's connection would
    otherwise stay open (a file handle, the WAL's shared memory) until the garbage
    collector finds the thread's state.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["check_same_thread"] = False  # close_all() closes other threads' connections
        super().__init__(*args, **kwargs)
        self._opened: set[Any] = set()
        self._opened_lock = threading.Lock()

    # peewee's stubs leave out its connection hooks, which this class extends.
    def _connect(self) -> Any:
        conn = super()._connect()  # type: ignore[misc]
        with self._opened_lock:
            self._opened.add(conn)
        return conn

    def _close(self, conn: Any) -> None:
        with self._opened_lock:
            self._opened.discard(conn)
        super()._close(conn)  # type: ignore[misc]

    def open_connections(self) -> list[Any]:
        """The connections this database has opened and not yet closed, in any thread."""
        with self._opened_lock:
            return list(self._opened)

    def close_all(self) -> None:
        with self._opened_lock:
            conns, self._opened = self._opened, set()
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()
        # This thread's peewee state still names its (now closed) connection.
        self._state.reset()  # type: ignore[attr-defined]


class _PostgresPool(PooledPostgresqlDatabase):  # type: ignore[misc]  # playhouse.pool is untyped
    """peewee's PostgreSQL pool, whose check-out costs no round trip for a connection that is plainly intact.

    peewee checks a pooled connection on every check-out with a ``SELECT 1``, and
    the store checks one out for every statement: on an idle, intact connection
    that doubled the round trips of every write and read. A connection the server
    closed (a restart, ``pg_terminate_backend``, an idle timeout) has been sent an
    error and the end of the stream, which makes its socket readable; an intact
    idle one has nothing to read, as no pooled connection listens. So a connection
    back in the pool for less than POOL_QUIET_CHECK seconds, idle and with nothing
    to read, is handed out as it is; any other gets peewee's full check, which
    discards a dead one before it is handed out, as before. A connection lost
    without a word (a firewall dropping it) is only found by a round trip: after a
    long quiet spell it gets one, and a busy pool's connections are in use.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._returned: dict[int, float] = {}  # conn_key -> time.monotonic() it came back to the pool

    def _is_closed(self, conn: Any) -> bool:
        returned = self._returned.pop(self.conn_key(conn), None)
        if conn.closed:
            return True
        adapter = self._adapter
        if (
            returned is not None
            and time.monotonic() - returned < POOL_QUIET_CHECK
            and adapter.txn_status(conn) == adapter.txn_idle
            and not _readable(conn)
        ):
            return False
        return bool(super()._is_closed(conn))

    def _close(self, conn: Any, close_conn: bool = False) -> None:
        # The pool's lock (reentrant) guards the dict too: _is_closed runs under it.
        with self._pool_lock:
            if close_conn:
                self._returned.pop(self.conn_key(conn), None)
            else:
                self._returned[self.conn_key(conn)] = time.monotonic()
            super()._close(conn, close_conn)

    def _close_raw(self, conn: Any) -> None:
        with self._pool_lock:
            self._returned.pop(self.conn_key(conn), None)
        super()._close_raw(conn)


def _readable(conn: Any) -> bool:
    """Whether a driver connection's socket has something to read, without waiting."""
    try:
        if hasattr(select, "poll"):  # not select(): it refuses descriptors above 1023
            poller = select.poll()
            poller.register(conn.fileno(), select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([conn.fileno()], [], [], 0)[0])
    except (OSError, ValueError):
        return True  # cannot tell: the full check decides


def _memory_database() -> peewee.SqliteDatabase:
    # ":memory:" gives each connection, so each peewee thread, its own empty
    # database. One connection shared by the tracker's threads keeps one store;
    # the Store serializes its statements on it (see Store._serial).
    return _SqliteFile(":memory:", thread_safe=False, pragmas=(("synchronous", "off"),))


def open_database(
    target: StoreTarget,
    *,
    pool_size: int = DEFAULT_POOL_SIZE,
    pool_timeout: float = DEFAULT_POOL_TIMEOUT,
    durability: str = DEFAULT_DURABILITY,
) -> tuple[peewee.Database, bool]:
    """The database for ``target`` and whether tasklib owns it (opened it itself).

    ``target`` is a peewee Database (the caller's, left configured as it is), a
    database URL (``sqlite:///path``, ``postgresql://...``), a SQLite file path, or
    ``":memory:"`` for a private store that lives as long as the tracker.
    ``durability`` ("normal" or "full", see DURABILITIES) sets ``synchronous`` on
    every connection to a SQLite file opened here; a caller's database and a
    PostgreSQL server are left as they are.
    Raises TypeError/ValueError for a bad argument, StoreError for a database
    tasklib cannot use (an unsupported scheme, a driver not installed, a peewee
    in-memory SQLite database, which gives each thread its own empty database).
    """
    pragmas = check_durability(durability)
    if isinstance(target, peewee.Database):
        if isinstance(target, peewee.SqliteDatabase) and target.database in (":memory:", "") and target.thread_safe:
            raise StoreError(
                "a peewee SqliteDatabase(':memory:') gives each thread its own empty database; "
                "pass ':memory:' to tasklib instead for a private in-memory store"
            )
        return target, False
    if not isinstance(target, (str, os.PathLike)):
        raise TypeError(f"database must be a path, a URL or a peewee Database, not {type(target).__name__}")
    target = os.fspath(target)
    if not target:
        raise ValueError("database path is empty")
    if "\x00" in target:
        raise ValueError("database path must not contain NUL characters")
    if "://" not in target:
        if target == ":memory:":
            return _memory_database(), True
        return _SqliteFile(target, pragmas=pragmas, timeout=SQLITE_BUSY_TIMEOUT), True
    scheme, rest = target.split("://", 1)
    if scheme not in SCHEMES:
        supported = ", ".join(f"{name}://" for name in SCHEMES)
        raise StoreError(f"tasklib cannot use a {scheme[:20]}:// database; it supports {supported}")
    if scheme == "sqlite":
        path = rest[1:] if rest.startswith("/") else rest  # sqlite:///tasks.db is the file tasks.db
        if path in (":memory:", ""):
            return _memory_database(), True
        return _SqliteFile(path, pragmas=pragmas, timeout=SQLITE_BUSY_TIMEOUT), True
    try:
        importlib.import_module("psycopg2")  # only to say which extra brings it
    except ImportError:
        raise StoreError(
            f"{scheme}:// needs the PostgreSQL driver: pip install 'tasktally[{SCHEMES[scheme]}]'"
        ) from None
    # Pooled: connections outlive the threads that borrow them; one unused for five
    # minutes is replaced rather than trusted; a full pool makes callers wait, then fail.
    try:
        params = db_url.parse(f"{scheme}://{rest}")
        if not params.get("database"):
            raise ValueError("the URL names no database: postgresql://host/dbname, or postgresql:///dbname locally")
        return _PostgresPool(max_connections=pool_size, stale_timeout=300, timeout=pool_timeout, **params), True
    except (RuntimeError, ValueError, ImportError, peewee.ImproperlyConfigured) as exc:
        raise StoreError(f"cannot open the database {scheme}://...: {_one_line(exc)}") from exc


def check_durability(durability: object) -> tuple[tuple[str, Any], ...]:
    """The SQLite pragmas of ``durability``; TypeError/ValueError for anything but a name in DURABILITIES."""
    if not isinstance(durability, str):
        raise TypeError(f"durability must be a str, not {type(durability).__name__}")
    if durability not in SQLITE_PRAGMAS:
        allowed = " or ".join(repr(name) for name in DURABILITIES)
        raise ValueError(f"durability must be {allowed}, got {durability[:40]!r}")
    return SQLITE_PRAGMAS[durability]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:300] + "..."


def store_key(db: peewee.Database) -> str:
    """A short name for the store behind ``db``, the same in every process that opens it.

    Used to name what is per store, such as a tracker's scheduled jobs.
    """
    if isinstance(db, peewee.SqliteDatabase):
        where = db.database if db.database in (":memory:", "") else os.path.realpath(db.database)
        if where in (":memory:", ""):
            where = f"memory:{id(db)}"
    else:
        params = getattr(db, "connect_params", {})
        where = f"{type(db).__name__}:{params.get('host', '')}:{params.get('port', '')}:{db.database}"
    return hashlib.sha1(where.encode("utf-8", "backslashreplace")).hexdigest()[:10]


class _Admission:
    """Who is using a store: the statements under way, and on SQLite the write gate.

    close() waits until no statement is under way: SQLite's driver crashes the
    process (a segfault) when a connection is closed under a running statement.

    The gate: short writes pass side by side; a long write waits for them, then
    runs alone. Short writers of one process still take turns inside SQLite as
    usual; what the gate adds is that, while a long write runs, they wait on a
    condition and go the moment it ends, instead of sleeping in SQLite's busy
    handler. A waiting long write holds back new short ones, so it is not starved
    either. Both counts live under one lock, as each statement passes both.
    """

    def __init__(self, *, gated: bool) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._gated = gated
        self.closed = False
        self._active = 0  # statements under way
        self._short = 0  # short writes under way
        self._long = False  # a long write under way
        self._long_waiting = 0

    def enter(self, write: bool) -> bool:
        """Count a statement in, a short write once no long one runs or waits; False once closed."""
        with self._lock:
            if self.closed:
                return False
            if write and self._gated:
                while self._long or self._long_waiting:
                    self._cond.wait()
                self._short += 1
            self._active += 1
            return True

    def leave(self, write: bool) -> None:
        """Count out a statement :meth:`enter` let in with the same ``write``."""
        with self._lock:
            self._active -= 1
            if write and self._gated:
                self._short -= 1
            # Only a long write waits for the short ones, and only close() for the last statement.
            if (not self._short and self._long_waiting) or (not self._active and self.closed):
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """A long write, alone among this store's writes (a statement already counted in)."""
        if not self._gated:
            yield
            return
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

    def close(self, timeout: float) -> bool:
        """Refuse new statements; whether those under way ended within ``timeout`` seconds."""
        with self._cond:
            self.closed = True
            return self._cond.wait_for(lambda: not self._active, timeout)


def _event_values(
    task_id: int, now: int, progress: int | None, message: str | None, result: str | None, runner: str | None
) -> dict[str, Any]:
    """The parameters of an event's statement (see :meth:`Store.apply`)."""
    return {"id": task_id, "now": now, "progress": progress, "message": message, "result": result, "runner": runner}


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _is_disconnect(exc: BaseException) -> bool:
    # psycopg2 reports a dropped or refused connection as OperationalError with
    # these words; the statement may then be tried on a new connection.
    text = str(exc).lower()
    return any(word in text for word in ("server closed", "connection", "terminating", "could not receive"))


class Store:
    """The tasks of one tracker, in the database given.

    Every statement runs through one path (:meth:`_run`): the write gate, the
    retry of a write SQLite refused as busy, the replacement of a broken pooled
    connection, and the wrapping of every driver error as StoreError. A failed
    write changes nothing.

    Raises StoreError when the database cannot be opened, is not a tasklib store
    tasklib can read, or a statement fails.
    """

    def __init__(
        self,
        target: StoreTarget,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
        durability: str = DEFAULT_DURABILITY,
    ) -> None:
        self.db, self._owned = open_database(
            target, pool_size=pool_size, pool_timeout=pool_timeout, durability=durability
        )
        # The SQLite connections tasklib opens itself beyond the database's (the
        # change probe's) take the same durability as the store's own.
        self._pragmas = check_durability(durability)
        self._is_sqlite = isinstance(self.db, peewee.SqliteDatabase)
        self.key = store_key(self.db)
        # A pooled connection goes back to the pool after each operation, so threads
        # that call in rarely do not each keep one.
        self._pooled = isinstance(self.db, PooledDatabase)
        # One connection shared by threads (a private in-memory store) takes one
        # statement at a time.
        self._serial = threading.RLock() if not self.db.thread_safe else None
        self._m = _models(self.db)
        #: Called after each committed write of tasks by this store, with the task's
        #: id, or None when the write touched many (a sweep, a purge).
        self.written: Callable[[int | None], None] | None = None
        # While a long write of this process (a purge batch) runs, its short writes
        # wait at a gate rather than in SQLite's busy handler, which sleeps in steps
        # of up to 100 ms and so could starve them. A database server needs no gate,
        # nor does a store whose one connection takes one statement at a time.
        self._admission = _Admission(gated=self._is_sqlite and self._serial is None)
        self._clock = SQL(_CLOCK_SQL["sqlite" if self._is_sqlite else "postgres"])
        # A SQLite database whose threads each keep their own connection (every file
        # store) takes the direct path of :meth:`_run`.
        self._direct = self._is_sqlite and self._serial is None and not self._pooled and self.db.autoconnect
        # The direct path's writes of threads that meet are committed together.
        self._commits = GroupCommit(self.db.connection)
        # The names of the statements prepared on each connection (see _prepare_statements).
        self._prepared_on: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
        self._prepares = False
        try:
            self._ensure_schema()
        except BaseException:
            self.close()
            raise
        self._build_statements()

    @property
    def name(self) -> str:
        """The database's file name or name, for error messages."""
        return str(self.db.database)

    # -- the one path every statement takes -------------------------------

    def _transaction(self) -> Any:
        # BEGIN IMMEDIATE takes SQLite's write lock up front, so two processes that
        # both read then write cannot deadlock each other into SQLITE_BUSY.
        if self._is_sqlite:
            return self.db.atomic("IMMEDIATE")
        return self.db.atomic()

    @contextlib.contextmanager
    def _session(self, *, write: bool, exclusive: bool = False) -> Iterator[None]:
        """One operation on the database: its admission, its connection, its errors.

        Driver errors (also those raised while fetching a write's rows) come out
        as peewee's; a connection that broke is discarded, never handed out again;
        a pooled connection goes back to the pool at the end.
        """
        short = write and not exclusive
        admission = self._admission
        if not admission.enter(short):
            raise self._closed_error()
        try:
            serial = self._serial if self._serial is not None else contextlib.nullcontext()
            with serial, admission.exclusive() if exclusive else contextlib.nullcontext():
                try:
                    with _DRIVER_ERRORS:
                        yield
                except (peewee.OperationalError, peewee.InterfaceError):
                    self._discard_if_broken()
                    raise
                finally:
                    if self._pooled and not self.db.in_transaction():
                        self.db.close()
        finally:
            admission.leave(short)

    def _closed_error(self) -> StoreError:
        return StoreError(f"the store {self.name} is closed")

    def _discard_if_broken(self) -> None:
        # After a server restart or a dropped connection the driver marks it closed;
        # peewee would otherwise keep it as this thread's and fail every later call.
        if self.db.is_closed() or self.db.in_transaction():
            return
        conn = self.db.connection()
        if not self._is_sqlite and getattr(conn, "closed", False):
            if isinstance(self.db, PooledDatabase):
                self.db.manual_close()
            else:
                with contextlib.suppress(Exception):
                    self.db.close()

    def _run(
        self,
        sql: str,
        params: list[Any] | tuple[Any, ...],
        *,
        write: bool,
        exclusive: bool = False,
        retry_broken: bool = True,
        script: bool = False,
        stmt: _Statement | None = None,
        first_attempt: int = 0,
    ) -> tuple[list[tuple[Any, ...]], int]:
        """Run one statement: its rows and its row count, or StoreError.

        A statement SQLite refused as busy is tried again a few times; one whose
        connection broke (a database server restarted) is tried once more on a new
        connection when ``retry_broken`` (every statement but an INSERT, which might
        have been applied before the connection broke). ``stmt``, the statement
        ``sql`` came from, runs prepared where it is (see :meth:`_prepare_statements`).
        ``first_attempt`` counts the attempts a caller already made.
        """
        direct = self._direct and not script and not exclusive and not self.db.query_hooks
        for attempt in range(first_attempt, WRITE_ATTEMPTS):
            try:
                if direct:
                    return self._run_direct(sql, params, write)
                with self._session(write=write, exclusive=exclusive):
                    if script:
                        # executescript steps the statement to its end; sqlite3's
                        # execute() would step some pragmas only once.
                        self.db.connection().executescript(sql)
                        return [], 0
                    if stmt is not None and stmt.execute is not None and self._may_prepare():
                        cursor = self._execute_prepared(stmt, params)
                    elif write:
                        cursor = self.db.execute_sql(sql, params)  # with peewee's query hooks and logging
                    else:
                        # Reads skip them: on the get() path they cost as much as SQLite.
                        cursor = self.db.cursor()
                        cursor.execute(sql, params)
                    try:
                        # Fetch every row: an UPDATE ... RETURNING is not finished, nor its
                        # autocommit transaction committed, until its cursor is exhausted.
                        rows = cursor.fetchall() if cursor.description else []
                        return rows, cursor.rowcount
                    finally:
                        cursor.close()
            except _DATABASE_ERRORS as exc:
                self._retry_or_raise(exc, attempt, write=write, retry_broken=retry_broken)
        raise AssertionError("unreachable")

    def _run_direct(
        self, sql: str, params: list[Any] | tuple[Any, ...], write: bool
    ) -> tuple[list[tuple[Any, ...]], int]:
        """What :meth:`_session` does for one statement, inlined: the hot path of a SQLite file.

        The same in-use count and write gate; the driver's errors come out as
        peewee's, for :meth:`_run` to retry or wrap. No peewee query hooks or
        logging (:meth:`_run` takes the full path while a hook is installed).
        """
        admission = self._admission
        if not admission.enter(write):
            raise self._closed_error()
        try:
            if write:
                return self._commits.write(sql, params)
            cursor = self.db.connection().execute(sql, params)
            return cursor.fetchall(), cursor.rowcount
        except peewee.PeeweeException:
            raise
        except Exception:
            with _DRIVER_ERRORS:  # re-raises the driver's error as peewee's
                raise
            raise
        finally:
            admission.leave(write)

    def _may_prepare(self) -> bool:
        # Query hooks and peewee's debug log see every statement's own text: while
        # either is on, statements take the plain path. So does one in a transaction,
        # whose failed PREPARE would abort it.
        return (
            self._prepares
            and not self.db.query_hooks
            and not _PEEWEE_LOG.isEnabledFor(logging.DEBUG)
            and not self.db.in_transaction()
        )

    def _execute_prepared(self, stmt: _Statement, params: list[Any] | tuple[Any, ...]) -> Any:
        """Run ``stmt`` as the prepared statement of this session's connection, preparing it first if need be.

        The cursor, as ``execute_sql`` gives it. Runs in :meth:`_session`, which
        maps the driver's errors to peewee's.
        """
        assert stmt.prepare is not None and stmt.execute is not None and stmt.name is not None
        conn = self.db.connection()
        made = self._prepared_on.get(conn)
        if made is None:
            made = self._prepared_on[conn] = set()
        cursor = conn.cursor()
        try:
            if stmt.name not in made:
                # Already there: it is this statement (its name is its text's hash).
                with contextlib.suppress(self._duplicate_prepared):
                    cursor.execute(stmt.prepare)
                made.add(stmt.name)
            try:
                cursor.execute(stmt.execute, params)
            except self._unknown_prepared:
                # Prepared, yet the server does not know it: the connection is not
                # one session (a pooler in transaction mode), or was reset behind
                # tasklib's back. The failed statement did nothing (its NOTIFY
                # went with it): run it as plain SQL, and this store's from now on.
                self._prepares = False
                log(
                    logging.INFO,
                    "the PostgreSQL server lost a prepared statement of the store %s; "
                    "its statements are sent as plain SQL from now on",
                    self.name,
                )
                cursor.execute(stmt.sql, params)
        except BaseException:
            cursor.close()
            raise
        return cursor

    def _retry_or_raise(self, exc: BaseException, attempt: int, *, write: bool, retry_broken: bool) -> None:
        """After a failed ``attempt``: return (having waited) to try again, or raise StoreError.

        The one retry rule of every statement and transaction: SQLite's busy or
        locked a few times with backoff; a broken server connection twice, when
        ``retry_broken``; every other driver error at once.
        """
        last_attempt = attempt + 1 >= WRITE_ATTEMPTS
        if isinstance(exc, peewee.OperationalError) and not last_attempt:
            if (self._is_sqlite and _is_busy(exc)) or (
                not self._is_sqlite and retry_broken and _is_disconnect(exc) and attempt < 2
            ):
                time.sleep(0.05 * 2**attempt)
                return
        elif isinstance(exc, peewee.InterfaceError) and retry_broken and attempt < 2:
            return
        verb = "written" if write else "read"
        raise StoreError(f"the store {self.name} could not be {verb}: {_one_line(exc)}") from exc

    def _exec(
        self, stmt: _Statement, values: dict[str, Any], *, write: bool, retry_broken: bool = True, **options: Any
    ) -> tuple[list[tuple[Any, ...]], int]:
        params = stmt.bind(values)
        if stmt.execute is not None and not options and self._prepares and self.db.is_closed():
            # The hot path of a PostgreSQL pool of tasklib's own: a prepared statement
            # on a connection of its own. A failure goes to the one retry rule, then
            # the full path makes the attempts that are left.
            try:
                return self._run_prepared(stmt, params, write)
            except _DATABASE_ERRORS as exc:
                self._retry_or_raise(exc, 0, write=write, retry_broken=retry_broken)
            return self._run(stmt.sql, params, write=write, retry_broken=retry_broken, stmt=stmt, first_attempt=1)
        return self._run(stmt.sql, params, write=write, retry_broken=retry_broken, stmt=stmt, **options)

    def _run_prepared(
        self, stmt: _Statement, params: list[Any] | tuple[Any, ...], write: bool
    ) -> tuple[list[tuple[Any, ...]], int]:
        """What :meth:`_session` does for one prepared statement, inlined: a connection from the pool and back.

        For a thread that holds no connection (so is in no transaction), on a pool
        (no write gate, no serial lock). The same admission; driver errors come
        out as peewee's; a broken connection is discarded, never handed out again.
        """
        admission = self._admission
        if not admission.enter(write):
            raise self._closed_error()
        try:
            db = self.db
            try:
                with _DRIVER_ERRORS:
                    if not self._may_prepare():
                        return self._plain(stmt.sql, params)
                    cursor = self._execute_prepared(stmt, params)
                    try:
                        # Every row: an UPDATE ... RETURNING is not done until read (see _run).
                        return (cursor.fetchall() if cursor.description else []), cursor.rowcount
                    finally:
                        cursor.close()
            except (peewee.OperationalError, peewee.InterfaceError):
                self._discard_if_broken()
                raise
            finally:
                db.close()  # back to the pool: this thread held none before
        finally:
            admission.leave(write)

    def _plain(self, sql: str, params: list[Any] | tuple[Any, ...]) -> tuple[list[tuple[Any, ...]], int]:
        # A statement as its own text, with peewee's query hooks and logging.
        cursor = self.db.execute_sql(sql, params)
        try:
            return (cursor.fetchall() if cursor.description else []), cursor.rowcount
        finally:
            cursor.close()

    def _write(self, stmt: _Statement, values: dict[str, Any], *, retry_broken: bool = True) -> list[tuple[Any, ...]]:
        """One write of a task on the hot path: its rows, or StoreError.

        On a SQLite file straight to the driver, as :meth:`fetch_row` reads. A
        failed statement wrote nothing: the one retry rule decides, raising
        StoreError at once, or waiting out a busy store before the full path of
        :meth:`_run` tries again.
        """
        if self._direct and not self.db.query_hooks:
            try:
                return self._run_direct(stmt.sql, stmt.bind(values), True)[0]
            except _DATABASE_ERRORS as exc:
                self._retry_or_raise(exc, 0, write=True, retry_broken=retry_broken)
        return self._exec(stmt, values, write=True, retry_broken=retry_broken)[0]

    def _in_transaction(self, steps: list[tuple[_Statement, dict[str, Any]]]) -> list[list[tuple[Any, ...]]]:
        """Run write statements in one transaction; the rows each returned. StoreError, all undone, if one fails."""
        for attempt in range(WRITE_ATTEMPTS):
            try:
                with self._session(write=True), self._transaction():
                    results = []
                    for stmt, values in steps:
                        cursor = self.db.execute_sql(stmt.sql, stmt.bind(values))
                        # Every row, before the next statement: a RETURNING is not done until read.
                        results.append(cursor.fetchall() if cursor.description else [])
                    return results
            except peewee.InterfaceError as exc:
                # Not retried: a transaction's outcome is unknown once its connection is unusable.
                self._retry_or_raise(exc, attempt, write=True, retry_broken=False)
            except _DATABASE_ERRORS as exc:
                self._retry_or_raise(exc, attempt, write=True, retry_broken=True)
        raise AssertionError("unreachable")

    # -- schema -----------------------------------------------------------

    def _ensure_schema(self) -> None:
        # Read first: a store that is ready needs no write lock, so opening one never
        # waits for another process's writer.
        try:
            with self._session(write=False):
                version = self._schema_version()
                wal = not self._is_sqlite or self._serial is not None or self._pragma("journal_mode") == "wal"
            if version == SCHEMA_VERSION and wal:
                return
            if self._is_sqlite and self._serial is None and self._owned:
                with self._session(write=True):
                    for pragma, value in SQLITE_FILE_PRAGMAS:
                        self.db.execute_sql(f"PRAGMA {pragma} = {value}")
            with self._session(write=True), self._transaction():
                if isinstance(self.db, peewee.PostgresqlDatabase):
                    # Two processes creating the tables at once would collide in the catalog.
                    self.db.execute_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})")
                version = self._schema_version()
                if version is None:
                    self._create()
                elif version > SCHEMA_VERSION:
                    raise StoreError(
                        f"the store {self.name} was written by a newer tasklib "
                        f"(schema {version}; this tasklib reads schemas up to {SCHEMA_VERSION}); "
                        "upgrade tasklib to open it"
                    )
                elif version < SCHEMA_VERSION:
                    self._upgrade(version)
        except _DATABASE_ERRORS as exc:
            raise StoreError(f"cannot open the store {self.name}: {_one_line(exc)}") from exc
        finally:
            if self._owned and not self._pooled and self._serial is None and not self.db.is_closed():
                self.db.close()  # this thread's connection; each thread opens its own

    def _pragma(self, name: str) -> Any:
        return self.db.execute_sql(f"PRAGMA {name}").fetchone()[0]

    def _create(self) -> None:
        m = self._m
        self.db.create_tables([m.Task, m.Meta, m.Runner, m.Lease], safe=True)
        m.Meta.insert(key="schema_version", value=str(SCHEMA_VERSION)).execute()
        m.Lease.insert(name=PURGE_LEASE, owner=None, expires=0).on_conflict_ignore().execute()

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
                migrator.add_column("tasklib_task", "runner", m.Task.runner),
                migrator.add_index("tasklib_task", ("status", "id"), False),
                migrator.add_index("tasklib_task", ("submitted_by", "id"), False),
            )
            self.db.create_tables([m.Runner, m.Lease], safe=True)
        if version == 2:
            migrate(migrator.drop_index("tasklib_task", "tasklib_task_runner"))  # schema 2's, on runner alone
        if version < 3:
            migrate(migrator.add_index("tasklib_task", ("runner", "status"), False))
        m.Lease.insert(name=PURGE_LEASE, owner=None, expires=0).on_conflict_ignore().execute()
        m.Meta.update(value=str(SCHEMA_VERSION)).where(m.Meta.key == "schema_version").execute()

    # -- statements -------------------------------------------------------

    def _build_statements(self) -> None:
        T, R, L = self._m.Task, self._m.Runner, self._m.Lease
        clock = self._clock
        cols = [
            T.id,
            T.status,
            T.description,
            T.message,
            T.result,
            T.submitted_by,
            T.progress,
            T.submitted,
            T.started,
            T.finished,
            T.last_update,
            T.runner,
        ]
        assert len(cols) == ROW_WIDTH
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
        # A task a free worker of this process takes at once is written RUNNING
        # straight away, by its runner: one write fewer than insert, then start.
        self._insert_running = _Statement(
            T.insert(
                status=TaskStatus.RUNNING.value,
                description=_p("description"),
                submitted_by=_p("submitted_by"),
                progress=0,
                submitted=_p("now"),
                started=_p("now"),
                last_update=_p("now"),
                runner=_p("runner"),
            ).returning(*cols)
        )
        with_runner = [*cols, R.host, R.pid, R.heartbeat, clock]
        self._select = _Statement(
            T.select(*with_runner).join(R, peewee.JOIN.LEFT_OUTER, on=(T.runner == R.token)).where(T.id == _p("id"))
        )
        assert self._select.bind({"id": 0}) == [0]  # fetch_row passes (id,) as is
        # Newest first, paged by id: one statement per combination of filters, each
        # served by an index ending in id, so a page never scans the table.
        self._lists = {}
        for by_status in (False, True):
            for by_user in (False, True):
                query = (
                    T.select(*with_runner)
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
        # The bulk kills return the rows they made DEAD, for the on_change hooks.
        self._kill_runner = _Statement(self._transition(Event.DIE, (T.runner == _p("runner"),)).returning(*cols))
        self._kill_stale = _Statement(
            self._transition(Event.DIE, (T.runner.is_null(), T.last_update < _p("cutoff"))).returning(*cols)
        )
        # Purging walks the ids of the expired tasks in ranges: tasks finish roughly
        # in id order, so a range is a run of neighbouring rows, deleted as cheaply as
        # one big DELETE would, but in short transactions. Only finished tasks have a
        # finished time; the status test keeps an unfinished task safe even so, and,
        # written NOT IN, cannot draw the planner off the id range.
        self._purge_span = _Statement(T.select(fn.MIN(T.id), fn.MAX(T.id)).where(T.finished < _p("cutoff")))
        self._expired = _Statement(
            T.select(fn.COUNT(T.id)).where(T.finished < _p("cutoff"), T.status.not_in(sorted(UNFINISHED)))
        )
        self._purge = _Statement(
            T.delete().where(
                T.id >= _p("low"),
                T.id < _p("high"),
                T.finished < _p("cutoff"),
                T.status.not_in(sorted(UNFINISHED)),
            )
        )
        # Heartbeats are written and aged on the store's clock only (see _CLOCK_SQL).
        self._runner_insert = _Statement(
            R.insert(token=_p("token"), host=_p("host"), pid=_p("pid"), started=clock, heartbeat=clock)
        )
        self._heartbeat = _Statement(R.update(heartbeat=clock).where(R.token == _p("token")))
        self._runner_delete = _Statement(R.delete().where(R.token == _p("token")))
        self._runners_dead = _Statement(
            R.select(R.token, R.host, R.pid).where(
                R.heartbeat < clock + _p("shift") - _p("age"), R.token != _p("token")
            )
        )
        self._runners_on_host = _Statement(R.select(R.token, R.pid).where(R.host == _p("host"), R.token != _p("token")))
        self._lease_take = _Statement(
            L.update(owner=_p("owner"), expires=_p("expires")).where(
                L.name == _p("name"), (L.expires < _p("now")) | (L.owner == _p("owner"))
            )
        )
        self._lease_drop = _Statement(
            L.update(owner=None, expires=0).where(L.name == _p("name"), L.owner == _p("owner"))
        )

        self._versions = _Statement(
            T.select(T.id, T.status, T.last_update, T.progress).where(
                T.id.in_([_p(f"id{i}") for i in range(VERSIONS_BATCH)])
            )
        )
        # psycopg3 binds parameters on the server, which takes one statement at a
        # time: there a write's NOTIFY follows it as a statement of its own.
        self._notify_after = not self._is_sqlite and bool(getattr(self.db, "index_value_literals", False))
        if not self._is_sqlite and not self._notify_after:
            # Listeners in other processes hear of every write that changes an existing
            # task. NOTIFY goes in the write's own statement text: one round trip, and it
            # is delivered only if that transaction commits. A new task's insert notifies
            # nobody: a listener only reads the versions of the tasks its waiters watch,
            # and no waiter can be watching a task not yet inserted (watch() and wait()
            # read the task first, and an id that is no task's is TaskNotFound). Leaving
            # it out matters beyond the notification: PostgreSQL makes the commits of
            # notifying transactions take turns on one lock held through their WAL flush,
            # so the sending loop's insert would wait for the workers' flushes one by one
            # instead of sharing a flush with them.
            for stmt in (self._kill_runner, self._kill_stale, self._purge, *self._events.values()):
                stmt.sql = f"NOTIFY {CHANGE_CHANNEL}; {stmt.sql}"
        self._prepare_statements()

    def _prepare_statements(self) -> None:
        """Make the statements every task runs (its insert, its events, its read) prepared ones on PostgreSQL.

        Only on a pool tasklib opened itself (psycopg2, which binds parameters in
        the client): each connection prepares a statement the first time it runs
        it, and from then on sends ``EXECUTE name(...)``, so the server neither
        parses nor plans it again. Parsing and planning were the larger part of the
        server's time for these statements, and the server shares the machine's
        cores with the processes that run the tasks. A host's database is left as
        it is: tasklib does not leave statements behind on its connections.
        """
        self._prepares = isinstance(self.db, _PostgresPool) and not self._notify_after
        if not self._prepares:
            return
        errors = importlib.import_module("psycopg2.errors")
        self._duplicate_prepared: type[Exception] = errors.DuplicatePreparedStatement
        self._unknown_prepared: type[Exception] = errors.InvalidSqlStatementName
        hot = {"insert": self._insert, "insert_running": self._insert_running, "get": self._select}
        hot.update((event.value.lower(), stmt) for event, stmt in self._events.items())
        notify = f"NOTIFY {CHANGE_CHANNEL}; "
        for label, stmt in hot.items():
            body = stmt.sql.removeprefix(notify)
            pieces = body.split("%s")
            if any("%" in piece for piece in pieces):
                continue  # a literal % (escaped as %%): left plain rather than rewritten
            # Named for the table and what it does, as the server's views show it
            # (pg_stat_activity), and for its text: another text is another name.
            name = f"tasklib_task_{label}_{hashlib.sha1(body.encode()).hexdigest()[:8]}"
            stmt.name = name
            stmt.prepare = f"PREPARE {name} AS " + "".join(
                piece + (f"${i}" if i < len(pieces) else "") for i, piece in enumerate(pieces, 1)
            )
            arguments = f"({', '.join(['%s'] * (len(pieces) - 1))})" if len(pieces) > 1 else ""
            stmt.execute = stmt.sql.removesuffix(body) + f"EXECUTE {name}{arguments}"

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
        finishing = [src.value for src, dst in move.items() if dst.is_terminal]
        if len(finishing) == len(move):
            updates[T.finished] = now
        elif finishing:
            updates[T.finished] = Case(None, [(T.status.in_(finishing), now)], T.finished)
        # The rest is the event's effects, as status.EFFECTS lists them.
        first = {"started": now, "runner": _p("runner")}
        for name, effect in EFFECTS[event].items():
            column = getattr(T, name)
            if effect is Effect.CARRIED:
                updates[column] = fn.COALESCE(_p(name), column)
            elif effect is Effect.FIRST:
                updates[column] = fn.COALESCE(column, first[name])
            else:
                updates[column] = effect
        update: peewee.ModelUpdate = T.update(updates).where(*where, T.status.in_([src.value for src in move]))
        return update

    # -- tasks --------------------------------------------------------------

    def insert(
        self,
        *,
        description: str | None,
        submitted_by: int,
        now: int,
        runner: str | None = None,
        running: bool = False,
    ) -> Record:
        """Add an ENQUEUED task (with ``running``: a RUNNING one of ``runner``, started ``now``); its row."""
        if running and runner is None:
            raise ValueError("a task inserted RUNNING needs its runner")
        values = {"description": description, "submitted_by": submitted_by, "now": now, "runner": runner}
        stmt = self._insert_running if running else self._insert
        rows = self._write(stmt, values, retry_broken=False)
        record = Record._make(rows[0])
        self._written(record.id, notify=False)
        return record

    def fetch(self, task_id: int) -> tuple[Record, Heartbeat] | None:
        """The row of task ``task_id`` and its runner's last heartbeat, or None."""
        rows, _ = self._exec(self._select, {"id": task_id}, write=False)
        if not rows:
            return None
        row = rows[0]
        return Record._make(row[:ROW_WIDTH]), Heartbeat._make(row[ROW_WIDTH:])

    def fetch_row(self, task_id: int) -> tuple[Any, ...] | None:
        """The row of task ``task_id`` as the driver gives it, or None.

        A task's columns in Record's order, then its runner's in Heartbeat's: the
        read path builds its Task straight from it.
        """
        if self._direct:
            # The read path: straight to the driver; any error takes the full path,
            # which retries or wraps it as StoreError.
            try:
                rows = self._run_direct(self._select.sql, (task_id,), False)[0]
            except _DATABASE_ERRORS:
                rows, _ = self._exec(self._select, {"id": task_id}, write=False)
        else:
            rows, _ = self._exec(self._select, {"id": task_id}, write=False)
        return rows[0] if rows else None

    def page(
        self, *, status: str | None, submitted_by: int | None, before: int, limit: int
    ) -> list[tuple[Record, Heartbeat]]:
        """Up to ``limit`` tasks with ids below ``before``, newest first, filtered when given."""
        stmt = self._lists[status is not None, submitted_by is not None]
        values = {"status": status, "submitted_by": submitted_by, "before": before, "limit": limit}
        rows, _ = self._exec(stmt, values, write=False)
        return [(Record._make(row[:ROW_WIDTH]), Heartbeat._make(row[ROW_WIDTH:])) for row in rows]

    def apply(
        self,
        task_id: int,
        event: Event,
        now: int,
        *,
        progress: int | None = None,
        message: str | None = None,
        result: str | None = None,
        runner: str | None = None,
    ) -> Record | None:
        """Apply ``event`` if the task's status allows it, in one compare-and-set statement.

        Returns the changed row, or None when nothing was written (no such task,
        or its status does not allow a write for ``event``; :meth:`fetch` tells which).
        ``progress``, ``message`` and ``result`` (JSON text) are the event's fields,
        None keeping what is stored; ``runner`` owns a task this event starts.
        """
        rows = self._write(self._events[event], _event_values(task_id, now, progress, message, result, runner))
        if not rows:
            return None
        self._written(task_id)
        return Record._make(rows[0])

    def committing(self) -> bool:
        """Whether a thread of this process is committing a write now, so :meth:`apply_detached` may take one: a hint."""
        return self._direct and self._commits.leading

    def apply_detached(
        self,
        task_id: int,
        event: Event,
        now: int,
        then: Callable[[Record | None], None],
        *,
        progress: int | None = None,
        message: str | None = None,
        result: str | None = None,
        runner: str | None = None,
    ) -> bool:
        """:meth:`apply`, committed by the write another thread of this process has under way; False if none has.

        Returns at once, True, when such a write is under way on a SQLite file:
        that thread commits this write next, then calls ``then`` with the changed
        row, or with None when nothing was written (the event was refused, or the
        write failed or was given back: :meth:`apply` then tells which, and
        retries what can be). ``then`` runs on that thread, so it must be quick.
        Otherwise returns False, having done nothing: call :meth:`apply`.
        """
        if not self.committing() or self.db.query_hooks or self._admission.closed or self.db.in_transaction():
            return False
        values = _event_values(task_id, now, progress, message, result, runner)

        def settled(outcome: tuple[list[tuple[Any, ...]], int] | None) -> None:
            if outcome is None or not outcome[0]:
                then(None)
                return
            try:
                self._written(task_id)
            finally:
                then(Record._make(outcome[0][0]))

        stmt = self._events[event]
        return self._commits.write_detached(stmt.sql, stmt.bind(values), settled)

    def count_expired(self, cutoff: int) -> int:
        """How many tasks :meth:`purge` with this ``cutoff`` would delete now."""
        rows, _ = self._exec(self._expired, {"cutoff": cutoff}, write=False)
        return int(rows[0][0])

    def purge(self, cutoff: int, *, lease: tuple[str, int] | None = None) -> int:
        """Delete terminal tasks finished before ``cutoff``, a short transaction per batch.

        Batches are id ranges sized to take about PURGE_BATCH_SECONDS each, and the
        write lock is let go between them so other writers get their turn. With
        ``lease=(owner, ttl_ms)`` the purge lease is renewed at every batch.
        """
        rows, _ = self._exec(self._purge_span, {"cutoff": cutoff}, write=False)
        low, last = rows[0]
        if low is None:
            return 0
        with self._checkpoint_at_end():
            count = self._purge_range(cutoff, low, last, lease)
        if count:
            self._written(None)
        return count

    @contextlib.contextmanager
    def _checkpoint_at_end(self) -> Iterator[None]:
        # Left on, SQLite checkpoints the WAL into the file every 1000 pages, which
        # here means dozens of times; once at the end costs the same as one DELETE's.
        if not self._is_sqlite or self._serial is not None:
            yield
            return
        self._run("PRAGMA wal_autocheckpoint = 0", (), write=False)
        try:
            yield
        finally:
            self._run("PRAGMA wal_autocheckpoint = 1000", (), write=False)
            self._run("PRAGMA wal_checkpoint(PASSIVE)", (), write=True, exclusive=True)

    def _purge_range(self, cutoff: int, low: int, last: int, lease: tuple[str, int] | None) -> int:
        total, span = 0, PURGE_BATCH_MIN
        while low <= last:
            began = time.monotonic()
            _, count = self._exec(
                self._purge, {"cutoff": cutoff, "low": low, "high": low + span}, write=True, exclusive=True
            )
            took = time.monotonic() - began
            total += count
            low += span
            if lease is not None:
                self.take_lease(PURGE_LEASE, lease[0], now=now_ms(), ttl_ms=lease[1])
            scale = PURGE_BATCH_SECONDS / max(took, 1e-4)
            span = int(min(PURGE_BATCH_MAX, max(PURGE_BATCH_MIN, span * min(scale, 2.0))))
            time.sleep(0.001)  # let a waiting writer of this process take the lock
        return total

    def reclaim(self) -> None:
        """Give freed space back to the file system: incremental vacuum, then a WAL checkpoint.

        SQLite only; never a full VACUUM, which would lock the file for its whole run.
        """
        if not self._is_sqlite or self._serial is not None:
            return
        rows, _ = self._run("PRAGMA auto_vacuum", (), write=False)
        while rows[0][0] == 2:  # incremental
            free, _ = self._run("PRAGMA freelist_count", (), write=False)
            if not free[0][0]:
                break
            # A bounded step per transaction, so other writers wait for one step at most.
            self._run("PRAGMA incremental_vacuum(2000);", (), write=True, exclusive=True, script=True)
            time.sleep(0.001)
        self._run("PRAGMA wal_checkpoint(TRUNCATE)", (), write=True, exclusive=True)

    def hot_statements(self) -> dict[str, tuple[str, list[Any] | tuple[Any, ...]]]:
        """Every statement that reads or changes the task table, with sample parameters.

        Name -> (sql, params), as this store runs them: for checking their query
        plans (each must find its rows through an index, never by scanning the
        table). The runner table's statements are left out: it holds one row per
        live process.
        """
        sample = {
            "id": 1,
            "now": 1,
            "status": TaskStatus.RUNNING.value,
            "submitted_by": 1,
            "before": 10,
            "limit": 50,
            "runner": "r",
            "cutoff": 1,
            "low": 1,
            "high": 2,
            "progress": None,
            "message": None,
            "result": None,
        }
        statements = {
            "get": self._select,
            "kill_runner": self._kill_runner,
            "kill_stale": self._kill_stale,
            "purge_span": self._purge_span,
            "count_expired": self._expired,
            "purge": self._purge,
        }
        for (by_status, by_user), stmt in self._lists.items():
            statements[f"list{'_status' * by_status}{'_submitted_by' * by_user}"] = stmt
        for event, stmt in self._events.items():
            statements[f"apply_{event.value}"] = stmt
        notify = f"NOTIFY {CHANGE_CHANNEL}; "
        # A write on PostgreSQL carries its NOTIFY in front: the plan is the statement's.
        return {name: (stmt.sql.removeprefix(notify), stmt.bind(dict(sample))) for name, stmt in statements.items()}

    # -- runners --------------------------------------------------------------

    def add_runner(self, token: str, host: str, pid: int) -> None:
        """Record a runner (one tracker's worker pool) and its first heartbeat, on the store's clock."""
        self._exec(self._runner_insert, {"token": token, "host": host, "pid": pid}, write=True)

    def heartbeat(self, token: str) -> bool:
        """Renew a runner's heartbeat; False if its row is gone (it was declared dead)."""
        _, count = self._exec(self._heartbeat, {"token": token}, write=True)
        return count == 1

    def remove_runner(self, token: str) -> None:
        self._exec(self._runner_delete, {"token": token}, write=True)

    def dead_runners(self, age_ms: int, *, me: str, shift_ms: int = 0) -> list[tuple[str, str, int]]:
        """Runners other than ``me`` whose heartbeat is older than ``age_ms`` by the store's clock.

        ``shift_ms`` moves the store's clock forward (or back) for the comparison,
        for a caller judging at another instant than now. Each is (token, host, pid).
        """
        rows, _ = self._exec(self._runners_dead, {"age": age_ms, "shift": shift_ms, "token": me}, write=False)
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    def runners_on_host(self, host: str, *, me: str) -> list[tuple[str, int]]:
        """Runners other than ``me`` recorded on ``host``: (token, pid)."""
        rows, _ = self._exec(self._runners_on_host, {"host": host, "token": me}, write=False)
        return [(str(r[0]), int(r[1])) for r in rows]

    def bury_runner(self, token: str, message: str, now: int) -> list[Record]:
        """Mark every unfinished task of a runner DEAD and forget the runner, in one transaction.

        Returns the tasks it made DEAD, as they then are.
        """
        kill = {"runner": token, "now": now, "message": message, "progress": None, "result": None}
        rows, _ = self._in_transaction([(self._kill_runner, kill), (self._runner_delete, {"token": token})])
        if rows:
            self._written(None)
        return [Record._make(row) for row in rows]

    def bury_stale(self, cutoff: int, message: str, now: int) -> list[Record]:
        """Mark DEAD the unfinished tasks with no runner whose last update is older than ``cutoff``.

        Returns the tasks it made DEAD, as they then are.
        """
        values = {"cutoff": cutoff, "now": now, "message": message, "progress": None, "result": None}
        rows, _ = self._exec(self._kill_stale, values, write=True)
        if rows:
            self._written(None)
        return [Record._make(row) for row in rows]

    # -- change notifications ---------------------------------------------------

    def _written(self, task_id: int | None, *, notify: bool = True) -> None:
        """After a committed write of tasks: NOTIFY where it is a statement of its own, and the ``written`` callback.

        ``notify=False`` for a new task's insert (see :meth:`_build_statements`).
        """
        if notify and self._notify_after:
            try:
                self._run(f"NOTIFY {CHANGE_CHANNEL}", (), write=True)
            except StoreError as exc:  # the write stands; listeners catch up at their next look
                key = None if task_id is None else str(task_id)
                log(logging.WARNING, "could not notify listeners of a change: %s", exc, task_id=key)
        if self.written is not None:
            self.written(task_id)

    def versions(self, task_ids: Iterable[int]) -> dict[int, Version]:
        """The :data:`Version` of each task of ``task_ids`` that exists, by id: one read per VERSIONS_BATCH ids."""
        ids = sorted(set(task_ids))
        found: dict[int, Version] = {}
        for start in range(0, len(ids), VERSIONS_BATCH):
            batch = ids[start : start + VERSIONS_BATCH]
            batch += batch[-1:] * (VERSIONS_BATCH - len(batch))  # one statement for every batch
            rows, _ = self._exec(self._versions, {f"id{i}": key for i, key in enumerate(batch)}, write=False)
            found.update((int(r[0]), (str(r[1]), int(r[2]), int(r[3]))) for r in rows)
        return found

    def change_probe(self) -> ChangeProbe | None:
        """A new probe that tells when any process may have written this store; None when there is none.

        None for a private in-memory store, and for PostgreSQL without psycopg2.

        SQLite: ``PRAGMA data_version`` on a connection of its own, looked at every
        PROBE_INTERVAL. PostgreSQL: LISTEN on CHANGE_CHANNEL on a connection of its
        own, opened again after the server restarts.
        """
        if self._serial is not None:
            return None  # a private in-memory store: no other process can write it
        if self._is_sqlite:
            return _SqliteProbe(str(self.db.database), self._pragmas)
        try:
            importlib.import_module("psycopg2")
        except ImportError:  # a host's database on psycopg3: other processes' changes are seen by re-reading
            return None
        params = dict(getattr(self.db, "connect_params", {}))
        params.pop("autocommit", None)
        return _PostgresProbe(str(self.db.database), params)

    # -- leases ---------------------------------------------------------------

    def take_lease(self, name: str, owner: str, *, now: int, ttl_ms: int) -> bool:
        """Take (or renew) the lease ``name`` for ``owner`` until ``now + ttl_ms``; False if another holds it."""
        values = {"name": name, "owner": owner, "now": now, "expires": now + ttl_ms}
        _, count = self._exec(self._lease_take, values, write=True)
        return count == 1

    def drop_lease(self, name: str, owner: str) -> None:
        self._exec(self._lease_drop, {"name": name, "owner": owner}, write=True)

    def close(self, *, timeout: float = CLOSE_TIMEOUT) -> None:
        """Refuse new statements, then close every connection of a database tasklib opened itself.

        Statements already running are waited for (up to ``timeout`` seconds);
        connections still in use after that are left to the garbage collector
        rather than closed under a running statement. A caller's database is left
        open. Later statements raise StoreError.
        """
        idle = self._admission.close(timeout)
        if not self._owned:
            return
        if not idle:
            log(
                logging.WARNING,
                "the store %s closed with statements still running; their connections stay open",
                self.name,
            )
            return
        if isinstance(self.db, (PooledDatabase, _SqliteFile)):
            self.db.close_all()
        elif not self.db.is_closed():
            self.db.close()


class ChangeProbe:
    """Tells, from one thread, whether a store may have changed: :meth:`wait` blocks up to a timeout.

    The first :meth:`wait` (and the first after a lost connection) answers True:
    what happened before it looked is unknown.
    """

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True as soon as the store may have changed."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the probe's connection."""


class _SqliteProbe(ChangeProbe):
    """``PRAGMA data_version`` changes whenever another connection (of any process) commits."""

    def __init__(self, path: str, pragmas: tuple[tuple[str, Any], ...]) -> None:
        self._path = path
        self._pragmas = pragmas
        self._conn: sqlite3.Connection | None = None
        self._last: int | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, timeout=SQLITE_BUSY_TIMEOUT, check_same_thread=False)
            try:
                # The probe only reads, but every connection tasklib opens says the
                # store's durability, so none can be found weaker than promised.
                for name, value in self._pragmas:
                    conn.execute(f"PRAGMA {name} = {value}")
            except sqlite3.Error:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _version(self) -> int | None:
        try:
            return int(self._connection().execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error as exc:
            log(logging.DEBUG, "could not read the data version of %s: %s", self._path, exc)
            self.close()
            return None

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            version = self._version()
            if version is None or version != self._last:
                self._last = version
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(PROBE_INTERVAL, left))

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()


class _PostgresProbe(ChangeProbe):
    """LISTEN on a psycopg2 connection of its own; a NOTIFY of any process's write wakes it."""

    def __init__(self, database: str, params: dict[str, Any]) -> None:
        self._database = database
        self._params = params
        self._conn: Any = None
        self._pause = 0.0

    def wait(self, timeout: float) -> bool:
        psycopg2 = importlib.import_module("psycopg2")
        if self._conn is None:
            if self._pause:
                time.sleep(min(self._pause, timeout))
            try:
                conn = psycopg2.connect(dbname=self._database, **self._params)
                conn.autocommit = True
                with conn.cursor() as cursor:
                    cursor.execute(f"LISTEN {CHANGE_CHANNEL}")
            except psycopg2.Error as exc:
                self._pause = min(max(self._pause * 2, PROBE_INTERVAL), PROBE_RECONNECT_LONGEST)
                log(logging.DEBUG, "could not listen for changes of %s: %s", self._database, exc)
                return True  # unknown: the store may have changed meanwhile
            self._conn, self._pause = conn, 0.0
            return True
        try:
            readable, _, _ = select.select([self._conn], [], [], timeout)
            if not readable:
                return False
            self._conn.poll()
            heard = bool(self._conn.notifies)
            self._conn.notifies.clear()
            return heard
        except (psycopg2.Error, OSError, ValueError) as exc:
            log(logging.DEBUG, "lost the connection listening for changes of %s: %s", self._database, exc)
            self.close()
            return True

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
