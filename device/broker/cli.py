"""`warehouse-voice token-broker`: serve the broker, or manage its device tokens.

    warehouse-voice token-broker serve --config /etc/warehouse-voice-broker/broker.toml
    warehouse-voice token-broker add-device dock-03 --config ...   (prints the new token once)
    warehouse-voice token-broker revoke-device dock-03 --config ...
    warehouse-voice token-broker list-devices --config ...

The Gemini API key comes from `api_key_file`, $CREDENTIALS_DIRECTORY/gemini-api-key or
$GEMINI_API_KEY, on the broker's server only. Give each device its printed token as
`live.broker_token_file` (or the broker-token credential) and set `live.auth = "ephemeral"`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from device.broker.devices import DeviceFileError, DeviceRegistry
from device.broker.settings import DEFAULT_CONFIG, BrokerSettings, load_broker_settings


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "token-broker",
        help="site token broker: ephemeral Gemini Live tokens for devices",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="broker_command", required=True, metavar="ACTION")
    for name, helptext in (
        ("serve", "run the broker"),
        ("add-device", "mint (or replace) a device's broker token and print it"),
        ("revoke-device", "revoke a device's broker token"),
        ("list-devices", "list the devices that have a token"),
    ):
        action = sub.add_parser(name, help=helptext)
        action.add_argument(
            "--config", type=Path, default=DEFAULT_CONFIG, help=f"broker TOML ({DEFAULT_CONFIG})"
        )
        if name in ("add-device", "revoke-device"):
            action.add_argument("device_id", help="device name, e.g. dock-03")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_broker_settings(args.config)
    registry = DeviceRegistry(settings.path(settings.devices_file))
    try:
        if args.broker_command == "serve":
            return serve(settings, registry)
        if args.broker_command == "add-device":
            print(registry.add(args.device_id))
            return 0
        if args.broker_command == "revoke-device":
            if registry.revoke(args.device_id):
                return 0
            print(f"error: no device {args.device_id!r} in {registry.path}", file=sys.stderr)
            return 1
        for device in registry.devices():
            print(f"{device.device_id}\t{device.created}")
        return 0
    except (DeviceFileError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def serve(settings: BrokerSettings, registry: DeviceRegistry) -> int:
    # Imported here so that the token commands never load the web and Gemini stacks.
    import uvicorn

    from device.broker.app import MintLimiter, create_app
    from device.broker.mint import TokenMinter
    from device.broker.settings import read_api_key, tls_files
    from device.tcp import listen

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    registry.devices()  # an unreadable devices file fails here, not on the first request
    cert, key = tls_files(settings)
    minter = TokenMinter(settings, read_api_key(settings))
    limiter = MintLimiter(settings.max_mints_per_device, settings.mint_window_s)
    host, port = settings.host_port
    try:
        sock = listen(host, port)  # TCP_NODELAY on every accepted connection
    except OSError as exc:
        print(f"error: cannot listen on {settings.listen}: {exc.strerror}", file=sys.stderr)
        return 1
    bound = sock.getsockname()[1]
    # Tests and supervisors read this line to learn the port (listen = "...:0").
    print(f"token broker listening on https://{host}:{bound}", flush=True)
    config = uvicorn.Config(
        create_app(registry, minter, limiter),
        log_level="warning",
        access_log=False,
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
    )
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m device.broker ...`, the same as `warehouse-voice token-broker ...`."""
    from device.config import ConfigError

    parser = argparse.ArgumentParser(prog="warehouse-voice")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["token-broker", *(sys.argv[1:] if argv is None else argv)])
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 78
    return code
