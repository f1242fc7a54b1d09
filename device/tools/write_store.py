"""The write queue's file: confirmed writes saved in SQLite until the inventory API takes them.

Every change is committed with `synchronous=FULL`, so a write the worker was told is saved
survives a power cut or a kill -9. Calls block on the disk; the queue runs them in a thread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS writes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    body TEXT NOT NULL,
    context TEXT NOT NULL,
    queued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    refused_code TEXT,
    refused_detail TEXT
);
"""


@dataclass(frozen=True)
class SavedWrite:
    seq: int
    idempotency_key: str
    path: str
    body: dict[str, Any]
    context: dict[str, str | None]
    queued_at: float  # wall clock
    attempts: int
    refused_code: str | None  # set once the API refused it: a hand-off ticket is still owed
    refused_detail: str | None


class WriteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: the WAL is fsynced at every commit, so "saved" means on the card.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(
        self, key: str, path: str, body: dict[str, Any], context: dict[str, str | None]
    ) -> bool:
        """Save one write; False if a write with this key is already saved (a retried commit)."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO writes (idempotency_key, path, body, context, queued_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (key, path, json.dumps(body), json.dumps(context), time.time()),
            )
            return cursor.rowcount == 1

    def head(self) -> SavedWrite | None:
        """The oldest saved write: the only one that may be sent next."""
        with self._lock:
            row = self._db.execute("SELECT * FROM writes ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else _saved(row)

    def tally(self) -> tuple[int, float | None]:
        """How many writes wait, and when the oldest was saved."""
        with self._lock:
            count, oldest = self._db.execute(
                "SELECT count(*), min(queued_at) FROM writes"
            ).fetchone()
        return int(count), oldest

    def attempted(self, seq: int) -> None:
        with self._lock:
            self._db.execute("UPDATE writes SET attempts = attempts + 1 WHERE seq = ?", (seq,))

    def refused(self, seq: int, code: str, detail: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE writes SET refused_code = ?, refused_detail = ? WHERE seq = ?",
                (code, detail[:500], seq),
            )

    def remove(self, seq: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM writes WHERE seq = ?", (seq,))


def _saved(row: tuple[Any, ...]) -> SavedWrite:
    seq, key, path, body, context, queued_at, attempts, code, detail = row
    return SavedWrite(
        seq=int(seq),
        idempotency_key=str(key),
        path=str(path),
        body=json.loads(body),
        context=json.loads(context),
        queued_at=float(queued_at),
        attempts=int(attempts),
        refused_code=code,
        refused_detail=detail,
    )
