"""The `warehouse-voice` command line.

Subcommands import their modules lazily, so `ctl` and `config check` start in a blink and
never pay for the audio or Gemini stacks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from device.config import EX_CONFIG, ConfigError, load_settings


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="config file (default: $WAREHOUSE_VOICE_CONFIG or /etc/warehouse-voice/config.toml)",
    )


def cmd_run(args: argparse.Namespace) -> int:
    from device.daemon import run_daemon
    from device.preflight import preflight
    from device.service.journal import setup_logging
    from device.service.shutdown import (
        EXIT_NOT_CLEAN,
        PartsStopper,
        exit_now,
        stacks_on_request,
    )

    settings = load_settings(args.config)
    # Under systemd the logs go to journald; a person at a terminal sees them on stderr.
    setup_logging(settings.device.log_level, force_stderr=sys.stderr.isatty())
    stacks_on_request()
    # Audio devices are not checked here: one missing at boot (a USB mic not plugged in yet)
    # starts the daemon degraded, waiting for it. `config check` still names it.
    resolved = preflight(settings, check_devices=False)
    stopper = PartsStopper()
    runner = asyncio.Runner()
    try:
        return runner.run(run_daemon(settings, resolved, stopper=stopper))
    finally:
        if stopper.hung:
            # A thread stuck in a device would hold the loop's close (its executor) for good.
            exit_now(EXIT_NOT_CLEAN)
        # The close waits for the executor's threads, and one may be stuck in a device that
        # belongs to no part (a reopen in flight at SIGTERM): the stop deadline, armed at
        # SIGTERM, bounds this wait too.
        runner.close()
        stopper.disarm_deadline()


def cmd_config_check(args: argparse.Namespace) -> int:
    from device.config_check import check_run
    from device.preflight import preflight

    settings = load_settings(args.config)
    preflight(settings, check_devices=not args.no_devices)
    check_run(settings, installed=not args.no_devices)
    print(f"config ok: {args.config or 'default path'} (device {settings.device.id})")
    return 0


def cmd_ctl(args: argparse.Namespace) -> int:
    from device.service.control import request

    socket_path = args.socket or load_settings(args.config).device.control_socket
    try:
        answer = request(socket_path, args.action)
    except ConnectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json or args.action != "status":
        print(json.dumps(answer, indent=2))
    else:
        _print_status(answer)
    return 0 if answer.get("ok") else 1


def _print_status(answer: dict[str, object]) -> None:
    keys = (
        "state",
        "uptime_s",
        "session",
        "faults",
        "health",
        "last_session",
        "last_error",
        "counters",
        "metrics",
        "write_queue",
    )
    for key in keys:
        print(f"{key:>13}: {json.dumps(answer.get(key))}")


def cmd_selftest(args: argparse.Namespace) -> int:
    from device.service.selftest import render, run_selftest

    settings = load_settings(args.config)
    only = ("camera",) if args.camera else tuple(args.only or ())
    results = asyncio.run(run_selftest(settings, only))
    print(render(results, args.json))
    return 0 if all(r.ok for r in results) else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from device.demo.runner import run_demo

    return run_demo(speed=args.speed, workdir=args.workdir, plain=args.plain)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="warehouse-voice", description="Hands-free voice appliance for warehouses."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon (systemd starts this)")
    _add_config(run)
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="scripted offline demo: emulator, inventory, WAV audio")
    demo.add_argument("--speed", type=float, default=1.0, help="pacing factor (2.0 = 2x faster)")
    demo.add_argument("--workdir", type=Path, default=None, help="keep the demo's files here")
    demo.add_argument("--plain", action="store_true", help="plain lines, no colour")
    demo.set_defaults(func=cmd_demo)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = config_sub.add_parser("check", help="validate the config without starting anything")
    _add_config(check)
    check.add_argument(
        "--no-devices",
        action="store_true",
        help="skip what depends on this machine's installs: audio devices, wake models",
    )
    check.set_defaults(func=cmd_config_check)

    selftest = sub.add_parser(
        "selftest", help="check mic, speaker, camera, GPIO, models, inventory API and Gemini"
    )
    _add_config(selftest)
    selftest.add_argument("--json", action="store_true", help="machine-readable output")
    selftest.add_argument(
        "--camera", action="store_true", help="camera only: the hardware smoke test on a Pi"
    )
    selftest.add_argument(
        "--only",
        nargs="+",
        choices=["mic", "speaker", "camera", "gpio", "wake", "inventory", "gemini"],
        help="run only these checks",
    )
    selftest.set_defaults(func=cmd_selftest)

    for name, helptext in (
        ("ctl", "send press|release|confirm|hangup|status to the running daemon"),
        ("status", "show the running daemon's state"),
    ):
        ctl = sub.add_parser(name, help=helptext)
        if name == "ctl":
            ctl.add_argument("action", choices=["press", "release", "confirm", "hangup", "status"])
        else:
            ctl.set_defaults(action="status")
        _add_config(ctl)
        ctl.add_argument("--socket", type=Path, default=None, help="control socket path")
        ctl.add_argument("--json", action="store_true", help="print the raw JSON answer")
        ctl.set_defaults(func=cmd_ctl)

    _add_plugins(sub)
    return parser


def _add_plugins(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Subcommands owned by other packages: the emulator, the inventory API, the models."""
    from device.bench import cli as bench_cli
    from device.broker import cli as broker_cli
    from device.fleet import cli as fleet_cli
    from device.inventory import cli as inventory_cli
    from device.sim import cli as sim_cli
    from device.wake import cli as wake_cli

    for module in (sim_cli, inventory_cli, wake_cli, bench_cli, broker_cli, fleet_cli):
        module.add_parser(sub)
    # The emulator and inventory parsers leave dispatch to us; models sets its own.
    for name, module in (("emulator", sim_cli), ("inventory", inventory_cli)):
        sub.choices[name].set_defaults(func=module.run)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EX_CONFIG
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
