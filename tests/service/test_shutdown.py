"""Stopping parts within bounds: a part that hangs or raises does not hold the others, and a
stop that hangs anywhere ends the process with every thread's stack before systemd kills it."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from device.service.shutdown import STOP_DEADLINE_S, PartsStopper

UNIT = Path(__file__).parents[2] / "systemd" / "warehouse-voice.service"


def unit_stop_timeout_s() -> float:
    """The unit's TimeoutStopSec: after it, systemd kills the daemon instead."""
    found = re.search(r"^TimeoutStopSec=(\d+)$", UNIT.read_text(), re.M)
    assert found is not None, "the unit must bound its stop"
    return float(found.group(1))


async def test_a_part_that_hangs_or_raises_does_not_keep_the_others_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed: list[str] = []
    never = asyncio.Event()

    async def hangs() -> None:
        await never.wait()

    def raises() -> None:
        raise OSError("device gone")

    async def closes() -> None:
        closed.append("speaker")

    stopper = PartsStopper(timeout_s=0.05)
    await stopper.close("camera", hangs)
    await stopper.close("microphone", raises)
    await stopper.close("speaker", closes)
    await stopper.close("event log", lambda: closed.append("event log"))
    assert closed == ["speaker", "event log"]
    assert stopper.hung == ["camera"] and stopper.failed == ["microphone"]
    assert "the camera did not stop within" in caplog.text
    assert "closing the microphone failed" in caplog.text and "device gone" in caplog.text


def test_the_stop_deadline_comes_before_systemd_kills_the_unit() -> None:
    assert unit_stop_timeout_s() >= STOP_DEADLINE_S + 3


def test_a_stop_that_hangs_past_its_deadline_ends_with_every_threads_stack() -> None:
    script = textwrap.dedent(
        """
        import threading, time
        from device.service.shutdown import PartsStopper
        threading.Thread(target=lambda: time.sleep(600), name="wedged", daemon=True).start()
        PartsStopper().arm_deadline(0.2)
        time.sleep(600)  # a stop that never ends
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("Thread 0x") >= 2, done.stderr  # the wedged thread and the main
    assert "time.sleep(600)" in done.stderr or "<string>" in done.stderr, done.stderr
