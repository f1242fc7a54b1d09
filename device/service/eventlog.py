"""The JSON-lines event log: one object per bus event, for people and external tools.

Lines are written by a background thread so a slow SD card never stalls the event loop. The
thread writes whatever has queued up in one batch, and asks the card to make it durable
(`fsync`) at most every `sync_s`, not per line: an SD card wears with every sync. The file is
rotated by size: `events.jsonl` becomes `events.jsonl.1` (and so on, up to `backups`), so a
shift never fills the card. Schema: README.md, "Event log".
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

from device.events import Event, Metric

log = logging.getLogger(__name__)

MAX_BATCH = 1000  # lines per write, so one huge backlog cannot hold the file for long


class EventLog:
    def __init__(
        self,
        path: Path,
        *,
        device_id: str,
        include_metrics: bool = True,
        max_bytes: int = 20 * 1024 * 1024,
        backups: int = 3,
        sync_s: float = 5.0,
    ) -> None:
        if max_bytes <= 0 or backups < 0:
            raise ValueError(f"max_bytes must be > 0 and backups >= 0, got {max_bytes}, {backups}")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.sync_s = sync_s
        self.batches = 0  # writes to the file (one per batch of lines)
        self.syncs = 0
        self.rotations = 0
        self._device_id = device_id
        self._include_metrics = include_metrics
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        self._size = self._file.tell()
        self._synced_at = time.monotonic()
        self._thread = threading.Thread(target=self._write, name="event-log", daemon=True)
        self._thread.start()

    def __call__(self, event: Event) -> None:
        if isinstance(event, Metric) and not self._include_metrics:
            return
        record: dict[str, Any] = {"device": self._device_id, **event.to_record()}
        self._queue.put(json.dumps(record, default=str, separators=(",", ":")))

    @property
    def size(self) -> int:
        """Bytes on disk across the log and its backups."""
        paths = [self.path, *(self._backup(n) for n in range(1, self.backups + 1))]
        return sum(p.stat().st_size for p in paths if p.exists())

    def _write(self) -> None:
        while True:
            first = self._queue.get()
            lines = [] if first is None else [first]
            stop = first is None
            while not stop and len(lines) < MAX_BATCH:
                try:
                    line = self._queue.get_nowait()
                except queue.Empty:
                    break
                if line is None:
                    stop = True
                else:
                    lines.append(line)
            try:
                if lines:
                    self._write_batch(lines)
                if stop or time.monotonic() - self._synced_at >= self.sync_s:
                    self._sync()
            except OSError:
                log.exception("cannot write the event log %s", self.path)
            if stop:
                return

    def _write_batch(self, lines: list[str]) -> None:
        # Rotate at line boundaries, so every file holds whole lines.
        chunk: list[str] = []
        chunk_bytes = 0
        for line in lines:
            size = len(line.encode("utf-8")) + 1
            if self._size + chunk_bytes + size > self.max_bytes and (self._size or chunk):
                self._emit(chunk)
                chunk, chunk_bytes = [], 0
                self._rotate()
            chunk.append(line)
            chunk_bytes += size
        self._emit(chunk)

    def _emit(self, lines: list[str]) -> None:
        if not lines:
            return
        text = "\n".join(lines) + "\n"
        self._file.write(text)
        self._file.flush()
        self._size += len(text.encode("utf-8"))
        self.batches += 1

    def _sync(self) -> None:
        os.fsync(self._file.fileno())
        self._synced_at = time.monotonic()
        self.syncs += 1

    def _backup(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")

    def _rotate(self) -> None:
        self._sync()
        self._file.close()
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            self._backup(self.backups).unlink(missing_ok=True)
            for n in range(self.backups - 1, 0, -1):
                if self._backup(n).exists():
                    self._backup(n).rename(self._backup(n + 1))
            self.path.rename(self._backup(1))
        self._file = self.path.open("a", encoding="utf-8")
        self._size = 0
        self.rotations += 1

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=2.0)
        self._file.close()


def read_events(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
