"""The reply player tells when a reply reaches the speaker, so its first byte can be timed."""

from __future__ import annotations

import asyncio
import gc
import math
from pathlib import Path

from google.genai import types

from device.audio.errors import AudioError
from device.audio.sink import WavSink
from device.events import EventBus, Speaking
from device.live.player import ReplyPlayer
from device.live.replies import Replies

PIECE = b"\x01\x00" * 2400  # 100 ms at 24 kHz


async def test_a_wait_for_the_first_byte_started_in_the_callback_sees_it_played(
    tmp_path: Path,
) -> None:
    async with WavSink(tmp_path / "out.wav", speed=math.inf) as speaker:
        player = ReplyPlayer(speaker)
        heard: list[asyncio.Task[None]] = []

        def on_speaker() -> None:
            # What the metrics do at `Speaking`: the next byte queued is the reply's first.
            target = speaker.played_bytes + speaker.queued_bytes + 1
            heard.append(asyncio.create_task(speaker.wait_played(target)))

        player.put(PIECE, on_speaker=on_speaker)
        player.put(PIECE)
        await player.drain()
        assert len(heard) == 1
        await heard[0]  # raises AudioError if the speaker was idle when the wait began
        await player.close()


async def test_the_callback_runs_once_behind_audio_ahead_and_never_for_flushed_audio(
    tmp_path: Path,
) -> None:
    async with WavSink(tmp_path / "out.wav", speed=20.0, max_queued_s=0.05) as speaker:
        player = ReplyPlayer(speaker)
        queued_ahead: list[int] = []
        player.put(PIECE * 3)
        player.put(PIECE, on_speaker=lambda: queued_ahead.append(player.queued_bytes))
        await player.drain()
        # It ran once, after the earlier reply was handed over: only its own piece was left.
        assert queued_ahead == [len(PIECE)]

        flushed: list[int] = []
        player.put(PIECE * 3)
        player.put(PIECE, on_speaker=lambda: flushed.append(1))
        player.flush()
        await player.drain()
        assert flushed == []
        # A callback given with less than a sample waits for the sample it belongs to.
        started: list[int] = []
        player.put(b"\x01", on_speaker=lambda: started.append(1))
        player.put(b"\x00" + PIECE[1:])
        await player.drain()
        assert started == [1]
        await player.close()


async def test_a_speaker_failing_mid_reply_ends_the_reply_and_leaves_no_lost_error(
    tmp_path: Path,
) -> None:
    class FailingSink(WavSink):
        async def drain(self) -> None:
            raise AudioError("output device vanished")

    bus = EventBus()
    lost: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: lost.append(ctx))
    async with FailingSink(tmp_path / "out.wav", speed=math.inf) as speaker:
        replies = Replies(session_id="s", bus=bus, speaker=speaker, touch=lambda: None)
        audio = types.Blob(data=PIECE, mime_type="audio/pcm;rate=24000")
        async with bus.stream() as events:
            replies.on_content(
                types.LiveServerContent(
                    model_turn=types.Content(parts=[types.Part(inline_data=audio)]),
                    turn_complete=True,
                )
            )
            spoken: list[bool] = []
            async with asyncio.timeout(10):
                while spoken[-1:] != [False]:
                    event = await events.get()
                    if isinstance(event, Speaking):
                        spoken.append(event.started)
        await replies.finish()
    gc.collect()  # an unretrieved task exception is reported when the task is collected
    await asyncio.sleep(0)
    assert spoken == [True, False]
    assert not lost, lost
