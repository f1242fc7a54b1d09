"""A room with a real output path, on its own clock: for echo tests and the echo bench.

`DeviceSpeaker` is an `AudioSink` that behaves like a sound card behind PortAudio: a player
hands its queue to a device buffer of `buffer_ms` in bursts (it refills only once the buffer
is half empty, as a thread woken late would), and the device plays it out at its own crystal's
rate, `ppm` off the microphone's. It runs dry when the player stalls (`stall`), and a flush
drops what the device held. Like PortAudio it says when each buffer it takes will leave it
(`take_render_marks`), from how much it holds, unless `report_times` is off (a device that
cannot tell); `misreport_ms` makes it say its audio leaves that much later than it does.

`EchoRoom` carries what leaves the speaker into the microphone `delay_ms` later (the air) plus
`HIDDEN_MS` (latency past the device's buffer that it does not report), `gain_db` down, with
a short reverb and a noise floor, 20 ms per `tick`; it says when each chunk was captured
(`mic_time`, for `EchoStage`). Both delay and gain can change mid-run (`set_path`). Every
figure is exact and repeatable.
"""

from __future__ import annotations

import math

import numpy as np

from device.audio import CAPTURE_RATE, PLAYBACK_RATE
from device.audio.playback import RenderMark
from device.audio.resample import Resampler

RATE, OUT_RATE = CAPTURE_RATE, PLAYBACK_RATE
TICK = RATE // 50  # 20 ms
_T0 = 1000.0  # the room's clock starts here (seconds), well away from zero
# The room hears the speaker this much after the device says: latency past the device's own
# buffer that it cannot see (a sound server's), and room for the resampler's own delay.
HIDDEN_MS = 40


class DeviceSpeaker:
    """An `AudioSink` played by the room's clock through a buffering, drifting device."""

    rate = OUT_RATE

    def __init__(
        self,
        *,
        buffer_ms: int = 200,
        period_ms: int = 20,
        ppm: float = 0.0,
        report_times: bool = True,
        misreport_ms: float = 0.0,
    ) -> None:
        self.queue = bytearray()
        self.device = bytearray()  # handed over, not yet heard
        self.capacity = OUT_RATE * buffer_ms // 1000 * 2
        self.period = OUT_RATE * period_ms // 1000 * 2
        self.ppm = ppm
        self.report_times = report_times
        self.misreport_s = misreport_ms / 1000  # added to every time it reports
        self.played_bytes = 0
        self.last_played_at: float | None = None
        self.now = _T0
        self.underrun_s = 0.0
        self._stalled_until = 0.0
        self._fraction = 0.0
        self._marks: list[RenderMark] = []

    @property
    def playing(self) -> bool:
        return bool(self.queue) or bool(self.device)

    async def open(self) -> None:
        return None

    async def write(self, pcm: bytes) -> None:
        self.queue += pcm

    def flush(self) -> int:
        dropped = len(self.queue)
        self.queue.clear()
        if self.device and self.report_times:
            self._marks.append(RenderMark(self.played_bytes, self.now, cut=True))
        self.device.clear()
        return dropped

    def stall(self, seconds: float) -> None:
        """The player thread gets no CPU for `seconds`: the device may run dry."""
        self._stalled_until = self.now + seconds

    def take_render_marks(self) -> list[RenderMark]:
        marks, self._marks = self._marks, []
        return marks

    def _refill(self) -> None:
        if self.now < self._stalled_until or len(self.device) > self.capacity // 2:
            return
        while self.queue and len(self.device) + self.period <= self.capacity:
            chunk = bytes(self.queue[: self.period])
            del self.queue[: self.period]
            self.device += chunk
            if self.report_times:
                # As PortAudio sees it: what the device holds plays out at its nominal rate.
                held = len(self.device) / 2 / OUT_RATE
                heard = self.now + held + self.misreport_s
                end = self.played_bytes + len(chunk)
                self._marks.append(RenderMark(end, heard, handed_at=self.now))
            self.played_bytes += len(chunk)
            self.last_played_at = self.now

    def tick(self, seconds: float) -> np.ndarray:
        """Let `seconds` of room time pass; what left the speaker (24 kHz, its own clock)."""
        self._refill()
        exact = seconds * OUT_RATE * (1 + self.ppm * 1e-6) + self._fraction
        count = math.floor(exact)
        self._fraction = exact - count
        out = np.frombuffer(bytes(self.device[: 2 * count]), dtype="<i2").astype(np.float64)
        del self.device[: 2 * count]
        if out.size < count:
            if self.played_bytes and (self.queue or out.size):
                self.underrun_s += (count - out.size) / OUT_RATE
            out = np.concatenate([out, np.zeros(count - out.size)])
        self.now += seconds
        return out


class EchoRoom:
    """Speaker to microphone: the speaker's clock, a delay, attenuation, reverb, a floor."""

    def __init__(
        self,
        speaker: DeviceSpeaker,
        *,
        delay_ms: float = 30.0,
        gain_db: float = -12.0,
        noise_dbfs: float = -65.0,
        seed: int = 1,
    ) -> None:
        self.speaker = speaker
        self._seed = seed
        self.set_path(delay_ms, gain_db)
        self._resampler = Resampler(OUT_RATE, RATE)
        self._heard = np.zeros(0)  # 16 kHz on the speaker's clock, not yet fully heard
        self._heard_start = 0.0  # the speaker-clock index of `_heard[0]`
        self._mic_samples = 0
        self._noise = np.random.default_rng(seed + 1)
        self._noise_rms = 32768 * 10 ** (noise_dbfs / 20)
        self._history = np.zeros(0)
        self.mic_time: float | None = None  # capture time of the last chunk's first sample

    @property
    def true_delay_ms(self) -> float:
        """How long after the device says a sample leaves it, its echo reaches the mic."""
        return HIDDEN_MS + self.delay_ms

    def set_path(self, delay_ms: float, gain_db: float) -> None:
        """Move the speaker or the mic: the new path holds from the next tick."""
        rng = np.random.default_rng(self._seed)
        n = RATE // 25
        tail = rng.normal(0, 0.1, n) * np.exp(-np.arange(n) / (RATE * 0.012))
        tail[0] = 1.0
        lead = np.zeros(round(RATE * delay_ms / 1000))
        self.delay_ms = delay_ms
        self.ir = np.concatenate([lead, tail]) * 10 ** (gain_db / 20)

    def tick(self, voice: np.ndarray | None = None) -> bytes:
        """20 ms: the speaker plays, the microphone hears echo + `voice` + the floor."""
        self.mic_time = _T0 + self._mic_samples / RATE
        played = self.speaker.tick(TICK / RATE)
        pcm = np.clip(np.round(played), -32768, 32767).astype("<i2").tobytes()
        self._heard = np.concatenate(
            [self._heard, np.frombuffer(self._resampler.process(pcm), "<i2")]
        )
        # The mic's sample m hears the speaker's (16 kHz) sample m * (1 + ppm): two crystals.
        ratio = 1 + self.speaker.ppm * 1e-6
        hidden = RATE * HIDDEN_MS / 1000
        positions = (self._mic_samples + np.arange(TICK)) * ratio - hidden - self._heard_start
        index = np.arange(self._heard.size)
        far = (
            np.interp(positions, index, self._heard.astype(np.float64), right=0.0)
            if self._heard.size
            else np.zeros(TICK)
        )
        used = max(0, min(int(positions[-1]) - 1, self._heard.size - 1))
        self._heard = self._heard[used:]
        self._heard_start += used
        self._mic_samples += TICK
        signal = np.concatenate([self._history, far])
        if signal.size < self.ir.size + TICK:
            signal = np.concatenate([np.zeros(self.ir.size + TICK - signal.size), signal])
        echo = np.convolve(signal[-(self.ir.size + TICK - 1) :], self.ir, mode="valid")
        self._history = signal[-(self.ir.size - 1) :]
        mixed = echo + self._noise.normal(0, self._noise_rms, TICK)
        if voice is not None:
            mixed[: voice.size] += voice[:TICK]
        return np.clip(np.round(mixed), -32768, 32767).astype("<i2").tobytes()
