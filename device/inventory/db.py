"""SQLite access for the reference inventory.

The server's event loop runs the queries itself, on one connection. That loop does nothing
but serve inventory requests, and these point queries take tens of microseconds: less than
handing them to a worker thread costs, because every SQLite call releases the GIL and a busy
loop thread makes the worker wait for it back (measured: worker threads made writes several
times slower under load). It also makes the service serial by construction, so a stock check
and the decrement after it can never interleave with another request in this process.

`BEGIN IMMEDIATE` still guards every write: it takes SQLite's write lock up front, so a second
process on the same file (another server, the token CLI) waits instead of interleaving. WAL
mode lets readers in other processes run while a write commits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000


class _Rollback(Exception):
    """Carries a dry run's result out of the transaction it rolls back."""

    def __init__(self, value: object) -> None:
        super().__init__("dry run: rolled back on purpose")
        self.value = value


def schema_sql() -> str:
    return resources.files("device.inventory").joinpath("schema.sql").read_text("utf-8")


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
    """The inventory file behind one connection, used by one thread at a time."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        initialise(self.path)
        self._conn: sqlite3.Connection | None = connect(self.path)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"the inventory database {self.path} is closed")
        return self._conn

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on one consistent snapshot (it may issue several queries)."""
        conn = self.conn
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("ROLLBACK")

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one committed `BEGIN IMMEDIATE` transaction; an exception rolls back."""
        return run_in_transaction(self.conn, fn)

    def dry_run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` exactly as a write would, then roll back: the would-be result, no change."""

        def undo(conn: sqlite3.Connection) -> T:
            raise _Rollback(fn(conn))

        try:
            run_in_transaction(self.conn, undo)
        except _Rollback as done:
            return done.value  # type: ignore[return-value]
        raise AssertionError("unreachable: undo always raises")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
