"""psycopg 3 behind the small connection interface the inventory's queries use.

The queries are written once with SQLite's `?` placeholders; this adapter rewrites them to
psycopg's `%s` (cached per statement) and returns rows that, like sqlite3.Row, index by
column name and by position. psycopg prepares statements it sees repeatedly, so the hot
queries are parsed once per connection.

Transactions run in psycopg's pipeline mode (`PgConn.pipeline()`): a statement whose result
nobody reads yet (BEGIN, the write lock, SAVEPOINT, an INSERT, COMMIT) goes out with the next
one instead of waiting for its own round trip, so a write costs a round trip only where the
code needs an answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import RowMaker


class PgRow(tuple[Any, ...]):
    """A result row: row["sku"] and row[0] both work."""

    _names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor: psycopg.Cursor[Any]) -> RowMaker[PgRow]:
    names = {col.name: i for i, col in enumerate(cursor.description or ())}
    row_class = type("Row", (PgRow,), {"_names": names})

    def make(values: Sequence[Any]) -> PgRow:
        return row_class(values)  # type: ignore[no-any-return]

    return make


def connect_pg(url: str) -> psycopg.Connection[PgRow]:
    conn: psycopg.Connection[PgRow] = psycopg.connect(
        url, autocommit=True, row_factory=_row_factory
    )
    return conn


_OPEN = (TransactionStatus.INTRANS, TransactionStatus.INERROR)


class PipelinedCursor:
    """A cursor in pipeline mode. Rows are fetched on demand by psycopg; the row count of an
    UPDATE or DELETE is known only once its result is in, so asking for it syncs first."""

    def __init__(self, cursor: psycopg.Cursor[PgRow], pipeline: psycopg.Pipeline) -> None:
        self._cursor = cursor
        self._pipeline = pipeline

    @property
    def rowcount(self) -> int:
        self._pipeline.sync()
        return self._cursor.rowcount

    def fetchone(self) -> PgRow | None:
        return self._cursor.fetchone()

    def fetchall(self) -> list[PgRow]:
        return self._cursor.fetchall()

    def __iter__(self) -> Iterator[PgRow]:
        return iter(self._cursor.fetchall())


class PgConn:
    def __init__(self, conn: psycopg.Connection[PgRow]) -> None:
        self._conn = conn
        self._sql: dict[str, str] = {}
        self._pipeline: psycopg.Pipeline | None = None

    def _translate(self, sql: str) -> str:
        out = self._sql.get(sql)
        if out is None:
            out = self._sql[sql] = sql.replace("%", "%%").replace("?", "%s")
        return out

    def execute(
        self, sql: str, params: Sequence[Any] = (), /
    ) -> psycopg.Cursor[PgRow] | PipelinedCursor:
        if self._pipeline is not None:
            # One statement per call here: pipeline mode speaks the extended protocol only.
            return PipelinedCursor(self._conn.execute(self._translate(sql), params), self._pipeline)
        if not params:
            # No parameters: sent as it is, so a script of several statements works too.
            return self._conn.execute(sql.encode())
        return self._conn.execute(self._translate(sql), params)

    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(self._translate(sql), params)

    @contextmanager
    def pipeline(self) -> Iterator[None]:
        """Run the block in pipeline mode; leaving it waits for every result (and raises the
        first error). A transaction an error left open is rolled back, so the connection is
        idle for the next request whatever happened."""
        try:
            with self._conn.pipeline() as pipeline:
                self._pipeline = pipeline
                try:
                    yield
                finally:
                    self._pipeline = None
        finally:
            # (Not on a broken connection: its own error is the one to see.)
            if self._conn.info.transaction_status in _OPEN:
                self._conn.execute(b"ROLLBACK")

    def close(self) -> None:
        self._conn.close()
