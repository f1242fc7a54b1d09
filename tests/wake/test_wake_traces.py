"""The wake benchmark's traces: bare openWakeWord read off its front end's 20 ms pass is what
its own pass gives, and the cache keeps both so a re-run scores nothing."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from device.bench import wake_traces
from device.bench.wake_clips import positive_clips
from device.bench.wake_negatives import negative_stream
from device.bench.wake_score import Trace, score_pass, score_system
from device.bench.wake_traces import passes, score_all, trace_path
from device.sim.speech import espeak_available
from device.wake.models import ModelSet

pytestmark = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")


def test_a_bare_system_rides_in_its_front_ends_pass_only_without_vad() -> None:
    assert passes(["raw", "raw@20ms"], vad=False) == [("raw@20ms", "raw")]
    assert passes(["raw@20ms", "raw@10ms", "raw"], vad=False) == [
        ("raw@20ms", "raw"),
        ("raw@10ms",),
    ]
    assert passes(["raw", "speex-30@20ms"], vad=False) == [("raw",), ("speex-30@20ms",)]
    # VAD's state follows the frames its pass calls it on: separate passes keep it exact.
    assert passes(["raw", "raw@20ms"], vad=True) == [("raw",), ("raw@20ms",)]


def test_a_shared_pass_asks_for_no_vad() -> None:
    with pytest.raises(ValueError, match="without VAD"):
        score_pass(None, "raw@20ms", vad=True, with_bare=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scored between frames"):
        score_pass(None, "raw", vad=False, with_bare=True)  # type: ignore[arg-type]


def _same(a: Trace, b: Trace) -> None:
    assert a.system == b.system
    for name in ("pos", "neg", "pos_vad", "neg_vad"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.windows == b.windows and a.neg_seconds == b.neg_seconds


@pytest.mark.slow
def test_bare_read_off_the_20_ms_pass_is_bare_scored_alone(model_set: ModelSet) -> None:
    clips = list(itertools.islice(positive_clips(quick=True), 0, 48, 6))
    negatives = list(negative_stream(60.0, seed=5))
    fine, bare = score_pass(
        model_set, "raw@20ms", clips=clips, negatives=negatives, vad=False, with_bare=True
    )
    alone = score_system(model_set, "raw", clips=clips, negatives=negatives, vad=False)
    _same(bare, alone)
    _same(fine, score_system(model_set, "raw@20ms", clips=clips, negatives=negatives, vad=False))
    assert (fine.pos > bare.pos).any()  # the 20 ms pass did score between frames
    # Bare's CPU is counted from the pass's frames that scored nothing between frames.
    assert 0 < bare.predict_cpu_s < fine.predict_cpu_s


@pytest.mark.slow
def test_the_cache_keeps_both_traces_of_a_shared_pass(
    model_set: ModelSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    four = list(positive_clips(quick=True))[:4]
    monkeypatch.setattr(wake_traces, "positive_clips", lambda quick: four)
    passes_run: list[str] = []
    real = wake_traces.score_pass

    def counted(*args: Any, **kwargs: Any) -> list[Trace]:
        passes_run.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(wake_traces, "score_pass", counted)
    kwargs: dict[str, Any] = {"quick": True, "negative_s": 30.0, "vad": False, "cache": tmp_path}
    first = score_all(model_set, ["raw", "raw@20ms"], **kwargs)
    assert passes_run == ["raw@20ms", "raw@20ms"]  # the positives, one negative segment
    for system in ("raw", "raw@20ms"):
        for part in ("pos-quick", "neg0-30s"):
            assert trace_path(tmp_path, system, part, False).is_file()
    again = score_all(model_set, ["raw", "raw@20ms"], **kwargs)
    assert passes_run == ["raw@20ms", "raw@20ms"]  # all from the cache
    assert [t.system for t in again] == ["raw", "raw@20ms"]
    for a, b in zip(first, again, strict=True):
        _same(a, b)
