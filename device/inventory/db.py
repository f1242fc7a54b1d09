"""The inventory's database: SQLite (embedded, the default) or PostgreSQL, on one code path.

`open_database(target)` takes a file path, `sqlite:///path` or `postgresql://...`. Both
backends hand the same queries a connection that speaks `?` placeholders and returns rows
indexable by column name and position, so operations, queries and the idempotency store are
written once.

The server's event loop runs the queries itself, on one connection. That loop does nothing
but serve inventory requests, and these point queries take tens of microseconds: less than
handing them to a worker thread costs (measured: worker threads made SQLite writes several
times slower under load). It also makes the service serial by construction within a process.

Across processes (several servers, the token CLI), every write takes the database's write
lock first: `BEGIN IMMEDIATE` on SQLite, a transaction-scoped advisory lock on PostgreSQL.
So a stock check and the decrement after it never interleave with another writer, and the
conditional decrements and versioned counts keep the same guarantees on both. Reads run on
one snapshot (SQLite's read transaction, PostgreSQL's REPEATABLE READ).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000
# Any constant works; it only has to be the same for every inventory server on the database.
PG_WRITE_LOCK = 0x77766931


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    """What queries see: sqlite3.Connection, or the PostgreSQL adapter below."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Cursor: ...
    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> Any: ...


class _Rollback(Exception):
    """Carries a dry run's result out of the transaction it rolls back."""

    def __init__(self, value: object) -> None:
        super().__init__("dry run: rolled back on purpose")
        self.value = value


def is_postgres_url(target: str | Path) -> bool:
    return str(target).startswith(("postgresql://", "postgres://"))


def schema_sql(dialect: str = "sqlite") -> str:
    name = "schema.sql" if dialect == "sqlite" else "schema_postgres.sql"
    return resources.files("device.inventory").joinpath(name).read_text("utf-8")


def sqlite_path(target: str | Path) -> Path:
    text = str(target)
    return Path(text.removeprefix("sqlite:///")) if text.startswith("sqlite:///") else Path(text)


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode: transactions are opened explicitly by the caller."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    # With WAL, NORMAL loses at most the last commits on power loss and never corrupts.
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def initialise(path: Path) -> None:
    """Create the file, switch it to WAL and apply the schema. Safe to repeat."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(
                f"could not put {path} in WAL mode (got {mode!r}); use a local filesystem"
            )
        conn.executescript(schema_sql())
    finally:
        conn.close()


def run_in_transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


class Database:
    """One connection to the inventory, used by one thread at a time. SQLite by default."""

    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path: Path | None = Path(path)
        self.url = str(path)
        initialise(self.path)
        self._conn: Any = connect(self.path)

    @property
    def conn(self) -> Conn:
        if self._conn is None:
            raise RuntimeError(f"the inventory database {self.url} is closed")
        conn: Conn = self._conn
        return conn

    def _begin_read(self, conn: Conn) -> None:
        conn.execute("BEGIN")

    def _begin_write(self, conn: Conn) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def read(self, fn: Callable[[Conn], T]) -> T:
        """Run `fn` on one consistent snapshot (it may issue several queries)."""
        conn = self.conn
        self._begin_read(conn)
        try:
            return fn(conn)
        finally:
            conn.execute("ROLLBACK")

    def read_one(self, fn: Callable[[Conn], T]) -> T:
        """Run `fn`, which issues a single statement: it is its own snapshot, so no explicit
        transaction (on PostgreSQL that saves two round trips on every request's token check)."""
        return fn(self.conn)

    def write(self, fn: Callable[[Conn], T]) -> T:
        """Run `fn` in one committed transaction holding the write lock; errors roll back."""
        conn = self.conn
        self._begin_write(conn)
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def dry_run(self, fn: Callable[[Conn], T]) -> T:
        """Run `fn` exactly as a write would, then roll back: the would-be result, no change."""

        def undo(conn: Conn) -> T:
            raise _Rollback(fn(conn))

        try:
            self.write(undo)
        except _Rollback as done:
            return done.value  # type: ignore[return-value]
        raise AssertionError("unreachable: undo always raises")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PostgresDatabase(Database):
    """The same API on PostgreSQL (psycopg 3), for sites with several servers or a big DB.

    Reads and writes run in pipeline mode (see pg.py): a move is six round trips, not twenty.
    """

    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        from device.inventory.pg import PgConn, connect_pg

        self.path = None
        self.url = url
        self._pg = PgConn(connect_pg(url))
        self._conn = self._pg
        # A script of several statements: outside pipeline mode, as one simple query.
        Database.write(self, lambda conn: conn.execute(schema_sql("postgresql")))

    def _begin_read(self, conn: Conn) -> None:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def _begin_write(self, conn: Conn) -> None:
        conn.execute("BEGIN")
        conn.execute(f"SELECT pg_advisory_xact_lock({PG_WRITE_LOCK})")

    def read(self, fn: Callable[[Conn], T]) -> T:
        with self._pipelined():
            return super().read(fn)

    def write(self, fn: Callable[[Conn], T]) -> T:
        with self._pipelined():
            return super().write(fn)

    def _pipelined(self) -> AbstractContextManager[None]:
        if self._conn is None:
            raise RuntimeError(f"the inventory database {self.url} is closed")
        return self._pg.pipeline()


def open_database(target: str | Path) -> Database:
    """The database at `target`: a SQLite file path, sqlite:///path or postgresql://..."""
    if is_postgres_url(target):
        return PostgresDatabase(str(target))
    return Database(sqlite_path(target))


def database_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean the database (not the request) failed, for the CLI to report."""
    errors: list[type[Exception]] = [sqlite3.Error]
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return tuple(errors)
    errors.append(psycopg.Error)
    return tuple(errors)
