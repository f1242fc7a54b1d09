"""The audio package's errors, so callers can catch one family."""

from __future__ import annotations


class AudioError(Exception):
    """Audio could not be captured, played or converted. The message says what to fix."""


class AudioDeviceNotFound(AudioError, LookupError):
    """No device matches the configured name; the message lists the devices that do exist."""


class AudioFormatError(AudioError, ValueError):
    """Audio data or a WAV file is not in a format we can use."""
