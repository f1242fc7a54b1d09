"""`warehouse-voice bench soak`: a scripted shift against the emulator (see device.bench.soak).

    warehouse-voice bench soak --hours 8 --speed 20
    warehouse-voice bench soak --hours 1 --speed 100 --json

Every simulated hour it prints the daemon's RSS, open file descriptors, event-log size and
asyncio task count, each with its least-squares slope per simulated hour so far; at the end,
the RSS growth per simulated hour, whether the descriptors stayed flat and whether every
confirmed move reached the inventory exactly once. Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "soak",
        help="a scripted shift through the daemon: RSS, fds, log size, tasks per hour",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--hours", type=float, default=8.0, help="simulated hours (default 8)")
    parser.add_argument(
        "--speed",
        type=float,
        default=20.0,
        help="simulated seconds per real second: audio and the emulator run this much faster",
    )
    parser.add_argument(
        "--chunk-ms",
        type=int,
        default=20,
        choices=range(20, 51),
        metavar="MS",
        help="the daemon's microphone chunk, 20-50 ms (default 20, as on a device)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep the daemon's files (config, event log, stderr) here",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from device.bench.soak import Soak
    from device.bench.soak_report import summary
    from device.bench.soak_script import plan_shift

    if not args.hours > 0 or not args.speed > 0:
        print("warehouse-voice bench soak: --hours and --speed must be > 0", file=sys.stderr)
        return 2

    def progress(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    with contextlib.ExitStack() as stack:
        workdir = args.workdir
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wv-soak-")))
        soak = Soak(workdir, plan_shift(args.hours), args.speed, progress, chunk_ms=args.chunk_ms)
        result = asyncio.run(soak.run())
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(summary(result))
    return 0 if all(result.verdict().values()) else 1
