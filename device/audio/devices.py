"""Find PyAudio devices by name and work out what format they can open in.

Devices are chosen by a case-insensitive substring of their name, never by index: indexes move
when a USB device is replugged or ALSA's configuration changes, and a missing ALSA device simply
vanishes from the list, so a name that matches nothing must fail loudly and say what exists.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import pyaudio

from device.audio import CAPTURE_RATE, PLAYBACK_RATE
from device.audio.errors import AudioDeviceNotFound, AudioError

__all__ = [
    "DIRECTIONS",
    "AudioDevice",
    "AudioDeviceNotFound",
    "Direction",
    "ProbeResult",
    "choose_format",
    "find_device",
    "list_devices",
    "portaudio",
    "probe",
    "supports",
]

log = logging.getLogger(__name__)

Direction = Literal["input", "output"]
DIRECTIONS: tuple[Direction, ...] = ("input", "output")


@dataclass(frozen=True)
class AudioDevice:
    index: int
    name: str
    host_api: str
    max_input_channels: int
    max_output_channels: int
    default_rate: int

    def channels(self, direction: Direction) -> int:
        return self.max_input_channels if direction == "input" else self.max_output_channels

    def describe(self) -> str:
        """`'default' (in 32/out 32)`: the form used in error messages."""
        counts = []
        if self.max_input_channels:
            counts.append(f"in {self.max_input_channels}")
        if self.max_output_channels:
            counts.append(f"out {self.max_output_channels}")
        return f"{self.name!r} ({'/'.join(counts) or 'no channels'})"


@dataclass(frozen=True)
class ProbeResult:
    """How a stream on `device` will be opened to deliver `wanted_rate` mono."""

    device: AudioDevice
    direction: Direction
    wanted_rate: int
    rate: int
    channels: int

    @property
    def resampled(self) -> bool:
        return self.rate != self.wanted_rate

    def describe(self) -> str:
        layout = "mono" if self.channels == 1 else f"{self.channels} channels"
        text = f"{self.direction} {self.device.name!r}: opens at {self.rate} Hz {layout}"
        if self.resampled:
            text += f", resampled to {self.wanted_rate} Hz"
        if self.channels != 1:
            text += ", mixed to mono" if self.direction == "input" else ", mono copied to each"
        return text


@contextlib.contextmanager
def portaudio() -> Iterator[pyaudio.PyAudio]:
    """A PortAudio session that is always terminated.

    PortAudio reads the ALSA configuration and the device list when it is initialised and keeps
    them until the last `PyAudio` instance is terminated, so short-lived sessions are what let a
    changed configuration (a new USB device, a test's virtual ALSA devices) be seen.
    """
    pa = pyaudio.PyAudio()
    try:
        yield pa
    finally:
        pa.terminate()


def list_devices(pa: pyaudio.PyAudio | None = None) -> list[AudioDevice]:
    """Every device PortAudio can see, in PortAudio's order."""
    if pa is None:
        with portaudio() as own:
            return list_devices(own)
    devices = []
    for index in range(pa.get_device_count()):
        info: dict[str, Any] = pa.get_device_info_by_index(index)
        host_api = pa.get_host_api_info_by_index(int(info["hostApi"]))["name"]
        devices.append(
            AudioDevice(
                index=index,
                name=str(info["name"]),
                host_api=str(host_api),
                max_input_channels=int(info["maxInputChannels"]),
                max_output_channels=int(info["maxOutputChannels"]),
                default_rate=round(float(info["defaultSampleRate"])),
            )
        )
    return devices


def _check_direction(direction: str) -> Direction:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'input' or 'output', not {direction!r}")
    return direction


def _available(devices: list[AudioDevice]) -> str:
    if not devices:
        return "none (PortAudio sees no devices: is a sound card connected and ALSA configured?)"
    return ", ".join(device.describe() for device in devices)


def find_device(name: str, direction: str, *, pa: pyaudio.PyAudio | None = None) -> AudioDevice:
    """The device whose name contains `name` (case-insensitive) and that can do `direction`,
    'input' or 'output'.

    An exact name wins over a substring match, so 'default' is not shadowed by 'sysdefault';
    otherwise the first match in PortAudio's order is taken.
    """
    checked = _check_direction(direction)
    devices = list_devices(pa)
    wanted = name.strip().casefold()
    if not wanted:
        raise AudioDeviceNotFound(
            f"empty {direction} device name; set it to part of one of these names: "
            f"{_available(devices)}"
        )
    usable = [device for device in devices if device.channels(checked) > 0]
    exact = [device for device in usable if device.name.casefold() == wanted]
    matches = exact or [device for device in usable if wanted in device.name.casefold()]
    if not matches:
        raise AudioDeviceNotFound(
            f"no {direction} device matching {name!r}; available: {_available(devices)}"
        )
    if len(matches) > 1:
        log.info(
            "%s device %r matches %s; using %r",
            direction,
            name,
            ", ".join(repr(device.name) for device in matches),
            matches[0].name,
        )
    return matches[0]


def supports(
    pa: pyaudio.PyAudio, device: AudioDevice, direction: Direction, rate: int, channels: int
) -> bool:
    kwargs: dict[str, Any] = (
        {"input_device": device.index, "input_channels": channels, "input_format": pyaudio.paInt16}
        if direction == "input"
        else {
            "output_device": device.index,
            "output_channels": channels,
            "output_format": pyaudio.paInt16,
        }
    )
    try:
        return bool(pa.is_format_supported(rate, **kwargs))
    except ValueError:
        return False


def choose_format(
    pa: pyaudio.PyAudio,
    device: AudioDevice,
    direction: Direction,
    rate: int,
    *,
    device_rate: int | None = None,
) -> ProbeResult:
    """The stream format closest to `rate` mono that the device accepts.

    The wanted rate is preferred over the device's default rate (no resampling), and mono over
    stereo (no mixing); a device that takes none of those four combinations is refused.
    `device_rate` forces the rate the device is opened at, for hardware whose own converter is
    worse than ours.
    """
    if device_rate is not None:
        rates = [device_rate]
    elif device.default_rate == rate:
        rates = [rate]
    else:
        rates = [rate, device.default_rate]
    for channels in (1, 2):
        if channels > device.channels(direction):
            break
        for candidate in rates:
            if supports(pa, device, direction, candidate, channels):
                return ProbeResult(device, direction, rate, candidate, channels)
    tried = " or ".join(f"{r} Hz" for r in rates)
    raise AudioError(
        f"{direction} device {device.name!r} accepts neither mono nor stereo 16-bit audio at "
        f"{tried}; pick another device, or route it through ALSA's 'plug' (e.g. 'default')"
    )


def probe(
    device_name: str,
    direction: str,
    *,
    rate: int | None = None,
    device_rate: int | None = None,
) -> ProbeResult:
    """Find the device and the format a stream on it would use, as `config check` reports it.

    `rate` defaults to what the appliance uses: 16 kHz for input, 24 kHz for output.
    """
    direction = _check_direction(direction)
    wanted = rate or (CAPTURE_RATE if direction == "input" else PLAYBACK_RATE)
    with portaudio() as pa:
        device = find_device(device_name, direction, pa=pa)
        return choose_format(pa, device, direction, wanted, device_rate=device_rate)
