"""The lean wake-word runtime against openWakeWord 0.6.0 itself, on the project's wake clips.

openWakeWord (a dev dependency, never installed on a device) is the reference: the same audio,
the same models, and every score must be equal, so every detection is too.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from device.bench.wake import negative_stream, positive_clips
from device.wake.detector import FRAME_SAMPLES, WakeDetector
from device.wake.models import ModelSet, fetch_models
from device.wake.runtime import OnnxWakeRuntime, WakeRuntimeError, between_for

SEED = 1234


def _frames(audio: np.ndarray) -> list[np.ndarray]:
    whole = audio.size // FRAME_SAMPLES * FRAME_SAMPLES
    return [audio[i : i + FRAME_SAMPLES] for i in range(0, whole, FRAME_SAMPLES)]


def _reference_scores(model_set: ModelSet, frames: list[np.ndarray]) -> np.ndarray:
    oww = pytest.importorskip("openwakeword.model")
    melspec, embedding = model_set.feature_paths("onnx")
    # openWakeWord seeds its embedding history from numpy's global generator.
    np.random.seed(SEED)
    model = oww.Model(
        wakeword_models=[str(model_set.get("hey_jarvis", "onnx").path)],
        inference_framework="onnx",
        melspec_model_path=str(melspec),
        embedding_model_path=str(embedding),
    )
    key = model_set.get("hey_jarvis", "onnx").path.stem
    return np.array([float(model.predict(f)[key]) for f in frames])


def _runtime(model_set: ModelSet, every_ms: int = 80) -> OnnxWakeRuntime:
    melspec, embedding = model_set.feature_paths("onnx")
    path = model_set.get("hey_jarvis", "onnx").path
    return OnnxWakeRuntime(
        {path.stem: path},
        melspec_path=melspec,
        embedding_path=embedding,
        seed=SEED,
        between=between_for(every_ms),
    )


def _lean_scores(model_set: ModelSet, frames: list[np.ndarray]) -> np.ndarray:
    runtime = _runtime(model_set)
    key = model_set.get("hey_jarvis", "onnx").path.stem
    assert runtime.model_outputs == {key: 1}
    return np.array([runtime.predict(f)[key] for f in frames])


def _detections(scores: np.ndarray, threshold: float = 0.5) -> list[int]:
    """Frames where the score rises through the threshold."""
    over = scores >= threshold
    return [i for i in range(over.size) if over[i] and (i == 0 or not over[i - 1])]


@pytest.mark.slow
def test_scores_and_detections_equal_openwakeword_on_the_wake_clips(model_set: ModelSet) -> None:
    clips = [c.audio for c in positive_clips(6)]
    clips += [c.audio for c in itertools.islice(negative_stream(30.0), 12)]
    stream = np.concatenate(clips).astype(np.int16)
    frames = _frames(stream)
    reference = _reference_scores(model_set, frames)
    lean = _lean_scores(model_set, frames)
    assert len(_detections(reference)) >= 3  # the clips do wake it: the comparison means something
    assert _detections(lean) == _detections(reference)
    np.testing.assert_array_equal(lean, reference)


@pytest.mark.slow
def test_windows_between_frames_score_as_openwakeword_on_the_stream_delayed_that_much(
    model_set: ModelSet,
) -> None:
    """Scoring every 20 ms leaves each frame's own score as openWakeWord's, and each window
    between frames scores what openWakeWord gives the stream delayed to end there, even after
    a gap with no candidates (its embeddings are caught up from the kept melspectrogram)."""
    stream = np.concatenate([c.audio for c in positive_clips(6)]).astype(np.int16)
    frames = _frames(stream)
    key = model_set.get("hey_jarvis", "onnx").path.stem
    runtime = _runtime(model_set, every_ms=20)
    own: list[float] = []
    between: dict[int, dict[int, float]] = {}  # samples before the frame's end -> frame -> score
    for index, frame in enumerate(frames):
        own.append(runtime.predict(frame)[key])
        if runtime.scores_between:
            assert [before for before, _ in runtime.scores_between] == [960, 640, 320]
        for before, scores in runtime.scores_between:
            between.setdefault(before, {})[index] = scores[key]
    np.testing.assert_array_equal(own, _lean_scores(model_set, frames))
    for before, scored in between.items():
        # Scored only around frames that come near, with gaps between them.
        assert 0 < len(scored) < len(frames) / 2
        assert max(scored.values()) >= 0.5
        delayed = np.concatenate([np.zeros(before, np.int16), stream])[: stream.size]
        reference = _lean_scores(model_set, _frames(delayed))
        # After the first 2.6 s, when the kept rows no longer reach back before the stream.
        settled = {i: s for i, s in scored.items() if i >= 33}
        assert settled
        for index, score in settled.items():
            assert score == reference[index], (before, index)


def test_scoring_between_frames_costs_embeddings_only_near_a_wake_word(model_set: ModelSet) -> None:
    """Idle, the detector scoring every 20 ms runs the embedding model as often as bare
    openWakeWord: once per frame. In a minute of speech with noise it runs a little more."""
    quiet = np.random.RandomState(5).randint(-300, 300, 16000 * 30).astype(np.int16)
    speech = np.concatenate([c.audio for c in negative_stream(60.0)]).astype(np.int16)
    for audio, at_most in ((quiet, 0.0), (speech, 0.25)):
        frames = _frames(audio)
        bare, fine = _runtime(model_set), _runtime(model_set, every_ms=20)
        # The first 2 s after a reset, openWakeWord's history of ones and noise gives scores
        # of .05-.1 on anything: both are past that before counting.
        for frame in frames[:25]:
            bare.predict(frame)
            fine.predict(frame)
        start = bare.embeddings_run, fine.embeddings_run
        for frame in frames[25:]:
            bare.predict(frame)
            fine.predict(frame)
        counted = len(frames) - 25
        assert bare.embeddings_run - start[0] == counted
        extra = fine.embeddings_run - start[1] - counted
        assert 0 <= extra <= at_most * counted
        if at_most:
            assert extra > 0  # the speech does come near, so this counts something


def test_between_must_fall_inside_a_frame(model_set: ModelSet) -> None:
    with pytest.raises(ValueError, match="80, 40, 20 or 10 ms"):
        between_for(30)
    melspec, embedding = model_set.feature_paths("onnx")
    path = model_set.get("hey_jarvis", "onnx").path
    with pytest.raises(ValueError, match="1-7 melspectrogram rows"):
        OnnxWakeRuntime(
            {path.stem: path}, melspec_path=melspec, embedding_path=embedding, between=(8,)
        )


def test_first_frames_score_zero_while_warming_up(model_set: ModelSet) -> None:
    loud = (np.random.RandomState(3).randint(-8000, 8000, FRAME_SAMPLES * 7)).astype(np.int16)
    scores = _lean_scores(model_set, _frames(loud))
    assert list(scores[:5]) == [0.0] * 5
    assert scores[5] > 0.0


def test_a_custom_onnx_site_model_loads_and_detects(model_set: ModelSet, tmp_path: Path) -> None:
    from device.sim.speech import silence, synthesize
    from device.wake.download import Downloader

    trained = tmp_path / "site_word.onnx"
    trained.write_bytes(model_set.get("hey_jarvis", "onnx").path.read_bytes())
    shutil.copytree(model_set.directory, tmp_path / "state" / "models")
    custom = fetch_models(
        tmp_path / "state", names=(), custom=[trained],
        downloader=Downloader(release_url=None, wheel_cache=None), notify=lambda _: None,
    )  # fmt: skip
    melspec, embedding = custom.feature_paths("onnx")
    path = custom.get("site_word").path
    runtime = OnnxWakeRuntime({"site_word": path}, melspec_path=melspec, embedding_path=embedding)
    audio = np.frombuffer(
        silence(1.0) + synthesize("hey jarvis") + silence(1.0), dtype="<i2"
    ).astype(np.int16)
    scores = np.array([runtime.predict(f)["site_word"] for f in _frames(audio)])
    assert len(_detections(scores)) == 1


def test_a_file_that_is_not_an_onnx_model_is_named(model_set: ModelSet, tmp_path: Path) -> None:
    melspec, embedding = model_set.feature_paths("onnx")
    broken = tmp_path / "site_word.onnx"
    broken.write_bytes(b"\x08\x07 not really a model")
    with pytest.raises(WakeRuntimeError, match=r"site_word\.onnx.*openWakeWord \.onnx model"):
        OnnxWakeRuntime({"w": broken}, melspec_path=melspec, embedding_path=embedding)
    with pytest.raises(WakeRuntimeError, match=r"use the \.onnx file"):
        OnnxWakeRuntime(
            {"w": tmp_path / "w.tflite"}, melspec_path=melspec, embedding_path=embedding
        )
    # The melspectrogram model is a model, but not a wake-word classifier.
    with pytest.raises(WakeRuntimeError, match="not an openWakeWord wake-word model"):
        OnnxWakeRuntime({"w": melspec}, melspec_path=melspec, embedding_path=embedding)


async def test_the_detector_runs_on_the_lean_runtime(model_set: ModelSet) -> None:
    async with WakeDetector.from_model_set(model_set) as det:
        assert type(det._model).__name__ == "OnnxWakeRuntime"


def test_the_runtime_loads_without_scipy_sklearn_or_tflite(model_set: ModelSet) -> None:
    melspec, embedding = model_set.feature_paths("onnx")
    path = model_set.get("hey_jarvis", "onnx").path
    code = f"""
import sys, numpy as np
from pathlib import Path
from device.wake.runtime import OnnxWakeRuntime
r = OnnxWakeRuntime({{"w": Path({str(path)!r})}}, melspec_path=Path({str(melspec)!r}),
                    embedding_path=Path({str(embedding)!r}))
r.predict(np.zeros(1280, np.int16))
heavy = sorted(m for m in sys.modules if m.split(".")[0] in
               ("scipy", "sklearn", "tflite_runtime", "openwakeword"))
print(",".join(heavy))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_end_finder_runs_the_detectors_sessions_and_a_replaced_file_gets_a_new_one(
    model_set: ModelSet, tmp_path: Path
) -> None:
    """Each model file is loaded once per process: a second copy for the end finder cost the
    idle daemon ~22 MB of its 150 MB budget. A file replaced on disk is loaded afresh."""
    from device.wake.endpoint import EndFinder
    from device.wake.runtime import load_session

    melspec, embedding = model_set.feature_paths("onnx")
    wake = model_set.get("hey_jarvis", "onnx").path
    runtime = OnnxWakeRuntime({wake.stem: wake}, melspec_path=melspec, embedding_path=embedding)
    finder = EndFinder(wake, melspec_path=melspec, embedding_path=embedding)
    assert finder._mel is runtime._melspec and finder._emb is runtime._embedding
    assert finder._wake is runtime._models[wake.stem]

    copy = tmp_path / wake.name
    shutil.copyfile(wake, copy)
    first = load_session(copy)
    assert load_session(copy) is first
    shutil.copyfile(melspec, copy)  # another model under the same name
    assert load_session(copy) is not first
