"""The receive side of a conversation: what the worker hears and what the transcript says.

Reply audio goes to the `ReplyPlayer`, which never makes the receive loop wait for the speaker
and keeps playing across connection seams. `Speaking` is published when the reply's first
piece reaches the speaker and ends when the speaker has played all of it; a reply the worker
cuts off is flushed at once, and whatever of it is still on its way is dropped until the
service says the reply is over. Transcripts are published one utterance at a time; a reply's
only once the speaker has played all of it (the service sends a reply faster than it plays, so
its words arrive before the worker hears them), or marked `cut` when it stopped short.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from google.genai import types

from device.audio.errors import AudioError
from device.audio.sink import AudioSink
from device.events import ErrorRaised, EventBus, Interrupted, Speaking, Transcript
from device.live.player import ReplyPlayer

log = logging.getLogger(__name__)

# At the end, how long received reply audio may take to reach the speaker's queue.
_HAND_OVER_S = 30.0


class Replies:
    def __init__(
        self, *, session_id: str, bus: EventBus, speaker: AudioSink, touch: Callable[[], None]
    ) -> None:
        self._session_id = session_id
        self._bus = bus
        self._touch = touch  # something happened: the session must not idle out
        # The receive loop hands reply audio here and never waits for the speaker.
        self.player = ReplyPlayer(speaker, on_bug=self._playback_bug)
        self.model_speaking = False
        # The service is still sending the current reply (from its first piece until
        # turnComplete or interrupted).
        self.streaming = False
        self._voice_on = False  # Speaking(started=True) was published and not yet ended
        self._cutting = False  # dropping what is left of a reply the worker cut off
        self._user_text: list[str] = []
        self._model_text: list[str] = []
        # Replies received whole whose audio the speaker has not finished playing.
        self._unheard: list[str] = []
        self._background: set[asyncio.Task[None]] = set()

    def connection_started(self) -> None:
        """A new connection: nothing of an earlier one's reply is still on its way."""
        self._cutting = self.streaming = False

    def interrupt(self, source: str) -> None:
        """Stop the reply now (a button press, a barge-in, or the service's `interrupted`)."""
        if source == "server" and self._cutting:
            # The service confirms a barge-in the device already acted on.
            self._cutting = False
            return
        # Audio of the cut-off reply still in flight must not play: drop it until the service
        # says the reply is over (interrupted or turnComplete).
        self._cutting = source != "server" and self.streaming
        dropped = self.player.flush()
        self._reply_ended()
        self._publish_model(cut=True)
        self._voice_ended()
        self.model_speaking = False
        self._bus.publish(Interrupted(session_id=self._session_id, source=source))
        log.info("reply interrupted by %s, %d bytes dropped", source, dropped)

    def on_content(self, content: types.LiveServerContent) -> None:
        if content.input_transcription is not None and content.input_transcription.text:
            self._touch()
            self._user_text.append(content.input_transcription.text)
        if content.interrupted:
            self.interrupt("server")
            self.streaming = False
        # One event can carry several parts (audio and text); handle every one of them.
        if content.model_turn is not None:
            for part in content.model_turn.parts or []:
                self.streaming = True
                if not self._cutting:
                    self._play(part.inline_data)
        text = content.output_transcription.text if content.output_transcription else None
        # Words of a reply the worker cut off were never heard: keep them out of the transcript.
        if text and not self._cutting:
            self._model_text.append(text)
        if content.turn_complete:
            self._cutting = self.streaming = False
            self.flush_user_transcript()
            self._reply_ended()
            if self.model_speaking:
                self._watch_playback_end()
            else:
                self._publish_model(cut=False)
            self.model_speaking = False
            self._touch()

    async def finish(self) -> None:
        """The conversation is over: reply audio already received is the worker's and goes to
        the speaker (which the appliance drains); then the transcripts are published."""
        for task in self._background:
            task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_HAND_OVER_S):
                await self.player.handed_over()
        await self.player.close()
        self.flush_user_transcript()
        self._reply_ended()
        self._publish_model(cut=False)

    def flush_user_transcript(self) -> None:
        text = self._take(self._user_text)
        if text:
            self._bus.publish(Transcript(session_id=self._session_id, role="user", text=text))

    @staticmethod
    def _take(parts: list[str]) -> str:
        text = "".join(parts).strip()
        parts.clear()
        return text

    def _reply_ended(self) -> None:
        """The reply's text is all in: it waits to be published with its audio's end."""
        self._unheard.append(self._take(self._model_text))

    def _publish_model(self, *, cut: bool) -> None:
        """Publish the replies not yet published, each as one transcript."""
        replies, self._unheard = self._unheard, []
        for text in filter(None, replies):
            self._bus.publish(
                Transcript(session_id=self._session_id, role="model", text=text, cut=cut)
            )

    def _play(self, blob: types.Blob | None) -> None:
        if blob is None or not blob.data or not (blob.mime_type or "").startswith("audio/"):
            return
        on_speaker = None
        if not self.model_speaking:
            self.flush_user_transcript()
            self.model_speaking = True
            on_speaker = self._voice_starts()
        self._touch()
        self.player.put(blob.data, on_speaker=on_speaker)

    def _watch_playback_end(self) -> None:
        """Publish the end of speech when the speaker has played the whole reply."""

        async def wait() -> None:
            failed = False
            try:
                await self.player.drain()
            except AudioError as exc:
                # The speaker failed mid-reply: the supervisor reports and reopens it. The
                # reply is over either way, so its end is published like any other.
                log.warning("speaker failed while a reply played: %s", exc)
                failed = True
            if self.player.playing and not failed:
                return  # a later reply came meanwhile: the watch that ends with it publishes
            self._publish_model(cut=failed)
            if not self.model_speaking:
                self._voice_ended()

        task = asyncio.create_task(wait(), name="playback-end")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _voice_starts(self) -> Callable[[], None]:
        """Publish `Speaking` when the reply's first piece reaches the speaker, stamped with
        when it arrived off the wire (the metrics time wire to speaker from it)."""
        arrived = time.monotonic()

        def started() -> None:
            self._voice_on = True
            self._bus.publish(Speaking(started=True, mono=arrived))

        return started

    def _voice_ended(self) -> None:
        # A reply flushed before any of it reached the speaker was never heard: no event.
        if self._voice_on:
            self._voice_on = False
            self._bus.publish(Speaking(started=False))

    def _playback_bug(self, exc: Exception) -> None:
        # Reported as the speaker's, like the appliance's drain failure: metrics would count
        # any "live..." error as a dropped Live connection, which this is not.
        message = f"reply playback failed: {type(exc).__name__}: {exc}"
        self._bus.publish(ErrorRaised(where="speaker", message=message))
