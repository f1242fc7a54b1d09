"""The bench's figures: percentiles, targets, and the table or JSON that shows them."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    unit: str
    median: float
    tail: float | None = None  # the tail percentile named by `tail_name`
    tail_name: str = "p95"
    n: int = 1
    target: str = ""
    meets: bool | None = None  # None: no target, or nothing measured
    note: str = ""

    @classmethod
    def of(
        cls,
        key: str,
        label: str,
        unit: str,
        values: Sequence[float],
        *,
        target_median: float | None = None,
        target_p95: float | None = None,
        note: str = "",
    ) -> Figure:
        """Median and p95 of `values`, judged against `<=` targets where given."""
        median = statistics.median(values) if values else math.nan
        p95 = percentile(values, 0.95)
        checks = []
        target = []
        if target_median is not None:
            checks.append(median <= target_median)
            target.append(f"median <= {target_median:g}")
        if target_p95 is not None:
            checks.append(p95 <= target_p95)
            target.append(f"p95 <= {target_p95:g}")
        meets = all(checks) if checks and values else None
        tail = p95 if len(values) > 1 else None
        return cls(
            key, label, unit, median, tail, "p95", len(values), ", ".join(target), meets, note
        )


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }


def _number(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if abs(value) < 10:
        return f"{value:.2f}"
    return f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"


def table(figures: Sequence[Figure], failed: dict[str, str]) -> str:
    rows = [("figure", "unit", "median", "tail", "n", "target", "")]
    for f in figures:
        tail = f"{f.tail_name} {_number(f.tail)}" if f.tail is not None else ""
        verdict = {True: "ok", False: "MISSED", None: ""}[f.meets]
        rows.append((f.label, f.unit, _number(f.median), tail, str(f.n), f.target, verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.rjust(width) if 2 <= i <= 4 else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    notes = [f"  {f.label}: {f.note}" for f in figures if f.note]
    if notes:
        lines += ["", "notes:", *notes]
    if failed:
        lines += ["", "not measured:", *(f"  {phase}: {error}" for phase, error in failed.items())]
    return "\n".join(lines)


def as_json(figures: Sequence[Figure], failed: dict[str, str], quick: bool) -> str:
    def clean(value: Any) -> Any:
        return None if isinstance(value, float) and math.isnan(value) else value

    return json.dumps(
        {
            "quick": quick,
            "machine": machine(),
            "figures": {
                f.key: {k: clean(v) for k, v in asdict(f).items() if k != "key"} for f in figures
            },
            "failed": failed,
        },
        indent=2,
    )
