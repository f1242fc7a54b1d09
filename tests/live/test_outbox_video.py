"""While the link is down, the outbox keeps only the newest camera frames; audio and markers
are kept as before."""

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
