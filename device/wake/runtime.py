"""openWakeWord's pipeline on onnxruntime alone: melspectrogram -> embedding -> classifier.

`import openwakeword` loads scipy and scikit-learn, and its package pulls in tflite-runtime,
which has no wheels past CPython 3.11: about 120 MB of the daemon's memory and a failed install
on Raspberry Pi OS trixie. This module runs the same three ONNX models the same way, with numpy
and onnxruntime only, so the scores are those of openWakeWord 0.6.0's `Model.predict` on 80 ms
frames, bit for bit (tests/wake/test_wake_runtime.py compares them).

The two lean candidates, measured here with hey_jarvis (x86_64, one core, RSS over a bare numpy
process, CPU per 80 ms frame):

    onnxruntime, these .onnx models   +46 MB   1.8 ms/frame   scores equal openWakeWord's
    pyopen-wakeword 1.1.0 (TFLite)    +20 MB  14.3 ms/frame   .tflite only; other buffering,
                                                              so scores differ from openWakeWord's

onnxruntime wins on CPU (a Pi core is the scarcer resource) and is the only one whose detections
are openWakeWord's own. A site model trained with openWakeWord loads as its .onnx export.

Buffers follow openWakeWord's streaming features: the melspectrogram of each frame is computed
with the 480 samples before it, scaled by x/10 + 2, and the embedding model sees the last 76
melspectrogram rows. Before the first frame the melspectrogram history is all ones and the
embedding history is that of 4 s of low noise, as in openWakeWord; the noise comes from a seeded
generator here, so a detector behaves the same on every run. The first 5 scores after a reset
are 0, as openWakeWord reports while it warms up.

Between frames: openWakeWord's score moves with where a phrase falls in its 80 ms grid ("hey
jarvis" with a request right after it scored .98 at 13 of 16 offsets and .40-.49 at 3). With
`between` set, the runtime also scores windows ending that many melspectrogram rows (10 ms
each) before the frame's end, from the rows it already has: no more melspectrogram work, and
the scores equal those of openWakeWord run on the stream delayed by that much. Each such grid
needs its own 16 embeddings, which would double the embedding work if kept up all the time, so
they are computed only for frames whose own score reaches `candidate` (0.05: 0.5% of frames in
10 hours of noisy speech), catching up from the kept rows after a gap. On the wake benchmark
that changed nothing: the window 40 ms before each frame, scored for every frame, gave the same
misses and false accepts as scored only for those frames.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from device.wake.models import ModelSet

FRAME_SAMPLES = 1280
_MEL_CONTEXT = 480  # samples before a frame that its melspectrogram window reaches back into
_MEL_WINDOW = 76  # melspectrogram rows per embedding
_MEL_STEP = 8  # melspectrogram rows per 80 ms frame
_MEL_BINS = 32
_MEL_HOP = 160  # samples between melspectrogram rows
_FEATURE_KEEP = 120  # embeddings kept (openWakeWord keeps ~10 s)
_WARMUP_FRAMES = 5
_NOISE_SAMPLES = 4 * 16000
DEFAULT_SEED = 0
CANDIDATE = 0.05  # a frame scoring below this is not scored between frames


class WakeRuntimeError(RuntimeError):
    """A model file that onnxruntime cannot load or that is not an openWakeWord model."""


def load_session(path: Path) -> Any:
    """An onnxruntime session for `path`, shared by everyone who runs that file.

    The detector and the wake word's end finder run the same three models, and each session
    holds its weights and arena: a second set cost the idle daemon ~22 MB (163 MB against a
    150 MB budget). A session keeps no state between runs, and onnxruntime allows concurrent
    `run` calls on one session, so sharing is safe; a file replaced on disk (new mtime or size)
    gets a new session."""
    try:
        stat = path.stat()
    except OSError:
        return _load(path)  # not cached: onnxruntime's own error names what is wrong
    return _shared(path.resolve(), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=32)
def _shared(path: Path, mtime_ns: int, size: int) -> Any:
    return _load(path)


def _load(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # One thread each, as openWakeWord sets them: the detector has a thread of its own, and a Pi
    # has four cores for everything else too.
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise WakeRuntimeError(
            f"onnxruntime cannot load {path} ({exc}); it must be an openWakeWord .onnx model "
            f"(the .onnx export of a trained wake word)"
        ) from exc


class OnnxWakeRuntime:
    """Scores 1280-sample int16 frames with one or more wake-word models.

    `wakewords` maps a key (the detector uses the file's stem, like openWakeWord) to an .onnx
    model. `predict` returns one score per key, as openWakeWord's `Model.predict` does.
    """

    def __init__(
        self,
        wakewords: Mapping[str, Path],
        *,
        melspec_path: Path,
        embedding_path: Path,
        seed: int | np.random.RandomState = DEFAULT_SEED,
        between: Sequence[int] = (),
        candidate: float = CANDIDATE,
    ) -> None:
        if any(not 0 < rows < _MEL_STEP for rows in between):
            raise ValueError(
                f"between {list(between)}: each must be 1-{_MEL_STEP - 1} melspectrogram rows "
                f"(10 ms each) before a frame's end"
            )
        for path in (*wakewords.values(), melspec_path, embedding_path):
            if path.suffix != ".onnx":
                raise WakeRuntimeError(
                    f"{path} is not an .onnx model; the wake-word runtime runs openWakeWord's "
                    f".onnx models (training writes both .onnx and .tflite: use the .onnx file)"
                )
        self._melspec = load_session(melspec_path)
        self._embedding = load_session(embedding_path)
        self._mel_input = self._melspec.get_inputs()[0].name
        self._emb_input = self._embedding.get_inputs()[0].name
        self._models: dict[str, Any] = {}
        self._inputs: dict[str, tuple[str, int]] = {}
        self.model_outputs: dict[str, int] = {}
        for key, path in wakewords.items():
            session = load_session(path)
            shape = session.get_inputs()[0].shape
            out_shape = session.get_outputs()[0].shape
            if len(shape) != 3 or not isinstance(shape[1], int) or len(out_shape) < 2:
                raise WakeRuntimeError(
                    f"{path} takes input {shape}, not [batch, frames, 96] embeddings; it is not "
                    f"an openWakeWord wake-word model"
                )
            self._models[key] = session
            self._inputs[key] = (session.get_inputs()[0].name, int(shape[1]))
            self.model_outputs[key] = int(out_shape[1])
        self._rng = seed if isinstance(seed, np.random.RandomState) else None
        self._seed = seed if isinstance(seed, int) else DEFAULT_SEED
        # Earliest first, so the detector judges windows in the order they end.
        self.between = tuple(sorted(set(between), reverse=True))
        self.candidate = candidate
        # Embeddings each grid between frames keeps: as many as the longest model takes.
        self._history = max((frames for _, frames in self._inputs.values()), default=16)
        # Melspectrogram rows kept: one window, or enough for every grid's catch-up.
        self._mel_rows = _MEL_WINDOW + (
            _MEL_STEP * (self._history - 1) + max(self.between) if self.between else 0
        )
        self.embeddings_run = 0  # embedding model runs since creation (the costly model)
        # After each `predict`: (samples before the frame's end, scores) per window scored
        # between frames, earliest first; empty for a frame under `candidate`.
        self.scores_between: list[tuple[int, dict[str, float]]] = []
        self.reset()

    def reset(self) -> None:
        """Start again from openWakeWord's initial state (as after `Model.reset`)."""
        rng = self._rng if self._rng is not None else np.random.RandomState(self._seed)
        noise = rng.randint(-1000, 1000, _NOISE_SAMPLES).astype(np.int16)
        self._tail = np.zeros(0, dtype=np.int16)
        self._mel = np.ones((self._mel_rows, _MEL_BINS), dtype=np.float32)
        self._features = self._embed_clip(noise)
        self._scored = dict.fromkeys(self._models, 0)
        self._frames = 0
        # Per grid between frames: its embeddings, and the frame count they are current to.
        self._between: dict[int, tuple[np.ndarray, int]] = {
            rows: (self._features[-self._history :], 0) for rows in self.between
        }
        self.scores_between = []

    def _melspectrogram(self, samples: np.ndarray) -> np.ndarray:
        out = self._melspec.run(None, {self._mel_input: samples.astype(np.float32)[None, :]})
        spec: np.ndarray = np.squeeze(out[0])
        # openWakeWord's scaling, which brings the ONNX melspectrogram close to Google's
        # speech_embedding front end that the embedding model was trained on.
        return spec / 10 + 2

    def _embed_clip(self, samples: np.ndarray) -> np.ndarray:
        spec = self._melspectrogram(samples)
        windows = [
            spec[i : i + _MEL_WINDOW]
            for i in range(0, spec.shape[0], _MEL_STEP)
            if spec[i : i + _MEL_WINDOW].shape[0] == _MEL_WINDOW
        ]
        # One window per run, not openWakeWord's one batch: onnxruntime's arena keeps the peak
        # of the largest run for good, and a 41-window batch would pin 25 MB. Same results.
        return self._embed(windows)

    def _embed(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        rows = [
            self._embedding.run(None, {self._emb_input: w[None, :, :, None].astype(np.float32)})[0]
            for w in windows
        ]
        self.embeddings_run += len(rows)
        return np.concatenate(rows).reshape(len(windows), -1)

    def predict(self, frame: np.ndarray) -> dict[str, float]:
        """Scores for one frame of exactly 1280 int16 samples (80 ms at 16 kHz)."""
        if frame.dtype != np.int16 or frame.shape != (FRAME_SAMPLES,):
            raise ValueError(
                f"wake runtime takes frames of {FRAME_SAMPLES} int16 samples; "
                f"got {frame.dtype} {frame.shape}"
            )
        spec = self._melspectrogram(np.concatenate((self._tail, frame)))
        self._tail = frame[-_MEL_CONTEXT:].copy()
        self._mel = np.vstack((self._mel, spec))[-self._mel_rows :]
        self._frames += 1
        embedding = self._embed([self._mel[-_MEL_WINDOW:]])
        self._features = np.vstack((self._features, embedding))[-_FEATURE_KEEP:]
        scores: dict[str, float] = {}
        for key in self._models:
            score = self._classify(key, self._features)
            if self._scored[key] < _WARMUP_FRAMES:
                self._scored[key] += 1
                score = 0.0
            scores[key] = score
        self.scores_between = []
        if self.between and max(scores.values()) >= self.candidate:
            for rows in self.between:
                features = self._catch_up(rows)
                scored = {key: self._classify(key, features) for key in self._models}
                self.scores_between.append((rows * _MEL_HOP, scored))
        return scores

    def _classify(self, key: str, features: np.ndarray) -> float:
        name, frames = self._inputs[key]
        x = features[-frames:][None, :, :].astype(np.float32)
        return float(self._models[key].run(None, {name: x})[0][0][0])

    def _catch_up(self, rows: int) -> np.ndarray:
        """The grid `rows` before the frames' ends, its embeddings brought up to this frame."""
        features, upto = self._between[rows]
        missing = min(self._history, self._frames - upto)
        end = self._mel.shape[0] - rows  # where this frame's window on that grid ends
        windows = [
            self._mel[end - _MEL_STEP * back - _MEL_WINDOW : end - _MEL_STEP * back]
            for back in range(missing - 1, -1, -1)
        ]
        if windows:
            features = np.vstack((features, self._embed(windows)))[-self._history :]
        self._between[rows] = (features, self._frames)
        return features


def scored_windows(
    model: Any, frame_end: int, scores: dict[str, float]
) -> list[tuple[int, dict[str, float]]]:
    """Every window `model` scored in its last `predict` as (where it ended, scores), in the
    order they ended: those between frames, then the frame's own (`scores`, ending at
    `frame_end`). openWakeWord's own `Model` scores only the frame."""
    between = getattr(model, "scores_between", ())
    return [*((frame_end - before, s) for before, s in between), (frame_end, scores)]


def between_for(every_ms: int) -> tuple[int, ...]:
    """`between` for a runtime that scores a window every `every_ms` (80, 40, 20 or 10)."""
    if every_ms not in (80, 40, 20, 10):
        raise ValueError(
            f"a wake detector scores every 80, 40, 20 or 10 ms (openWakeWord's frames are "
            f"80 ms, its melspectrogram rows 10 ms); got {every_ms}"
        )
    step = every_ms // 10
    return tuple(range(step, _MEL_STEP, step))


def runtime_for(
    model_set: ModelSet, name: str = "hey_jarvis", *, every_ms: int = 80
) -> OnnxWakeRuntime:
    """A runtime for one installed model, keyed by its file's stem (benchmarks use it); bare
    openWakeWord at the default `every_ms`."""
    melspec, embedding = model_set.feature_paths("onnx")
    path = model_set.get(name, "onnx").path
    return OnnxWakeRuntime(
        {path.stem: path},
        melspec_path=melspec,
        embedding_path=embedding,
        between=between_for(every_ms),
    )
