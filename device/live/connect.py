"""Build the google-genai client and the Live connect config from settings, and open
connections: fresh or resumed by handle, with the API key or with ephemeral tokens.

`LiveConnector` is the appliance's connector factory (`factory(handle) -> connector`). The
connector it returns is a `ResumableConnector`: calling it opens a new session, `resume(handle)`
resumes one, `probe()` tells whether the endpoint is reachable, and it carries the session
policy and the spoken cues.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import warnings
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from google import genai
from google.genai import errors, types

from device.config import ConfigError, Settings, read_secret
from device.live.cues import CuePlayer
from device.live.local_tools import with_local_tools
from device.live.models import caps_for
from device.live.policy import SessionPolicy
from device.live.protocols import LiveSessionLike
from device.live.tokens import BrokerTokens, EphemeralToken
from device.live.tool_modes import with_behavior
from device.live.vocabulary import SiteVocabulary, inventory_fetch

log = logging.getLogger(__name__)

DEFAULT_LIVE_HOST = ("generativelanguage.googleapis.com", 443)
_PROBE_TIMEOUT_S = 3.0

# Ephemeral tokens are the point of that mode; the SDK's "experimental" notice is noise.
warnings.filterwarnings(
    "ignore", message=r"The SDK's ephemeral token", category=errors.ExperimentalWarning
)


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    live = settings.live
    if live.ca_file is None:
        return None
    # A private CA (the emulator's) is added to the system store rather than replacing it.
    return ssl.create_default_context(cafile=str(settings.path(live.ca_file)))


def build_client(
    settings: Settings, api_key: str, *, api_version: str | None = None
) -> genai.Client:
    live = settings.live
    options: dict[str, Any] = {"api_version": api_version or live.api_version}
    if live.base_url:
        options["base_url"] = live.base_url
    ctx = _ssl_context(settings)
    if ctx is not None:
        # The websocket takes its TLS context from async_client_args.
        options["async_client_args"] = {"ssl": ctx}
    return genai.Client(api_key=api_key, http_options=types.HttpOptions(**options))


def build_connect_config(
    settings: Settings,
    *,
    instructions: str,
    function_declarations: list[dict[str, Any]],
    resumption_handle: str | None = None,
    vocabulary: list[str] | None = None,
) -> types.LiveConnectConfig:
    live = settings.live
    caps = caps_for(live.model)
    speech: dict[str, Any] = {
        "voice_config": {"prebuilt_voice_config": {"voice_name": live.voice}},
    }
    if live.language:
        speech["language_code"] = live.language
    manual = live.turn_detection == "manual"
    config: dict[str, Any] = {
        "response_modalities": [types.Modality.AUDIO],
        "speech_config": speech,
        "system_instruction": instructions,
        "realtime_input_config": {
            "automatic_activity_detection": {
                "disabled": manual,
                **(
                    {}
                    if manual
                    else {
                        "silence_duration_ms": live.silence_ms,
                        "prefix_padding_ms": live.prefix_padding_ms,
                    }
                ),
            },
            # Only frames sent while the worker talks count toward the turn (DESIGN §3).
            "turn_coverage": types.TurnCoverage.TURN_INCLUDES_ONLY_ACTIVITY,
        },
        # Always asked for: resumption updates are what a reconnect resumes from.
        "session_resumption": {"handle": resumption_handle} if resumption_handle else {},
    }
    # The model table decides what this model takes; 3.8 refuses any thinking config.
    thinking = live.thinking_level or caps.default_thinking
    if thinking is not None and thinking in caps.thinking_levels:
        config["thinking_config"] = {"thinking_level": thinking.upper()}
    if caps.media_resolution:
        config["media_resolution"] = f"MEDIA_RESOLUTION_{live.media_resolution.upper()}"
    if live.input_transcription:
        config["input_audio_transcription"] = (
            {"custom_vocabulary": vocabulary}
            if vocabulary and caps.custom_vocabulary and live.custom_vocabulary
            else {}
        )
    if live.output_transcription:
        config["output_audio_transcription"] = {}
    if live.context_compression:
        config["context_window_compression"] = {"sliding_window": {}}
    if live.end_session_tool:
        function_declarations = with_local_tools(function_declarations)
    # BLOCKING or NON_BLOCKING per tool, where the model runs calls asynchronously.
    function_declarations = with_behavior(caps, function_declarations)
    if function_declarations:
        config["tools"] = [{"function_declarations": function_declarations}]
    return types.LiveConnectConfig(**config)


def read_instructions(settings: Settings) -> str:
    path: Path = settings.path(settings.live.instructions)
    return path.read_text(encoding="utf-8")


def _endpoint(url: str, default: tuple[str, int]) -> tuple[str, int]:
    if not url:
        return default
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
    return parts.hostname or default[0], port


class LiveConnector:
    """Opens this device's Live connections; `factory(handle)` is what the appliance calls."""

    def __init__(
        self,
        settings: Settings,
        *,
        instructions: str,
        declarations: list[dict[str, Any]],
        api_key: str | None = None,
        tokens: BrokerTokens | None = None,
        policy: SessionPolicy | None = None,
        cues: CuePlayer | None = None,
        vocabulary: SiteVocabulary | None = None,
    ) -> None:
        if (api_key is None) == (tokens is None):
            raise ValueError("LiveConnector needs exactly one of api_key or tokens")
        self.settings = settings
        self.instructions = instructions
        self.declarations = declarations
        self.tokens = tokens
        self.vocabulary = vocabulary
        self.terms: list[str] = []  # the custom_vocabulary of the newest setup
        self.policy = policy or SessionPolicy.from_settings(settings.live)
        self.cues = cues or CuePlayer(settings.path(settings.live.cues_dir))
        self.client = build_client(settings, api_key) if api_key is not None else None
        live = settings.live
        self._probe_targets = [_endpoint(live.base_url, DEFAULT_LIVE_HOST)]
        if tokens is not None:
            self._probe_targets.append(_endpoint(live.broker_url, ("", 443)))

    def __call__(self, handle: str | None = None) -> LiveOpener:
        return LiveOpener(self, handle)

    def config(self, handle: str | None) -> types.LiveConnectConfig:
        return build_connect_config(
            self.settings,
            instructions=self.instructions,
            function_declarations=self.declarations,
            resumption_handle=handle,
            vocabulary=self.terms,
        )

    async def refresh_vocabulary(self) -> None:
        if self.vocabulary is not None and self.settings.live.custom_vocabulary:
            self.terms = await self.vocabulary.terms()

    async def probe(self) -> bool:
        """Can a TCP connection reach the Live endpoint (and the broker, with tokens)?"""
        for host, port in self._probe_targets:
            try:
                async with asyncio.timeout(_PROBE_TIMEOUT_S):
                    _, writer = await asyncio.open_connection(host, port)
            except (OSError, TimeoutError):
                return False
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return True


class LiveOpener:
    """The connector of one conversation (it keeps that conversation's ephemeral token)."""

    def __init__(self, connector: LiveConnector, handle: str | None) -> None:
        self._connector = connector
        self._first_handle = handle
        self.policy = connector.policy
        self.cues = connector.cues
        self.token: EphemeralToken | None = None

    def __call__(self) -> AbstractAsyncContextManager[LiveSessionLike]:
        return self._open(self._first_handle)

    def resume(self, handle: str) -> AbstractAsyncContextManager[LiveSessionLike]:
        return self._open(handle)

    async def probe(self) -> bool:
        return await self._connector.probe()

    @contextlib.asynccontextmanager
    async def _open(self, handle: str | None) -> AsyncIterator[LiveSessionLike]:
        async with contextlib.AsyncExitStack() as stack:
            yield await self._enter(stack, handle)

    async def _enter(self, stack: contextlib.AsyncExitStack, handle: str | None) -> LiveSessionLike:
        connector = self._connector
        await connector.refresh_vocabulary()
        model, config = connector.settings.live.model, connector.config(handle)
        if connector.client is not None:
            return await stack.enter_async_context(_connect(connector.client, model, config))
        reused = handle is not None and self._token_valid()
        if not reused:
            await self._new_token()
        try:
            return await stack.enter_async_context(_connect(self._client(), model, config))
        except errors.APIError as exc:
            if not (reused and exc.code == 1008):
                raise
            # The service no longer takes the session's token (expired early, revoked): a
            # resume may use a fresh one.
            log.info("ephemeral token refused on resume (%s); fetching a new one", exc.message)
        await self._new_token()
        return await stack.enter_async_context(_connect(self._client(), model, config))

    def _token_valid(self) -> bool:
        return self.token is not None and self.token.usable_until(datetime.now(UTC))

    async def _new_token(self) -> None:
        assert self._connector.tokens is not None
        self.token = await self._connector.tokens.mint()

    def _client(self) -> genai.Client:
        assert self.token is not None
        return build_client(
            self._connector.settings, self.token.name, api_version=self.token.api_version
        )


def _connect(
    client: genai.Client, model: str, config: types.LiveConnectConfig
) -> AbstractAsyncContextManager[LiveSessionLike]:
    session: AbstractAsyncContextManager[Any] = client.aio.live.connect(model=model, config=config)
    return session


def site_vocabulary(settings: Settings, inventory_token: str | None) -> SiteVocabulary | None:
    """The site's custom_vocabulary source, unless switched off or without an inventory token."""
    live, tools = settings.live, settings.tools
    if not live.custom_vocabulary or not inventory_token:
        return None
    fetch = inventory_fetch(
        tools.inventory_url,
        inventory_token,
        zone=settings.device.zone,
        confirm_words=tools.confirm_words,
        max_terms=live.vocabulary_max_terms,
    )
    return SiteVocabulary(fetch, fallback=tools.confirm_words, refresh_s=live.vocabulary_refresh_s)


def live_connector(
    settings: Settings,
    *,
    instructions: str,
    declarations: list[dict[str, Any]],
    api_key: str,
    inventory_token: str | None = None,
) -> LiveConnector:
    """The connector factory for `settings.live.auth`; what the daemon hands the appliance.

    In ephemeral mode `api_key` is ignored (pass ""): the device reads its broker token and
    never the Gemini key.
    """
    live = settings.live
    if live.auth == "ephemeral":
        device_token = read_secret(
            key="live.broker_token_file",
            env_var="WAREHOUSE_VOICE_BROKER_TOKEN",
            credential="broker-token",
            file=settings.path(live.broker_token_file) if live.broker_token_file else None,
        )
        assert device_token is not None
        ca_file = settings.path(live.broker_ca_file) if live.broker_ca_file else None
        tokens = BrokerTokens(live.broker_url, device_token, ca_file=ca_file)
        return LiveConnector(
            settings,
            instructions=instructions,
            declarations=declarations,
            tokens=tokens,
            vocabulary=site_vocabulary(settings, inventory_token),
        )
    if not api_key:
        raise ConfigError(
            "live.api_key_file",
            "no Gemini API key",
            'set GEMINI_API_KEY or live.api_key_file, or use live.auth = "ephemeral"',
        )
    return LiveConnector(
        settings,
        instructions=instructions,
        declarations=declarations,
        api_key=api_key,
        vocabulary=site_vocabulary(settings, inventory_token),
    )
