"""psycopg 3 behind the small connection interface the inventory's queries use.

The queries are written once with SQLite's `?` placeholders; this adapter rewrites them to
psycopg's `%s` (cached per statement) and returns rows that, like sqlite3.Row, index by
column name and by position. psycopg prepares statements it sees repeatedly, so the hot
queries are parsed once per connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
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


class PgConn:
    def __init__(self, conn: psycopg.Connection[PgRow]) -> None:
        self._conn = conn
        self._sql: dict[str, str] = {}

    def _translate(self, sql: str) -> str:
        out = self._sql.get(sql)
        if out is None:
            out = self._sql[sql] = sql.replace("%", "%%").replace("?", "%s")
        return out

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> psycopg.Cursor[PgRow]:
        if not params:
            # No parameters: sent as it is, so a script of several statements works too.
            return self._conn.execute(sql.encode())
        return self._conn.execute(self._translate(sql), params)

    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(self._translate(sql), params)

    def close(self) -> None:
        self._conn.close()
