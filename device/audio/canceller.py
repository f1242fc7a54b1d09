"""WebRTC's audio processing (AEC3, noise suppression, AGC2), and the ERLE it reaches."""

from __future__ import annotations

import math

import numpy as np

from device.audio import CAPTURE_RATE
from device.audio.gate import level_db


class WebRtcProcessor:
    """WebRTC audio processing: AEC3 against the speaker reference, noise suppression, AGC2."""

    def __init__(
        self,
        *,
        echo_cancellation: bool,
        noise_level: int | None = None,
        auto_gain: bool = False,
        delay_ms: int = 0,
    ) -> None:
        try:
            from pywebrtc_audio import AudioProcessor
        except ImportError as exc:  # pragma: no cover - a broken install
            raise RuntimeError(
                "echo mode 'aec' and noise suppression need pywebrtc-audio; install it with "
                '`pip install pywebrtc-audio`, or set [echo] mode = "half_duplex"'
            ) from exc
        self.echo_cancellation = echo_cancellation
        self._ap = AudioProcessor(
            sample_rate=CAPTURE_RATE,
            echo_cancellation=echo_cancellation,
            noise_suppression=noise_level is not None,
            ns_level=noise_level if noise_level is not None else 1,
            auto_gain_control=auto_gain,
            high_pass_filter=True,
            stream_delay_ms=delay_ms,
        )

    def process(self, pcm: bytes, far: bytes | None) -> bytes:
        """Runs on the DSP thread (the library releases the GIL)."""
        near = np.frombuffer(pcm, dtype="<i2")
        if far is None:
            out = self._ap.process(near)
        else:
            out = self._ap.process(near, np.frombuffer(far, dtype="<i2"))
        return np.asarray(out, dtype="<i2").tobytes()


class Erle:
    """Echo return loss enhancement: microphone power over canceller output power, summed
    over chunks in which the speaker played and the worker was not talking."""

    def __init__(self) -> None:
        self.mic_energy = 0.0
        self.out_energy = 0.0

    def add(self, mic: bytes, out: bytes, far: bytes, *, talking: bool) -> None:
        if talking or level_db(np.frombuffer(far, dtype="<i2")) < -50.0:
            return
        self.mic_energy += float(np.sum(np.frombuffer(mic, dtype="<i2").astype(np.float64) ** 2))
        self.out_energy += float(np.sum(np.frombuffer(out, dtype="<i2").astype(np.float64) ** 2))

    @property
    def db(self) -> float | None:
        if self.mic_energy <= 0:
            return None
        return round(10 * math.log10(self.mic_energy / max(self.out_energy, 1.0)), 1)
