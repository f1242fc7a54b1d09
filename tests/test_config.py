"""Bad configuration exits 78 with one line that names the key and the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from device.cli import main
from device.config import REPO_CONFIG_DIR, load_settings

GOOD = """
[device]
id = "aisle-12"
state_dir = "{state}"
[live]
instructions = "{instructions}"
[audio]
input = "wav"
input_wav = "{wav}"
output = "wav"
output_wav = "out.wav"
[wake]
enabled = false
[metrics]
address = "127.0.0.1:0"
"""


@pytest.fixture
def write_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    monkeypatch.setenv("WAREHOUSE_VOICE_INVENTORY_TOKEN", "test-token")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)

    def write(text: str = GOOD, extra: str = "") -> Path:
        path = tmp_path / "config.toml"
        body = text.format(
            state=tmp_path / "state",
            instructions=REPO_CONFIG_DIR / "instructions.md",
            wav=REPO_CONFIG_DIR / "demo" / "where-is-sku.wav",
        )
        path.write_text(body + extra)
        return path

    return write


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["config", "check", "--config", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def test_the_documented_default_config_parses() -> None:
    settings = load_settings(REPO_CONFIG_DIR / "config.toml")
    assert settings.live.model == "gemini-3.8-live"
    assert settings.live.api_version == "v1beta"
    assert settings.audio.chunk_ms == 20


def test_a_good_config_passes(write_config, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["config", "check", "--config", str(write_config())]) == 0
    assert "config ok" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "key", "hint"),
    [
        ("[live]\nmodle = 'x'\n", "live.modle", "unknown key"),
        ("[audio]\nchunk_ms = 'twenty'\n", "audio.chunk_ms", "integer"),
        ("[audio]\nchunk_ms = 5\n", "audio.chunk_ms", "at least 20"),
        ("[live]\nturn_detection = 'sometimes'\n", "live.turn_detection", "one of"),
        ("[live]\napi_key = 'AIza-secret'\n", "live.api_key", "secrets are not read"),
        ("[tools]\nenabled = ['find_item', 'launch_rocket']\n", "tools.enabled", "launch_rocket"),
        ("[button]\npin = 'pin seventeen'\n", "button.pin", "wrong form"),
        ("[live]\nsilence_ms = 99999\n", "live.silence_ms", "at most 5000"),
    ],
)
def test_bad_values_name_the_key(write_config, capsys, extra: str, key: str, hint: str) -> None:  # type: ignore[no-untyped-def]
    # Appending a second [section] table is a TOML error, so merge the extra lines in.
    path = write_config()
    section, line = extra.split("\n", 1)
    text = path.read_text()
    text = (
        text.replace(section + "\n", section + "\n" + line, 1) if section in text else text + extra
    )
    path.write_text(text)
    code, err = check(path, capsys)
    assert code == 78
    assert len(err) == 1, err
    assert err[0].startswith(f"config error: {key}:"), err[0]
    assert hint in err[0]
    assert "fix:" in err[0]


def test_missing_file(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code, err = check(tmp_path / "nope.toml", capsys)
    assert code == 78 and len(err) == 1
    assert "--config" in err[0] and "does not exist" in err[0]


def test_unreadable_credential(write_config, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = write_config(extra="")
    text = path.read_text().replace(
        "[live]\n", f'[live]\napi_key_file = "{tmp_path}/missing-key"\n'
    )
    path.write_text(text)
    code, err = check(path, capsys)
    assert code == 78 and len(err) == 1
    assert err[0].startswith("config error: live.api_key_file:")
    assert "cannot read credential file" in err[0]


def test_missing_secret_says_where_to_put_it(write_config, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("GEMINI_API_KEY")
    code, err = check(write_config(), capsys)
    assert code == 78
    assert "GEMINI_API_KEY" in err[0] and "LoadCredential" in err[0]


def test_credentials_directory_is_used(write_config, tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "gemini-api-key").write_text("from-credential\n")
    (creds / "inventory-token").write_text("tok\n")
    monkeypatch.delenv("GEMINI_API_KEY")
    monkeypatch.delenv("WAREHOUSE_VOICE_INVENTORY_TOKEN")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert check(write_config(), capsys)[0] == 0


def test_audio_device_that_does_not_exist(write_config, capsys) -> None:  # type: ignore[no-untyped-def]
    path = write_config()
    text = path.read_text().replace(
        'input = "wav"', 'input = "pyaudio"\ninput_device = "USB Mic 9000"'
    )
    path.write_text(text)
    code, err = check(path, capsys)
    assert code == 78 and len(err) == 1
    assert err[0].startswith("config error: audio.input_device:")
    assert "USB Mic 9000" in err[0]


def test_exit_status_through_the_real_command(write_config) -> None:  # type: ignore[no-untyped-def]
    path = write_config(extra="[bogus]\nx = 1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "device.cli", "config", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ},
        check=False,
    )
    assert proc.returncode == 78
    assert proc.stderr.strip().startswith("config error: bogus: unknown key")
    assert "Traceback" not in proc.stderr


def _edit(path: Path, section: str, lines: str) -> None:
    """Put `lines` into `[section]` (made if the file has none)."""
    text = path.read_text()
    header = f"[{section}]\n"
    if header in text:
        # Replace any key the new lines set, so no key appears twice.
        for line in lines.splitlines():
            key = line.split("=")[0].strip()
            text = "\n".join(kept for kept in text.split("\n") if kept.split("=")[0].strip() != key)
        text = text.replace(header, header + lines + "\n", 1)
    else:
        text += f"\n{header}{lines}\n"
    path.write_text(text)


@pytest.mark.parametrize(
    ("section", "lines", "key", "hint"),
    [
        ("button", 'pin = "GPIO12"', "button.pin", "also leds.pins.red"),
        ("button", 'mute_pin = "BCM19"', "button.mute_pin", "also leds.pins.blue"),
        ("device", 'state_dir = "/proc/wv-state"', "device.state_dir", "cannot be written"),
        ("device", 'event_log = "/proc/wv/events.jsonl"', "device.event_log", "cannot be written"),
        (
            "device",
            'control_socket = "/run/' + "x" * 120 + '.sock"',
            "device.control_socket",
            "at most 107",
        ),
        (
            "device",
            'control_socket = "/etc/hostname/control.sock"',
            "device.control_socket",
            "not a directory",
        ),
        ("device", "event_log_max_mb = 0", "device.event_log_max_mb", "out of range"),
        ("device", "event_log_backups = -1", "device.event_log_backups", "at least 0"),
        ("wake", "enabled = true", "wake.models", "not installed"),
        ("live", 'voice = "Kora"', "live.voice", "no voice named 'Kora'"),
        ("live", 'voice = "kore"', "live.voice", "did you mean 'Kore'"),
        ("audio", 'output_wav = "/nonexistent-dir/out.wav"', "audio.output_wav", "does not exist"),
        ("metrics", 'address = "192.0.2.77:9464"', "metrics.address", "cannot listen"),
    ],
)
def test_config_check_rejects_what_run_would_fail_on_or_quietly_drop(  # type: ignore[no-untyped-def]
    write_config, capsys, section: str, lines: str, key: str, hint: str
) -> None:
    path = write_config()
    _edit(path, section, lines)
    code, err = check(path, capsys)
    assert code == 78, err
    assert len(err) == 1, err
    assert err[0].startswith(f"config error: {key}:"), err[0]
    assert hint in err[0], err[0]
    assert "fix:" in err[0]


def test_the_event_log_path_being_a_directory(write_config, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = write_config()
    (tmp_path / "state" / "events.jsonl").mkdir(parents=True)
    code, err = check(path, capsys)
    assert code == 78 and err[0].startswith("config error: device.event_log:")


def test_a_config_file_that_is_not_utf8_is_one_line_and_78(write_config) -> None:  # type: ignore[no-untyped-def]
    path = write_config()
    path.write_bytes(path.read_bytes().replace(b'"aisle-12"', b'"aisle-\xe912"'))
    for argv in (["config", "check"], ["run"]):
        proc = subprocess.run(
            [sys.executable, "-m", "device.cli", *argv, "--config", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 78, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("config error: --config:"), lines
        assert "not UTF-8" in lines[0] and "0xe9" in lines[0]
