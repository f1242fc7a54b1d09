"""A picamera2 that is installed but cannot import, as when pip put numpy 2 over the apt numpy."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from device.vision.camera import CameraError
from device.vision.picamera import Picamera2Source

FAILURES = {
    # simplejpeg / picamera2 built against numpy 1.x, run on numpy 2.x
    "ValueError": "numpy.dtype size changed, may indicate binary incompatibility. "
    "Expected 96 from C header, got 88 from PyObject",
    "AttributeError": "_ARRAY_API not found",
    "RuntimeError": "libcamera: failed to load IPA module",
    "OSError": "libcamera.so.0.3: cannot open shared object file",
}


@pytest.mark.parametrize("kind", sorted(FAILURES))
async def test_a_broken_picamera2_import_is_a_camera_error_that_says_why(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "picamera2"
    package.mkdir()
    (package / "__init__.py").write_text(f"raise {kind}({FAILURES[kind]!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    camera = Picamera2Source()
    with pytest.raises(CameraError, match=r"numpy") as caught:
        await camera.capture()
    assert FAILURES[kind] in str(caught.value)
    await camera.close()
