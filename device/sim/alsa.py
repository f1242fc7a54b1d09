"""Virtual ALSA devices for machines without a sound card.

`virtual_alsa` writes an ALSA configuration with two file-backed devices and points this
process at it through `XDG_CONFIG_HOME`:

- `vmic` captures from a raw s16le file, bit-exact and as fast as it is read (not paced);
- `vspk` plays into a WAV file named after the stream's rate and channels, also unpaced.

Because neither is paced, a `PyAudioSource` on `vmic` produces audio as fast as the CPU allows
(give it a large `max_queued_ms` to keep all of it), and a `PyAudioSink` on `vspk` plays
instantly. Use `WavSource`/`WavSink` or `device.sim.pulse` when timing matters.

Things ALSA does that the helpers here work around:

- Each capture stream re-reads the infile from its start, and reads past its end return the
  last buffer again, so the microphone audio is followed by silence.
- A missing infile silently removes `vmic` from the device list, so the infile is written
  before the configuration.
- Opening `vspk` truncates its WAV: the file holds what the last stream opened on it played.
- ALSA parses its configuration once and caches it, and PortAudio enumerates devices once per
  initialisation. Checked here: a `PyAudio()` created after the variable changed sees the new
  devices only if every earlier `PyAudio` instance was terminated (PortAudio's initialisation
  is reference-counted, and its last `terminate()` frees ALSA's cached configuration). This
  context also frees that cache on entry and exit, so a device opened by name always resolves
  against the current file. The audio sources and sinks create and terminate their own
  `PyAudio`, so they just work inside the context; code that keeps a `PyAudio` alive across
  contexts keeps seeing the old devices.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_FORBIDDEN = set('"\\\n')


@dataclass(frozen=True)
class VirtualAlsa:
    config_home: Path
    asoundrc: Path
    infile: Path
    mic_bytes: int  # the real microphone audio at the start of `infile`; silence follows
    speaker_dir: Path
    mic: str = "vmic"
    speaker: str = "vspk"

    def speaker_wav(self, rate: int = 24_000, channels: int = 1) -> Path:
        """Where `vspk` writes a stream opened at `rate` and `channels`."""
        return self.speaker_dir / f"out_{rate}_{channels}.wav"

    @property
    def speaker_glob(self) -> str:
        """Matches every WAV `vspk` writes, whatever format the stream was opened with."""
        return str(self.speaker_dir / "out_*_*.wav")

    def speaker_wavs(self) -> list[Path]:
        return sorted(self.speaker_dir.glob("out_*_*.wav"))

    def played(self, rate: int = 24_000, channels: int = 1) -> bytes:
        """The frames `vspk` wrote for that format; read it after the stream is closed."""
        path = self.speaker_wav(rate, channels)
        if not path.exists():
            found = ", ".join(p.name for p in self.speaker_wavs()) or "none"
            raise FileNotFoundError(
                f"vspk wrote no {path.name}; WAVs written: {found} (was the stream opened at "
                f"{rate} Hz with {channels} channel(s)?)"
            )
        with wave.open(str(path), "rb") as wav:
            return wav.readframes(wav.getnframes())


def _check_path(path: Path) -> Path:
    path = path.resolve()
    if _FORBIDDEN & set(str(path)):
        raise ValueError(f"{path} contains a quote, backslash or newline; ALSA cannot quote it")
    return path


def forget_alsa_config() -> bool:
    """Drop ALSA's cached configuration so the next open re-reads it. False without libasound."""
    name = ctypes.util.find_library("asound") or "libasound.so.2"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return False
    lib.snd_config_update_free_global()
    return True


def render_asoundrc(
    *, infile: Path, speaker_dir: Path, mic: str = "vmic", speaker: str = "vspk"
) -> str:
    return (
        f'pcm.{mic} {{ type asym capture.pcm {{ type file slave.pcm "null" '
        f'file "/dev/null" infile "{infile}" format "raw" }} }}\n'
        f'pcm.{speaker} {{ type asym playback.pcm {{ type file slave.pcm "null" '
        f'file "{speaker_dir}/out_%r_%c.wav" format "wav" }} }}\n'
    )


@contextlib.contextmanager
def virtual_alsa(
    directory: Path,
    mic_pcm: bytes = b"",
    *,
    mic_rate: int = 16_000,
    tail_silence_s: float = 1.0,
    mic: str = "vmic",
    speaker: str = "vspk",
) -> Iterator[VirtualAlsa]:
    """`vmic` and `vspk` for the duration of the context; `XDG_CONFIG_HOME` is restored after.

    `mic_pcm` is s16le mono; `tail_silence_s` of silence at `mic_rate` is appended so that a
    stream reading past the speech gets silence rather than the last buffer repeated. Open the
    capture stream mono at `mic_rate` to read the bytes back unchanged.
    """
    if len(mic_pcm) % 2:
        raise ValueError(f"mic_pcm must be s16le samples (an even byte count), got {len(mic_pcm)}")
    for label, name in (("mic", mic), ("speaker", speaker)):
        if not name.isidentifier():
            raise ValueError(f"{label} name {name!r} must be letters, digits and underscores")
    directory = _check_path(Path(directory))
    config_home = directory / "xdg-config"
    asoundrc = config_home / "alsa" / "asoundrc"
    infile = directory / "mic.raw"
    speaker_dir = directory / "speaker"
    asoundrc.parent.mkdir(parents=True, exist_ok=True)
    speaker_dir.mkdir(parents=True, exist_ok=True)
    infile.write_bytes(mic_pcm + bytes(round(tail_silence_s * mic_rate) * 2))
    asoundrc.write_text(
        render_asoundrc(infile=infile, speaker_dir=speaker_dir, mic=mic, speaker=speaker),
        encoding="utf-8",
    )
    previous = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = str(config_home)
    forget_alsa_config()
    try:
        yield VirtualAlsa(
            config_home=config_home,
            asoundrc=asoundrc,
            infile=infile,
            mic_bytes=len(mic_pcm),
            speaker_dir=speaker_dir,
            mic=mic,
            speaker=speaker,
        )
    finally:
        if previous is None:
            os.environ.pop("XDG_CONFIG_HOME", None)
        else:
            os.environ["XDG_CONFIG_HOME"] = previous
        forget_alsa_config()
