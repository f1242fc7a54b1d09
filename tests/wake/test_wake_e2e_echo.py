"""The device does not hear itself: its replies come back into the microphone, 20 in a row.

A simulated room (`RoomSpeaker`, `RoomMic`) plays each reply and feeds it back into the
microphone 30 ms later, 15 dB down, smeared by a short reverb and over a noise floor, on one
sample clock at ten times real time. Every reply says the wake word. The Live emulator's own
voice detection is the service that would interrupt the reply if it heard it, and the real
wake listener is the one that would wake. In half-duplex and in AEC mode neither may happen
over 20 replies; then the worker talks over the 21st reply and must interrupt it.

A control run with echo handling off shows the room is loud enough to do both.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from test_wake_e2e_rig import RATE, HandsFree, RoomMic, RoomSpeaker, hands_free

from device.audio.echo import BargeIn, EchoMode, EchoStage, SpeakerTap
from device.events import Interrupted, Speaking, WakeDetected
from device.sim.scenario import Scenario, TurnSpec
from device.sim.speech import synthesize, synthesize_parts
from device.wake.models import ModelSet

REPLY = "Hey Jarvis here. Aisle twelve, bay three, level B."
USER = "next location please"
REPLIES = 20
BARGE_IN = "stop, wait, what about aisle fourteen"


def scenario() -> Scenario:
    turn = TurnSpec(user_transcript="Next location please.", reply_text=REPLY)
    return Scenario(name="echo", speed=10.0, loop=True, turns=[turn])


async def turns_done(rig: HandsFree, count: int) -> None:
    await rig.emulator.wait_for(
        lambda r: len(r.finished_turns) >= count, timeout_s=60, what=f"{count} replies"
    )


async def converse(
    rig: HandsFree, mic: RoomMic, room: RoomSpeaker, replies: int, *, barge_in: bool
) -> None:
    """Wake the device, then ask for the next location after each reply has finished; with
    `barge_in`, talk over one more reply half a second into it."""
    wake, _ = synthesize_parts(["hey jarvis", USER])
    ask = synthesize(USER)
    await rig.start()
    await mic.wait_quiet(3.0)  # the detector's features settle on room noise first
    mic.say(wake)
    for reply in range(1, replies + 1):
        await turns_done(rig, reply)
        await played_out(rig, reply)
        await mic.wait_quiet(0.6)
        if reply < replies or barge_in:
            mic.say(ask)
    if barge_in:
        await mic.wait_quiet()
        # Half a second into the reply, the worker talks over it.
        started = room.played_bytes
        await room.wait_played(started + RATE * 3)  # 0.5 s at 24 kHz, 2 bytes a sample
        async with rig.bus.stream() as events:
            mic.say(synthesize(BARGE_IN))
            await turns_done(rig, replies + 1)
            # The device acts on the service's `interrupted` (the emulator has sent it by now).
            async with asyncio.timeout(10):
                while not rig.of(Interrupted):
                    await events.get()


async def played_out(rig: HandsFree, count: int) -> None:
    """Until the device has played `count` replies to the end (it may lag the emulator)."""

    def ended() -> int:
        return sum(1 for e in rig.of(Speaking) if not e.started)

    async with rig.bus.stream() as events, asyncio.timeout(60):
        while ended() < count:
            await events.get()


@pytest.fixture
def room() -> tuple[RoomSpeaker, RoomMic]:
    speaker = RoomSpeaker()
    return speaker, RoomMic(speaker, speed=10.0)


def summary(rig: HandsFree, room: RoomSpeaker) -> dict[str, Any]:
    conn = rig.emulator.record.connections[0]
    return {
        "connections": len(rig.emulator.record.connections),
        "turns": len(conn.finished_turns),
        "interrupted": [i for i, t in enumerate(conn.turns) if t.interrupted],
        "barge_in_markers": [m.sample for m in conn.markers if m.kind == "barge_in"],
        "wakes": len(rig.of(WakeDetected)),
        "interruptions": [e.source for e in rig.of(Interrupted)],
        "flushed_bytes": room.flushed_bytes,
        "replies_heard": sum(1 for e in rig.of(Speaking) if e.started),
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "ignore_while_speaking"),
    [
        ("half_duplex", True),
        # AEC alone must keep the wake word out: the detector listens during replies.
        ("aec", False),
    ],
)
async def test_twenty_replies_without_hearing_itself_then_a_real_barge_in(
    tmp_path: Path,
    model_set: ModelSet,
    room: tuple[RoomSpeaker, RoomMic],
    mode: EchoMode,
    ignore_while_speaking: bool,
) -> None:
    speaker, mic = room
    tap = SpeakerTap(speaker)  # type: ignore[arg-type]
    stage = EchoStage(mode, tap)
    async with hands_free(
        tmp_path,
        model_set,
        scenario(),
        mic,
        speaker=tap,  # type: ignore[arg-type]
        processor=stage,
        ignore_while_speaking=ignore_while_speaking,
        # At ten times real time, the ~50 ms the wake end takes to find is half a second of
        # audio: keep more than the device's default 2 s.
        preroll_s=10.0,
        idle_timeout_s=5.0,
    ) as rig:
        if stage.gate is not None:
            stage.gate.bus = rig.bus
        await converse(rig, mic, speaker, REPLIES, barge_in=True)
        result = summary(rig, speaker)
    stage.close()
    print(f"{mode}: {result}")

    # One session, every reply heard out: no self-interruption, no self-wake.
    assert result["connections"] == 1
    assert result["turns"] == REPLIES + 1
    assert result["interrupted"] == [REPLIES]
    assert len(result["barge_in_markers"]) == 1
    assert result["wakes"] == 1
    # The worker's barge-in stopped the 21st reply at the speaker.
    assert result["interruptions"] == ["server"]
    assert result["flushed_bytes"] > 0
    # The gate alone opened for the worker and for nothing else. After the canceller it may
    # also open briefly on a residual echo burst; what counts is that the service never heard
    # such a burst as speech (one barge-in marker, above) and the worker's barge-in got through.
    openings = len(rig.of(BargeIn))
    assert openings == 1 if mode == "half_duplex" else openings >= 1


@pytest.mark.slow
async def test_without_echo_handling_the_device_hears_itself(
    tmp_path: Path, model_set: ModelSet, room: tuple[RoomSpeaker, RoomMic]
) -> None:
    """The control: the same room with echo handling off interrupts or wakes itself."""
    speaker, mic = room
    async with hands_free(
        tmp_path,
        model_set,
        scenario(),
        mic,
        speaker=speaker,  # type: ignore[arg-type]
        ignore_while_speaking=False,
        preroll_s=10.0,
        idle_timeout_s=5.0,
    ) as rig:
        # However the self-interruptions play out, three replies' worth is plenty.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await converse(rig, mic, speaker, 3, barge_in=False)
        result = summary(rig, speaker)
    print(f"echo off: {result}")
    assert result["barge_in_markers"] or result["wakes"] > 1
