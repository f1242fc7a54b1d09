"""Read WAV files into the appliance's PCM16 mono format, and write PCM16 mono WAVs."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from device.audio import SAMPLE_WIDTH
from device.audio.errors import AudioFormatError
from device.audio.resample import resample, to_mono

_FIX = "convert it with e.g. `sox in.wav -b 16 -c 1 -r 16000 out.wav`"


def _to_int16(raw: bytes, width: int) -> bytes:
    if width == 2:
        return raw
    if width == 1:  # 8-bit WAV is unsigned
        return ((np.frombuffer(raw, np.uint8).astype(np.int16) - 128) << 8).astype("<i2").tobytes()
    if width == 3:
        triples = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        return triples[:, 1:].copy().view("<i2").reshape(-1).tobytes()
    if width == 4:
        return (np.frombuffer(raw, "<i4") >> 16).astype("<i2").tobytes()
    raise AudioFormatError(f"{width * 8}-bit samples are not supported; {_FIX}")


def read_wav(path: Path | str, rate: int) -> bytes:
    """The whole file as mono PCM16 at `rate`: mixed down and resampled as needed."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, file_rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except FileNotFoundError:
        raise AudioFormatError(f"WAV file {path} does not exist") from None
    except (wave.Error, EOFError) as exc:
        raise AudioFormatError(
            f"{path} is not a PCM WAV file we can read ({exc}); {_FIX}"
        ) from None
    pcm = to_mono(_to_int16(raw, width), channels)
    return resample(pcm, file_rate, rate)


def open_wav_writer(path: Path | str, rate: int) -> wave.Wave_write:
    """A mono PCM16 WAV writer; the header's length is fixed up when it is closed."""
    path = Path(path)
    if not path.parent.is_dir():
        raise AudioFormatError(f"cannot write {path}: directory {path.parent} does not exist")
    # The caller owns the writer: it stays open across many writes from a playback thread.
    writer = wave.open(str(path), "wb")  # noqa: SIM115
    writer.setnchannels(1)
    writer.setsampwidth(SAMPLE_WIDTH)
    writer.setframerate(rate)
    return writer
