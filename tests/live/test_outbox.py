"""The outbox: while the link is down it keeps only the newest camera frames (audio and
markers as before), and a tool answer never waits behind queued microphone audio."""

from __future__ import annotations

from device.live.outbox import Outbox, Outgoing


async def test_frames_queued_during_a_reconnect_are_bounded() -> None:
    outbox = Outbox(max_audio_bytes=10_000, max_video_frames=2)
    outbox.put(Outgoing("activity_start"))
    for i in range(30):
        outbox.put(Outgoing("audio", bytes(20)))
        outbox.put(Outgoing("video", f"frame-{i}".encode()))
    outbox.put_front([Outgoing("video", b"replayed")])
    items = [await outbox.get() for _ in range(len(outbox))]
    frames = [i.payload for i in items if i.kind == "video"]
    assert frames == [b"frame-28", b"frame-29"]
    assert sum(i.kind == "audio" for i in items) == 30
    assert items[0].kind == "activity_start"


async def test_a_link_that_is_up_keeps_every_frame() -> None:
    outbox = Outbox(max_audio_bytes=10_000, max_video_frames=2)
    outbox.link_up = True
    for i in range(5):
        outbox.put(Outgoing("video", f"frame-{i}".encode()))
    assert len(outbox) == 5


async def test_a_tool_answer_goes_ahead_of_queued_microphone_audio() -> None:
    """A backlog of mic audio (a slow link, a loaded device) must not hold up the answer the
    model is waiting for; markers keep their place around the audio they frame."""
    outbox = Outbox(max_audio_bytes=10_000)
    outbox.put(Outgoing("activity_start"))
    for _ in range(5):
        outbox.put(Outgoing("audio", bytes(20)))
    outbox.put(Outgoing("activity_end"))
    outbox.put_answer(Outgoing("tool_response", _Answer("call-1")))
    outbox.put_answer(Outgoing("tool_response", _Answer("call-2")))
    kinds = [(await outbox.get()).kind for _ in range(len(outbox))]
    assert kinds == ["activity_start", "tool_response", "tool_response"] + ["audio"] * 5 + [
        "activity_end"
    ]


class _Answer:
    def __init__(self, call_id: str) -> None:
        self.id = call_id
