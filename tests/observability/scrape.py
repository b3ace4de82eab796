"""Reading a Prometheus scrape in tests: parsed by prometheus_client's own
parser, flattened to `(sample name, labels) -> value`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    text: str
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    @classmethod
    def parse(cls, text: str) -> "Scrape":
        samples = {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        return cls(text, samples)

    def value(self, name: str, **labels: str) -> float:
        """A sample's value; 0 when the series does not exist (yet)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def has(self, name: str) -> bool:
        return any(key[0] == name for key in self.samples)

    def label_values(self) -> set[str]:
        return {value for _, labels in self.samples for _, value in labels}

    def delta(self, before: "Scrape", name: str, **labels: str) -> float:
        return self.value(name, **labels) - before.value(name, **labels)


async def scrape(url: str, headers: dict[str, str] | None = None) -> Scrape:
    async with httpx.AsyncClient(timeout=10) as c:
        answer = await c.get(url, headers=headers)
    answer.raise_for_status()
    return Scrape.parse(answer.text)


async def eventually(url: str, check: Callable[[Scrape], bool], *, headers=None, timeout: float = 20.0) -> Scrape:  # type: ignore[no-untyped-def]
    """Scrape until `check` holds: a counter moves just after the event that
    the test saw (the event is written first, then counted)."""
    deadline = time.monotonic() + timeout
    last: object = "no answer"
    while True:
        try:
            got = await scrape(url, headers)
            if check(got):
                return got
            last = got.text
        except httpx.HTTPError as exc:  # not listening yet
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} never satisfied the check; last scrape:\n{last}")
        await asyncio.sleep(0.1)
