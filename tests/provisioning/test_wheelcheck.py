"""The aarch64 wheel check (.ci/wheelcheck.py, run by `make test`) fails loudly and by name."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "wheelcheck.py"


def _module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("wheelcheck", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_runtime_set_has_nothing_a_pi_must_compile_and_admits_apt_numpy() -> None:
    reqs = _module().runtime_requirements(ROOT / "pyproject.toml", "3.11")
    names = {r.split("<")[0].split(">")[0].split("=")[0].split("[")[0].lower() for r in reqs}
    assert not names & {"pyaudio", "systemd-python", "openwakeword", "tflite-runtime"}
    assert "onnxruntime" in names
    from packaging.requirements import Requirement

    numpy = next(Requirement(r) for r in reqs if r.startswith("numpy"))
    assert numpy.specifier.contains("1.24.2")  # bookworm's apt numpy, picamera2's
    assert numpy.specifier.contains("2.2.4")  # trixie's


def test_markers_are_judged_for_the_pi_not_for_this_machine(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "x"\ndependencies = [\n'
        "  \"a; platform_machine == 'aarch64'\",\n"
        "  \"b; platform_machine == 'x86_64'\",\n"
        "  \"c; python_version >= '3.13'\",\n]\n"
    )
    module = _module()
    assert module.runtime_requirements(pyproject, "3.11") == ["a"]
    assert module.runtime_requirements(pyproject, "3.13") == ["a", "c"]


@pytest.mark.slow
def test_a_dependency_without_aarch64_wheels_fails_with_its_name() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--python", "3.13", "--requirement", "pyaudio>=0.2.14"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "wheelcheck cp313 aarch64: FAILED: pyaudio>=0.2.14: no wheel" in proc.stdout
    assert "[native] extra" in proc.stdout
