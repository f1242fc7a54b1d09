"""`warehouse-voice inventory serve|token|tokens|revoke|conformance`: run the reference API,
mint, list and revoke device tokens, check any server against the contract.

The server stack (FastAPI, uvicorn, SQLite schema) is imported only when a command runs, so
adding these subcommands costs the main CLI nothing at start-up.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_DB = Path("/var/lib/warehouse-voice/inventory.db")
DEFAULT_PORT = 8080
_DB_HELP = (
    f"SQLite file or sqlite:///path (default {DEFAULT_DB}), "
    "or a PostgreSQL URL postgresql://user@host/dbname"
)
SEEDS = ("demo",)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "inventory",
        help="the reference inventory API",
        description="Run the reference inventory API (FastAPI + SQLite) or mint device tokens.",
    )
    sub = parser.add_subparsers(dest="inventory_command", required=True)

    serve = sub.add_parser("serve", help="serve the API under /api/v1")
    serve.add_argument("--db", default=str(DEFAULT_DB), help=_DB_HELP)
    serve.add_argument(
        "--seed",
        choices=SEEDS,
        help="fill an empty database with the demo warehouse and mint the demo-01 token "
        "(written next to a SQLite file as <db>.demo-token); an already seeded database "
        "starts as it is",
    )
    serve.add_argument(
        "--token-file", type=Path, help="where --seed demo writes the demo token (0600)"
    )
    serve.add_argument(
        "--seed-number", type=int, default=None, help="generator seed (default: the demo's, 7)"
    )
    serve.add_argument("--reset", action="store_true", help="delete the database file first")
    serve.add_argument(
        "--idempotency-lease-s",
        type=float,
        default=30.0,
        help="accepted for older scripts: each write now commits with its key in one "
        "transaction, so a retry never waits for a server that died mid-write",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port ({DEFAULT_PORT})")
    serve.add_argument(
        "--check-digit-attempts",
        type=int,
        default=3,
        help="wrong check digits in a row before a device is locked out of a bin (3)",
    )
    serve.add_argument(
        "--check-digit-lockout-s", type=float, default=120.0, help="how long that lasts (120)"
    )
    serve.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate (PEM)")
    serve.add_argument("--tls-key", type=Path, help="the certificate's private key (PEM)")

    conformance = sub.add_parser(
        "conformance",
        help="check any inventory server against the device contract (it writes: use a "
        "test instance)",
    )
    conformance.add_argument("url", help="the API root, e.g. http://host:8080/api/v1")
    conformance.add_argument("--token", required=True, help="a device bearer token")
    conformance.add_argument(
        "--ca-file", type=Path, help="trust this CA for an https:// server (PEM)"
    )
    conformance.add_argument(
        "--examples", type=int, default=10, help="schemathesis examples per operation (10)"
    )

    token = sub.add_parser("token", help="mint (or replace) a device's bearer token")
    token.add_argument("device_id", help="device name, e.g. dock-03")
    token.add_argument("--db", default=str(DEFAULT_DB), help=_DB_HELP)

    tokens = sub.add_parser("tokens", help="list devices and whether their token is active")
    tokens.add_argument("--db", default=str(DEFAULT_DB), help=_DB_HELP)

    revoke = sub.add_parser("revoke", help="revoke a device's token (it stops working at once)")
    revoke.add_argument("device_id", help="device name, e.g. dock-03")
    revoke.add_argument("--db", default=str(DEFAULT_DB), help=_DB_HELP)


def _reset(db_path: Path) -> None:
    from device.inventory.seed import demo_token_path

    for suffix in ("", "-wal", "-shm"):
        db_path.with_name(db_path.name + suffix).unlink(missing_ok=True)
    demo_token_path(db_path).unlink(missing_ok=True)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from device.inventory.app import API_PREFIX, create_app
    from device.inventory.db import database_errors, is_postgres_url, sqlite_path
    from device.inventory.seed import DEFAULT_SEED_NUMBER, SeedError, demo_token_path
    from device.inventory.server import bind_socket, open_database, uvicorn_config

    target: str = args.db
    postgres = is_postgres_url(target)
    if not 0 <= args.port <= 65535:
        print(f"inventory: --port {args.port} is out of range; use 1-65535", file=sys.stderr)
        return 64
    tls_problem = _check_tls(args.tls_cert, args.tls_key)
    if tls_problem is not None:
        code, message = tls_problem
        print(f"inventory: {message}", file=sys.stderr)
        return code
    if args.check_digit_attempts < 1 or args.check_digit_lockout_s <= 0:
        print("inventory: --check-digit-attempts must be 1 or more and --check-digit-lockout-s "
              "above 0", file=sys.stderr)  # fmt: skip
        return 64
    if args.idempotency_lease_s <= 0:
        print("inventory: --idempotency-lease-s must be above 0 seconds", file=sys.stderr)
        return 64
    if postgres and args.reset:
        print("inventory: --reset deletes a SQLite file; drop a PostgreSQL database with "
              "dropdb", file=sys.stderr)  # fmt: skip
        return 64
    if postgres and args.seed and args.token_file is None:
        print("inventory: --seed demo on PostgreSQL needs --token-file for the demo token",
              file=sys.stderr)  # fmt: skip
        return 64
    if args.reset:
        _reset(sqlite_path(target))
    number = DEFAULT_SEED_NUMBER if args.seed_number is None else args.seed_number
    token_file = args.token_file or (None if postgres else demo_token_path(sqlite_path(target)))
    failures: tuple[type[Exception], ...] = (SeedError, OSError, RuntimeError, *database_errors())
    try:
        db, report = open_database(
            target, seed=args.seed, seed_number=number, token_file=token_file
        )
    except failures as exc:
        print(f"inventory: {exc}", file=sys.stderr)
        return 65
    if report is not None:
        print(
            f"seeded {_shown(target)}: {report.items} items, {report.locations} locations "
            f"({report.empty_locations} empty), {report.open_picks} open picks; "
            f"device {report.device_id} token in {token_file}",
            flush=True,
        )
    elif args.seed:
        print(f"{_shown(target)} is already seeded; starting it as it is", flush=True)
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        db.close()
        print(f"inventory: {exc}", file=sys.stderr)
        return 69
    host, port = sock.getsockname()[:2]
    scheme = "https" if args.tls_cert else "http"
    print(f"inventory API on {scheme}://{host}:{port}{API_PREFIX}", flush=True)
    from device.inventory.lockout import LockoutPolicy

    policy = LockoutPolicy(args.check_digit_attempts, args.check_digit_lockout_s)
    app = create_app(db, own_db=True, lease_s=args.idempotency_lease_s, lockout_policy=policy)
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    server = uvicorn.Server(uvicorn_config(app, log_level="info", tls=tls))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        db.close()
    return 0


def _shown(target: str) -> str:
    """The database for a log line, without a password in a URL."""
    from device.inventory.db import is_postgres_url

    if is_postgres_url(target) and "@" in target:
        scheme, _, rest = target.partition("://")
        creds, _, where = rest.rpartition("@")
        return f"{scheme}://{creds.split(':', 1)[0]}@{where}"
    return target


def _token(args: argparse.Namespace) -> int:
    from device.inventory.db import database_errors
    from device.inventory.tokens import check_device_id, mint_token

    failures: tuple[type[Exception], ...] = (ValueError, OSError, *database_errors())
    try:
        check_device_id(args.device_id)
        token = mint_token(args.db, args.device_id)
    except failures as exc:
        print(f"inventory: {exc}", file=sys.stderr)
        return 65
    # Only stdout carries the token, so `... token dock-03 > file` captures it alone.
    print(token)
    print(f"minted a token for {args.device_id}; an earlier one no longer works", file=sys.stderr)
    return 0


def _check_tls(cert: Path | None, key: Path | None) -> tuple[int, str] | None:
    """(exit code, message) if the TLS options cannot work; checked before anything starts."""
    import ssl

    if cert is None and key is None:
        return None
    if cert is None or key is None:
        return 64, "--tls-cert and --tls-key go together: pass both, or neither for plain HTTP"
    for option, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not path.is_file():
            return 66, f"{option} {path}: no such file"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        return 66, (
            f"--tls-cert {cert} and --tls-key {key} are not a PEM certificate and its key: {exc}"
        )
    return None


def _tokens(args: argparse.Namespace) -> int:
    from device.inventory.db import database_errors, open_database
    from device.inventory.tokens import list_devices, revoke_token

    failures: tuple[type[Exception], ...] = (OSError, RuntimeError, *database_errors())
    try:
        db = open_database(args.db)
        try:
            if args.inventory_command == "tokens":
                for device_id, created, revoked in db.read(list_devices):
                    state = "active" if revoked is None else f"revoked {revoked}"
                    print(f"{device_id}\t{created}\t{state}")
                return 0
            revoked_now = db.write(lambda c: revoke_token(c, args.device_id))
        finally:
            db.close()
    except failures as exc:
        print(f"inventory: {exc}", file=sys.stderr)
        return 65
    if not revoked_now:
        print(f"inventory: no active token for {args.device_id!r}; see `inventory tokens`",
              file=sys.stderr)  # fmt: skip
        return 65
    print(f"revoked {args.device_id}; its token no longer works", file=sys.stderr)
    return 0


def _conformance(args: argparse.Namespace) -> int:
    from device.inventory.conformance import report, run_conformance

    if args.examples < 1:
        print("inventory: --examples must be 1 or more", file=sys.stderr)
        return 64
    if args.ca_file is not None and not args.ca_file.is_file():
        print(f"inventory: --ca-file {args.ca_file}: no such file", file=sys.stderr)
        return 66
    results = run_conformance(args.url, args.token, examples=args.examples, ca_file=args.ca_file)
    print(report(results), flush=True)
    return 0 if all(r.passed for r in results) else 1


def run(args: argparse.Namespace) -> int:
    if args.inventory_command == "serve":
        return _serve(args)
    if args.inventory_command == "conformance":
        return _conformance(args)
    if args.inventory_command in ("tokens", "revoke"):
        return _tokens(args)
    if args.inventory_command == "token":
        return _token(args)
    raise ValueError(f"unknown inventory command {args.inventory_command!r}")


def main(argv: list[str] | None = None) -> int:
    """`python -m device.inventory.cli serve ...`: the same commands without the main CLI."""
    parser = argparse.ArgumentParser(prog="python -m device.inventory.cli")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["inventory", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())
