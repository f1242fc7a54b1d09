"""The device does not hear itself: its replies come back into the microphone, 20 in a row.

A simulated room (`RoomSpeaker`, `RoomMic`) plays each reply and feeds it back into the
microphone 30 ms later, 15 dB down, smeared by a short reverb and over a noise floor, on one
sample clock at up to ten times real time (slower when the wake listener lags: the room waits
for it). Every wait is a budget of room time, never of wall time, so a busy machine makes the
test slower, not flaky. Every reply says the wake word. The Live emulator's own voice detection
is the service that would interrupt the reply if it heard it, and the real wake listener is the
one that would wake. In half-duplex and in AEC mode neither may happen over 20 replies; then
the worker talks over the 21st reply, which the emulator has already sent in full, so only the
device's local barge-in can stop it.

A control run with echo handling off shows the room is loud enough to do both.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_wake_e2e_rig import RATE, HandsFree, RoomMic, RoomSpeaker, hands_free, until

from device.audio.barge_in import LocalBargeIn
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
    turn = TurnSpec(user_transcript="Next location please.", reply_text=REPLY, audio_pace=3.0)
    return Scenario(name="echo", speed=10.0, loop=True, turns=[turn])


async def turns_done(rig: HandsFree, mic: RoomMic, count: int) -> None:
    await until(
        mic,
        lambda: len(rig.emulator.record.finished_turns) >= count,
        room_s=30.0 * count,
        what=f"{count} replies",
    )


async def converse(
    rig: HandsFree, mic: RoomMic, room: RoomSpeaker, replies: int, *, barge_in: bool
) -> int | None:
    """Wake the device, then ask for the next location after each reply has finished; with
    `barge_in`, talk over one more reply half a second into it. Returns the room samples from
    the worker's first sound to the speaker falling silent (with `barge_in`)."""
    wake, _ = synthesize_parts(["hey jarvis", USER])
    ask = synthesize(USER)
    await rig.start()
    await mic.wait_quiet(3.0)  # the detector's features settle on room noise first
    mic.say(wake)
    for reply in range(1, replies + 1):
        await turns_done(rig, mic, reply)
        await played_out(rig, mic, room, reply)
        await mic.wait_quiet(0.6)
        if reply < replies or barge_in:
            mic.say(ask)
    if not barge_in:
        return None
    await mic.wait_quiet()
    # The emulator streams replies three times faster than the room plays them: once it has
    # sent the whole reply, its `interrupted` can no longer come, so only the device's own
    # barge-in can stop what is still playing.
    await turns_done(rig, mic, replies + 1)
    await until(mic, lambda: room.playing, room_s=30.0, what="the last reply playing")
    before = len(rig.of(Interrupted))
    voice = synthesize(BARGE_IN)
    onset = mic.position + first_sound(voice)
    mic.say(voice)
    await until(mic, lambda: len(rig.of(Interrupted)) > before, room_s=3.0, what="a voice barge-in")
    assert not room.playing
    # The speaker is silent from the next tick of the room's clock on.
    return mic.position - onset


def first_sound(pcm: bytes) -> int:
    """The sample at which `pcm` first rises above -50 dBFS."""
    samples = np.abs(np.frombuffer(pcm, dtype="<i2"))
    return int(np.flatnonzero(samples > 32768 * 10 ** (-50 / 20))[0])


async def played_out(rig: HandsFree, mic: RoomMic, room: RoomSpeaker, count: int) -> None:
    """Until the device has played `count` replies to the end (it lags the emulator, which
    ends a turn when it has sent the reply)."""
    await until(
        mic,
        lambda: sum(1 for e in rig.of(Speaking) if not e.started) >= count and not room.playing,
        room_s=30.0,
        what=f"reply {count} played out",
    )


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
        # A wall-clock timer: only a hang guard here, the room may run slow on a busy machine.
        idle_timeout_s=600.0,
    ) as rig:
        if stage.gate is not None:
            stage.gate.bus = rig.bus
        local = LocalBargeIn(rig.bus, rig.appliance, manual_turns=False)
        latency = await converse(rig, mic, speaker, REPLIES, barge_in=True)
        local.close()
        result = summary(rig, speaker)
    stage.close()
    assert latency is not None
    print(
        f"{mode}: {result}, barge-in {1000 * latency / RATE:.0f} ms, throttled "
        f"{mic.throttled_ticks} ticks"
    )

    # One session, every reply heard out: no self-interruption, no self-wake.
    assert result["connections"] == 1
    assert result["turns"] == REPLIES + 1
    assert result["interrupted"] in ([], [REPLIES])  # the service heard no echo as speech
    assert len(result["barge_in_markers"]) <= 1
    assert result["wakes"] == 1
    # The worker's voice stopped the 21st reply at the speaker, at once, and nothing else did.
    assert result["interruptions"] == ["voice"]
    assert local.acted == 1
    assert result["flushed_bytes"] > 0
    assert latency < 0.3 * RATE
    assert len(rig.of(BargeIn)) == 1


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
        # A wall-clock timer: only a hang guard here, the room may run slow on a busy machine.
        idle_timeout_s=600.0,
    ) as rig:
        # However the self-interruptions play out (a budget of room time runs out when the
        # conversation derails), three replies' worth is plenty.
        with contextlib.suppress(AssertionError):
            await converse(rig, mic, speaker, 3, barge_in=False)
        result = summary(rig, speaker)
    conn = rig.emulator.record.connections[0]
    heard = sum(1 for m in conn.markers if m.kind == "speech_start")
    print(f"echo off: {result}, speech heard {heard} times")
    # The worker spoke three times (wake word and request, two asks); the service heard more.
    assert result["barge_in_markers"] or result["wakes"] > 1 or heard > 3
