"""Structured log fields, on stderr and as journald receives them."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.events import State
from device.service.journal import fields, parse_level, setup_logging


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def test_without_journald_fields_print_as_key_value_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = setup_logging("info", journal_socket=tmp_path / "no-journald")
    assert isinstance(handler, logging.StreamHandler)
    log = logging.getLogger("device.tools")
    log.info(
        "tool finished",
        extra=fields(state=State.CONVERSING, session_id="s-42", tool="get_stock", latency_ms=41.66),
    )
    log.debug("hidden at info level", extra=fields(tool="find_item"))

    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].endswith(
        "INFO    device.tools: tool finished "
        "state=conversing session_id=s-42 tool=get_stock latency_ms=41.7"
    )


def test_values_with_spaces_are_quoted_and_tracebacks_follow_the_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging(logging.DEBUG, force_stderr=True)
    log = logging.getLogger("device.live")
    try:
        raise RuntimeError("socket closed")
    except RuntimeError:
        log.exception("session lost", extra=fields(session_id='a b"c'))
    err = capsys.readouterr().err
    first, _, rest = err.partition("\n")
    assert first.endswith('session lost session_id="a b\\"c"')
    assert "RuntimeError: socket closed" in rest


def test_setup_twice_does_not_duplicate_lines(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("warning", force_stderr=True)
    setup_logging("warning", force_stderr=True)
    logging.getLogger("x").warning("once")
    assert capsys.readouterr().err.count("once") == 1


def test_unknown_level_names_the_choices() -> None:
    assert parse_level("Debug") == logging.DEBUG
    with pytest.raises(ValueError, match="unknown log level 'loud': use one of debug, info"):
        parse_level("loud")


JOURNAL_CLIENT = r"""
import json, logging, socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind("/run/systemd/journal/socket")
from device.service.journal import fields, setup_logging
handler = setup_logging("info")
logging.getLogger("device.tools").info(
    "tool finished",
    extra=fields(session_id="s-7", tool="move_stock", latency_ms=12.0, state="conversing"),
)
sock.settimeout(10)
print(json.dumps({"handler": type(handler).__name__, "datagram": sock.recv(65536).decode()}))
"""


def test_journald_receives_the_structured_fields() -> None:
    """journald's socket path is fixed, so a private mount namespace stands in for it."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) to mount a private /run/systemd")
    pytest.importorskip("systemd.journal")
    script = (
        "mount -t tmpfs tmpfs /run/systemd 2>/dev/null || exit 77; "
        'mkdir -p /run/systemd/journal && exec "$0" -c "$1"'
    )
    result = subprocess.run(
        [
            *("unshare", "--mount", "--propagation", "private", "sh", "-c", script),
            *(sys.executable, JOURNAL_CLIENT),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    if result.returncode == 77 or "unshare failed" in result.stderr:
        pytest.skip(f"cannot make a private mount namespace here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["handler"] == "JournalHandler"
    # Native journal protocol: one FIELD=value per line.
    received = dict(line.split("=", 1) for line in reply["datagram"].splitlines() if "=" in line)
    assert received["MESSAGE"] == "tool finished"
    assert received["SESSION_ID"] == "s-7"
    assert received["TOOL"] == "move_stock"
    assert received["LATENCY_MS"] == "12.0"
    assert received["STATE"] == "conversing"
    assert received["SYSLOG_IDENTIFIER"] == "warehouse-voice"
    assert received["PRIORITY"] == "6"
