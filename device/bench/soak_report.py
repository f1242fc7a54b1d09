"""The soak's figures: samples of the daemon's footprint, their least-squares slopes per
simulated hour, and the verdict against the targets of issue #13."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RSS_TARGET_MB_PER_H = 1.0
# Between visits the daemon holds no session; what may differ from one idle moment to the next
# is the inventory client's pooled keep-alive connection (httpx closes it 5 s after the last
# request, in wall time, so whether it is still open when a sample is taken depends on the
# machine's speed), so one descriptor either way is not a leak.
FD_ALLOWANCE = 1
METRICS = ("rss_mb", "fds", "event_log_mb", "tasks")


@dataclass(frozen=True)
class Sample:
    sim_h: float  # simulated hours since the shift started
    rss_mb: float
    fds: int
    event_log_mb: float
    tasks: int


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def event_log_mb(path: Path) -> float:
    """The log and its rotated copies (events.jsonl.1, ...), as they sit on the disk."""
    files = [path, *path.parent.glob(path.name + ".*")]
    return sum(f.stat().st_size for f in files if f.is_file()) / 1e6


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x; None with fewer than two distinct x."""
    if len({x for x, _ in points}) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    return sxy / sxx


@dataclass
class SoakResult:
    hours: float
    speed: float
    samples: list[Sample] = field(default_factory=list)
    warmup_h: float = 0.0
    moves_planned: int = 0
    moves_applied: int = 0
    distinct_keys: int = 0
    moves_in_order: bool = False
    stock: dict[str, int] = field(default_factory=dict)
    stock_expected: dict[str, int] = field(default_factory=dict)
    faults_seen: dict[str, int] = field(default_factory=dict)
    turns: int = 0
    wall_s: float = 0.0

    @property
    def steady(self) -> list[Sample]:
        """Samples from the end of the warm-up on: first-use costs (imports, caches, the
        first connection) are paid before it."""
        return [s for s in self.samples if s.sim_h >= self.warmup_h - 1e-9]

    def slope_of(self, metric: str, samples: list[Sample] | None = None) -> float | None:
        chosen = self.steady if samples is None else samples
        return slope([(s.sim_h, float(getattr(s, metric))) for s in chosen])

    @property
    def rss_growth_mb_per_h(self) -> float | None:
        return self.slope_of("rss_mb")

    @property
    def fd_change(self) -> int:
        steady = self.steady
        return steady[-1].fds - steady[0].fds if steady else 0

    @property
    def writes_exactly_once(self) -> bool:
        return (
            self.moves_applied == self.moves_planned == self.distinct_keys
            and self.moves_in_order
            and self.stock == self.stock_expected
        )

    def verdict(self) -> dict[str, bool]:
        growth = self.rss_growth_mb_per_h
        return {
            "rss": growth is not None and growth <= RSS_TARGET_MB_PER_H,
            "fds": abs(self.fd_change) <= FD_ALLOWANCE,
            "writes": self.writes_exactly_once,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in asdict(self).items() if k != "samples"},
            "samples": [asdict(s) for s in self.samples],
            "rss_growth_mb_per_h": self.rss_growth_mb_per_h,
            "fd_change": self.fd_change,
            "verdict": self.verdict(),
        }


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def header() -> str:
    return (
        f"{'sim h':>6} {'RSS MB':>8} {'/h':>7} {'fds':>5} {'/h':>6} "
        f"{'log MB':>7} {'/h':>6} {'tasks':>6} {'/h':>6}"
    )


def row(result: SoakResult) -> str:
    """The latest sample, with each figure's slope so far (per simulated hour)."""
    last = result.samples[-1]
    steady = result.steady

    def per_h(metric: str) -> str:
        return _fmt(result.slope_of(metric, steady))

    return (
        f"{last.sim_h:6.2f} {last.rss_mb:8.1f} {per_h('rss_mb'):>7} {last.fds:5d} "
        f"{per_h('fds'):>6} {last.event_log_mb:7.2f} {per_h('event_log_mb'):>6} "
        f"{last.tasks:6d} {per_h('tasks'):>6}"
    )


def summary(result: SoakResult) -> str:
    verdict = result.verdict()

    def mark(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    steady = result.steady
    fds = f"{steady[0].fds} -> {steady[-1].fds}" if steady else "-"
    return "\n".join(
        [
            f"shift: {result.hours:g} simulated h at speed {result.speed:g}, {result.turns} "
            f"turns in {result.wall_s:.0f} s wall; faults seen: "
            + ", ".join(f"{k} {v}" for k, v in sorted(result.faults_seen.items())),
            f"RSS growth: {_fmt(result.rss_growth_mb_per_h)} MB per simulated h after the "
            f"{result.warmup_h:.2g} h warm-up (target <= {RSS_TARGET_MB_PER_H:g})  "
            f"{mark(verdict['rss'])}",
            f"open fds: {fds} (flat within {FD_ALLOWANCE})  {mark(verdict['fds'])}",
            f"writes: {result.moves_applied} applied of {result.moves_planned} confirmed, "
            f"{result.distinct_keys} distinct keys, in order {result.moves_in_order}, "
            f"stock {result.stock} "
            f"(expected {result.stock_expected})  {mark(verdict['writes'])}",
        ]
    )
