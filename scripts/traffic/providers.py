"""Traffic of one provider or a mix of them: what `--provider` picks.

`MixedTraffic` interleaves the providers' generators by weight, keeping each one's own order,
so each generator's reordering and late marks stay exact in the mix.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Literal

from chalicelib.config import DEFAULT_EVENT_SOURCE
from scripts.traffic.connect import ConnectTrafficGenerator
from scripts.traffic.genesys import GenesysTrafficGenerator
from scripts.traffic.simulate import TrafficGenerator, TrafficItem, TrafficProfile, TrafficSource

Provider = Literal["cxone", "genesys", "connect"]
PROVIDERS: tuple[Provider, ...] = ("cxone", "genesys", "connect")
# Shares of the mix: CXone stays the bulk (the relay's first profile), Genesys brings long
# transcription streams, Amazon Connect the unordered, timestamp-poor lifecycle events.
MIX_WEIGHTS: dict[str, float] = {"cxone": 0.5, "genesys": 0.3, "connect": 0.2}


class MixedTraffic:
    """Several providers' traffic interleaved at random by weight, each in its own order."""

    def __init__(
        self, sources: dict[str, TrafficSource], weights: dict[str, float], seed: int | None
    ):
        if not sources:
            raise ValueError("a mix needs at least one provider")
        self._sources = sources
        self._names = list(sources)
        self._weights = [weights[name] for name in self._names]
        self._rng = random.Random(seed)

    def take(self, count: int) -> list[TrafficItem]:
        if count < 0:
            raise ValueError("count must be >= 0")
        picks = self._rng.choices(self._names, weights=self._weights, k=count)
        taken = {name: iter(self._sources[name].take(picks.count(name))) for name in self._names}
        return [next(taken[name]) for name in picks]


def make_traffic(
    provider: Provider | Literal["mix"],
    profile: TrafficProfile | None = None,
    seed: int | None = None,
    *,
    cxone_source: str = DEFAULT_EVENT_SOURCE,
    start: datetime | None = None,
    same_id_redeliveries: bool = False,
    mix: Sequence[str] = PROVIDERS,
) -> TrafficSource:
    """The generator `--provider` names; "mix" interleaves the providers in `mix`.

    `same_id_redeliveries`: the events go to the ingest queue (or are only printed), where a
    re-delivery of the same envelope, EventBridge's own kind of duplicate, can be reproduced.
    """

    unknown = sorted({provider, *mix} - {*PROVIDERS, "mix"})
    if unknown:
        raise ValueError(f"unknown provider(s) {unknown}; known: {', '.join(PROVIDERS)}")

    def one(name: str, seed: int | None, profile: TrafficProfile) -> TrafficSource:
        if name == "cxone":
            return TrafficGenerator(profile, seed, cxone_source, start)
        if name == "genesys":
            return GenesysTrafficGenerator(
                profile, seed, start, same_id_redeliveries=same_id_redeliveries
            )
        return ConnectTrafficGenerator(
            profile, seed, start, same_id_redeliveries=same_id_redeliveries
        )

    base = profile or TrafficProfile()
    if provider != "mix":
        return one(provider, seed, base)
    seeds = random.Random(seed)
    weights = {name: MIX_WEIGHTS[name] for name in dict.fromkeys(mix)}
    total = sum(weights.values())
    sources: dict[str, TrafficSource] = {}
    for name, weight in weights.items():
        # Each provider emits only its share of the events, so its simulated time between two
        # of them is longer by as much: every provider's clock keeps pace with the stream's.
        share = replace(base, mean_gap_ms=base.mean_gap_ms * total / weight)
        # A seed of its own for each provider: the same --seed gives the same mix.
        sources[name] = one(name, None if seed is None else seeds.getrandbits(32), share)
    return MixedTraffic(sources, weights, seed)
