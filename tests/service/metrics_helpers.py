"""Reading Prometheus text the way a scraper does, with prometheus-client's own parser."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from device.events import Event, Metric

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str | bytes) -> Samples:
    if isinstance(text, bytes):
        text = text.decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 when the series does not exist (yet), as for a fresh counter."""
    return samples.get((name, frozenset(labels.items())), 0.0)


async def next_metric(queue: asyncio.Queue[Event], name: str, timeout_s: float = 20.0) -> Metric:
    """The next Metric event called `name` (the timeout is a liveness bound, not a measure)."""
    async with asyncio.timeout(timeout_s):
        while True:
            event = await queue.get()
            if isinstance(event, Metric) and event.name == name:
                return event
