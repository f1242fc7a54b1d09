"""Device tokens for the broker: only SHA-256 digests are stored, in a small JSON file.

Tokens are 256-bit random strings, so a fast hash is enough (nobody can brute-force the
preimage). The file is re-read when it changes, so `add-device` and `revoke-device` take effect
on a running broker without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TOKEN_PREFIX = "wvb_"
DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class DeviceFileError(Exception):
    """The devices file is unreadable; the message says which file and how to fix it."""


@dataclass(frozen=True)
class Device:
    device_id: str
    sha256: str
    created: str


class DeviceRegistry:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._devices: dict[str, Device] = {}
        self._stamp: tuple[int, int] | None = None

    def authenticate(self, token: str) -> str | None:
        """The device a presented token belongs to, or None."""
        self._refresh()
        presented = digest(token)
        match = None
        for device in self._devices.values():
            # Compare against every entry so the time taken says nothing about which matched.
            if hmac.compare_digest(device.sha256, presented):
                match = device.device_id
        return match

    def devices(self) -> list[Device]:
        self._refresh()
        return sorted(self._devices.values(), key=lambda d: d.device_id)

    def add(self, device_id: str) -> str:
        """Mint a token for `device_id` (replacing its old one); returns the plain token."""
        if not DEVICE_ID.match(device_id):
            raise ValueError(
                f"bad device id {device_id!r}: use 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit (e.g. dock-03)"
            )
        self._refresh()
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        self._devices[device_id] = Device(device_id, digest(token), now)
        self._write()
        return token

    def revoke(self, device_id: str) -> bool:
        self._refresh()
        if self._devices.pop(device_id, None) is None:
            return False
        self._write()
        return True

    def _refresh(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._devices, self._stamp = {}, None
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        try:
            raw: Any = json.loads(self.path.read_text(encoding="utf-8"))
            entries = raw["devices"]
            self._devices = {
                name: Device(name, str(entry["sha256"]), str(entry.get("created", "")))
                for name, entry in entries.items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DeviceFileError(
                f"devices file {self.path} is unreadable ({exc}); restore it or recreate it "
                "with `warehouse-voice token-broker add-device`"
            ) from None
        self._stamp = stamp

    def _write(self) -> None:
        body = {
            "devices": {
                d.device_id: {"sha256": d.sha256, "created": d.created}
                for d in sorted(self._devices.values(), key=lambda d: d.device_id)
            }
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".devices-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(body, out, indent=2)
                out.write("\n")
            os.chmod(tmp, 0o600)
            _owned_like_its_directory(Path(tmp))
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._stamp = None


def _owned_like_its_directory(path: Path) -> None:
    """Give a file root wrote the owner of its directory.

    `add-device` runs as root; the broker runs as the unit's dynamic user, which owns its
    StateDirectory. A root-owned 0600 file there would be unreadable to the broker.
    """
    if os.geteuid() != 0:
        return
    parent = path.parent.stat()
    if (parent.st_uid, parent.st_gid) != (0, 0):
        os.chown(path, parent.st_uid, parent.st_gid)
