"""A retry's backoff: failures in a row, and when the next try is due."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Backoff:
    """`initial_s` after the first failure, doubling up to `max_s`; a success starts over. Pure: the caller passes
    the clock (any monotonic one)."""

    failures: int = 0
    retry_at: float = 0.0

    def waiting(self, now: float) -> bool:
        return now < self.retry_at

    def failed(self, now: float, initial_s: float, max_s: float) -> int:
        """Count a failure and back off; the failures in a row, this one included."""
        self.failures += 1
        self.retry_at = now + min(initial_s * 2 ** (self.failures - 1), max_s)
        return self.failures

    def succeeded(self) -> None:
        self.failures, self.retry_at = 0, 0.0
