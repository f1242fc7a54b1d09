#!/usr/bin/env python3
"""Does every runtime dependency install on a Raspberry Pi from wheels alone?

pip resolves pyproject.toml's [project].dependencies for linux aarch64 on CPython 3.11
(Raspberry Pi OS bookworm, with its apt numpy 1.24 held fixed) and 3.13 (trixie), with
--only-binary=:all:, so a dependency that would make a Pi compile fails here with its name.

    python .ci/wheelcheck.py                   # both Pythons
    python .ci/wheelcheck.py --python 3.13     # one
    python .ci/wheelcheck.py --requirement 'pyaudio>=0.2'   # check something else instead

Exit 0 when everything resolves, 1 naming what does not.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
# Bookworm's glibc is 2.36, so a Pi takes every manylinux_2_17 .. 2_36 aarch64 wheel. pip does
# not widen an explicit --platform to older glibc tags, so each one is named (zxing-cpp ships
# manylinux_2_28 only: with just 2_36 and 2014 named it looks as if it had no aarch64 wheel).
PLATFORMS = ("manylinux2014_aarch64", *(f"manylinux_2_{minor}_aarch64" for minor in range(17, 37)))
# What the Pi's OS brings in from apt that the venv sees (--system-site-packages) and keeps.
APT_PINS = {"3.11": ["numpy>=1.24,<1.25"], "3.13": []}
HINT = (
    "a Pi would have to compile it, and the role installs no compiler. Take it from apt into the "
    "--system-site-packages venv and move it to the [native] extra (as pyaudio and "
    "systemd-python are), or require a version that has manylinux aarch64 wheels"
)


def runtime_requirements(pyproject: Path, python: str) -> list[str]:
    """The runtime dependencies that apply on a Pi with this Python, markers resolved."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    env = {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "platform_machine": "aarch64",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }
    out = []
    for line in deps:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            req.marker = None
            out.append(str(req))
    return out


def check(requirements: list[str], python: str, pins: list[str]) -> tuple[bool, str]:
    tag = "cp" + python.replace(".", "")
    with tempfile.TemporaryDirectory(prefix="wheelcheck-") as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text("".join(f"{p}\n" for p in pins))
        report = Path(tmp) / "report.json"
        cmd = [
            sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
            "--ignore-installed", "--target", str(Path(tmp) / "target"),
            "--only-binary=:all:", "--implementation", "cp", "--python-version", python,
            "--abi", tag, "--abi", "abi3", "--abi", "none",
            *(arg for p in PLATFORMS for arg in ("--platform", p)),
            "--constraint", str(constraints), "--report", str(report),
            *requirements,
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return False, _explain(proc.stderr, python, pins)
        installed = json.loads(report.read_text())["install"]
        names = sorted(f"{i['metadata']['name']}=={i['metadata']['version']}" for i in installed)
        return True, f"{len(names)} wheels: " + " ".join(names)


def _explain(stderr: str, python: str, pins: list[str]) -> str:
    target = f"linux aarch64, CPython {python}"
    missing = re.findall(r"satisfies the requirement ([^\s(]+)", stderr)
    if missing:
        return f"{', '.join(sorted(set(missing)))}: no wheel for {target}; {HINT}"
    if "conflict" in stderr.lower() or "ResolutionImpossible" in stderr:
        held = f" with {', '.join(pins)} held (the apt packages a Pi has)" if pins else ""
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        return f"the dependencies do not resolve for {target}{held}: " + " / ".join(lines[-6:])
    return f"pip failed for {target}: {stderr.strip()[-800:]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", action="append", choices=sorted(APT_PINS))
    parser.add_argument("--requirement", action="append", help="check these instead")
    parser.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    args = parser.parse_args(argv)
    ok = True
    for python in args.python or sorted(APT_PINS):
        reqs = args.requirement or runtime_requirements(args.pyproject, python)
        good, detail = check(reqs, python, APT_PINS[python])
        verdict = "ok" if good else "FAILED"
        print(f"wheelcheck cp{python.replace('.', '')} aarch64: {verdict}: {detail}")
        ok = ok and good
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
