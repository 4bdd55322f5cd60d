"""The fault schedule as SimPy processes: each fault switches something on at its start and off at its end.

One process per scheduled fault (a handful per scenario, not per terminal). A fault
hits ``fraction`` of the terminals, drawn once with the run's seed, so the same seed
breaks the same terminals. What each kind does:

==================  ==========================================================================
kind                effect while active
==================  ==========================================================================
acquirer_outage     the acquirer's front end is gone for the hit terminals: ``refused``
                    (nothing sent: HostUnreachable) or ``silent`` (sent, never answered:
                    HostTimeout, so a reversal is owed) -- OFF-02, REV-01
network_outage      the terminal's own links are down (nothing leaves it); with ``link``, only
                    the links of that kind: a terminal with another link fitted fails over
                    to it (3G to Wi-Fi) and back when its preferred link returns
issuer_down         the issuer is unavailable at the host: the scheme stands in (STIP-01)
latency_spike       link latency multiplied by ``factor`` (``link``: of that kind only)
loss_burst          the link becomes a Gilbert-Elliott burst-loss channel (DEV-03; ``link``
                    as above)
reader_failure      the chip reader fails: chip power-on fails, the kernel falls back (DEV-01)
power_loss          power cuts at Poisson times, ``rate_per_hour`` per hit terminal (OFF-06, DEV-04)
store_full          the offline store reports no free place (OFF-07)
printer_out         the receipt printer is out of paper: transactions go on, their receipts
                    are not printed (DEV-02)
==================  ==========================================================================

Overlapping windows nest: every switch is a counter, not a flag.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Generator, Sequence

from .scenario import Fault

if TYPE_CHECKING:  # pragma: no cover
    from .world import World

__all__ = ["active_faults", "schedule", "hit_terminals"]


def hit_terminals(fault: Fault, count: int, rng: random.Random) -> list[int]:
    """Indices of the terminals ``fault`` hits: ``fraction`` of ``count`` (at least one), drawn with ``rng``.

    >>> hit_terminals(Fault(kind="network_outage", start_h=1, duration_h=1, fraction=0.5), 4, random.Random(1))
    [1, 2]
    """
    if fault.fraction >= 1.0:
        return list(range(count))
    chosen = rng.sample(range(count), max(1, round(fault.fraction * count)))
    return sorted(chosen)


def active_faults(faults: Sequence[Fault], hour: float) -> list[str]:
    """Kinds of the faults in force at ``hour`` hours from the start (for the timeline).

    >>> active_faults([Fault(kind="issuer_down", issuer="x", start_h=1, duration_h=2)], 2.5)
    ['issuer_down']
    """
    return sorted({f.kind for f in faults if f.start_h <= hour < f.end_h})


def schedule(world: "World", rng: random.Random) -> None:
    """Start one process per fault of the world's scenario (called once, before the run)."""
    for fault in world.scenario.faults:
        hit = hit_terminals(fault, len(world.terminals), rng)
        world.env.process(_window(world, fault, hit, random.Random(rng.getrandbits(64))))


def _links(terminals: list[Any], fault: Fault) -> list[Any]:
    """The links a link fault hits: the hit terminals' links of ``fault.link`` (all of them when unset)."""
    return [link for t in terminals for link in t.links_of(fault.link)]


def _switch(world: "World", fault: Fault, hit: list[int], on: bool) -> None:
    step = 1 if on else -1
    terminals = [world.terminals[i] for i in hit]
    kind = fault.kind
    if kind == "issuer_down":
        world.host.set_issuer_available(fault.issuer or "", not on, world.clock())
    elif kind == "acquirer_outage":
        for t in terminals:
            if fault.mode == "silent":
                t.acquirer_silent += step
            else:
                t.acquirer_refused += step
    elif kind == "network_outage":
        for link in _links(terminals, fault):
            link.down += step
    elif kind == "latency_spike":
        for link in _links(terminals, fault):
            link.factor = link.factor * fault.factor if on else link.factor / fault.factor
    elif kind == "loss_burst":
        for link in _links(terminals, fault):
            if on:
                link.start_burst(fault.p_enter, fault.p_leave, fault.loss_bad)
            else:
                link.end_burst()
    elif kind == "reader_failure":
        for t in terminals:
            t.reader_failed += step
    elif kind == "store_full":
        for t in terminals:
            t.store.blocked += step
    elif kind == "printer_out":
        for t in terminals:
            t.printer_out += step


def _window(world: "World", fault: Fault, hit: list[int], rng: random.Random) -> Generator[Any, Any, None]:
    env = world.env
    start, end = fault.start_h * 3600.0, fault.end_h * 3600.0
    yield env.timeout(start)
    if fault.kind == "power_loss":
        yield from _power_cuts(world, fault, hit, rng, end)
        return
    _switch(world, fault, hit, True)
    yield env.timeout(end - start)
    _switch(world, fault, hit, False)


def _power_cuts(world: "World", fault: Fault, hit: list[int], rng: random.Random, end: float) -> Generator[Any, Any, None]:
    """Power cuts across the hit terminals: one Poisson stream of rate ``rate_per_hour * len(hit)``."""
    env = world.env
    rate_s = fault.rate_per_hour * len(hit) / 3600.0
    while True:
        gap = rng.expovariate(rate_s)
        if env.now + gap >= end:
            return
        yield env.timeout(gap)
        world.terminals[hit[rng.randrange(len(hit))]].cut_power()
