"""A terminal's network link: latency with jitter, random or bursty loss, outages.

Loss is Bernoulli at the profile's ``loss_percent`` until a ``loss_burst`` fault puts
the link on a Gilbert-Elliott channel: a two-state Markov chain stepped once per
packet, losing ``loss_bad`` of the packets in the bad state and the profile rate in
the good one. That is how 3G interference looks from the terminal: clusters of
consecutive losses, not independent drops, which is what makes retries fail together.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..profiles import Link as LinkProfile

__all__ = ["GilbertElliott", "Link"]


@dataclass(slots=True)
class GilbertElliott:
    """Burst-loss channel: ``p_enter`` good->bad, ``p_leave`` bad->good per packet."""

    p_enter: float
    p_leave: float
    loss_bad: float
    loss_good: float
    bad: bool = False

    def lost(self, rng: random.Random) -> bool:
        """Step the chain for one packet and say whether that packet is lost."""
        if self.bad:
            if rng.random() < self.p_leave:
                self.bad = False
        elif rng.random() < self.p_enter:
            self.bad = True
        return rng.random() < (self.loss_bad if self.bad else self.loss_good)


class Link:
    """One terminal's link to the acquirer, with its own RNG (seeded per terminal).

    Attributes
    ----------
    down : int
        Outages in force (a counter, so overlapping windows nest).
    factor : float
        Latency multiplier (``latency_spike``).
    burst : GilbertElliott or None
        The burst-loss channel while a ``loss_burst`` fault is active.
    """

    __slots__ = ("kind", "latency_s", "jitter_s", "loss", "connect_s", "rng", "down", "factor", "burst")

    def __init__(self, profile: LinkProfile, rng: random.Random) -> None:
        self.kind = profile.kind
        self.latency_s = float(profile.latency_ms) / 1000.0
        self.jitter_s = float(profile.jitter_ms) / 1000.0
        self.loss = float(profile.loss_percent) / 100.0
        self.connect_s = float(profile.connect_ms) / 1000.0
        self.rng = rng
        self.down = 0
        self.factor = 1.0
        self.burst: GilbertElliott | None = None

    @property
    def up(self) -> bool:
        """The local network is usable (no outage in force)."""
        return self.down == 0

    def transit(self) -> float | None:
        """One packet's one-way delay in seconds, or ``None`` when it is lost."""
        rng = self.rng
        lost = self.burst.lost(rng) if self.burst is not None else (self.loss > 0 and rng.random() < self.loss)
        if lost:
            return None
        # One-way: half the round-trip latency, jitter as an exponential tail (queues never go negative).
        base = self.latency_s / 2.0
        tail = rng.expovariate(2.0 / self.jitter_s) if self.jitter_s > 0 else 0.0
        return (base + tail) * self.factor

    def start_burst(self, p_enter: float, p_leave: float, loss_bad: float) -> None:
        """Switch to a Gilbert-Elliott channel (``loss_burst`` begins)."""
        self.burst = GilbertElliott(p_enter, p_leave, loss_bad, self.loss)

    def end_burst(self) -> None:
        """Back to independent losses at the profile rate."""
        self.burst = None
