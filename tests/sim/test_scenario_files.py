"""Scenario files: the shipped ones load, and mistakes are reported with the key and fix."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from device.sim.reply_audio import load_wav, render_turn_audio, synthesize_cached, tone_pattern
from device.sim.scenario import (
    SCENARIO_DIR,
    ScenarioError,
    TurnSpec,
    available_scenarios,
    load_scenario,
    parse_scenario,
)


def test_where_is_sku_is_the_documented_exchange() -> None:
    scenario = load_scenario("where-is-sku")
    (turn,) = scenario.turns
    assert turn.user_transcript == "Where is SKU 104417?"
    assert [(c.id, c.name, c.args) for c in turn.tool_calls] == [
        ("call-1", "find_item", {"sku": "104417"})
    ]
    assert turn.reply_text == "Aisle twelve, bay three, level B, forty units."


@pytest.mark.parametrize("name", available_scenarios())
def test_every_shipped_scenario_loads(name: str) -> None:
    assert load_scenario(name).name == name


def test_unknown_scenario_lists_the_available_ones() -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario("no-such-scenario")
    message = str(caught.value)
    assert "no-such-scenario" in message and "where-is-sku" in message


def parse(text: str, base_dir: Path = SCENARIO_DIR) -> object:
    return parse_scenario(text, name="t", base_dir=base_dir)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('[[turns]]\nreply_txt = "x"\n', "turns[0].reply_txt: unknown key"),
        ("turns = []\n", "turns: List should have at least 1 item"),
        ("[[turns]]\nclose_after_ms = 10\n", "close_after_ms needs close_code"),
        ("[[turns]]\nclose_code = 1005\n", "reserved"),
        ("speed = 0\n[[turns]]\n", "speed"),
        ("[[turns]\n", "invalid TOML"),
        ('[[turns]]\nreply_audio = "missing.wav"\n', "missing.wav does not exist"),
        (
            '[[turns]]\n[[turns.tool_calls]]\nid = "a"\nname = "x"\n'
            '[[turns.tool_calls]]\nid = "a"\nname = "y"\n',
            "ids must be unique",
        ),
    ],
)
def test_mistakes_name_the_key(text: str, fragment: str) -> None:
    with pytest.raises(ScenarioError, match="scenario t") as caught:
        parse(text)
    assert fragment in str(caught.value)


def write_wav(path: Path, samples: np.ndarray, rate: int, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())


def test_reply_audio_path_is_relative_to_the_scenario(tmp_path: Path) -> None:
    write_wav(tmp_path / "reply.wav", np.full(2400, 1000), 24000)
    scenario = parse_scenario('[[turns]]\nreply_audio = "reply.wav"\n', name="t", base_dir=tmp_path)
    turn = scenario.turns[0]
    assert turn.reply_audio == tmp_path / "reply.wav"
    assert render_turn_audio(turn, tmp_path) == np.full(2400, 1000, dtype="<i2").tobytes()


def test_wav_is_mixed_down_and_resampled_to_24k(tmp_path: Path) -> None:
    stereo = np.stack([np.full(16000, 2000), np.full(16000, 0)], axis=1).reshape(-1)
    write_wav(tmp_path / "s.wav", stereo, 16000, channels=2)
    pcm = np.frombuffer(load_wav(tmp_path / "s.wav"), dtype="<i2")
    assert abs(len(pcm) - 24000) <= 1
    assert abs(int(np.median(pcm)) - 1000) <= 2


def test_eight_bit_wav_is_refused_with_a_fix(tmp_path: Path) -> None:
    with wave.open(str(tmp_path / "x.wav"), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(1)
        wav.setframerate(8000)
        wav.writeframes(bytes(800))
    with pytest.raises(ScenarioError, match="16-bit"):
        load_wav(tmp_path / "x.wav")


def test_without_espeak_the_reply_is_a_deterministic_tone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng on this PATH
    pcm = synthesize_cached("forty units", tmp_path / "cache")
    assert pcm == tone_pattern("forty units")
    samples = np.frombuffer(pcm, dtype="<i2")
    assert len(samples) > 24000 * 0.3 and np.abs(samples).max() > 5000


def test_espeak_reply_is_cached(tmp_path: Path) -> None:
    speech = pytest.importorskip("device.sim.speech")
    if not speech.espeak_available():
        pytest.skip("espeak-ng is not installed")
    cache = tmp_path / "cache"
    first = synthesize_cached("Aisle twelve.", cache)
    assert first != tone_pattern("Aisle twelve.")
    (cached,) = cache.glob("*.pcm")
    assert cached.read_bytes() == first
    assert synthesize_cached("Aisle twelve.", cache) == first


def test_turn_without_text_or_audio_is_silent(tmp_path: Path) -> None:
    assert render_turn_audio(TurnSpec(), tmp_path) == b""
