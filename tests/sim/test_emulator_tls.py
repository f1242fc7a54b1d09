"""The emulator's private CA: generated once, reused, verified strictly by clients."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from device.sim.tls import (
    TlsError,
    client_ssl_context,
    ensure_certificates,
    server_ssl_context,
)


def san(path: Path) -> list[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(str(name.value) for name in names)


def test_certificate_covers_loopback_and_is_reused(tmp_path: Path) -> None:
    first = ensure_certificates(tmp_path)
    assert san(first.cert_file) == ["127.0.0.1", "localhost"]
    before = {p: p.read_bytes() for p in (first.cert_file, first.key_file, first.ca_file)}
    second = ensure_certificates(tmp_path)
    assert {p: p.read_bytes() for p in (second.cert_file, second.key_file, second.ca_file)} == (
        before
    )
    assert oct(first.key_file.stat().st_mode & 0o777) == "0o600"


def test_new_host_or_broken_file_regenerates(tmp_path: Path) -> None:
    paths = ensure_certificates(tmp_path)
    ca_before = paths.ca_file.read_bytes()
    paths = ensure_certificates(tmp_path, ["10.1.2.3"])
    assert "10.1.2.3" in san(paths.cert_file)
    assert paths.ca_file.read_bytes() != ca_before
    paths.key_file.write_text("garbage")
    paths = ensure_certificates(tmp_path)
    assert paths.key_file.read_text().startswith("-----BEGIN PRIVATE KEY-----")


async def test_strict_client_verification_accepts_it(tmp_path: Path) -> None:
    paths = ensure_certificates(tmp_path)
    server = await asyncio.start_server(
        lambda r, w: w.close(), "127.0.0.1", 0, ssl=server_ssl_context(paths)
    )
    port = server.sockets[0].getsockname()[1]
    context = client_ssl_context(paths.ca_file)
    # Python 3.13 (Raspberry Pi OS trixie) turns on strict X.509 checks by default.
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    try:
        for host in ("127.0.0.1", "localhost"):
            _, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=context, server_hostname=host
            )
            writer.close()
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.open_connection(
                "127.0.0.1", port, ssl=context, server_hostname="example.com"
            )
    finally:
        server.close()
        await server.wait_closed()


def test_missing_ca_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(TlsError, match="start the emulator first"):
        client_ssl_context(tmp_path / "nope.pem")


def test_unwritable_directory_is_explained(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(TlsError, match="--workdir"):
        ensure_certificates(blocker / "tls")
