"""The devices of an Ansible inventory, as `ansible-inventory --list` resolves them (inline
vars, group_vars and host_vars alike), and where each one serves its metrics."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GROUP = "warehouse_voice"
DEFAULT_METRICS_PORT = 9464


class FleetError(Exception):
    """The inventory cannot be read or a host's settings are wrong; the message says the fix."""


@dataclass(frozen=True)
class FleetDevice:
    name: str  # the inventory hostname, which is also its device id by default
    target: str  # host:port Prometheus scrapes
    zone: str
    wake_word: str  # empty: push-to-talk only, by design
    loopback: bool  # the daemon listens on loopback only: nothing off the device can scrape it


def ansible_inventory(path: Path, vault_password_file: Path | None = None) -> dict[str, Any]:
    exe = shutil.which("ansible-inventory") or str(
        Path(sys.executable).with_name("ansible-inventory")
    )
    if not Path(exe).exists():
        raise FleetError("ansible-inventory not found; install it with: pip install ansible-core")
    argv = [exe, "-i", str(path), "--list"]
    if vault_password_file is not None:
        argv += ["--vault-password-file", str(vault_password_file)]
    # Without these, a source it cannot parse is only a warning and the fleet comes out empty.
    env = {**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "1",
           "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "1"}  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, env=env)
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        said = next((x for x in lines if x.startswith("[WARNING]: Failed to parse")), None)
        said = said or next((x for x in lines if "ERROR" in x), lines[-1] if lines else "")
        hint = (
            " (a vault in group_vars needs --vault-password-file)"
            if "vault" in said.lower()
            else ""
        )
        raise FleetError(f"ansible-inventory could not read {path}: {said}{hint}")
    listing: dict[str, Any] = json.loads(done.stdout)
    return listing


def devices(listing: dict[str, Any], group: str = GROUP) -> list[FleetDevice]:
    """Every host of `group` (all hosts if there is no such group), sorted by name."""
    hostvars: dict[str, dict[str, Any]] = listing.get("_meta", {}).get("hostvars", {})
    names = _hosts_of(listing, group) if group in listing else set(hostvars)
    if not names:
        raise FleetError(f"the inventory has no hosts in group {group!r}; pass --group")
    return [_device(name, hostvars.get(name, {})) for name in sorted(names)]


def _hosts_of(listing: dict[str, Any], group: str) -> set[str]:
    entry = listing.get(group, {})
    found = set(entry.get("hosts", []))
    for child in entry.get("children", []):
        found |= _hosts_of(listing, child)
    return found


def _device(name: str, hostvars: dict[str, Any]) -> FleetDevice:
    host = str(hostvars.get("ansible_host") or name)
    extra = hostvars.get("warehouse_voice_config_extra") or {}
    address = (extra.get("metrics") or {}).get("address") if isinstance(extra, dict) else None
    port, loopback = DEFAULT_METRICS_PORT, True
    if address:
        from device.service.metrics_export import parse_address

        try:
            listen, port = parse_address(str(address))
        except ValueError as exc:
            raise FleetError(
                f"{name}: warehouse_voice_config_extra.metrics.address: {exc}"
            ) from None
        loopback = listen in ("127.0.0.1", "::1", "localhost")
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return FleetDevice(
        name=name,
        target=target,
        zone=str(hostvars.get("warehouse_voice_zone") or "none"),
        wake_word=str(hostvars.get("warehouse_voice_wake_word") or ""),
        loopback=loopback,
    )
