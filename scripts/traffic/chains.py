"""Interactions in flight at once, each on its own timeline: the clock of the provider simulators.

A chain is whatever one interaction id covers (a Genesys conversation, an Amazon Connect
contact and its transfers). Each chain's events are spaced by its own gaps, and the chains are
interleaved by time: `next_due` always hands out the chain whose next event is due first, so the
emitted stream is chronological and each chain's times strictly increase, which is what makes
the simulators' "late" marks exact.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Generic, TypeVar

Chain = TypeVar("Chain")


class ChainClock(Generic[Chain]):
    """Keeps `concurrency` chains in flight; a chain leaves when its owner stops rescheduling it."""

    def __init__(
        self, concurrency: int, start: datetime, new_chain: Callable[[datetime], Chain]
    ) -> None:
        self._concurrency = concurrency
        self._new_chain = new_chain
        self._now = start
        self._tiebreak = itertools.count()  # equal times: first scheduled, first due
        self._due: list[tuple[datetime, int, Chain]] = []
        self._in_flight = 0

    def next_due(self) -> tuple[datetime, Chain]:
        """The chain due first and its time; it is out of the clock until `reschedule`d."""
        while self._in_flight < self._concurrency:
            # A new chain starts now: the time of the event just handed out.
            self._push(self._now, self._new_chain(self._now))
            self._in_flight += 1
        due, _, chain = heapq.heappop(self._due)
        self._now = max(self._now, due)
        self._in_flight -= 1
        return due, chain

    def reschedule(self, chain: Chain, after: datetime, gap: timedelta) -> None:
        """Puts a chain handed out by `next_due` back, with its next event due `gap` later."""
        self._push(after + gap, chain)
        self._in_flight += 1

    def _push(self, due: datetime, chain: Chain) -> None:
        heapq.heappush(self._due, (due, next(self._tiebreak), chain))
