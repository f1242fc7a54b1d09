"""Device lookup by name against real PortAudio on virtual ALSA devices."""

from __future__ import annotations

from pathlib import Path

import pytest
from audio_helpers import noise

from device.audio.devices import (
    AudioDeviceNotFound,
    find_device,
    list_devices,
    portaudio,
    probe,
)
from device.audio.errors import AudioError
from device.sim.alsa import virtual_alsa


def test_devices_are_found_by_any_case_substring(tmp_path: Path) -> None:
    with virtual_alsa(tmp_path, noise(1_600)):
        names = {device.name for device in list_devices()}
        assert {"vmic", "vspk"} <= names

        mic = find_device("VMI", "input")
        speaker = find_device("spk", "output")

    assert mic.name == "vmic" and mic.max_input_channels > 0
    assert speaker.name == "vspk" and speaker.max_output_channels > 0


def test_a_missing_device_lists_the_devices_that_exist(tmp_path: Path) -> None:
    with virtual_alsa(tmp_path, noise(1_600)), pytest.raises(AudioDeviceNotFound) as caught:
        find_device("USB Mic", "input")
    message = str(caught.value)
    assert message.startswith("no input device matching 'USB Mic'; available: ")
    assert "'vmic' (in " in message
    assert "'vspk' (out " in message
    assert isinstance(caught.value, AudioError)


def test_a_device_without_that_direction_does_not_match(tmp_path: Path) -> None:
    with virtual_alsa(tmp_path), pytest.raises(AudioDeviceNotFound, match="no output device"):
        find_device("vmic", "output")


def test_empty_name_and_bad_direction_are_refused(tmp_path: Path) -> None:
    with virtual_alsa(tmp_path):
        with pytest.raises(AudioDeviceNotFound, match=r"empty input device name.*'vmic'"):
            find_device("  ", "input")
        with pytest.raises(ValueError, match="direction must be 'input' or 'output'"):
            find_device("vmic", "sideways")


def test_a_missing_infile_removes_the_device_and_lookup_fails_loudly(tmp_path: Path) -> None:
    with virtual_alsa(tmp_path, noise(1_600)) as alsa:
        alsa.infile.unlink()
        with pytest.raises(AudioDeviceNotFound, match="no input device matching 'vmic'"):
            find_device("vmic", "input")


def test_probe_reports_how_a_stream_will_open(tmp_path: Path) -> None:
    with virtual_alsa(tmp_path):
        mic = probe("vmic", "input")
        speaker = probe("vspk", "output")
        forced = probe("vspk", "output", device_rate=48_000)

    assert (mic.rate, mic.channels, mic.resampled) == (16_000, 1, False)
    assert (speaker.rate, speaker.channels, speaker.resampled) == (24_000, 1, False)
    assert mic.describe() == "input 'vmic': opens at 16000 Hz mono"
    assert forced.resampled
    assert forced.describe() == "output 'vspk': opens at 48000 Hz mono, resampled to 24000 Hz"


def test_each_context_sees_its_own_devices(tmp_path: Path) -> None:
    with virtual_alsa(tmp_path / "a", noise(1_600), mic="mic_a"):
        assert "mic_a" in {device.name for device in list_devices()}
    with virtual_alsa(tmp_path / "b", noise(1_600), mic="mic_b"), portaudio() as pa:
        names = {device.name for device in list_devices(pa)}
    assert "mic_b" in names
    assert "mic_a" not in names
