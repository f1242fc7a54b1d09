"""Seams without loss, with the emulator streaming reply audio faster than real time and the
speaker playing slower than it arrives: whatever the device has received when a connection
ends keeps playing, the next connection's audio follows in order, and the sink gets exactly
the bytes the emulator sent. Tool answers go out exactly once with no consumed index."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import pytest

from device.audio.sink import WavSink
from device.audio.source import WavSource
from device.events import Event, Interrupted
from device.service.eventlog import read_events
from device.sim.record import EmulatorRecord
from device.sim.scenario import Scenario, ToolCallSpec, TurnSpec

pytestmark = pytest.mark.slow

FIND = ToolCallSpec(id="call-1", name="find_item", args={"sku": "104417"})
BYTES_PER_MS = 48  # 24 kHz PCM16
LONG_REPLY = (
    "Aisle twelve, bay three, level B. There are forty units on the shelf, and another twenty "
    "in the reserve location above it, so there is plenty for the next pick."
)


def played(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        return wav.readframes(wav.getnframes())


def completed(record: EmulatorRecord, scenario_turn: int) -> bool:
    return any(t.scenario_turn == scenario_turn and t.generation_complete for t in record.turns)


def sent(record: EmulatorRecord) -> bytes:
    """Every byte of reply audio the emulator wrote to its sockets, in order."""
    return b"".join(record.reply_pcm)


async def converse(rig: Any, turns: int) -> EmulatorRecord:
    await rig.start()
    rig.appliance.tap()
    await rig.emulator.wait_for(
        lambda r: all(completed(r, i) for i in range(turns)), timeout_s=90, what="replies done"
    )
    conversation = rig.appliance.conversation
    assert conversation is not None
    await conversation.player.drain()
    await rig.finish()
    record: EmulatorRecord = rig.emulator.record
    return record


def two_turns(second: dict[str, Any], **session: Any) -> Scenario:
    """A short first reply (its handle is what the second turn resumes from), then a long one
    with the fault. speed 3 x stream_speed 4: replies arrive 12 times faster than real time."""
    return Scenario(
        name="seams",
        speed=3.0,
        turns=[
            TurnSpec(user_transcript="Where is SKU 104417?", reply_text="Aisle twelve."),
            TurnSpec(user_transcript="And 104471?", reply_text=LONG_REPLY, **second),
        ],
        **session,
    )


def seam_rig(rig_factory: Any, mic_script: Any, scn: Scenario, **live: Any) -> Any:
    wav, _ = mic_script(2, gap_s=12.0)
    return rig_factory(
        scn,
        # The speaker plays at twice real time, six times slower than the reply arrives.
        speaker_speed=2.0,
        mic=WavSource(wav, speed=8, tail_silence_s=None),
        idle_timeout_s=20.0,
        reconnect_base_s=0.05,
        **live,
    )


def assert_seamless(record: EmulatorRecord, tmp_path: Path, emulator: Any, turns: int) -> None:
    assert sent(record) == b"".join(emulator.reply_audio(i) for i in range(turns))
    out = played(tmp_path / "reply.wav")
    assert len(out) == len(sent(record))
    assert out == sent(record)


@pytest.mark.parametrize(
    ("fault", "at"),
    [
        # A dropped link (no close frame) inside a sample: 1.5 s and one byte into the reply.
        ({"close_code": 1006, "close_after_bytes": 1500 * BYTES_PER_MS + 1}, "1006"),
        ({"close_code": 1011, "close_after_ms": 1500}, "1011"),
    ],
)
async def test_a_reply_cut_mid_stream_plays_whole_across_the_seam(  # type: ignore[no-untyped-def]
    rig_factory, mic_script, tmp_path: Path, fault: dict[str, Any], at: str
) -> None:
    scn = two_turns(fault)
    rig = await seam_rig(rig_factory, mic_script, scn)
    record = await converse(rig, 2)

    first = record.connections[0]
    assert first.close_code == int(at)
    assert len(record.connections) >= 2
    # The resumed connection went on from the byte after the last one sent.
    resumed = record.connections[1].turns[0]
    assert resumed.end_reason == "resumed"
    assert resumed.reply_offset == len(first.turns[1].reply_pcm) > 0
    assert_seamless(record, tmp_path, rig.emulator, 2)
    # Nothing was thrown away: no interruption at the seam.
    events = read_events(tmp_path / "events.jsonl")
    assert not [e for e in events if e["kind"] == "interrupted"]


async def test_goaway_with_little_time_left_loses_nothing(  # type: ignore[no-untyped-def]
    rig_factory, mic_script, tmp_path: Path
) -> None:
    # timeLeft = 3 s / speed 3 = 1 s, below the 2 s margin: the deadline is already due.
    scn = two_turns({"goaway_after_ms": 300}, goaway_time_left_s=3.0, goaway_clock="audio")
    rig = await seam_rig(rig_factory, mic_script, scn, goaway_margin_s=2.0)
    record = await converse(rig, 2)

    assert [f.kind for f in record.faults].count("goaway") == 1
    assert len(record.connections) >= 2
    assert_seamless(record, tmp_path, rig.emulator, 2)
    events = read_events(tmp_path / "events.jsonl")
    assert not [e for e in events if e["kind"] == "interrupted"]


async def test_goaway_with_time_to_spare_switches_between_replies(  # type: ignore[no-untyped-def]
    rig_factory, mic_script, tmp_path: Path
) -> None:
    scn = two_turns({"goaway_after_ms": 300}, goaway_time_left_s=60.0, goaway_clock="audio")
    rig = await seam_rig(rig_factory, mic_script, scn, goaway_margin_s=2.0)
    record = await converse(rig, 2)

    first, second = record.connections[:2]
    # The switch waited for the turn boundary: the long reply came whole on the first link.
    assert first.turns[1].generation_complete and first.closed_by == "client"
    assert second.resumption_handle == first.handles_issued[-1]
    assert_seamless(record, tmp_path, rig.emulator, 2)


async def test_an_answer_the_model_went_on_from_is_not_sent_again(  # type: ignore[no-untyped-def]
    rig_factory, mic_script, tmp_path: Path
) -> None:
    # No consumed index (the Gemini API's way); the 1011 comes after the model spoke past the
    # answer, before any resumption update covered it.
    scn = two_turns({"tool_calls": [FIND], "close_code": 1011, "close_after_ms": 300})
    assert not scn.report_consumed_index
    rig = await seam_rig(rig_factory, mic_script, scn)
    record = await converse(rig, 2)

    assert record.connections[0].close_code == 1011
    assert [(r.id, r.expected) for r in record.tool_responses] == [("call-1", True)]
    assert not [f for f in record.faults if f.kind == "duplicate_tool_response"]
    events = read_events(tmp_path / "events.jsonl")
    wire_answers = [e for e in events if e["kind"] == "wire_sent" and e["what"] == "tool_response"]
    assert len(wire_answers) == 1
    assert_seamless(record, tmp_path, rig.emulator, 2)


class MeasuredSink(WavSink):
    """Notes what had been played when a flush came."""

    played_at_flush: int | None = None

    def flush(self) -> int:
        self.played_at_flush = self.played_bytes
        return super().flush()


async def test_interrupted_with_seconds_queued_is_silent_within_one_buffer(  # type: ignore[no-untyped-def]
    rig_factory, tmp_path: Path
) -> None:
    cut_ms = 7000
    scn = Scenario(
        name="interrupt-queued",
        speed=10.0,  # x stream_speed 4: forty times faster than the speaker plays
        turns=[
            TurnSpec(
                user_transcript="Where is SKU 104417?",
                reply_text=LONG_REPLY + " " + LONG_REPLY,
                interrupt_after_ms=cut_ms,
            )
        ],
    )
    speaker = MeasuredSink(tmp_path / "reply.wav", speed=1.0, buffer_ms=20)
    rig = await rig_factory(scn, speaker=speaker, idle_timeout_s=20.0)
    assert len(rig.emulator.reply_audio(0)) > (cut_ms + 500) * BYTES_PER_MS
    seen: list[Event] = []
    rig.bus.subscribe(seen.append)
    await rig.start()
    rig.appliance.tap()
    await rig.emulator.wait_for(lambda r: r.turns and r.turns[0].finished, timeout_s=60)
    async with rig.bus.stream() as events:
        while not [e for e in seen if isinstance(e, Interrupted)]:
            await events.get()
    await speaker.drain()
    at_flush = speaker.played_at_flush
    assert at_flush is not None
    # What was queued (received, not played) when `interrupted` came: at least five seconds.
    assert cut_ms * BYTES_PER_MS - at_flush >= 5000 * BYTES_PER_MS
    # After the flush, at most the output buffer the player already held was played.
    after = speaker.played_bytes - at_flush
    print(
        f"interrupted with {(cut_ms * BYTES_PER_MS - at_flush) / 48000:.2f} s queued: "
        f"{after} bytes ({after / BYTES_PER_MS:.1f} ms) played after it"
    )
    assert after <= speaker.buffer_bytes
    assert played(tmp_path / "reply.wav") == rig.emulator.reply_audio(0)[: speaker.played_bytes]
    await rig.finish()


async def test_a_1008_mid_reply_ends_without_an_interruption(  # type: ignore[no-untyped-def]
    rig_factory, mic_script, tmp_path: Path
) -> None:
    """A fatal close reconnects nothing, so nothing is logged as interrupted by a reconnect;
    what was received still plays, before the error cue."""
    scn = two_turns({"close_code": 1008, "close_after_ms": 800})
    rig = await seam_rig(rig_factory, mic_script, scn)
    await rig.start()
    rig.appliance.tap()
    await rig.wait_until_idle_after_session(timeout_s=60)
    await rig.finish()
    record: EmulatorRecord = rig.emulator.record
    assert len(record.connections) == 1 and record.connections[0].close_code == 1008
    events = read_events(tmp_path / "events.jsonl")
    assert not [e for e in events if e["kind"] == "interrupted"]
    # All of it, then the spoken error cue.
    assert played(tmp_path / "reply.wav").startswith(sent(record))
