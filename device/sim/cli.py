"""`warehouse-voice emulator`: serve a scenario on a local Live API emulator until stopped."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from device.sim.scenario import SCENARIO_DIR, ScenarioError, load_scenario

if TYPE_CHECKING:
    from device.sim.emulator import Emulator

EX_USAGE = 2
DEFAULT_PORT = 8765


def default_workdir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "warehouse-voice" / "emulator"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "emulator",
        help="run a local Gemini Live API emulator that plays a scenario",
        description=__doc__,
    )
    parser.add_argument(
        "--scenario",
        default="where-is-sku",
        help=f"scenario name in {SCENARIO_DIR} or a path to a .toml file (default: %(default)s)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="TCP port, 0 for any free port"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the CA, certificate and speech cache live (default: ~/.cache/...)",
    )
    parser.add_argument(
        "--speed", type=float, default=None, help="pacing factor; overrides the scenario's"
    )
    parser.add_argument(
        "--api-key", default=None, help="reject clients that do not present this API key"
    )


def run(args: argparse.Namespace) -> int:
    # Imported here so that `warehouse-voice --help` and `ctl` never load the server stack.
    from device.sim.emulator import Emulator
    from device.sim.tls import TlsError

    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return EX_USAGE
    if args.speed is not None:
        if args.speed <= 0:
            print("emulator: --speed must be above 0 (1.0 is real time)", file=sys.stderr)
            return EX_USAGE
        scenario = scenario.model_copy(update={"speed": args.speed})
    if not 0 <= args.port <= 65535:
        print(f"emulator: --port {args.port} is outside 0..65535", file=sys.stderr)
        return EX_USAGE
    emulator = Emulator(
        scenario,
        host=args.host,
        port=args.port,
        workdir=args.workdir or default_workdir(),
        api_key=args.api_key,
    )
    try:
        asyncio.run(_serve(emulator))
    except (OSError, TlsError, ScenarioError) as exc:
        print(f"emulator: cannot start on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(emulator: Emulator) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with emulator:
        ca = emulator.ca_file
        print(f"url: {emulator.url}", flush=True)
        print(f"ca_file: {ca}", flush=True)
        print(
            f"example: set [live] base_url = {emulator.url!r}, ca_file = {str(ca)!r}, "
            f"api_version = 'v1beta' in config.toml, or export SSL_CERT_FILE={ca} "
            "GEMINI_API_KEY=emulator",
            flush=True,
        )
        await stop.wait()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):
            loop.remove_signal_handler(signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m device.sim.cli")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_parser(subparsers)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
