"""Order keys, per-interaction sorting and the high-water mark: pure functions over plain data.

Order key: `sequence` when present, else the event time (`occurred_at`, already derived from
`detail.timestamp` or the envelope `time`); ties broken by the profile's lifecycle rank when it
has one (`order_rank`, Amazon Connect), then by event id. Within one interaction
only keys of the same kind are compared: when some events carry a sequence and others don't,
they are ordered by time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Ordered(Protocol):
    """What ordering needs of an event; CanonicalEvent and stored claims both provide it."""

    @property
    def event_id(self) -> str: ...
    @property
    def sequence(self) -> int | None: ...
    @property
    def occurred_at(self) -> str: ...


def _itself(item: Any) -> Any:
    return item


def sequence_key(event: Ordered) -> tuple[int, str]:
    assert event.sequence is not None
    return (event.sequence, event.event_id)


def tie_breaker(event: Ordered) -> str:
    """The event id, led by the lifecycle rank when the event has one ("03#<id>").

    One string, so the high-water mark keeps its stored shape; events without a rank (and
    stored claims written before ranks existed) keep the plain event id as before.
    """
    rank = getattr(event, "order_rank", None)
    return event.event_id if rank is None else f"{rank:02d}#{event.event_id}"


def time_key(event: Ordered) -> tuple[str, str]:
    return (event.occurred_at, tie_breaker(event))


def by_time(events: Iterable[Ordered]) -> bool:
    """The mixed-key rule: an interaction is ordered by time as soon as one of its events
    carries no sequence."""
    return any(event.sequence is None for event in events)


def precedes(first: Ordered, second: Ordered, *, mixed: bool = False) -> bool:
    """`first` comes before `second`: by sequence when both carry one and the interaction is
    not `mixed` (some event of it without a sequence), else by time."""
    if not mixed and first.sequence is not None and second.sequence is not None:
        return sequence_key(first) < sequence_key(second)
    return time_key(first) < time_key(second)


def sort_interaction(
    items: Sequence[T], event_of: Callable[[T], Ordered] = _itself, *, mixed: bool = False
) -> list[T]:
    """One interaction's events (or things carrying one, via `event_of`) in order-key order;
    by time when `mixed` or when one of them carries no sequence."""
    if not mixed and not by_time(event_of(item) for item in items):
        return sorted(items, key=lambda item: sequence_key(event_of(item)))
    return sorted(items, key=lambda item: time_key(event_of(item)))


@dataclass(frozen=True)
class HighWaterMark:
    """The greatest order keys already sent for one interaction, one per kind of key, and
    whether an event without a sequence was among them (the interaction is then mixed, and
    every comparison goes by time: the sequence mark alone would ignore the time mark that
    the unsequenced events left)."""

    sequence: tuple[int, str] | None = None
    time: tuple[str, str] | None = None
    unsequenced: bool = False

    def is_late(self, event: Ordered) -> bool:
        """Older than an event already sent: delivered anyway, flagged `late`."""
        mixed = self.unsequenced or event.sequence is None
        if not mixed and self.sequence is not None:
            return sequence_key(event) < self.sequence
        return self.time is not None and time_key(event) < self.time

    def advance(self, event: Ordered) -> HighWaterMark:
        mark = self
        if event.sequence is None:
            mark = replace(mark, unsequenced=True)
        elif mark.sequence is None or sequence_key(event) > mark.sequence:
            mark = replace(mark, sequence=sequence_key(event))
        if mark.time is None or time_key(event) > mark.time:
            mark = replace(mark, time=time_key(event))
        return mark
