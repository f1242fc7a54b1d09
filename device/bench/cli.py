"""`warehouse-voice bench`: measure this machine (or a Pi) against the emulator and virtual audio.

    warehouse-voice bench            # the full run, a few minutes
    warehouse-voice bench --quick    # a short pass, under a minute or two
    warehouse-voice bench --json     # the same figures for machines
    warehouse-voice bench soak --hours 8 --speed 20   # a scripted shift: does it stay small?

Everything runs locally: a private PulseAudio (needs `pulseaudio pulseaudio-utils
libasound2-plugins`), the Live API emulator, espeak-ng for speech, the reference inventory API,
and openWakeWord's models (fetched once into ~/.cache, or `--state-dir` for a device's own).
Targets are shown next to the figures; missing one is reported, not an error. The exit status
is 1 only when a figure could not be measured at all.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

from device.bench.suite import PHASES


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure latency, CPU, memory and throughput on this machine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="fewer samples, shorter runs")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=PHASES,
        metavar="PHASE",
        help=f"leave a phase out (repeatable): {', '.join(PHASES)}",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="use the wake models installed in this state directory (a device's own)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep the bench's files (logs, recordings) here instead of a temporary directory",
    )
    parser.set_defaults(func=run)
    modes = parser.add_subparsers(dest="bench_mode", metavar="{soak}")
    from device.bench.soak_cli import add_parser as add_soak

    add_soak(modes)


def run(args: argparse.Namespace) -> int:
    from device.bench.report import as_json, table
    from device.bench.suite import Plan, Suite

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    with contextlib.ExitStack() as stack:
        workdir = args.workdir
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wv-bench-")))
        workdir.mkdir(parents=True, exist_ok=True)
        plan = Plan(
            workdir=workdir, quick=args.quick, state_dir=args.state_dir, skip=set(args.skip)
        )
        suite = Suite(plan, progress)
        suite.run()
    if args.json:
        print(as_json(suite.figures, suite.failed, args.quick))
    else:
        mode = "quick" if args.quick else "full"
        print(f"warehouse-voice bench ({mode} run)\n")
        print(table(suite.figures, suite.failed))
    return 1 if suite.failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="warehouse-voice")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(argv if argv is not None else sys.argv[1:])])
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
