"""The energy VAD on synthetic audio: where speech starts and ends, in samples."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.sim.vad import EnergyVad, VadConfigError, VadSettings, frame_dbfs

from .helpers import noise, silence, voiced

FRAME = 320  # 20 ms at 16 kHz


def events(pcm: bytes, settings: VadSettings | None = None) -> list[tuple[str, int, int]]:
    vad = EnergyVad(settings or VadSettings())
    return [(e.kind, e.sample, e.boundary) for e in vad.feed(pcm)]


def test_speech_then_silence_gives_one_start_and_one_end() -> None:
    pcm = silence(0.2) + voiced(0.5) + silence(0.8)
    # Start is decided after 80 ms of speech; end after 500 ms of silence.
    assert events(pcm) == [
        ("speech_start", 3200 + 1280, 3200),
        ("speech_end", 3200 + 8000 + 8000, 3200 + 8000),
    ]


def test_short_pauses_inside_speech_do_not_end_the_turn() -> None:
    pcm = voiced(0.4) + silence(0.3) + voiced(0.4) + silence(0.6)
    assert [kind for kind, _, _ in events(pcm)] == ["speech_start", "speech_end"]


def test_quiet_noise_never_starts_speech() -> None:
    assert events(noise(2.0, level_dbfs=-60.0)) == []


def test_start_sensitivity_moves_the_threshold() -> None:
    quiet_speech = voiced(0.5, level_dbfs=-45.0) + silence(0.6)
    high = VadSettings.from_realtime_input_config(
        {"automatic_activity_detection": {"start_of_speech_sensitivity": "START_SENSITIVITY_HIGH"}}
    )
    low = VadSettings.from_realtime_input_config(
        {"automatic_activity_detection": {"start_of_speech_sensitivity": "START_SENSITIVITY_LOW"}}
    )
    assert [k for k, _, _ in events(quiet_speech, high)] == ["speech_start", "speech_end"]
    assert events(quiet_speech, low) == []


def test_end_sensitivity_decides_whether_background_noise_is_silence() -> None:
    # Speech, then steady noise at -44 dBFS: silence to a HIGH end sensitivity, speech to LOW.
    pcm = voiced(0.5) + noise(1.0, level_dbfs=-44.0)
    high = VadSettings.from_realtime_input_config(
        {"automatic_activity_detection": {"end_of_speech_sensitivity": "END_SENSITIVITY_HIGH"}}
    )
    low = VadSettings.from_realtime_input_config(
        {"automatic_activity_detection": {"end_of_speech_sensitivity": "END_SENSITIVITY_LOW"}}
    )
    assert [k for k, _, _ in events(pcm, high)] == ["speech_start", "speech_end"]
    assert [k for k, _, _ in events(pcm, low)] == ["speech_start"]


def test_prefix_padding_is_the_speech_needed_to_start() -> None:
    blip = silence(0.1) + voiced(0.06) + silence(0.6)
    strict = VadSettings.from_realtime_input_config(
        {"automatic_activity_detection": {"prefix_padding_ms": 100}}
    )
    eager = VadSettings.from_realtime_input_config(
        {"automatic_activity_detection": {"prefix_padding_ms": 40}}
    )
    assert events(blip, strict) == []
    assert events(blip, eager)[0] == ("speech_start", 1600 + 640, 1600)


def test_silence_duration_comes_from_the_setup() -> None:
    settings = VadSettings.from_realtime_input_config(
        {"automatic_activity_detection": {"silence_duration_ms": 200}}
    )
    assert events(voiced(0.3) + silence(0.3), settings)[-1] == ("speech_end", 4800 + 3200, 4800)


def test_flush_ends_speech_in_progress_only() -> None:
    vad = EnergyVad(VadSettings())
    vad.feed(silence(0.2))
    assert vad.flush() is None
    vad.feed(voiced(0.3) + silence(0.1))
    event = vad.flush()
    assert event is not None
    assert (event.kind, event.sample, event.boundary) == ("speech_end", 9600, 8000)
    assert not vad.in_speech


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"automatic_activity_detection": {"start_of_speech_sensitivity": "LOUD"}}, "LOUD"),
        ({"automatic_activity_detection": {"silence_duration_ms": -5}}, "silenceDurationMs"),
        ({"automatic_activity_detection": {"prefix_padding_ms": "20"}}, "prefixPaddingMs"),
        ({"automatic_activity_detection": "yes"}, "automaticActivityDetection"),
    ],
)
def test_bad_settings_name_the_field(config: dict[str, object], fragment: str) -> None:
    with pytest.raises(VadConfigError, match=fragment):
        VadSettings.from_realtime_input_config(config)


def test_frame_level_in_dbfs() -> None:
    import numpy as np

    full_scale_square = np.full(FRAME, 32767, dtype="<i2")
    assert frame_dbfs(full_scale_square) == pytest.approx(0.0, abs=0.01)
    assert frame_dbfs(np.zeros(FRAME, dtype="<i2")) == -120.0


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=4000), max_size=30))
def test_events_do_not_depend_on_how_audio_is_chunked(cuts: list[int]) -> None:
    pcm = silence(0.1) + voiced(0.3) + silence(0.6) + voiced(0.2) + silence(0.6)
    whole = events(pcm)
    vad = EnergyVad(VadSettings())
    pieces, pos = [], 0
    for cut in cuts:
        pieces.append(pcm[pos : pos + cut])
        pos += cut
    pieces.append(pcm[pos:])
    chunked = [(e.kind, e.sample, e.boundary) for piece in pieces for e in vad.feed(piece)]
    assert chunked == whole
    assert len(whole) == 4
