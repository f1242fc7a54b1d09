"""The event log stays bounded on disk and writes in batches, not per line."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from device.events import ErrorRaised
from device.service.eventlog import EventLog


class GatedLog(EventLog):
    """Holds its first batch until told, so everything published meanwhile queues up."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def _write_batch(self, lines: list[str]) -> None:
        self.entered.set()
        self.gate.wait()
        super()._write_batch(lines)


def publish(log: EventLog, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        log(ErrorRaised(where="test", message=f"event {n:05d} " + "x" * 80))


def test_a_burst_of_events_is_written_in_one_batch_and_synced_once(tmp_path: Path) -> None:
    log = GatedLog(tmp_path / "events.jsonl", device_id="t", sync_s=3600)
    publish(log, 1)
    log.entered.wait(10)
    publish(log, 999, start=1)
    log.gate.set()
    log.close()
    assert log.batches == 2  # one line, then the 999 that queued behind it
    assert log.syncs == 1  # at close; not per line, not per batch
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["message"][:11] for line in lines] == [
        f"event {n:05d}" for n in range(1000)
    ]


def test_the_log_rotates_by_size_and_keeps_only_the_newest_backups(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, device_id="t", max_bytes=10_000, backups=3)
    publish(log, 2_000)
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["events.jsonl", "events.jsonl.1", "events.jsonl.2", "events.jsonl.3"]
    assert all((tmp_path / name).stat().st_size <= 10_000 for name in files)
    assert log.size <= 40_000
    # Whole lines, in order, the newest kept: the backups end where the next file starts.
    kept = [
        json.loads(line)["message"][6:11]
        for name in ["events.jsonl.3", "events.jsonl.2", "events.jsonl.1", "events.jsonl"]
        for line in (tmp_path / name).read_text().splitlines()
    ]
    numbers = [int(n) for n in kept]
    assert numbers == list(range(numbers[0], 2_000))
    assert log.rotations > 3
