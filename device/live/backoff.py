"""Exponential backoff with full jitter, so forty devices that lost the same access point do
not all reconnect in the same instant."""

from __future__ import annotations

import random


class Backoff:
    def __init__(
        self, base_s: float, cap_s: float, *, factor: float = 2.0, rng: random.Random | None = None
    ) -> None:
        if base_s <= 0 or cap_s < base_s or factor < 1:
            raise ValueError(
                f"backoff needs 0 < base_s <= cap_s and factor >= 1, got base_s={base_s}, "
                f"cap_s={cap_s}, factor={factor}"
            )
        self.base_s, self.cap_s, self.factor = base_s, cap_s, factor
        self._rng = rng or random.Random()
        self.attempts = 0

    def ceiling(self) -> float:
        """The upper bound of the next delay."""
        return float(min(self.cap_s, self.base_s * self.factor**self.attempts))

    def next_delay(self) -> float:
        """A delay drawn uniformly from [0, ceiling]; each call raises the ceiling."""
        ceiling = self.ceiling()
        self.attempts += 1
        return self._rng.uniform(0.0, ceiling)

    def reset(self) -> None:
        self.attempts = 0
