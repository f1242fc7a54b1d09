"""The model table: the setup is built from it and `config check` refuses what a model refuses."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from device.cli import main
from device.config import REPO_CONFIG_DIR, load_settings, settings_from_dict
from device.live.connect import build_connect_config
from device.live.models import MODELS, NEWEST, caps_for


def write(tmp_path: Path, live: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[device]\nstate_dir = "{tmp_path}"\n[live]\ninstructions = '
        f'"{REPO_CONFIG_DIR / "instructions.md"}"\n{live}'
    )
    return path


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    monkeypatch.setenv("WAREHOUSE_VOICE_INVENTORY_TOKEN", "test-token")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["config", "check", "--no-devices", "--config", str(path)])
    return code, capsys.readouterr().err.strip().splitlines()


def setup_for(**live: object) -> dict[str, object]:
    settings = settings_from_dict({"live": live})
    config = build_connect_config(settings, instructions="x", function_declarations=[])
    return config.model_dump(exclude_none=True)


def test_the_table_has_the_four_models_and_38_is_the_default() -> None:
    assert {
        "gemini-3.8-live",
        "gemini-3.8-live-thinking",
        "gemini-3.1-flash-live-preview",
        "gemini-live-2.5-flash-native-audio",
    } <= set(MODELS)
    assert NEWEST == "gemini-3.8-live"
    assert load_settings(REPO_CONFIG_DIR / "config.toml").live.model == NEWEST


def test_thinking_level_with_38_exits_78_naming_the_key(  # type: ignore[no-untyped-def]
    tmp_path: Path, capsys
) -> None:
    code, err = check(
        write(tmp_path, 'model = "gemini-3.8-live"\nthinking_level = "low"\n'), capsys
    )
    assert code == 78 and len(err) == 1
    assert err[0].startswith("config error: live.thinking_level:")
    assert "gemini-3.8-live" in err[0] and "fix:" in err[0]


def test_the_thinking_variant_takes_only_its_levels(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    ok = write(tmp_path, 'model = "gemini-3.8-live-thinking"\nthinking_level = "high"\n')
    assert check(ok, capsys)[0] == 0
    bad = write(tmp_path, 'model = "gemini-3.8-live-thinking"\nthinking_level = "minimal"\n')
    code, err = check(bad, capsys)
    assert code == 78 and "live.thinking_level" in err[0]


def test_the_default_config_passes_and_its_setup_has_no_thinking(  # type: ignore[no-untyped-def]
    tmp_path: Path, capsys
) -> None:
    code, err = check(REPO_CONFIG_DIR / "config.toml", capsys)
    assert code == 0, err
    settings = load_settings(REPO_CONFIG_DIR / "config.toml")
    config = build_connect_config(settings, instructions="x", function_declarations=[])
    assert config.thinking_config is None


def test_the_setup_follows_the_model() -> None:
    legacy = setup_for(model="gemini-3.1-flash-live-preview")
    assert legacy["thinking_config"] == {"thinking_level": "MINIMAL"}
    assert "thinking_config" not in setup_for(model="gemini-3.8-live")
    thinking = setup_for(model="gemini-3.8-live-thinking", thinking_level="medium")
    assert thinking["thinking_config"] == {"thinking_level": "MEDIUM"}


def test_an_unknown_model_is_allowed_with_a_warning_and_the_newest_rules(  # type: ignore[no-untyped-def]
    tmp_path: Path, capsys, caplog
) -> None:
    with caplog.at_level(logging.WARNING):
        assert check(write(tmp_path, 'model = "gemini-4.0-live"\n'), capsys)[0] == 0
    assert any("gemini-4.0-live" in r.message for r in caplog.records)
    assert caps_for("gemini-4.0-live") == MODELS[NEWEST]
    code, err = check(
        write(tmp_path, 'model = "gemini-4.0-live"\nthinking_level = "low"\n'), capsys
    )
    assert code == 78 and "live.thinking_level" in err[0]


def test_frames_cost_low_by_default() -> None:
    assert setup_for()["media_resolution"] == "MEDIA_RESOLUTION_LOW"
    assert setup_for(media_resolution="medium")["media_resolution"] == "MEDIA_RESOLUTION_MEDIUM"
