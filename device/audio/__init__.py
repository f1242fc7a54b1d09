"""Audio in and out: device lookup by name, capture, playback, resampling.

The formats are fixed by Gemini Live: the device captures 16 kHz PCM16 mono and plays 24 kHz
PCM16 mono. Everything in this package speaks little-endian signed 16-bit mono bytes at those
rates; a device that cannot is resampled at the edge, so the rest of the appliance never sees
another format.
"""

CAPTURE_RATE = 16_000
PLAYBACK_RATE = 24_000
SAMPLE_WIDTH = 2
