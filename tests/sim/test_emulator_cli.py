"""`emulator` subcommand: serves until SIGTERM, exits 0; unknown scenario exits 2."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from google import genai
from google.genai import types

from device.sim.cli import add_parser
from device.sim.tls import client_ssl_context

from .helpers import MODEL, Heard, receive_turn

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "device.sim.cli", "emulator", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    proc = cli("--port", "0", "--workdir", str(tmp_path), "--speed", "50")
    try:
        lines: dict[str, str] = {}
        assert proc.stdout is not None
        for _ in range(3):
            key, _, value = proc.stdout.readline().partition(": ")
            lines[key] = value.strip()
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_parser_takes_the_documented_options() -> None:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["emulator", "--scenario", "x", "--host", "::1", "--port", "9", "--speed", "2"]
    )
    assert (args.scenario, args.host, args.port, args.speed) == ("x", "::1", 9, 2.0)


async def test_serves_a_turn_and_stops_cleanly_on_sigterm(
    served: tuple[subprocess.Popen[str], dict[str, str]],
) -> None:
    proc, lines = served
    assert lines["url"].startswith("https://127.0.0.1:")
    assert lines["ca_file"].endswith("/tls/ca.pem")
    assert lines["ca_file"] in lines["example"]

    client = genai.Client(
        api_key="k",
        http_options=types.HttpOptions(
            base_url=lines["url"],
            api_version="v1beta",
            async_client_args={"ssl": client_ssl_context(Path(lines["ca_file"]))},
        ),
    )
    config = types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        input_audio_transcription=types.AudioTranscriptionConfig(),
    )
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        await session.send_realtime_input(text="where is it")
        heard = await receive_turn(session, Heard())
    assert heard.input_text == "Where is SKU 104417?" and heard.audio
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


def test_unknown_scenario_exits_2_listing_the_choices(tmp_path: Path) -> None:
    proc = cli("--scenario", "nope", "--workdir", str(tmp_path))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert len(err.strip().splitlines()) == 1
    assert "nope" in err and "where-is-sku" in err
