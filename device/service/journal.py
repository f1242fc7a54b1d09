"""Logging to journald with structured fields, or to stderr when there is no journald.

Call sites attach the fields with `extra=fields(...)`:

    log.info("tool finished", extra=fields(tool="get_stock", latency_ms=41.7))

Under journald they become searchable fields (`journalctl TOOL=get_stock`); on stderr they are
printed as `tool=get_stock latency_ms=41.7` after the message.
"""

from __future__ import annotations

import logging
import sys
from enum import Enum
from pathlib import Path
from typing import Final, TextIO

JOURNAL_SOCKET: Final = Path("/run/systemd/journal/socket")
SYSLOG_IDENTIFIER: Final = "warehouse-voice"
# Journal field names, in the order the stderr formatter prints them.
STRUCTURED_FIELDS: Final = ("STATE", "SESSION_ID", "TOOL", "LATENCY_MS")

_HANDLER_MARK: Final = "_warehouse_voice_handler"
_STDERR_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def fields(
    *,
    state: str | Enum | None = None,
    session_id: str | None = None,
    tool: str | None = None,
    latency_ms: float | None = None,
) -> dict[str, str]:
    """The `extra=` mapping for a log call; fields left as None are omitted."""
    values: dict[str, str] = {}
    if state is not None:
        values["STATE"] = str(state.value) if isinstance(state, Enum) else state
    if session_id is not None:
        values["SESSION_ID"] = session_id
    if tool is not None:
        values["TOOL"] = tool
    if latency_ms is not None:
        values["LATENCY_MS"] = f"{latency_ms:.1f}"
    return values


class KeyValueFormatter(logging.Formatter):
    """Human-readable lines with the structured fields appended as `key=value`."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        pairs = [
            f"{name.lower()}={_quote(str(getattr(record, name)))}"
            for name in STRUCTURED_FIELDS
            if getattr(record, name, None) is not None
        ]
        if not pairs:
            return text
        # Keep the fields on the message line, ahead of any traceback the base class appended.
        first, newline, rest = text.partition("\n")
        return f"{first} {' '.join(pairs)}{newline}{rest}"


def _quote(value: str) -> str:
    if value and not any(ch.isspace() or ch in '"=' for ch in value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def journald_available(socket_path: Path = JOURNAL_SOCKET) -> bool:
    """True when journald's native socket exists.

    Checked up front because JournalHandler silently drops every message without journald.
    """
    return socket_path.is_socket()


def parse_level(level: int | str) -> int:
    """A logging level from a number or a name such as "info"; ValueError names the choices."""
    if isinstance(level, int):
        return level
    number = logging.getLevelNamesMapping().get(level.strip().upper())
    if number is None:
        raise ValueError(
            f"unknown log level {level!r}: use one of debug, info, warning, error, critical"
        )
    return number


def setup_logging(
    level: int | str = logging.INFO,
    *,
    force_stderr: bool = False,
    stream: TextIO | None = None,
    identifier: str = SYSLOG_IDENTIFIER,
    journal_socket: Path = JOURNAL_SOCKET,
) -> logging.Handler:
    """Route the root logger to journald when it is reachable, else to stderr.

    Interactive commands pass `force_stderr=True` so a person at a terminal sees the output even
    on a machine that runs journald. Calling this again replaces the handler it installed before,
    so tests and re-configuration do not stack duplicate handlers.
    """
    numeric = parse_level(level)
    handler: logging.Handler | None = None
    if not force_stderr and journald_available(journal_socket):
        handler = _journal_handler(identifier)
    if handler is None:
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
        handler.setFormatter(KeyValueFormatter(_STDERR_FORMAT))
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(numeric)
    return handler


def _journal_handler(identifier: str) -> logging.Handler | None:
    try:
        from systemd.journal import JournalHandler
    except ImportError:
        return None
    handler: logging.Handler = JournalHandler(SYSLOG_IDENTIFIER=identifier)
    # journald stores time, priority and logger name as fields of their own.
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler
