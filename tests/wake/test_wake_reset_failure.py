"""The model reset after a hit runs off the loop; when it fails, the next audio says so."""

from __future__ import annotations

import pytest

from device.sim.speech import silence, synthesize
from device.wake.detector import WakeDetector
from device.wake.models import ModelSet


async def test_a_failed_reset_after_a_hit_is_raised_not_lost(model_set: ModelSet) -> None:
    async with WakeDetector.from_model_set(model_set) as detector:
        model = detector._model
        assert model is not None

        def broken_reset() -> None:
            raise RuntimeError("reset failed")

        model.reset = broken_reset
        audio = silence(2.0) + synthesize("hey jarvis") + silence(1.0)
        hit = None
        for start in range(0, len(audio), 640):
            hit = await detector.process(audio[start : start + 640])
            if hit is not None:
                break
        assert hit is not None
        with pytest.raises(RuntimeError, match="reset failed"):
            await detector.process(silence(0.2))
