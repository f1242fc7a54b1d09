"""The espeak-ng helper that stands in for a worker's voice."""

from __future__ import annotations

import numpy as np
import pytest

from device.sim.speech import SpeechError, mix_at_snr, noise, synthesize, synthesize_parts


def pcm(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.float64)


def test_synthesize_gives_trimmed_16k_speech() -> None:
    audio = pcm(synthesize("hey jarvis"))
    assert 0.4 < audio.size / 16000 < 1.5
    # Trimmed: the clip starts and ends on sound, not on espeak's padding.
    assert abs(audio[0]) > 64 and abs(audio[-1]) > 64
    assert np.sqrt(np.mean(audio**2)) > 1000
    slower = pcm(synthesize("hey jarvis", speed_wpm=110))
    assert slower.size > audio.size * 1.2
    assert synthesize("hey jarvis", voice="en-us") != synthesize("hey jarvis")


def test_parts_report_where_each_part_ends() -> None:
    audio, ends = synthesize_parts(["hey jarvis", "where is SKU one zero four"], gap_s=0.25)
    wake = synthesize("hey jarvis")
    assert ends[0] == len(wake) // 2
    assert audio[: len(wake)] == wake
    assert ends[1] == len(audio) // 2
    gap = pcm(audio)[ends[0] : ends[0] + 4000]
    assert not gap.any()


@pytest.mark.parametrize("snr_db", [20.0, 10.0, 5.0])
def test_mix_hits_the_requested_snr(snr_db: float) -> None:
    speech = synthesize("count complete, forty units")
    mixed = mix_at_snr(speech, noise(1.0, seed=3), snr_db)
    s, m = pcm(speech), pcm(mixed)
    measured = 10 * np.log10(np.mean(s**2) / np.mean((m - s) ** 2))
    assert measured == pytest.approx(snr_db, abs=0.3)


def test_bad_requests_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="text is empty"):
        synthesize("  ")
    with pytest.raises(ValueError, match="speed_wpm=20"):
        synthesize("hello", speed_wpm=20)
    with pytest.raises(SpeechError, match="no-such-voice"):
        synthesize("hello", voice="no-such-voice")
