"""The broker started as its systemd unit starts it: its own user, a state directory that user
owns, the secrets handed over in a credentials directory, HTTPS only.

The device list is written by root (`sudo warehouse-voice token-broker add-device`), the way an
admin does it; the broker, running as another user, must still read it. No systemd runs here,
so the test lays out what the unit's DynamicUser=, StateDirectory= and LoadCredential= would.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import shutil
import site
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from device.broker.cli import main as broker_main
from device.live.failures import LiveUnavailable
from device.live.tokens import BrokerTokens
from device.sim.emulator import Emulator
from device.sim.scenario import load_scenario
from device.sim.tls import ensure_certificates

REPO = Path(__file__).resolve().parents[2]
KEY = "AIza-unit-test-" + secrets.token_hex(6)
LIMIT = 2
SYSTEM_PYTHON = Path("/usr/bin/python3")

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Site:
    work: Path
    user: pwd.struct_passwd
    python: Path  # an interpreter the service user may run


@pytest.fixture(scope="module")
def unit_site() -> Iterator[Site]:
    if os.geteuid() != 0:
        pytest.skip("needs root: the test creates the service user, as DynamicUser= would")
    if shutil.which("useradd") is None or not SYSTEM_PYTHON.exists():
        pytest.skip("needs useradd and /usr/bin/python3")
    probe = [str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info[:2])"]
    if subprocess.run(probe, capture_output=True, text=True).stdout.strip() != str(
        tuple(sys.version_info[:2])
    ):
        pytest.skip("/usr/bin/python3 is not this Python's version")
    work = Path(tempfile.mkdtemp(prefix="wv-broker-unit-"))
    work.chmod(0o755)
    name = f"wvbrk{secrets.token_hex(3)}"
    try:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
        # This interpreter may live where the service user cannot go (a home directory): give
        # it a venv of the system Python that sees the same packages, like the release venv.
        venv = work / "venv"
        subprocess.run(
            [str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(venv)],
            check=True,
            capture_output=True,
        )
        pth = next(venv.glob("lib/python3*/site-packages")) / "shared.pth"
        pth.write_text("\n".join([str(REPO), *site.getsitepackages()]) + "\n")
        yield Site(work, pwd.getpwnam(name), venv / "bin" / "python")
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", name], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


@dataclass(frozen=True)
class Running:
    url: str
    ca_file: Path
    device_token: str
    state: Path


@pytest.fixture
async def broker_unit(unit_site: Site) -> AsyncIterator[Running]:
    work, user = unit_site.work, unit_site.user
    emulator_dir = work / "emulator"
    async with Emulator(load_scenario("where-is-sku"), workdir=emulator_dir, api_key=KEY) as emu:
        emulator_dir.chmod(0o755)
        (emulator_dir / "tls").chmod(0o755)
        # /etc/warehouse-voice-broker/broker.toml: root's, world-readable, no secrets.
        etc = work / "etc"
        etc.mkdir(exist_ok=True)
        state = work / "state"
        config = etc / "broker.toml"
        config.write_text(
            f"""[broker]
listen = "127.0.0.1:0"
devices_file = "{state / "devices.json"}"
upstream_url = "{emu.rest_url}"
upstream_ca_file = "{emu.ca_file}"
model = "unit-model"
max_mints_per_device = {LIMIT}
"""
        )
        config.chmod(0o644)
        # StateDirectory=: created for, and owned by, the unit's user.
        state.mkdir(mode=0o700, exist_ok=True)
        os.chown(state, user.pw_uid, user.pw_gid)
        # The admin adds a device as root.
        token_file = work / "token"
        with token_file.open("w") as out:
            saved, sys.stdout = sys.stdout, out
            try:
                assert broker_main(["add-device", "dock-03", "--config", str(config)]) == 0
            finally:
                sys.stdout = saved
        device_token = token_file.read_text().strip()
        # LoadCredential=: copies owned by the unit's user, in a directory only it can read.
        tls = ensure_certificates(work / "tls", ["127.0.0.1"])
        credentials = work / "credentials"
        credentials.mkdir(exist_ok=True)
        for name, source in (("tls-cert", tls.cert_file), ("tls-key", tls.key_file)):
            shutil.copy(source, credentials / name)
        (credentials / "gemini-api-key").write_text(KEY)
        for path in (credentials, *credentials.iterdir()):
            os.chown(path, user.pw_uid, user.pw_gid)
            path.chmod(0o500 if path.is_dir() else 0o400)
        env = {
            "PATH": "/usr/bin:/bin",
            "CREDENTIALS_DIRECTORY": str(credentials),
            "STATE_DIRECTORY": str(state),
            "PYTHONUNBUFFERED": "1",
        }
        proc = await asyncio.create_subprocess_exec(
            str(unit_site.python),
            "-m",
            "device.broker",
            "serve",
            "--config",
            str(config),
            cwd="/",
            env=env,
            user=user.pw_uid,
            group=user.pw_gid,
            extra_groups=[],
            umask=0o077,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None and proc.stderr is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            if "listening on" not in line:
                err = (await asyncio.wait_for(proc.stderr.read(), 10)).decode()
                pytest.fail(f"broker did not start: {line!r} {err[-2000:]}")
            yield Running(line.split()[-1], tls.ca_file, device_token, state)
        finally:
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()


async def test_the_unit_started_broker_reads_root_written_devices_and_mints_over_tls(
    broker_unit: Running, unit_site: Site
) -> None:
    devices = broker_unit.state / "devices.json"
    info = devices.stat()
    assert (info.st_uid, info.st_mode & 0o777) == (unit_site.user.pw_uid, 0o600)
    assert broker_unit.url.startswith("https://127.0.0.1:")
    token = await BrokerTokens(
        broker_unit.url, broker_unit.device_token, ca_file=broker_unit.ca_file
    ).mint()
    assert token.name.startswith("auth_tokens/") and token.model == "unit-model"


async def test_plain_http_gets_no_token(broker_unit: Running) -> None:
    http_url = broker_unit.url.replace("https://", "http://")
    headers = {"Authorization": f"Bearer {broker_unit.device_token}"}
    async with httpx.AsyncClient(timeout=10) as client:
        try:
            response = await client.post(f"{http_url}/v1/live-token", headers=headers)
        except httpx.HTTPError:
            return  # the TLS listener dropped the plain-text request: no token
    assert response.status_code != 200 and "auth_tokens/" not in response.text


async def test_a_device_over_its_mint_rate_is_refused(broker_unit: Running) -> None:
    tokens = BrokerTokens(broker_unit.url, broker_unit.device_token, ca_file=broker_unit.ca_file)
    for _ in range(LIMIT):
        await tokens.mint()
    with pytest.raises(LiveUnavailable) as over:
        await tokens.mint()
    assert over.value.kind == "retry"
    assert "429" in str(over.value) and f"more than {LIMIT} tokens" in str(over.value)


def test_without_a_certificate_the_broker_does_not_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    config = tmp_path / "broker.toml"
    config.write_text('[broker]\nlisten = "127.0.0.1:0"\n')
    assert broker_main(["serve", "--config", str(config)]) == 78
    assert "broker.tls_cert_file" in capsys.readouterr().err


def test_devices_can_only_be_pointed_at_an_https_broker() -> None:
    from device.config import ConfigError, settings_from_dict

    with pytest.raises(ConfigError) as plain:
        settings_from_dict({"live": {"auth": "ephemeral", "broker_url": "http://10.0.0.9:8443"}})
    assert plain.value.key == "live.broker_url"
    assert "https" in str(plain.value).lower()
    ok = settings_from_dict({"live": {"auth": "ephemeral", "broker_url": "https://10.0.0.9:8443"}})
    assert ok.live.broker_url.startswith("https://")
