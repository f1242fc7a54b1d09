"""A private certificate authority and server certificate for the emulator's TLS listener.

The SDK always speaks `wss://`, so the emulator must serve TLS that a client can be told to
trust. The files are reused across runs while they stay valid, so a developer can trust the CA
once (`SSL_CERT_FILE`, or an `ssl` context) and keep it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost")
CA_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
CERT_FILE = "server.pem"
KEY_FILE = "server.key"

# Regenerate well before expiry so a long-running emulator never serves an expired certificate.
_MIN_REMAINING = dt.timedelta(days=7)
_CA_LIFETIME = dt.timedelta(days=3650)
_CERT_LIFETIME = dt.timedelta(days=825)


class TlsError(Exception):
    """The certificate directory cannot be used; the message says how to fix it."""


@dataclass(frozen=True)
class CertPaths:
    cert_file: Path
    key_file: Path
    ca_file: Path


def ensure_certificates(directory: Path, hosts: Iterable[str] = DEFAULT_HOSTS) -> CertPaths:
    """Return a CA and a server certificate for `hosts` in `directory`, creating them if needed.

    Existing files are kept when they parse, chain to the CA, cover every host and stay valid
    for at least a week; otherwise the whole set is regenerated.
    """
    wanted = sorted(set(hosts) | set(DEFAULT_HOSTS))
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TlsError(
            f"cannot create certificate directory {directory}: {exc.strerror}; "
            "pass a writable --workdir"
        ) from exc
    paths = CertPaths(
        cert_file=directory / CERT_FILE,
        key_file=directory / KEY_FILE,
        ca_file=directory / CA_FILE,
    )
    if not _reusable(paths, wanted):
        _generate(directory, paths, wanted)
    return paths


def server_ssl_context(paths: CertPaths) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(paths.cert_file, paths.key_file)
    return context


def client_ssl_context(ca_file: Path) -> ssl.SSLContext:
    """A verifying client context that trusts only the emulator's CA."""
    if not Path(ca_file).is_file():
        raise TlsError(f"CA file {ca_file} does not exist; start the emulator first (it writes it)")
    return ssl.create_default_context(cafile=str(ca_file))


def _san_entries(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _reusable(paths: CertPaths, hosts: list[str]) -> bool:
    try:
        ca = x509.load_pem_x509_certificate(paths.ca_file.read_bytes())
        cert = x509.load_pem_x509_certificate(paths.cert_file.read_bytes())
        key = serialization.load_pem_private_key(paths.key_file.read_bytes(), password=None)
    except (OSError, ValueError):
        return False
    now = dt.datetime.now(dt.UTC)
    for certificate in (ca, cert):
        if certificate.not_valid_after_utc - now < _MIN_REMAINING:
            return False
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return False
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    present = set(san)
    return all(name in present for name in _san_entries(hosts))


def _write(path: Path, data: bytes, mode: int) -> None:
    # Write then rename so a concurrent reader never sees half a PEM file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _generate(directory: Path, paths: CertPaths, hosts: list[str]) -> None:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "warehouse-voice emulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, "warehouse-voice emulator CA"),
        ]
    )
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "warehouse-voice emulator"),
                    x509.NameAttribute(NameOID.COMMON_NAME, hosts[0]),
                ]
            )
        )
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _CERT_LIFETIME)
        .add_extension(x509.SubjectAlternativeName(_san_entries(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(paths.ca_file, ca.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(directory / CA_KEY_FILE, _key_pem(ca_key), 0o600)
    _write(paths.key_file, _key_pem(server_key), 0o600)
    _write(paths.cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
