"""Echo handling on the capture path: the speaker tap's reference, the half-duplex gate and
WebRTC's echo canceller and noise suppressor, on a synthetic echo path.

The "room" here is a line: whatever the speaker plays in a 20 ms tick comes back into the
microphone 30 ms later, 12 dB down, with a short reverb and a noise floor. Both ends run on the
test's own clock, so every figure is exact and repeatable.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
from audio_helpers import read_wav_frames

from device.audio.echo import BargeIn, EchoStage, SpeakerTap, level_db
from device.audio.resample import Resampler
from device.audio.sink import AudioSink, WavSink
from device.events import Event, EventBus
from device.sim.echo_room import DeviceSpeaker, EchoRoom
from device.sim.speech import synthesize

RATE, OUT_RATE = 16_000, 24_000
TICK = RATE // 50  # 20 ms


class LineSpeaker:
    """An `AudioSink` played by the test's clock: `play(n)` is n bytes of time passing."""

    rate = OUT_RATE

    def __init__(self) -> None:
        self.queue = bytearray()
        self.played = 0

    @property
    def playing(self) -> bool:
        return bool(self.queue)

    @property
    def played_bytes(self) -> int:
        return self.played

    @property
    def last_played_at(self) -> float | None:
        return None

    async def open(self) -> None:
        return None

    async def write(self, pcm: bytes) -> None:
        self.queue += pcm

    def flush(self) -> int:
        dropped = len(self.queue)
        self.queue.clear()
        return dropped

    def play(self, nbytes: int) -> bytes:
        out = bytes(self.queue[:nbytes])
        del self.queue[:nbytes]
        self.played += len(out)
        return out + bytes(nbytes - len(out))


class EchoLine:
    """Speaker to microphone: delay, attenuation, a short reverb, a noise floor."""

    def __init__(self, speaker: LineSpeaker, *, delay_ms: int = 30, gain_db: float = -12.0):
        rng = np.random.default_rng(1)
        tail = rng.normal(0, 0.1, RATE // 25) * np.exp(-np.arange(RATE // 25) / (RATE * 0.012))
        tail[0] = 1.0
        self.ir = np.concatenate([np.zeros(RATE * delay_ms // 1000), tail]) * 10 ** (gain_db / 20)
        self.speaker = speaker
        self.history = np.zeros(self.ir.size)
        self.resampler = Resampler(OUT_RATE, RATE)
        self.fifo = bytearray()
        self.rng = np.random.default_rng(2)

    def tick(self, voice: np.ndarray) -> bytes:
        """One 20 ms tick: the speaker plays, the microphone hears echo + `voice` + noise."""
        self.fifo += self.resampler.process(self.speaker.play(TICK * 3))
        far = np.frombuffer(bytes(self.fifo[: 2 * TICK]).ljust(2 * TICK, b"\0"), "<i2")
        del self.fifo[: 2 * TICK]
        signal = np.concatenate([self.history, far.astype(np.float64)])
        echo = np.convolve(signal, self.ir)[self.history.size : self.history.size + TICK]
        self.history = signal[-self.ir.size :]
        mixed = echo + voice + self.rng.normal(0, 32768 * 10 ** (-65 / 20), TICK)
        return np.clip(np.round(mixed), -32768, 32767).astype("<i2").tobytes()


def speech16(text: str, gain_db: float = 0.0) -> np.ndarray:
    pcm = np.frombuffer(synthesize(text), "<i2").astype(np.float64)
    return pcm * 10 ** (gain_db / 20)


async def run_line(
    stage: EchoStage, speaker: LineSpeaker, line: EchoLine, voice: np.ndarray, ticks: int
) -> tuple[np.ndarray, np.ndarray]:
    """Feed `ticks` ticks through `stage`; the worker's `voice` is heard from the start."""
    voice = np.concatenate([voice, np.zeros(max(0, ticks * TICK - voice.size))])
    mic, out = bytearray(), bytearray()
    for k in range(ticks):
        chunk = line.tick(voice[k * TICK : (k + 1) * TICK])
        mic += chunk
        out += await stage.process(chunk)
    return np.frombuffer(bytes(mic), "<i2"), np.frombuffer(bytes(out), "<i2")


REPLY = synthesize("Aisle twelve, bay three, level B, forty units. Hey Jarvis.", rate=OUT_RATE)


def window(x: np.ndarray, start_s: float, end_s: float) -> np.ndarray:
    return x[round(start_s * RATE) : round(end_s * RATE)]


async def test_the_tap_hands_over_exactly_what_the_speaker_played(tmp_path: Path) -> None:
    sink = WavSink(tmp_path / "out.wav", speed=math.inf)
    tap = SpeakerTap(sink)
    taken = bytearray()
    async with tap:
        await tap.write(REPLY[:48_000])
        await tap.drain()
        taken += tap.take_played()
        await tap.write(REPLY[48_000:])
        assert tap.flush() >= 0  # whatever had not been played yet is gone
        await tap.write(REPLY[:9_600])
        await tap.drain()
        taken += tap.take_played()
    assert bytes(taken) == read_wav_frames(tmp_path / "out.wav")
    assert isinstance(tap, AudioSink)


async def test_the_tap_keeps_only_a_bounded_reference_when_nobody_takes_it() -> None:
    """With `[echo] mode = "off"` nothing takes the reference: the tap must not keep every
    reply (it kept 2.9 MB a minute of speech)."""
    speaker = LineSpeaker()
    tap = SpeakerTap(speaker)  # type: ignore[arg-type]
    minute = OUT_RATE * 2 * 60
    for _ in range(60):
        await tap.write(bytes(range(256)) * (minute // 60 // 256))
        speaker.play(minute // 60)  # the speaker plays each second as it comes
    assert tap.kept_bytes <= round(SpeakerTap.KEEP_S * OUT_RATE) * 2 + minute // 60
    # A consumer that comes back still gets the latest played audio, in order.
    await tap.write(REPLY[:4800])
    speaker.play(4800)
    assert tap.take_played().endswith(REPLY[:4800])


async def test_half_duplex_silences_the_echo_while_the_device_speaks() -> None:
    speaker = LineSpeaker()
    tap = SpeakerTap(speaker)  # type: ignore[arg-type]
    stage = EchoStage("half_duplex", tap, tail_ms=300)
    await tap.write(REPLY)
    reply_s = len(REPLY) / 2 / OUT_RATE
    mic, out = await run_line(stage, speaker, EchoLine(speaker), np.zeros(0), 200)

    assert level_db(window(mic, 0.2, reply_s)) > -45  # the echo is there in the microphone...
    assert not window(out, 0.0, reply_s + 0.3).any()  # ...and none of it goes on, nor its tail
    # Afterwards the microphone is passed through untouched.
    assert np.array_equal(window(out, reply_s + 0.35, 4.0), window(mic, reply_s + 0.35, 4.0))


async def test_half_duplex_opens_for_a_worker_clearly_louder_than_the_echo() -> None:
    speaker = LineSpeaker()
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    tap = SpeakerTap(speaker)  # type: ignore[arg-type]
    stage = EchoStage("half_duplex", tap, bus=bus)
    assert stage.gate is not None
    await tap.write(REPLY * 2)
    # One second in (the gate has learned the echo), the worker talks over the reply.
    voice = np.concatenate([np.zeros(RATE), speech16("stop, what about aisle fourteen")])
    mic, out = await run_line(stage, speaker, EchoLine(speaker), voice, 150)

    barge = [e for e in events if isinstance(e, BargeIn)]
    assert len(barge) == 1 and barge[0].level_db > barge[0].echo_db + 10
    opened = int(np.flatnonzero(out)[0]) / RATE
    assert 1.0 < opened < 1.4  # within a few hundred ms of the worker's first sound
    # From then on the worker is heard, for as long as the reply plays.
    assert np.array_equal(window(out, opened, 3.0), window(mic, opened, 3.0))


async def test_half_duplex_stays_shut_for_speech_no_louder_than_the_echo() -> None:
    speaker = LineSpeaker()
    tap = SpeakerTap(speaker)  # type: ignore[arg-type]
    stage = EchoStage("half_duplex", tap)
    await tap.write(REPLY * 2)
    voice = np.concatenate([np.zeros(RATE), speech16("next location please", gain_db=-20)])
    _, out = await run_line(stage, speaker, EchoLine(speaker), voice, 150)
    assert not out.any()
    assert stage.gate is not None and stage.gate.barge_ins == 0


async def test_half_duplex_does_not_learn_the_worker_talking_over_the_reply_as_echo() -> None:
    """The gate learns the echo's coupling while it gates. A worker talking over the reply, not
    yet loud enough to open it, is not echo: learning their voice raised the bar as they
    talked (9 dB in 1.5 s on the PulseAudio rig), so a worker who then spoke up never got in."""
    speaker = LineSpeaker()
    tap = SpeakerTap(speaker)  # type: ignore[arg-type]
    stage = EchoStage("half_duplex", tap)
    assert stage.gate is not None
    await tap.write(REPLY * 3)
    line = EchoLine(speaker)
    await run_line(stage, speaker, line, np.zeros(0), 75)  # 1.5 s of echo alone
    learned = stage.gate.coupling_db
    # 2.5 s of the worker 5 dB above the echo: heard over it, but under the barge-in margin.
    await run_line(stage, speaker, line, speech16("what about aisle fourteen", gain_db=-7), 125)
    assert stage.gate.barge_ins == 0
    assert stage.gate.coupling_db < learned + 2.0


async def test_aec_removes_the_echo_and_keeps_the_worker() -> None:
    speaker = LineSpeaker()
    tap = SpeakerTap(speaker)  # type: ignore[arg-type]
    stage = EchoStage("aec", tap)
    await tap.write(REPLY * 3)
    user = speech16("where is SKU one zero four four one seven", gain_db=-6)
    start = 6.0
    voice = np.concatenate([np.zeros(round(start * RATE)), user])
    line = EchoLine(speaker)
    mic, out = await run_line(stage, speaker, line, voice, 500)
    stage.close()

    echo_only_in, echo_only_out = window(mic, 1.0, start), window(out, 1.0, start)
    print(f"echo {level_db(echo_only_in):.1f} dBFS -> {level_db(echo_only_out):.1f} dBFS")
    # The service's voice detection starts at about -42 dBFS: the residual stays well below.
    assert level_db(echo_only_in) > -35
    assert level_db(echo_only_out) < -55
    # The worker talking over the reply is still heard at about their own level.
    talk = window(out, start, start + user.size / RATE)
    assert abs(level_db(talk) - level_db(user.astype("<i2"))) < 6


async def test_noise_suppression_lowers_a_steady_floor() -> None:
    rng = np.random.default_rng(3)
    floor = rng.normal(0, 32768 * 10 ** (-35 / 20), 3 * RATE).astype("<i2").tobytes()
    stage = EchoStage("off", None, noise_suppression="high")
    out = bytearray()
    for offset in range(0, len(floor), 2 * TICK):
        out += await stage.process(floor[offset : offset + 2 * TICK])
    stage.close()
    before = level_db(np.frombuffer(floor, "<i2")[RATE:])
    after = level_db(np.frombuffer(bytes(out), "<i2")[RATE:])
    assert after < before - 10


def test_bad_settings_say_what_to_fix() -> None:
    with pytest.raises(ValueError, match="echo mode 'loud' is unknown; use one of"):
        EchoStage("loud", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs the speaker's SpeakerTap"):
        EchoStage("aec", None)
    with pytest.raises(ValueError, match="noise_suppression 'max' is unknown"):
        EchoStage("off", None, noise_suppression="max")


@pytest.mark.parametrize("gain_db", [0.0, -10.0])
async def test_aec_gate_stays_shut_on_the_residual_of_a_changing_echo_path(gain_db: float) -> None:
    """Double talk, not residual: when the echo path changes under the canceller (the device
    moved, a door opened) its residual bursts up until it re-converges. Only the worker may
    open the gate, and the service must not hear the burst."""
    speaker = LineSpeaker()
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    tap = SpeakerTap(speaker)  # type: ignore[arg-type]
    stage = EchoStage("aec", tap, bus=bus)
    await tap.write(REPLY * 4)
    line = EchoLine(speaker, delay_ms=20, gain_db=gain_db)
    changed = EchoLine(speaker, delay_ms=40, gain_db=gain_db + 4)
    out = bytearray()
    for k in range(400):  # 8 s; the path changes at 4 s
        if k == 200:
            line.ir = changed.ir
            line.history = np.zeros(line.ir.size)
        out += await stage.process(line.tick(np.zeros(TICK)))
    assert stage.erle_db is not None and stage.erle_db > 10
    stage.close()
    assert [e for e in events if isinstance(e, BargeIn)] == []
    assert level_db(np.frombuffer(bytes(out), "<i2")) < -55


# -- A real output path: a buffering device, two clocks, underruns, flushes ----------------------

ROOM_REPLY = synthesize(
    "Aisle twelve, bay three, level B, forty units. The next pick is in aisle fourteen.",
    rate=OUT_RATE,
)


async def run_room(
    stage: EchoStage,
    room: EchoRoom,
    ticks: int,
    *,
    each: Callable[[int], Awaitable[None]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    mic, out = bytearray(), bytearray()
    for k in range(ticks):
        if each is not None:
            await each(k)
        chunk = room.tick()
        mic += chunk
        out += await stage.process(chunk)
    return np.frombuffer(bytes(mic), "<i2"), np.frombuffer(bytes(out), "<i2")


def timed_stage(tap: SpeakerTap, room: EchoRoom, bus: EventBus | None = None) -> EchoStage:
    return EchoStage("aec", tap, bus=bus, mic_time=lambda: room.mic_time)


@pytest.mark.parametrize("gain_db", [0.0, -10.0])
async def test_aec_holds_through_underruns_and_a_flush_on_a_buffered_drifting_output(
    gain_db: float,
) -> None:
    """The device holds 200 ms, its crystal runs 200 ppm slow, the player stalls 350 ms every
    3 s (the device runs dry mid-reply), and a barge-in flushes it mid-reply before the next
    reply starts. Pairing by count (what the device took = what is heard) lost the echo at
    each stall and after the flush (ERLE 14 dB, under the floor of 20). Timed, the
    reference stays on the echo throughout."""
    speaker = DeviceSpeaker(buffer_ms=200, ppm=-200)
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    tap = SpeakerTap(speaker)  # type: ignore[arg-type]
    room = EchoRoom(speaker, delay_ms=20, gain_db=gain_db)
    stage = timed_stage(tap, room, bus)
    await tap.write(ROOM_REPLY * 4)

    async def trouble(k: int) -> None:
        if k % 150 == 100:
            speaker.stall(0.35)
        if k == 400:  # 8 s: the worker's button stops this reply; the next one starts
            tap.flush()
            await tap.write(ROOM_REPLY * 4)

    _, out = await run_room(stage, room, 1000, each=trouble)
    stage.close()
    assert speaker.underrun_s > 1.0  # the device really ran dry
    print(f"ERLE {stage.erle_db} dB, room {stage.tracked_delay_ms} ms of {room.true_delay_ms}")
    assert stage.erle_db is not None and stage.erle_db > 20
    assert [e for e in events if isinstance(e, BargeIn)] == []  # no reply cut by its echo
    assert level_db(out) < -55  # the service hears none of it
    assert stage.tracked_delay_ms == pytest.approx(room.true_delay_ms, abs=1.0)


async def test_the_tracker_follows_drift_and_an_echo_path_that_moves() -> None:
    """Two crystals 200 ppm apart, and the echo path grows by 25 ms at 10 s (the device was
    moved): the measured delay follows both, and the canceller keeps its ERLE."""
    speaker = DeviceSpeaker(buffer_ms=120, ppm=200)
    tap = SpeakerTap(speaker)  # type: ignore[arg-type]
    room = EchoRoom(speaker, delay_ms=10, gain_db=-6)
    stage = timed_stage(tap, room)
    await tap.write(ROOM_REPLY * 5)
    await run_room(stage, room, 500)
    assert stage.tracked_delay_ms == pytest.approx(room.true_delay_ms, abs=1.0)
    room.set_path(35, -6)
    _, out = await run_room(stage, room, 500)
    stage.close()
    print(f"ERLE {stage.erle_db} dB, room {stage.tracked_delay_ms} ms of {room.true_delay_ms}")
    assert stage.tracked_delay_ms == pytest.approx(room.true_delay_ms, abs=1.0)
    assert stage.erle_db is not None and stage.erle_db > 30
    assert level_db(out) < -55


async def test_a_device_that_overstates_its_latency_is_caught_by_the_tracker() -> None:
    """A device that says its audio leaves 80 ms later than it does puts the echo before its
    reference, which no canceller can subtract. The tracker measures the echo 30 ms ahead and
    the reference is read ahead of the capture time: the echo is gone from then on."""
    speaker = DeviceSpeaker(buffer_ms=200, misreport_ms=80)
    tap = SpeakerTap(speaker)  # type: ignore[arg-type]
    room = EchoRoom(speaker, delay_ms=10, gain_db=0)
    stage = timed_stage(tap, room)
    await tap.write(ROOM_REPLY * 6)
    mic, out = await run_room(stage, room, 750)
    stage.close()
    assert stage.tracked_delay_ms == pytest.approx(room.true_delay_ms - 80, abs=1.0)
    assert stage.realignments == 1
    last = slice(-5 * RATE, None)
    assert level_db(mic[last]) > -25
    assert level_db(out[last]) < -60  # the echo is gone, only the room's floor is left
