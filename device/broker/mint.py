"""Minting ephemeral Live tokens with the site's API key (google-genai `auth_tokens.create`).

Each token is for one new session (`uses = 1`; resuming that session does not use it up),
expires after `token_ttl_s`, must start its session within `new_session_ttl_s`, and is locked
(`live_connect_constraints`, with `lock_additional_fields = []` so that exactly the fields set
here are locked) to the site's model, audio replies and context compression, plus the system
instruction and voice when the broker is configured with them. The device still sends its own
tools and transcription settings.
"""

from __future__ import annotations

import ssl
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from google import genai
from google.genai import errors, types

from device.broker.settings import BrokerSettings

warnings.filterwarnings(
    "ignore", message=r"The SDK's token creation", category=errors.ExperimentalWarning
)

API_VERSION = "v1alpha"  # auth_tokens and the Constrained endpoint exist in v1alpha only


class UpstreamError(Exception):
    """Google (or the emulator) refused or failed to mint; `status` is what devices get."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Minted:
    token: str
    expire_time: datetime
    new_session_expire_time: datetime
    model: str

    def to_json(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "expire_time": self.expire_time.isoformat(),
            "new_session_expire_time": self.new_session_expire_time.isoformat(),
            "model": self.model,
            "api_version": API_VERSION,
        }


class TokenMinter:
    def __init__(self, settings: BrokerSettings, api_key: str) -> None:
        self.settings = settings
        options: dict[str, Any] = {"api_version": API_VERSION}
        if settings.upstream_url:
            options["base_url"] = settings.upstream_url
        if settings.upstream_ca_file is not None:
            ctx = ssl.create_default_context(cafile=str(settings.path(settings.upstream_ca_file)))
            # httpx takes it as `verify`, the websocket stack as `ssl`.
            options["async_client_args"] = {"verify": ctx, "ssl": ctx}
        self._client = genai.Client(api_key=api_key, http_options=types.HttpOptions(**options))
        self._locked = self._locked_config()

    def _locked_config(self) -> types.LiveConnectConfig:
        s = self.settings
        config: dict[str, Any] = {"response_modalities": [types.Modality.AUDIO]}
        if s.context_compression:
            config["context_window_compression"] = {"sliding_window": {}}
        if s.instructions is not None:
            config["system_instruction"] = s.path(s.instructions).read_text(encoding="utf-8")
        if s.voice:
            config["speech_config"] = {
                "voice_config": {"prebuilt_voice_config": {"voice_name": s.voice}}
            }
        return types.LiveConnectConfig(**config)

    async def mint(self) -> Minted:
        now = datetime.now(UTC)
        s = self.settings
        expire = now + timedelta(seconds=s.token_ttl_s)
        new_session = now + timedelta(seconds=min(s.new_session_ttl_s, s.token_ttl_s))
        try:
            token = await self._client.aio.auth_tokens.create(
                config=types.CreateAuthTokenConfig(
                    uses=s.uses,
                    expire_time=expire,
                    new_session_expire_time=new_session,
                    live_connect_constraints=types.LiveConnectConstraints(
                        model=s.model, config=self._locked
                    ),
                    lock_additional_fields=[],
                )
            )
        except errors.APIError as exc:
            # A refused key is the site's problem, not the device's: 502 either way, but
            # say which.
            raise UpstreamError(
                f"Gemini refused to mint a token ({exc.code}): {exc.message}", 502
            ) from exc
        except (OSError, httpx.TransportError) as exc:
            raise UpstreamError(f"Gemini API unreachable: {exc}", 503) from exc
        if not token.name:
            raise UpstreamError("Gemini answered without a token name", 502)
        return Minted(token.name, expire, new_session, s.model)
