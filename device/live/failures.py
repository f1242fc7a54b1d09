"""What a failed Live connection means for the conversation: retry it, give up, or go offline.

- `retry`: the service or the link hiccupped (1011, 1001, a dropped socket): resume.
- `fatal`: retrying cannot help (1007 a bad frame, 1008 policy or authentication, a refused
  key or token, a wrong URL, an untrusted certificate). `denied` marks the auth cases.
- `offline`: the endpoint cannot be reached at all (no route, refused, DNS, timeout).
- `closed`: the server ended the session normally (1000).
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from typing import Literal

from google.genai import errors
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

FATAL_CLOSE_CODES = frozenset({1007, 1008})
_DENIED_WORDS = re.compile(r"key|token|auth|permission|credential|denied", re.IGNORECASE)

Kind = Literal["retry", "fatal", "offline", "closed"]


@dataclass(frozen=True)
class Failure:
    kind: Kind
    reason: str
    code: int | None = None
    denied: bool = False


class LiveUnavailable(Exception):
    """Raised by a connector that cannot even try (for example no ephemeral token):
    `kind` says whether that is an outage, a refusal, or worth retrying."""

    def __init__(self, message: str, kind: Kind, *, denied: bool = False) -> None:
        super().__init__(message)
        self.kind, self.denied = kind, denied


def close_failure(code: int | None, message: str) -> Failure:
    text = f"connection closed ({code}: {message})" if code is not None else message
    if code == 1000:
        return Failure("closed", "server closed the session", code)
    if code in FATAL_CLOSE_CODES:
        return Failure(
            "fatal", text, code, denied=code == 1008 and bool(_DENIED_WORDS.search(text))
        )
    return Failure("retry", text, code)


def classify(exc: BaseException) -> Failure:
    if isinstance(exc, LiveUnavailable):
        return Failure(exc.kind, str(exc), denied=exc.denied)
    if isinstance(exc, errors.APIError):
        code = exc.code if isinstance(exc.code, int) else None
        # A websocket close carries its reason as the bare `details` string.
        text = exc.message or exc.status or (exc.details if isinstance(exc.details, str) else "")
        if code is not None and 400 <= code < 600:
            return _http_failure(code, str(text))
        return close_failure(code, str(text))
    if isinstance(exc, ConnectionClosed):
        frame = exc.rcvd or exc.sent
        return close_failure(frame.code if frame else 1006, frame.reason if frame else "dropped")
    if isinstance(exc, InvalidStatus):
        return _http_failure(exc.response.status_code, "websocket handshake refused")
    if isinstance(exc, InvalidURI | InvalidHandshake):
        return Failure("fatal", f"cannot open the Live websocket: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Failure(
            "fatal",
            f"the Live endpoint's TLS certificate is not trusted ({exc}); "
            "set live.ca_file for a private CA",
        )
    if isinstance(exc, TimeoutError):
        return Failure("offline", "the Live endpoint did not answer in time")
    if isinstance(exc, OSError):
        return Failure("offline", f"the Live endpoint is unreachable ({exc})")
    # Anything else is a bug on our side; reconnecting in a loop would only hide it.
    return Failure("fatal", f"{type(exc).__name__}: {exc}")


def _http_failure(status: int, message: str) -> Failure:
    text = f"HTTP {status}: {message}".strip()
    if status in (401, 403):
        return Failure("fatal", text, status, denied=True)
    if status == 429 or status >= 500:
        return Failure("retry", text, status)
    return Failure("fatal", text, status)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)s\s*$")


def parse_time_left(value: str | None, default_s: float = 5.0) -> float:
    """A GoAway's `timeLeft` ("50s", "0.5s") in seconds; `default_s` if absent or unreadable."""
    match = _DURATION.match(value or "")
    return float(match.group(1)) if match else default_s
