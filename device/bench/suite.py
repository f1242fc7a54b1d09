"""The whole bench, phase by phase: each phase measures for real and yields figures.

A phase that cannot run (no PulseAudio, no espeak-ng, no wake models) is reported as not
measured with its reason, and the others still run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from device.bench.report import Figure

if TYPE_CHECKING:  # `warehouse-voice --help` must not pay for the wake stack
    from device.wake.models import ModelSet

PHASES = (
    "audio",
    "barge-in",
    "wake",
    "wake-cpu",
    "idle-cpu",
    "memory",
    "snapshot",
    "barcode",
    "inventory",
)


@dataclass
class Plan:
    workdir: Path
    quick: bool = False
    state_dir: Path | None = None
    skip: set[str] = field(default_factory=set)

    def pick(self, quick: float, full: float) -> float:
        return quick if self.quick else full


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Send fd 2 to a file: ALSA, JACK and PortAudio print chatter there from C."""
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("ab") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


class Suite:
    def __init__(self, plan: Plan, progress: Callable[[str], None]) -> None:
        self.plan = plan
        self.progress = progress
        self.figures: list[Figure] = []
        self.failed: dict[str, str] = {}
        self._models: ModelSet | None = None
        self._models_error: str | None = None

    def run(self) -> None:
        for phase in PHASES:
            if phase in self.plan.skip:
                continue
            self.progress(f"bench: {phase} ...")
            try:
                getattr(self, "_" + phase.replace("-", "_"))()
            except Exception as exc:
                self.failed[phase] = f"{type(exc).__name__}: {exc}"

    def models(self) -> ModelSet:
        if self._models is None and self._models_error is None:
            from device.bench.wakepath import bench_models

            try:
                self._models = bench_models(self.plan.state_dir)
            except Exception as exc:
                self._models_error = f"wake models unavailable: {exc}"
        if self._models is None:
            raise RuntimeError(self._models_error)
        return self._models

    def _audio(self) -> None:
        from device.bench.click_server import BARGE_IN_STREAM_SPEED
        from device.bench.roundtrip import measure

        plan = self.plan
        try:
            models: ModelSet | None = self.models()
        except RuntimeError as exc:
            models = None
            self.failed["wake-to-listening"] = str(exc)
        workdir = plan.workdir / "audio"
        workdir.mkdir(parents=True, exist_ok=True)
        with _stderr_to(workdir / "stderr.log"):
            raw = asyncio.run(
                measure(
                    workdir,
                    turns=int(plan.pick(2, 10)),
                    barge_ins=int(plan.pick(2, 5)),
                    models=models,
                    wake_trials=int(plan.pick(3, 10)),
                )
            )
        loop = statistics.median(raw["loopback_ms"])
        to_speaker = raw["wire_to_speaker_ms"]
        to_wire = raw["capture_to_wire_ms"]
        self.figures += [
            Figure.of(
                "device_added_ms",
                "device-added round trip",
                "ms",
                raw["device_added_ms"],
                target_median=15,
                target_p95=25,
                note=f"click round trip minus the loopback ({loop:.1f} ms); "
                f"{len(raw['round_trip_ms'])} clicks over {raw['turns']} turns, "
                f"{raw['missing_clicks']} lost. Inside the device: wire->speaker median "
                f"{_median(to_speaker):.1f} ms, capture->wire median {_median(to_wire):.1f} ms",
            ),
            Figure.of(
                "first_audio_device_added_ms",
                "device-added, first reply audio",
                "ms",
                raw["first_audio_device_added_ms"],
            ),
            Figure.of("loopback_ms", "loopback alone (PulseAudio)", "ms", raw["loopback_ms"]),
            Figure.of(
                "barge_in_stop_ms",
                "barge-in stop",
                "ms",
                raw["barge_in_stop_ms"],
                target_median=20,
                note="from the emulator sending `interrupted` to the speaker having dropped "
                f"its audio, reply streamed {BARGE_IN_STREAM_SPEED:g}x faster than real time; "
                f"{raw['cut_clicks']} clicks still on their way to the speaker were never heard",
            ),
        ]
        if models is not None:
            self.figures.append(
                Figure.of(
                    "wake_to_listening_ms",
                    "wake -> listening",
                    "ms",
                    raw["wake_to_listening_ms"],
                    target_median=50,
                    note="from the mic chunk that completes the wake word reaching the detector "
                    "to the listening state",
                )
            )

    def _barge_in(self) -> None:
        from device.bench.barge_in import measure

        result = measure(trials=int(self.plan.pick(1, 2)))
        for mode, figures in result.items():
            self.figures.append(
                Figure.of(
                    f"voice_barge_in_ms_{mode}",
                    f"voice barge-in, {mode.replace('_', '-')}",
                    "ms",
                    figures["latencies_ms"],
                    target_median=300,
                    note="worker's onset to a silent speaker, reply fully sent; "
                    f"{figures['never_stopped']} of "
                    f"{figures['never_stopped'] + figures['stopped']} never stopped",
                )
            )

        from device.bench.echo import measure as echo_measure

        rooms = ((10, -10.0), (40, -10.0), (20, 0.0))
        erle = echo_measure(modes=("aec",), rooms=rooms, seconds=self.plan.pick(8, 12))
        values = [r["erle_db"] for r in erle.values() if r["erle_db"] is not None]
        self.figures.append(
            Figure.of(
                "aec_erle_db",
                "echo canceller ERLE",
                "dB",
                values,
                note="echo in the mic over what the canceller leaves, rooms 10-40 ms at -10 and "
                "0 dB; residual after the gate: "
                + ", ".join(f"{r['out_echo_dbfs']:g}" for r in erle.values())
                + " dBFS",
            )
        )

    def _wake(self) -> None:
        """Miss rates at 0.1 and 0.5 false accepts per hour: bare openWakeWord against the
        daemon's detector, its front end scored every 20 ms (device.bench.wake; full: 432 clips,
        10 h of negatives)."""
        from device.bench.wake import benchmark
        from device.bench.wake_score import DAEMON_SYSTEM

        quick = self.plan.quick
        systems = ("raw", DAEMON_SYSTEM)
        cache = Path.home() / ".cache" / "warehouse-voice-bench" / "traces"
        result = benchmark(
            self.models(),
            quick=quick,
            negative_s=600.0 if quick else 36000.0,
            systems=systems,
            vad=False,
            cache=cache,
        )
        hours = result["negative_hours"]
        for row in result["rows"]:
            who = "bare openWakeWord" if row.system == "raw" else f"daemon's detector {row.system}"
            for snr, (missed, total) in row.misses.items():
                self.figures.append(
                    Figure(
                        f"wake_miss_{row.system}_{snr}_at_{row.target_per_hour:g}fa",
                        f"wake misses, {who}, {snr}, {row.target_per_hour:g} FA/h",
                        "%",
                        100 * missed / max(total, 1),
                        n=total,
                        note=f"threshold {row.threshold:.3f}, {row.per_hour:.2f} FA/h over "
                        f"{hours:.1f} h of negatives",
                    )
                )

    def _wake_cpu(self) -> None:
        from device.bench.wake import cpu_ratio

        plan = self.plan
        result = cpu_ratio(self.models(), seconds=plan.pick(20, 120), rounds=int(plan.pick(1, 2)))
        figure = Figure.of(
            "wake_cpu_ratio",
            "wake-word CPU vs bare openWakeWord",
            "x",
            [result["ratio"]],
            target_median=1.2,
            note=f"detector {result['detector_cpu_percent_of_realtime']:.1f}% of one core, bare "
            f"{result['bare_cpu_percent_of_realtime']:.1f}%, over "
            f"{result['audio_seconds']:.0f} s of audio",
        )
        self.figures.append(figure)

    def _idle_cpu(self) -> None:
        from device.bench.idle_wake import measure

        plan = self.plan
        workdir = plan.workdir / "idle-cpu"
        workdir.mkdir(parents=True, exist_ok=True)
        with _stderr_to(workdir / "stderr.log"):
            result = measure(workdir, self.models(), plan.pick(15, 60), "half_duplex")
        if result["ratio"] is None:
            raise RuntimeError("bare predict used no CPU: its process did not run")
        heard = result.get("wake_detect_ms")
        wake = (
            f"decided {heard:.0f} ms after its audio was captured"
            if heard is not None
            else "not heard"
        )
        self.figures.append(
            Figure.of(
                "idle_cpu_ratio",
                "idle CPU, daemon vs bare predict",
                "x",
                [result["ratio"]],
                target_median=1.2,
                note=f"the daemon on a real-time microphone (PyAudio, private PulseAudio) and bare "
                f"openWakeWord predict on the same audio, {result['idle_seconds']:.0f} s side by "
                f"side: {result['daemon_cpu_s_per_min']:.2f} and "
                f"{result['bare_predict_cpu_s_per_min']:.2f} CPU s per minute; then the wake "
                f"phrase, {wake}",
            )
        )

    def _memory(self) -> None:
        from device.bench.footprint import daemon_idle_rss, wake_detector_rss

        daemon = daemon_idle_rss(self.plan.workdir / "memory", settle_s=self.plan.pick(2, 5))
        self.figures.append(
            Figure.of(
                "idle_rss_mb", "idle RSS, daemon", "MB", [daemon["rss_mb"]], target_median=200
            )
        )
        wake = wake_detector_rss(self.models().directory.parent)
        self.figures.append(
            Figure.of(
                "idle_rss_with_wake_mb",
                "idle RSS, daemon + wake detector",
                "MB",
                [daemon["rss_mb"] + wake["added_mb"]],
                target_median=150,
                note=f"the detector (openWakeWord's models on onnxruntime) adds "
                f"{wake['added_mb']:.0f} MB, "
                "measured in its own process",
            )
        )

    def _snapshot(self) -> None:
        from device.bench.vision import snapshot_costs, synthetic_stills

        folder = self.plan.workdir / "stills"
        folder.mkdir(parents=True, exist_ok=True)
        frames = int(self.plan.pick(10, 30))
        costs = asyncio.run(snapshot_costs(synthetic_stills(folder), frames, 1024, 80))
        cpu, size = costs["snapshot_cpu"], costs["jpeg_kib"]["median"]
        self.figures.append(
            Figure(
                "snapshot_cpu_ms",
                "snapshot cost (capture + JPEG, CPU)",
                "ms",
                cpu["median_ms"],
                cpu["p95_ms"],
                n=frames,
                note=f"1280x720 still to <=1024 px JPEG q80, {size} KiB; at 1 fps that is "
                f"{cpu['median_ms'] / 10:.1f}% of one core",
            )
        )

    def _barcode(self) -> None:
        from device.bench.barcode_set import SIZES, decode_times

        for name, size in SIZES.items():
            decode = decode_times(size, int(self.plan.pick(5, 20)))
            self.figures.append(
                Figure(
                    f"barcode_decode_{name}_ms",
                    f"barcode scan of one {size[0]}x{size[1]} frame (CPU)",
                    "ms",
                    decode["cpu_median_ms"],
                    decode["cpu_p95_ms"],
                    n=int(decode["frames"]),
                    note=f"wall median {decode['median_ms']} ms, p95 {decode['p95_ms']} ms; "
                    "frames from the generated barcode set",
                )
            )

    def _inventory(self) -> None:
        from device.bench.inventory import BACKENDS, run_inventory_bench
        from device.bench.vocabulary import setup_vocabulary

        vocabulary = asyncio.run(setup_vocabulary())
        self.figures.append(
            Figure(
                "custom_vocabulary_terms",
                "setup custom_vocabulary",
                "terms",
                vocabulary["terms"],
                note=f"{vocabulary['characters']:.0f} characters, demo warehouse over HTTP; "
                f"bounded by live.vocabulary_max_terms ({vocabulary['max_terms']:.0f})",
            )
        )
        for backend in BACKENDS:
            self._inventory_on(backend, run_inventory_bench(16, self.plan.pick(3, 10), backend))

    def _inventory_on(self, backend: str, result: dict[str, float]) -> None:
        # SQLite keeps the original figure names; PostgreSQL's carry a suffix.
        suffix = "" if backend == "sqlite" else f"_{backend}"
        on = "" if backend == "sqlite" else f" on {backend}"
        rps = result["requests_per_s"]
        self.figures += [
            Figure(
                f"inventory_requests_per_s{suffix}",
                f"inventory API throughput{on}",
                "req/s",
                rps,
                n=int(result["requests"]),
                target=">= 1000",
                meets=rps >= 1000,
                note=f"16 clients over TCP from another process, mixed reads and writes, "
                f"{result['errors']:.0f} errors; CPU per request: server "
                f"{result['server_cpu_ms_per_request']:.2f} ms, load generator "
                f"{result['client_cpu_ms_per_request']:.2f} ms",
            ),
            Figure(
                f"inventory_latency_ms{suffix}",
                f"inventory API latency{on}",
                "ms",
                result["p50_ms"],
                result["p99_ms"],
                tail_name="p99",
                n=int(result["requests"]),
                target="p99 <= 50",
                meets=result["p99_ms"] <= 50,
            ),
        ]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
