import asyncio

from device.events import ButtonEvent, EventBus, State, StateChanged


def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    bus = EventBus()
    seen: list[str] = []

    def broken(_event: object) -> None:
        raise RuntimeError("boom")

    bus.subscribe(broken)
    bus.subscribe(lambda e: seen.append(e.kind))
    bus.publish(ButtonEvent(action="press", source="gpio"))
    assert seen == ["button"]


async def test_stream_receives_events_and_drops_oldest_when_full() -> None:
    bus = EventBus()
    async with bus.stream(maxsize=2) as queue:
        for state in (State.CONNECTING, State.CONVERSING, State.CLOSING):
            bus.publish(StateChanged(state=state, previous=State.IDLE))
        got = [queue.get_nowait(), queue.get_nowait()]
    assert [e.state for e in got if isinstance(e, StateChanged)] == [
        State.CONVERSING,
        State.CLOSING,
    ]
    bus.publish(ButtonEvent(action="press", source="gpio"))
    await asyncio.sleep(0)
    assert queue.empty()


def test_records_are_json_ready() -> None:
    record = StateChanged(state=State.CONVERSING, previous=State.CONNECTING).to_record()
    assert record["kind"] == "state"
    assert record["state"] == "conversing"
    assert "mono" not in record
