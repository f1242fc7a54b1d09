"""The playbook's broker play, run twice (session_plays.py runs it in the background).

The broker is a host of its own, with its own scratch prefix, so its runs do not depend on the
device plays' and go on meanwhile. An ansible run mostly waits on SSH round trips and remote
processes, so several at a time keep a two-core machine busier, not slower.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from device.sim.tls import ensure_certificates
from tests.provisioning.support import (
    ReleaseKit,
    Run,
    SshTarget,
    inventory_host,
    scratch_play,
)

HOST = "testbroker"
GEMINI_KEY = "broker-gemini-key-" + secrets.token_hex(4)
DEVICE_TOKEN = "wvb_" + secrets.token_urlsafe(16)


@dataclass(frozen=True)
class BrokerRuns:
    destdir: Path
    first: Run
    second: Run
    tls_cert: str


def broker_runs(
    target: SshTarget, kit: ReleaseKit, env: Mapping[str, str], cleanup: ExitStack
) -> BrokerRuns:
    work = kit.work / "broker"
    work.mkdir()
    destdir = work / "target"
    tls = ensure_certificates(work / "tls", ["broker.site.lan"])
    inventory: dict[str, object] = {
        "warehouse_voice_broker": {"hosts": {HOST: inventory_host(target)}}
    }
    extra: dict[str, object] = {
        "warehouse_voice_destdir": str(destdir),
        "warehouse_voice_manage_services": False,
        "warehouse_voice_apt_update_cache": False,
        # The session's wheel of the checkout: the role's other kind of package source (the
        # device plays build theirs from the source checkout).
        "warehouse_voice_package_src": str(kit.wheel),
        "warehouse_voice_pip_extra_args": kit.pip_args(),
        "warehouse_voice_gemini_api_key": GEMINI_KEY,
        "warehouse_voice_broker_tls_cert": tls.cert_file.read_text(),
        "warehouse_voice_broker_tls_key": tls.key_file.read_text(),
        "warehouse_voice_broker_device_tokens": {"dock-03": DEVICE_TOKEN},
    }
    play = scratch_play(kit, work, HOST, inventory, extra, env, cleanup)
    first = play()
    second = play()
    return BrokerRuns(destdir, first, second, tls.cert_file.read_text())
