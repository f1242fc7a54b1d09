"""The live layer's parts on their own: backoff, failure classes, the replay ledger, the
outbox, cues, settings and the session config."""

from __future__ import annotations

import random
import ssl
from pathlib import Path
from typing import Any

import pytest
from google.genai import errors, types
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus
from websockets.http11 import Response

from device.audio.sink import WavSink
from device.config import ConfigError, settings_from_dict
from device.live.backoff import Backoff
from device.live.connect import build_connect_config, live_connector
from device.live.cues import CuePlayer
from device.live.failures import LiveUnavailable, classify, parse_time_left
from device.live.ledger import ReplayLedger
from device.live.outbox import Outbox, Outgoing

AUDIO = b"\x01\x00" * 320  # 20 ms at 16 kHz


def answer(call_id: str) -> Outgoing:
    return Outgoing("tool_response", types.FunctionResponse(id=call_id, name="t", response={}))


def test_backoff_doubles_to_its_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(0.5, 4.0, rng=random.Random(1))
    ceilings, delays = [], []
    for _ in range(6):
        ceilings.append(backoff.ceiling())
        delays.append(backoff.next_delay())
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)  # jittered, not a fixed ladder
    backoff.reset()
    assert backoff.ceiling() == 0.5
    with pytest.raises(ValueError, match="base_s"):
        Backoff(0, 1)


@pytest.mark.parametrize(
    ("text", "seconds"), [("10s", 10.0), ("0.5s", 0.5), ("50s", 50.0), (None, 5.0), ("soon", 5.0)]
)
def test_goaway_time_left(text: str | None, seconds: float) -> None:
    assert parse_time_left(text) == seconds


def invalid_status(code: int) -> InvalidStatus:
    return InvalidStatus(Response(code, "x", Headers(), b""))


@pytest.mark.parametrize(
    ("exc", "kind", "denied"),
    [
        (errors.APIError(1011, "Internal error encountered."), "retry", False),
        (errors.APIError(1001, "going away"), "retry", False),
        (errors.APIError(1007, "Invalid JSON payload"), "fatal", False),
        (errors.APIError(1008, "API key not valid. Please pass a valid API key."), "fatal", True),
        (errors.APIError(1008, "ephemeral token expired"), "fatal", True),
        (errors.APIError(1000, ""), "closed", False),
        (ConnectionRefusedError(111, "Connection refused"), "offline", False),
        (TimeoutError(), "offline", False),
        (ssl.SSLCertVerificationError("self-signed certificate"), "fatal", False),
        (invalid_status(403), "fatal", True),
        (invalid_status(503), "retry", False),
        (invalid_status(404), "fatal", False),
        (LiveUnavailable("broker unreachable", "offline"), "offline", False),
        (RuntimeError("a bug"), "fatal", False),
    ],
)
def test_failure_classes(exc: BaseException, kind: str, denied: bool) -> None:
    failure = classify(exc)
    assert (failure.kind, failure.denied) == (kind, denied)
    assert failure.reason


def test_ledger_resends_exactly_what_was_not_consumed() -> None:
    ledger = ReplayLedger(max_audio_bytes=10_000)
    items = [Outgoing("audio", AUDIO), answer("c1"), Outgoing("audio_stream_end")]
    assert [ledger.sent(item) for item in items] == [1, 2, 3]  # setup is message 0
    ledger.update("h1", 1)
    assert ledger.handle == "h1" and ledger.unconsumed_answers() == {"c1"}
    assert ledger.connection_started(resumed=True) == items[1:]
    # Numbering restarts with the new connection, and indices refer to it.
    assert ledger.sent(items[1]) == 1
    ledger.update("h2", 1)
    assert ledger.connection_started(resumed=True) == []


def test_ledger_keeps_nothing_the_server_reported_consumed_before_its_send_returned() -> None:
    # On a loaded machine the server's update can overtake the device's own note that a
    # message left: the update says message 2 is consumed before the ledger hears of message 2.
    ledger = ReplayLedger(max_audio_bytes=10_000)
    items = [Outgoing("audio", AUDIO), answer("c1"), Outgoing("audio", AUDIO[:2])]
    assert ledger.sent(items[0]) == 1
    ledger.update("h1", 2)
    assert [ledger.sent(item) for item in items[1:]] == [2, 3]
    assert ledger.unconsumed_answers() == set()
    assert ledger.connection_started(resumed=True) == items[2:]
    # A new connection numbers from 1 again, and the old connection's index means nothing there.
    assert ledger.sent(items[0]) == 1
    assert ledger.connection_started(resumed=True) == items[:1]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_ledger_without_indices_resends_everything_since_the_handle() -> None:
    clock = Clock()
    ledger = ReplayLedger(max_audio_bytes=10_000, overlap_s=0.5, clock=clock)
    ledger.sent(Outgoing("audio", b"a" * 10))
    ledger.sent(answer("c1"))
    clock.now += 1.0
    ledger.update("h1", None)  # everything sent before this update is in the state
    words = [Outgoing("audio", bytes([i]) * 10) for i in range(3)]
    ledger.sent(words[0])
    ledger.sent(Outgoing("activity_end"))
    ledger.sent(words[1])
    ledger.sent(answer("c2"))
    ledger.sent(words[2])
    # The worker's words after the handle are in no state: all of it goes again, in order.
    replay = ledger.connection_started(resumed=True)
    assert [(i.kind, i.payload if i.kind == "audio" else i.call_id) for i in replay] == [
        ("audio", words[0].payload),
        ("activity_end", None),
        ("audio", words[1].payload),
        ("tool_response", "c2"),
        ("audio", words[2].payload),
    ]


def test_ledger_without_indices_keeps_audio_of_the_last_round_trip_before_an_update() -> None:
    clock = Clock()
    ledger = ReplayLedger(max_audio_bytes=10_000, overlap_s=0.5, clock=clock)
    old, recent = Outgoing("audio", b"o" * 10), Outgoing("audio", b"r" * 10)
    ledger.sent(old)
    clock.now += 1.0
    ledger.sent(answer("c1"))
    ledger.sent(recent)
    clock.now += 0.2
    ledger.update("h1", None)
    # The recent audio may have been on the wire when the handle was made; an answer is not
    # repeated on a guess (the service would take it twice).
    assert ledger.connection_started(resumed=True) == [recent]


def test_ledger_without_indices_never_resends_what_the_model_went_on_from() -> None:
    clock = Clock()
    ledger = ReplayLedger(max_audio_bytes=10_000, overlap_s=0.5, clock=clock)
    ledger.update("h1", None)
    question, after = Outgoing("audio", b"q" * 10), Outgoing("audio", b"s" * 10)
    ledger.sent(question)
    ledger.sent(answer("c1"))
    ledger.output_seen()  # the model answered: the question and the answer were taken in
    ledger.sent(after)
    assert ledger.connection_started(resumed=True) == [after]


def test_ledger_without_indices_counts_a_message_on_the_wire_as_held_by_an_update() -> None:
    # Without an index, what was sent before an update is in its handle (audio of the last
    # round trip apart). A message whose send had not returned when the update was read had
    # gone on the wire before it: it is held too, unless it is audio.
    clock = Clock()
    ledger = ReplayLedger(max_audio_bytes=10_000, overlap_s=0.5, clock=clock)
    audio, late = Outgoing("audio", AUDIO), answer("c2")
    ledger.sending()
    ledger.update("h1", None)
    ledger.sent(answer("c1"))
    ledger.sending()
    ledger.update("h2", None)
    ledger.sent(audio)
    ledger.sending()
    ledger.not_sent()  # never left: the outbox sends it again, the ledger never had it
    ledger.update("h3", None)
    ledger.sent(late)  # went on the wire after the update: not in its handle
    assert ledger.unconsumed_answers() == {"c2"}
    assert ledger.connection_started(resumed=True) == [audio, late]
    # Model output read while a message was on the wire came after it: the model went on
    # from it, audio or answer, as from everything sent before.
    ledger.sent(answer("c3"))
    ledger.sending()
    ledger.output_seen()
    ledger.sent(audio)
    ledger.sending()
    ledger.output_seen()
    ledger.sent(answer("c4"))
    assert ledger.connection_started(resumed=True) == []


def test_ledger_keeps_only_the_newest_video_frames() -> None:
    ledger = ReplayLedger(max_audio_bytes=10_000, max_video_frames=2)
    frames = [Outgoing("video", bytes([i]) * 100) for i in range(4)]
    for frame in frames:
        ledger.sent(frame)
    assert ledger.connection_started(resumed=True) == frames[2:]


def test_ledger_fresh_session_replays_the_current_utterance_only() -> None:
    ledger = ReplayLedger(max_audio_bytes=3 * len(AUDIO))
    ledger.sent(Outgoing("audio", b"old" * 10))
    ledger.turn_complete()  # that audio belonged to a finished turn
    ledger.sent(answer("c1"))
    for _ in range(5):
        ledger.sent(Outgoing("audio", AUDIO))
    replay = ledger.connection_started(resumed=False)
    # No answers to calls the new session never made, no finished turn, and at most the
    # replay budget of the utterance in progress (its oldest audio dropped first).
    assert [i.kind for i in replay] == ["audio"] * 3
    assert all(i.payload == AUDIO for i in replay)
    assert ledger.dropped_audio_bytes == 30 + 2 * len(AUDIO)
    ledger.sent(answer("c2"))
    ledger.forget_answers({"c2"})  # a cancelled call is never answered again
    assert ledger.connection_started(resumed=True) == []


async def test_outbox_order_bounds_and_drops(caplog: pytest.LogCaptureFixture) -> None:
    box = Outbox(max_audio_bytes=2 * len(AUDIO))
    first, second, third = (Outgoing("audio", bytes([i]) * len(AUDIO)) for i in range(3))
    box.put(first)
    box.put(answer("c1"))
    box.put(second)
    box.put(third)  # over the limit: the oldest audio goes, the answer stays
    assert box.dropped_audio_bytes == len(AUDIO)
    assert "dropping the oldest" in caplog.text
    box.put_front([Outgoing("activity_start")])
    assert box.pending_answers() == {"c1"}
    assert box.drop(call_ids={"c1"}) == 1
    got = [await box.get() for _ in range(len(box))]
    assert [g.kind for g in got] == ["activity_start", "audio", "audio"]
    assert [g.payload for g in got[1:]] == [second.payload, third.payload]


async def test_a_missing_cue_is_skipped_not_fatal(tmp_path: Path) -> None:
    sink = WavSink(tmp_path / "out.wav", speed=1000)
    await sink.open()
    try:
        assert not await CuePlayer(tmp_path / "nowhere").play("offline", sink)
        assert await CuePlayer().play("offline", sink)
        await sink.drain()
        assert sink.played_bytes > 0
    finally:
        await sink.close()


def declared(config: types.LiveConnectConfig) -> list[str]:
    assert config.tools
    return [d.name or "" for t in config.tools for d in t.function_declarations or []]


def test_end_session_is_declared_once_and_can_be_turned_off() -> None:
    tool = {"name": "find_item", "description": "d", "parameters": {"type": "object"}}
    on = settings_from_dict({})
    assert declared(build_connect_config(on, instructions="i", function_declarations=[tool])) == [
        "find_item",
        "end_session",
    ]
    again = build_connect_config(
        on, instructions="i", function_declarations=[tool, {"name": "end_session"}]
    )
    assert declared(again).count("end_session") == 1
    off = settings_from_dict({"live": {"end_session_tool": False}})
    assert declared(build_connect_config(off, instructions="i", function_declarations=[tool])) == [
        "find_item"
    ]


def test_credentials_are_checked_up_front(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WAREHOUSE_VOICE_BROKER_TOKEN", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError) as no_broker:
        settings_from_dict({"live": {"auth": "ephemeral"}})
    assert "broker_url" in str(no_broker.value)
    ephemeral = settings_from_dict(
        {"live": {"auth": "ephemeral", "broker_url": "https://127.0.0.1:9"}}
    )
    kw: dict[str, Any] = {"instructions": "i", "declarations": [], "api_key": ""}
    with pytest.raises(ConfigError) as no_token:
        live_connector(ephemeral, **kw)
    assert no_token.value.key == "live.broker_token_file"
    monkeypatch.setenv("WAREHOUSE_VOICE_BROKER_TOKEN", "wvb_x")
    assert live_connector(ephemeral, **kw).tokens is not None
    with pytest.raises(ConfigError) as no_key:
        live_connector(settings_from_dict({}), **kw)
    assert no_key.value.key == "live.api_key_file"
