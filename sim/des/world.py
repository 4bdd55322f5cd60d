"""The world of one run: SimPy environment, host, cardholders, terminals, faults, and the verdict.

:class:`World` builds everything from a :class:`~.scenario.Scenario` and a seed, then
:meth:`World.run` advances simulated time (in steps, so a caller can show progress;
the steps do not change the result). Every random draw comes from RNGs seeded from
the run's seed, and SimPy orders simultaneous events by scheduling order, so the same
scenario and seed give the same run, event for event.

The host is :class:`sim.core.host.Host` on the cloned card set; its capacity is a
SimPy ``Resource`` of ``host.capacity`` servers with exponential service times of
mean ``host.service_ms``. The history the terminals write and every posting the
issuers' ledgers make go, as they happen, to a streaming history checker
(:class:`sim.core.history_stream.StreamingCheck`); its verdict is the batch checker's
(:func:`sim.core.history.check`) on the same run.

Memory stays flat in the length of the run. At the end of every reporting interval
the world collects what is still *owed*: the transactions (terminal id + STAN) that a
terminal's store, a message on its way or queued at the host, or an advice the
acquirer owes an issuer can still name. Nothing else can be named again: a terminal
only ever sends what its store holds or what it is sending now. So the checker judges
and forgets every transaction that is not owed, whatever its age; an outage that keeps
a few advices owed for an hour keeps those few open, not the hour's traffic. The host
keeps time-ordered state, so it forgets by the *low watermark*, the first activity of
the oldest transaction owed: its ledger state, routes and settlement entries from
before it (:meth:`sim.core.host.Host.prune`). What stays is the recent traffic, the
backlog, running sums and the findings. ``keep_history=True`` keeps the whole
terminal-side history as well, for :meth:`World.history`.

Examples
--------
>>> from sim.des.scenario import load_scenario
>>> small = load_scenario("default").model_copy(update={"duration_h": 0.25, "drain_h": 0.25})
>>> world = World(small, estate_scale=0.1)
>>> world.run()
>>> world.metrics.started == world.metrics.transactions > 0, world.verdict().ok
(True, True)
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta
from typing import Any, Callable, Generator, Iterator

import simpy

from ..core.history import HistoryEvent, Verdict, posting_effect
from ..core.history_stream import Slot, StreamingCheck
from ..core.host import Host
from ..core.ledger import Posting
from ..emv.kernel import TerminalConfig
from ..iso8583.message import Message
from ..profiles import load_profile
from . import faults
from .metrics import Metrics
from .population import Population
from .scenario import Scenario, Traffic
from .store import Record
from .terminal import Terminal

__all__ = ["Arrivals", "World"]

_DECISIONS_KEPT = 64
"""The acquirer and each issuer keep only their latest decision records and postings in memory."""


def _slots(msg: Message) -> tuple[Slot, ...]:
    """The terminal id + STAN slots a message can change: its own, and the original's it names in DE90."""
    tid = msg.fields.get("41", "")
    own = (tid, msg.fields.get("11", ""))
    if "90" not in msg.fields:
        return (own,)
    original = msg.original
    return (own, (tid, original.stan)) if original is not None else (own,)


class Arrivals:
    """Cardholder arrivals at one till: a Poisson process whose rate follows the hour of day.

    Drawn by thinning (Lewis-Shedler): candidate gaps at the peak rate, each kept with
    probability ``diurnal[hour] / max(diurnal)``; no SimPy event per rejected candidate.

    >>> a = Arrivals(Traffic(rate_per_hour=60), start_of_day_s=8 * 3600)
    >>> 0 < a.next_arrival(0.0, random.Random(1)) < 3600
    True
    """

    def __init__(self, traffic: Traffic, start_of_day_s: float) -> None:
        self.diurnal = traffic.diurnal
        self.peak = max(traffic.diurnal)
        self.rate_s = traffic.rate_per_hour * self.peak / 3600.0
        self.offset = start_of_day_s

    def next_arrival(self, now: float, rng: random.Random) -> float:
        """The next arrival after simulated second ``now``."""
        t = now
        diurnal, peak, offset = self.diurnal, self.peak, self.offset
        while True:
            t += rng.expovariate(self.rate_s)
            if rng.random() * peak < diurnal[int((offset + t) // 3600) % 24]:
                return t


class World:
    """One simulated run (see the module docstring).

    Parameters
    ----------
    scenario : Scenario
        What to simulate.
    seed : int, optional
        Overrides the scenario's seed.
    estate_scale : float
        Multiplies every estate count (at least one terminal per entry): a quick look at
        a big scenario, or a benchmark size.
    keep_history : bool
        Also keep every history event for :meth:`history` (memory grows with the run).
    """

    def __init__(self, scenario: Scenario, seed: int | None = None, *, estate_scale: float = 1.0,
                 keep_history: bool = False) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        rng = random.Random(f"possim des world|{self.seed}")
        self.env = simpy.Environment()
        self.start: datetime = scenario.start
        self.arrivals_end = scenario.duration_h * 3600.0
        self.end_s = (scenario.duration_h + scenario.drain_h) * 3600.0
        self.metrics = Metrics(scenario.interval_min * 60.0)
        self.traffic = Arrivals(scenario.traffic, (self.start - self.start.replace(hour=0, minute=0, second=0,
                                                                                    microsecond=0)).total_seconds())
        self.population = Population(scenario.cards, random.Random(rng.getrandbits(64)))
        self.host = Host(self._host_config(), cards=self.population.cards)
        self.checker = StreamingCheck()
        """The streaming history checker (see the module docstring)."""
        for issuer in self.host.issuers.values():
            issuer.ledger.on_posting = self._posted
        self._in_flight: Counter[Slot] = Counter()
        self.watermark = 0.0
        """Simulated second before which nothing can change any more (see the module docstring)."""
        self.capacity = simpy.Resource(self.env, scenario.host.capacity)
        self.service_s = scenario.host.service_ms / 1000.0
        self.issuer_service_s = scenario.host.issuer_service_ms / 1000.0
        self.issuer_capacity = {issuer.id: simpy.Resource(self.env, scenario.host.issuer_capacity)
                                for issuer in self.population.cards.issuers}
        self._host_rng = random.Random(rng.getrandbits(64))
        self.cutoffs = self._cutoffs()
        self._history: list[tuple] | None = [] if keep_history else None
        self.terminals: list[Terminal] = []
        for entry in scenario.estate:
            profile = load_profile(entry.profile)
            config = TerminalConfig.from_profile(profile)
            amount = entry.amount or scenario.traffic.amount
            count = max(1, round(entry.count * estate_scale))
            for _ in range(count):
                index = len(self.terminals) + 1
                self.terminals.append(Terminal(self, index, profile, config, (amount.min, amount.max),
                                               random.Random(rng.getrandbits(64))))
        faults.schedule(self, random.Random(rng.getrandbits(64)))
        self.env.process(self._sample())

    def _host_config(self) -> dict[str, Any]:
        sizing = self.scenario.host
        # Dual-message terminals (0100) are captured by their 0220 completions: counting the
        # authorizations too would count each such sale twice in the batch totals.
        # The acquirer's and issuers' decision logs keep only the latest records: the money is
        # in the ledgers, and a log of every decision would grow with the run.
        config: dict[str, Any] = {
            "settlement": {"cutoff": sizing.cutoff, "capture_authorizations": False},
            "acquirer": {"keep_records": _DECISIONS_KEPT},
            "issuer": {"keep_decisions": _DECISIONS_KEPT, "keep_postings": _DECISIONS_KEPT},
        }
        if sizing.standin_limits is not None:
            config["standin"] = {"limits": dict(sizing.standin_limits)}
        return config

    def _cutoffs(self) -> list[float]:
        """Simulated seconds of each daily cut-off inside the trading day(s), then a final close.

        The final close comes halfway through the drain, so what it leaves owed still
        has time to reach the host before the run ends.
        """
        hh, mm = (int(x) for x in self.scenario.host.cutoff.split(":"))
        first = self.start.replace(hour=hh, minute=mm, second=0, microsecond=0)
        if first <= self.start:
            first += timedelta(days=1)
        times = []
        t = (first - self.start).total_seconds()
        while t < self.arrivals_end:
            times.append(t)
            t += 86400.0
        times.append(self.arrivals_end + (self.end_s - self.arrivals_end) / 2)
        return times

    # Services the terminals use ---------------------------------------------------------------------

    def clock(self) -> datetime:
        """The simulated wall clock (what ``now`` means to the host and the kernel)."""
        return self.start + timedelta(seconds=self.env.now)

    def serve(self, msg: Message, delay: float, terminal: Terminal, reply: simpy.Event) -> Generator[Any, Any, None]:
        """One message's trip: link out, the host's queue and service, link back; ``reply`` succeeds on arrival."""
        env = self.env
        slots = _slots(msg) if msg.mti[1] in "124" else ()
        checker, flying = self.checker, self._in_flight
        for s in slots:
            checker.touch(s, env.now)
            flying[s] += 1
        try:
            yield from self._serve(msg, delay, terminal, reply)
        finally:
            for s in slots:
                flying[s] -= 1
                if not flying[s]:
                    del flying[s]

    def _serve(self, msg: Message, delay: float, terminal: Terminal, reply: simpy.Event) -> Generator[Any, Any, None]:
        env = self.env
        yield env.timeout(delay)
        if terminal.acquirer_silent:
            return  # accepted and never answered
        with self.capacity.request() as slot:
            yield slot
            if self.service_s > 0:
                yield env.timeout(self._host_rng.expovariate(1.0 / self.service_s))
            issuer = self._issuer_stage(msg)
            if issuer is not None:
                with issuer.request() as issuer_slot:
                    yield issuer_slot
                    yield env.timeout(self._host_rng.expovariate(1.0 / self.issuer_service_s))
            answer = self.host.handle(msg, self.clock())
        back = terminal.link.transit()
        if back is None:
            return
        yield env.timeout(back)
        if getattr(reply, "gave_up", False):
            self.metrics.late_answers += 1
            return
        reply.succeed(answer)

    def _issuer_stage(self, msg: Message) -> simpy.Resource | None:
        """The issuer servers a message queues for after the acquirer's, or ``None`` (no issuer stage)."""
        if self.issuer_service_s <= 0:
            return None
        pan = msg.fields.get("2")
        config = self.population.cards.issuer_for_pan(pan) if pan else None
        return self.issuer_capacity[config.id] if config is not None else None

    def note(self, kind: str, msg: Message) -> None:
        """One history event about the attempt ``msg`` is, to the checker."""
        self._event((kind, msg.terminal_id or "", msg.stan or "", msg.pan or "", msg.amount or 0,
                     msg.currency or "", msg.transmitted))

    def note_reversed(self, record: Record) -> None:
        """The host acknowledged a reversal of the attempt ``record.key``."""
        tid, stan, de7 = record.key
        msg = record.message
        self._event(("reversed", tid, stan, msg.pan or "", record.amount, msg.currency or "", de7))

    def _event(self, row: tuple) -> None:
        self.checker.event(HistoryEvent(*row), self.env.now)
        if self._history is not None:
            self._history.append(row)

    def _posted(self, posting: Posting) -> None:
        """Every ledger posting, as it is written: its money to the checker, or just its activity."""
        effect = posting_effect(posting)
        if effect is not None:
            self.checker.booked(effect, self.env.now)
        else:
            self.checker.touch((posting.terminal_id, posting.stan), self.env.now)

    def _sweep(self) -> None:
        """Retire every transaction nothing owes; prune the host before the low watermark (module docstring)."""
        owed: set[Slot] = set(self._in_flight)
        for terminal in self.terminals:
            for record in terminal.store.records:
                owed.add((record.key[0], record.key[1]))
                owed.update(_slots(record.message))
        standin = self.host.standin
        for name in self.host.issuers:
            for msg in standin.outbox(name):
                owed.update(_slots(msg))
        mark = self.env.now
        first_seen = self.checker.first_seen
        for slot in owed:
            first = first_seen(slot)
            if first is not None and first < mark:
                mark = first
        self.watermark = mark
        self.checker.retire_before(self.env.now, owed)
        self.host.prune(self.clock(), before=self.start + timedelta(seconds=mark), unsettled=True)

    # Running ----------------------------------------------------------------------------------------

    def _sample(self) -> Generator[Any, Any, None]:
        """At the end of each reporting interval: the estate's store-and-forward backlog."""
        m, interval = self.metrics, self.metrics.interval_s
        while self.env.now < self.end_s:
            yield self.env.timeout(interval)
            m.bucket(self.env.now - interval / 2).backlog = sum(t.store.backlog for t in self.terminals)
            self._sweep()

    def run(self, steps: int = 1, on_step: Callable[[float], None] | None = None) -> None:
        """Run to the end in ``steps`` equal slices, calling ``on_step(fraction_done)`` after each."""
        for i in range(1, steps + 1):
            self.env.run(until=self.end_s * i / steps + (1e-6 if i == steps else 0.0))
            if on_step is not None:
                on_step(i / steps)

    def history(self) -> Iterator[HistoryEvent]:
        """The terminals' whole history as the checker read it (only with ``keep_history=True``)."""
        if self._history is None:
            raise ValueError("this world keeps no history; build it with keep_history=True")
        for kind, tid, stan, pan, amount, cur, de7 in self._history:
            yield HistoryEvent(kind, tid, stan, pan, amount, cur, de7)  # type: ignore[arg-type]

    def verdict(self) -> Verdict:
        """The history checker's verdict on the run (call after :meth:`run`)."""
        return self.checker.verdict()

    @property
    def backlog(self) -> int:
        """Messages owed to the host across the estate now."""
        return sum(t.store.backlog for t in self.terminals)
