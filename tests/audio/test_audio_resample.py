"""Streaming resampling: tones keep their pitch, chunking changes nothing audible."""

from __future__ import annotations

import numpy as np
import pytest
from audio_helpers import make_tone, noise, peak_hz
from hypothesis import given, settings
from hypothesis import strategies as st

from device.audio.errors import AudioFormatError
from device.audio.resample import PromptResampler, Resampler, from_mono, resample, to_mono
from device.sim.speech import synthesize


def stream(resampler: Resampler, pcm: bytes, sizes: list[int]) -> bytes:
    out, position = [], 0
    for size in sizes:
        out.append(resampler.process(pcm[position : position + size]))
        position += size
    out.append(resampler.process(pcm[position:]))
    out.append(resampler.finish())
    return b"".join(out)


@pytest.mark.parametrize(
    ("in_rate", "out_rate", "freq"),
    [(48_000, 16_000, 1_000.0), (16_000, 24_000, 3_000.0), (44_100, 16_000, 440.0)],
)
def test_tone_keeps_its_frequency_and_duration(in_rate: int, out_rate: int, freq: float) -> None:
    pcm = make_tone(freq, in_rate, 1.0)
    # 20 ms chunks, as a microphone delivers them, with a sample split across two chunks.
    chunk = in_rate // 50 * 2 + 1
    out = stream(Resampler(in_rate, out_rate), pcm, [chunk] * 49)

    assert abs(len(out) // 2 - out_rate) <= 2
    assert peak_hz(out, out_rate) == pytest.approx(freq, abs=2.0)


def test_chunked_output_matches_one_shot_conversion() -> None:
    pcm = make_tone(1_000, 48_000, 0.5)
    chunked = stream(Resampler(48_000, 16_000), pcm, [1_922] * 12)
    whole = resample(pcm, 48_000, 16_000)

    a = np.frombuffer(chunked, "<i2").astype(int)
    b = np.frombuffer(whole, "<i2").astype(int)
    n = min(len(a), len(b))
    # No clicks at chunk boundaries: the streams differ by rounding at most.
    assert np.abs(a[100 : n - 100] - b[100 : n - 100]).max() <= 2


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(min_value=0, max_value=700), max_size=30))
def test_identity_is_bit_exact_for_any_chunking(sizes: list[int]) -> None:
    pcm = noise(8_000, seed=3)
    resampler = Resampler(16_000, 16_000)
    assert resampler.passthrough
    assert stream(resampler, pcm, sizes) == pcm


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(min_value=1, max_value=3_000), min_size=1, max_size=20))
def test_any_chunking_gives_the_same_length(sizes: list[int]) -> None:
    pcm = make_tone(500, 24_000, 0.5)
    expected = len(resample(pcm, 24_000, 16_000))
    out = stream(Resampler(24_000, 16_000), pcm, sizes)
    assert abs(len(out) - expected) <= 4


def test_finish_starts_a_fresh_stream() -> None:
    resampler = Resampler(16_000, 24_000)
    first = resampler.process(make_tone(440, 16_000, 0.2)) + resampler.finish()
    second = resampler.process(make_tone(440, 16_000, 0.2)) + resampler.finish()
    assert first == second


def test_mixing_and_spreading_channels() -> None:
    stereo = np.array([[100, 300], [-50, -150], [32_767, 32_767]], "<i2").tobytes()
    assert np.frombuffer(to_mono(stereo, 2), "<i2").tolist() == [200, -100, 32_767]
    mono = np.array([1, -2], "<i2").tobytes()
    assert np.frombuffer(from_mono(mono, 2), "<i2").tolist() == [1, 1, -2, -2]


def test_bad_input_names_the_problem() -> None:
    with pytest.raises(ValueError, match="in_rate must be a positive integer"):
        Resampler(0, 16_000)
    with pytest.raises(ValueError, match="out_rate"):
        Resampler(16_000, 24_000.5)  # type: ignore[arg-type]
    with pytest.raises(AudioFormatError, match="even byte count"):
        resample(b"\x00\x01\x02", 16_000, 24_000)
    with pytest.raises(AudioFormatError, match="2-channel"):
        to_mono(b"\x00\x01\x02\x03\x04\x05", 2)


def test_the_prompt_resampler_answers_every_buffer_at_once_and_keeps_the_signal() -> None:
    """The echo reference cannot wait: soxr held back up to 36 ms (nothing for one 20 ms
    buffer, two buffers' worth the next), so the reference of a short output path arrived
    after its echo. Every 20 ms in gives 20 ms out, and it is the same speech."""
    speech = synthesize("Aisle twelve, bay three, level B.", rate=24_000)
    prompt = PromptResampler(24_000, 16_000)
    sizes, out = [], bytearray()
    for offset in range(0, len(speech) - 960, 960):
        piece = prompt.process(speech[offset : offset + 960])
        sizes.append(len(piece) // 2)
        out += piece
    assert set(sizes) == {320}
    got = np.frombuffer(bytes(out), "<i2").astype(np.float64)
    want = np.frombuffer(resample(speech, 24_000, 16_000), "<i2").astype(np.float64)
    # Output sample j stands for input sample `input_position(j)`: compare there.
    lag = prompt.input_position(0) * 16_000 / 24_000
    want = np.interp(np.arange(got.size) + lag, np.arange(want.size), want)
    error = got[400:-400] - want[400:-400]
    assert 10 * np.log10(np.sum(want[400:-400] ** 2) / np.sum(error**2)) > 25
