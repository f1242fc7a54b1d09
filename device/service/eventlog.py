"""The JSON-lines event log: one object per bus event, for people and external tools.

Lines are written by a background thread so a slow SD card never stalls the event loop.
Schema: README.md, "Event log".
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from pathlib import Path
from typing import Any

from device.events import Event, Metric

log = logging.getLogger(__name__)


class EventLog:
    def __init__(self, path: Path, *, device_id: str, include_metrics: bool = True) -> None:
        self.path = path
        self._device_id = device_id
        self._include_metrics = include_metrics
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        self._thread = threading.Thread(target=self._write, name="event-log", daemon=True)
        self._thread.start()

    def __call__(self, event: Event) -> None:
        if isinstance(event, Metric) and not self._include_metrics:
            return
        record: dict[str, Any] = {"device": self._device_id, **event.to_record()}
        self._queue.put(json.dumps(record, default=str, separators=(",", ":")))

    def _write(self) -> None:
        while (line := self._queue.get()) is not None:
            try:
                self._file.write(line + "\n")
                self._file.flush()
            except OSError:
                log.exception("cannot write the event log %s", self.path)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=2.0)
        self._file.close()


def read_events(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
