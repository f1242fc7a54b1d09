"""The wake-word detector: openWakeWord on a dedicated thread, thresholds and refractory per model.

Capture hands `process()` chunks of any size; they are cut into the 1280-sample (80 ms) frames
openWakeWord is built for. Inference runs on one private worker thread, so frames stay in
order and the event loop never waits on ONNX. Every position is counted in samples of the
capture stream, never in wall-clock time, so a hit says exactly where the wake word ended and
the appliance can trim it from the pre-roll even when audio runs faster than real time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from device.wake.models import Framework, ModelSet
from device.wake.runtime import scored_windows

SAMPLE_RATE = 16000
FRAME_SAMPLES = 1280
# How far the first frame over threshold 0.5 lags the true end of the wake word. For
# hey_jarvis over espeak voices, speeds and noise levels the median lag is 0.11-0.17 s
# (device.bench.wake reports it), with a spread of about 0.19 s standard deviation, so
# `end_sample` is an estimate. Re-measure for a site-trained model and set it per model.
DEFAULT_END_LATENCY_S = 0.16
# How often the detector scores a window. openWakeWord scores every 80 ms frame, and its score
# moves with where the phrase falls against those frames; windows between them, scored only
# around frames that come near (`device.wake.runtime`), catch phrases that fall badly. On the
# wake benchmark every 20 ms misses fewer at the same false accepts from 0.5 per hour up, for
# 6% more CPU on speech; alone, its extra windows are extra chances to false-wake near 1.0.
EVERY_MS = 20
# A hit needs the score over the threshold in two consecutive 80 ms frames. A phrase holds its
# score that long; most false wakes near 1.0 were one frame's spike (at 0.99, 32 of 42). On the
# wake benchmark's 86 hours of negatives the 20 ms detector with this rule misses fewer than
# bare openWakeWord at 0.1, 0.5 and 5 false accepts per hour, where without it it missed more
# at 0.1; at one threshold it both false-wakes less and misses less than bare (README).
# (`_Track` keeps the frame before; `device.bench.wake_score.confirmed` is the same rule.)
CONFIRM_FRAMES = 2


@dataclass(frozen=True)
class WakeModelSpec:
    """One wake word to listen for; `path` is an .onnx or .tflite openWakeWord model."""

    name: str
    path: Path
    threshold: float = 0.5
    refractory_s: float = 2.0
    end_latency_s: float = DEFAULT_END_LATENCY_S

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(
                f"wake model {self.name!r}: threshold {self.threshold} must be between 0 and 1 "
                f"(0.5 is openWakeWord's usual value; raise it to cut false wakes)"
            )
        if self.refractory_s < 0 or self.end_latency_s < 0:
            raise ValueError(
                f"wake model {self.name!r}: refractory_s and end_latency_s must not be negative"
            )
        if self.path.suffix not in (".onnx", ".tflite"):
            raise ValueError(
                f"wake model {self.name!r}: {self.path} must be an .onnx or .tflite file"
            )

    @property
    def framework(self) -> Framework:
        return "tflite" if self.path.suffix == ".tflite" else "onnx"


@dataclass(frozen=True)
class WakeHit:
    """A detection. Offsets count samples of the stream given to `process`, from its start."""

    model: str
    score: float
    end_sample: int  # best estimate of where the wake word ended
    detected_sample: int  # end of the window whose score crossed the threshold


@dataclass
class _Track:
    spec: WakeModelSpec
    key: str  # openWakeWord's name for the model: the file's stem
    refractory_samples: int
    latency_samples: int
    blocked_until: int = 0
    # A hit needs a rising edge: after suppression or a hit, the score must first fall below
    # threshold, so the tail of the device's own "jarvis" or a held score never fires again.
    armed: bool = True
    last_score: float = 0.0
    # Where the score first reached the threshold in this 80 ms frame and in the one before
    # (None: it did not): a hit needs both (`CONFIRM_FRAMES`).
    first_over: int | None = None
    first_over_before: int | None = None


@dataclass
class _Frames:
    """Work for the inference thread: frames plus the stream offset of the first one."""

    first_sample: int
    frames: list[np.ndarray] = field(default_factory=list)


class WakeDetector:
    """Feed capture audio (16 kHz mono PCM16) with `process`; get a `WakeHit` when a model fires.

    Set `suppressed` while the device speaks so its own voice cannot wake it. The caller decides
    (configurable: half-duplex devices suppress, AEC devices may not).
    """

    def __init__(
        self,
        models: Sequence[WakeModelSpec],
        *,
        melspec_path: Path,
        embedding_path: Path,
        start_sample: int = 0,
        every_ms: int = EVERY_MS,
    ) -> None:
        if not models:
            raise ValueError("WakeDetector needs at least one wake model")
        names = [m.name for m in models]
        stems = [m.path.stem for m in models]
        if len(set(names)) != len(names) or len(set(stems)) != len(stems):
            raise ValueError(
                f"wake models need unique names and file names (openWakeWord keys its scores "
                f"by file name); got {names} from {[str(m.path) for m in models]}"
            )
        frameworks = {m.framework for m in models}
        if len(frameworks) != 1:
            raise ValueError(
                "wake models mix .onnx and .tflite files; openWakeWord runs one framework at a "
                "time, so use all .onnx (recommended) or all .tflite"
            )
        self.framework: Framework = frameworks.pop()
        for path in (melspec_path, embedding_path):
            if path.suffix != f".{self.framework}":
                raise ValueError(
                    f"{path} does not match the {self.framework} wake models; use the "
                    f".{self.framework} melspectrogram and embedding models"
                )
        self.specs = tuple(models)
        # openWakeWord's own pipeline (.tflite models) scores its 80 ms frames only.
        self.every_ms = every_ms if self.framework == "onnx" else 80
        self._melspec_path = melspec_path
        self._embedding_path = embedding_path
        self._tracks = [
            _Track(
                spec=m,
                key=m.path.stem,
                refractory_samples=round(m.refractory_s * SAMPLE_RATE),
                latency_samples=round(m.end_latency_s * SAMPLE_RATE),
            )
            for m in models
        ]
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wake-inference")
        self._model: Any = None
        self._load_lock = asyncio.Lock()
        self._pending = bytearray()
        self._next_sample = start_sample  # stream offset of the first byte in _pending
        self._suppressed = False
        self.frames_processed = 0
        # The highest score any model gave in the last batch of frames: the listener hands
        # audio over sooner once a score starts to rise (`device.wake.listener`).
        self.last_peak = 0.0

    @classmethod
    def from_model_set(
        cls,
        model_set: ModelSet,
        names: Sequence[str] = ("hey_jarvis",),
        *,
        threshold: float = 0.5,
        refractory_s: float = 2.0,
        end_latency_s: float = DEFAULT_END_LATENCY_S,
        framework: Framework | None = None,
        every_ms: int = EVERY_MS,
    ) -> WakeDetector:
        """Detector for installed models by name, all with the same settings.

        With `framework` unset, a model installed as both .onnx and .tflite loads as .onnx.
        The daemon (`device.wake.listener.build_listener`) runs each model at its benchmarked
        threshold with the front end it was measured through; this default is openWakeWord's.
        """
        specs = [
            WakeModelSpec(
                name=name,
                path=model_set.get(name, framework).path,
                threshold=threshold,
                refractory_s=refractory_s,
                end_latency_s=end_latency_s,
            )
            for name in names
        ]
        melspec, embedding = model_set.feature_paths(specs[0].framework)
        return cls(specs, melspec_path=melspec, embedding_path=embedding, every_ms=every_ms)

    # -- suppression -------------------------------------------------------------------------

    @property
    def suppressed(self) -> bool:
        return self._suppressed

    @suppressed.setter
    def suppressed(self, value: bool) -> None:
        if value and not self._suppressed:
            for track in self._tracks:
                track.armed = False
        self._suppressed = value

    @contextlib.contextmanager
    def suppress(self) -> Iterator[WakeDetector]:
        """`with detector.suppress():` around playback; restores the previous setting."""
        previous = self._suppressed
        self.suppressed = True
        try:
            yield self
        finally:
            self.suppressed = previous

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def samples_seen(self) -> int:
        """Stream offset just past the last sample handed to `process`."""
        return self._next_sample + len(self._pending) // 2

    async def load(self) -> None:
        """Import openWakeWord and load the models on the inference thread (about 1 s)."""
        async with self._load_lock:
            if self._model is None:
                loop = asyncio.get_running_loop()
                self._model = await loop.run_in_executor(self._executor, self._build_model)

    def _build_model(self) -> Any:
        if self.framework == "onnx":
            # openWakeWord's pipeline on onnxruntime alone (no scipy, scikit-learn, tflite).
            from device.wake.runtime import OnnxWakeRuntime, between_for

            model: Any = OnnxWakeRuntime(
                {t.key: t.spec.path for t in self._tracks},
                melspec_path=self._melspec_path,
                embedding_path=self._embedding_path,
                between=between_for(self.every_ms),
            )
        else:
            model = self._build_tflite_model()
        for track in self._tracks:
            outputs = model.model_outputs.get(track.key)
            if outputs != 1:
                raise ValueError(
                    f"wake model {track.spec.name!r} ({track.spec.path}) has {outputs} outputs; "
                    f"only single-output wake-word models are supported"
                )
        return model

    def _build_tflite_model(self) -> Any:
        try:
            from openwakeword.model import Model

            model = Model(
                wakeword_models=[str(t.spec.path) for t in self._tracks],
                inference_framework=self.framework,
                melspec_model_path=str(self._melspec_path),
                embedding_model_path=str(self._embedding_path),
            )
        except Exception as exc:
            # Devices do not install openWakeWord (only .onnx runs there). Where it is installed,
            # tflite-runtime 2.14 is built for numpy 1.x and has no wheels past Python 3.11,
            # so on many installs it cannot load at all; ONNX is the supported path.
            raise RuntimeError(
                f"tflite-runtime cannot load the .tflite wake models ({exc!r}); use the .onnx "
                f"export of the model (openWakeWord's training writes both), or install a "
                f"tflite-runtime that matches this Python and numpy"
            ) from exc
        return model

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def __aenter__(self) -> WakeDetector:
        await self.load()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- detection ---------------------------------------------------------------------------

    _resetting: asyncio.Future[None] | None = None

    async def process(self, pcm: bytes) -> WakeHit | None:
        """Add captured audio; returns the earliest hit among the complete frames, if any."""
        if len(pcm) % 2:
            raise ValueError(
                f"wake detector got {len(pcm)} bytes, not whole 16-bit samples; "
                f"capture must deliver mono PCM16"
            )
        self._pending += pcm
        whole = len(self._pending) // (2 * FRAME_SAMPLES) * 2 * FRAME_SAMPLES
        if whole == 0:
            return None
        if self._model is None:
            await self.load()
        resetting, self._resetting = self._resetting, None
        if resetting is not None:
            await resetting  # the last hit's reset: a failure surfaces here, not nowhere
        # Cut the frames on the loop, before awaiting, so concurrent callers keep stream order.
        samples = np.frombuffer(self._pending, dtype="<i2", count=whole // 2).copy()
        del self._pending[:whole]
        work = _Frames(first_sample=self._next_sample)
        work.frames = [
            samples[i : i + FRAME_SAMPLES] for i in range(0, samples.size, FRAME_SAMPLES)
        ]
        self._next_sample += samples.size
        suppressed = self._suppressed
        loop = asyncio.get_running_loop()
        hit = await loop.run_in_executor(self._executor, self._infer, work, suppressed)
        if hit is not None:
            # Clear openWakeWord's feature and score history so the same utterance cannot fire
            # again once the refractory period ends. The reset costs 60-85 ms (it embeds 4 s of
            # noise), so it runs after the hit is reported; the single inference thread still
            # runs it before the next frames.
            self._resetting = loop.run_in_executor(self._executor, self._model.reset)
        return hit

    def _infer(self, work: _Frames, suppressed: bool) -> WakeHit | None:
        """Runs on the inference thread; the only place the openWakeWord model is touched."""
        model = self._model
        peak = 0.0
        try:
            for index, frame in enumerate(work.frames):
                frame_end = work.first_sample + (index + 1) * FRAME_SAMPLES
                scores = model.predict(frame)
                self.frames_processed += 1
                for track in self._tracks:
                    track.first_over_before, track.first_over = track.first_over, None
                for window_end, window_scores in scored_windows(model, frame_end, scores):
                    peak = max(peak, max(window_scores.values(), default=0.0))
                    hit = self._judge(window_scores, window_end, suppressed)
                    if hit is not None:
                        # The rest of this batch belongs to the same utterance: report the hit
                        # now and leave those frames to the reset that follows.
                        return hit
            return None
        finally:
            self.last_peak = peak

    def _judge(self, scores: dict[str, float], window_end: int, suppressed: bool) -> WakeHit | None:
        best: WakeHit | None = None
        for track in self._tracks:
            score = float(scores.get(track.key, 0.0))
            track.last_score = score
            if score < track.spec.threshold:
                track.armed = True
                continue
            if track.first_over is None:
                track.first_over = window_end
            if suppressed or not track.armed or window_end < track.blocked_until:
                track.armed = False
                continue
            crossed = track.first_over_before
            if crossed is None:
                continue  # over in this frame alone so far: a hit needs the frame before too
            track.armed = False
            track.blocked_until = window_end + track.refractory_samples
            # Dated from where the score first crossed, as the end latency was measured.
            hit = WakeHit(
                model=track.spec.name,
                score=score,
                end_sample=max(0, crossed - track.latency_samples),
                detected_sample=crossed,
            )
            if best is None or hit.score > best.score:
                best = hit
        return best

    @property
    def last_scores(self) -> dict[str, float]:
        """The most recent frame's score per model, for diagnostics and tuning thresholds."""
        return {t.spec.name: t.last_score for t in self._tracks}
