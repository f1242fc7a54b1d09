"""The inventory API serves TLS when given a certificate and key, and its unit admits only
the addresses a setting allows."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from device.inventory.cli import main
from device.sim.tls import ensure_certificates

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_serve_with_a_certificate_speaks_https_only(tmp_path: Path) -> None:
    certs = ensure_certificates(tmp_path / "tls")
    db = tmp_path / "inv.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "device.inventory.cli", "serve", "--db", str(db), "--port", "0",
         "--seed", "demo", "--tls-cert", str(certs.cert_file), "--tls-key", str(certs.key_file)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # seeded ...
        url = proc.stdout.readline().strip().rsplit(" ", 1)[-1]
        assert url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(certs.ca_file))
        assert httpx.get(f"{url}/health", verify=context).json() == {"status": "ok"}
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on the same port
            httpx.get(f"{url.replace('https://', 'http://')}/health")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def test_tls_options_are_checked_before_serving(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    certs = ensure_certificates(tmp_path / "tls")
    db = str(tmp_path / "inv.db")
    assert main(["serve", "--db", db, "--tls-cert", str(certs.cert_file)]) == 64
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err
    missing = str(tmp_path / "nope.pem")
    assert main(["serve", "--db", db, "--tls-cert", missing, "--tls-key", missing]) == 66
    assert "nope.pem" in capsys.readouterr().err
    assert main(["serve", "--db", db, "--tls-cert", str(certs.key_file),
                 "--tls-key", str(certs.cert_file)]) == 66  # fmt: skip
    assert "certificate" in capsys.readouterr().err


def test_the_unit_admits_only_the_addresses_the_setting_allows() -> None:
    import jinja2

    unit = (ROOT / "systemd" / "warehouse-voice-inventory.service").read_text()
    lines = [line.strip() for line in unit.splitlines()]
    assert "IPAddressDeny=any" in lines
    assert "IPAddressAllow=localhost" in lines
    # Render the role's unit text as Ansible would, with a site's setting.
    role = ROOT / "provisioning" / "roles" / "warehouse_voice"
    assert (
        "warehouse_voice_inventory_ip_allow: [localhost]"
        in (role / "defaults" / "main.yml").read_text()
    )
    task = (role / "tasks" / "units.yml").read_text()
    expression = task.split("warehouse_voice_unit_text: >-")[1].split("loop:")[0]
    env = jinja2.Environment(autoescape=False)
    env.globals["lookup"] = lambda _kind, path: Path(path).read_text()
    rendered = env.from_string(" ".join(expression.split())).render(
        warehouse_voice_units_src=str(ROOT / "systemd"),
        item="warehouse-voice-inventory.service",
        warehouse_voice_venv="/opt/wv/venv",
        warehouse_voice_credentials_dir="/etc/wv/credentials",
        warehouse_voice_etc_dir="/etc/wv",
        warehouse_voice_inventory_ip_allow=["localhost", "10.20.0.0/16"],
    )
    allowed = [line for line in rendered.splitlines() if line.startswith("IPAddress")]
    assert allowed == ["IPAddressDeny=any", "IPAddressAllow=localhost 10.20.0.0/16"]


def test_serve_options_out_of_range_are_explained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "inv.db")
    assert main(["serve", "--db", db, "--check-digit-attempts", "0"]) == 64
    assert "--check-digit-attempts" in capsys.readouterr().err
    assert main(["serve", "--db", db, "--idempotency-lease-s", "0"]) == 64
    assert "--idempotency-lease-s" in capsys.readouterr().err
    assert main(["serve", "--db", "postgresql://x@127.0.0.1:1/db", "--seed", "demo"]) == 64
    assert "--token-file" in capsys.readouterr().err
