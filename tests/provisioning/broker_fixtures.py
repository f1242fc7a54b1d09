"""The playbook's broker play, run twice in a background thread (conftest.py imports these).

The broker is a host of its own, with its own scratch prefix, so its runs do not depend on the
device plays' and can go on meanwhile: `provisioned` starts them, and the broker tests wait for
them. An ansible run mostly waits on SSH round trips and remote processes, so two at a time
keep a two-core machine busier, not slower.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from device.sim.tls import ensure_certificates
from tests.provisioning.support import (
    ReleaseKit,
    Run,
    SshTarget,
    close_ssh_masters,
    inventory_host,
    run_playbook,
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


@pytest.fixture(scope="session")
def broker_plays(ssh_target: SshTarget, release_kit: ReleaseKit) -> Iterator[Future[BrokerRuns]]:
    work = release_kit.work / "broker"
    work.mkdir()
    destdir = work / "target"
    tls = ensure_certificates(work / "tls", ["broker.site.lan"])
    inventory = {"warehouse_voice_broker": {"hosts": {HOST: inventory_host(ssh_target)}}}
    (work / "inventory.json").write_text(json.dumps(inventory))
    extra = {
        "warehouse_voice_destdir": str(destdir),
        "warehouse_voice_manage_services": False,
        "warehouse_voice_apt_update_cache": False,
        # The session's wheel of the checkout: the role's other kind of package source (the
        # device plays build theirs from the source checkout).
        "warehouse_voice_package_src": str(release_kit.wheel),
        "warehouse_voice_pip_extra_args": release_kit.pip_args(),
        "warehouse_voice_gemini_api_key": GEMINI_KEY,
        "warehouse_voice_broker_tls_cert": tls.cert_file.read_text(),
        "warehouse_voice_broker_tls_key": tls.key_file.read_text(),
        "warehouse_voice_broker_device_tokens": {"dock-03": DEVICE_TOKEN},
    }
    (work / "extra.json").write_text(json.dumps(extra))
    playbooks = release_kit.source / "provisioning"
    args = ("-i", str(work / "inventory.json"), "-e", f"@{work / 'extra.json'}")

    def both_runs() -> BrokerRuns:
        first = run_playbook(playbooks, work, HOST, *args)
        second = run_playbook(playbooks, work, HOST, *args)
        return BrokerRuns(destdir, first, second, tls.cert_file.read_text())

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="broker-plays")
    try:
        yield pool.submit(both_runs)
    finally:
        pool.shutdown(wait=True)  # the runs end by themselves (each has a timeout)
        close_ssh_masters(work)
