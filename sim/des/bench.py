"""``possim bench sim``: simulated transactions per second at full fidelity, against bare SimPy.

Three rates, measured in the same process, one after the other, on CPU time
(``time.process_time``, so a busy neighbour on a shared core does not count; the
simulated run's wall-clock rate is reported beside it):

* **simulated**: the default scenario's estate run for ``hours`` of simulated trading,
  every transaction decided by the real kernel, card and host, with links, host queue,
  store-and-forward and settlement: completed transactions per CPU-second (the
  cardholders' chips are personalised before the clock starts: a one-off RSA cost per
  card, a few ms each, that a long run amortises);
* **bare SimPy**: one process yielding ``env.timeout`` in a loop: events per CPU-second,
  the most a SimPy model on this interpreter and machine can do;
* **in-process**: the same kind of transactions through
  :func:`sim.emv.kernel.run_transaction` with no simulation around them, the ceiling
  the decision code itself sets.

The headline ratio is simulated transactions per bare SimPy event: how many
scheduler events' worth of time one full-fidelity transaction costs.

Memory (:func:`memory`): the same estate run for two lengths (default 2 h and 8 h of
trading, each with the scenario's half-hour drain), each in a fresh process, under
``tracemalloc`` from the start of the run (after the world is built, its cards
personalised, and a few simulated minutes of a one-terminal world have imported what
is imported on first use) to its verdict. The figure is the longer run's peak traced memory over
the shorter one's (goal: within :data:`GOAL_MEMORY_RATIO`), beside each run's peak per
simulated hour and the growth per extra transaction. Fresh processes, so neither run
inherits what the other left in process-wide caches.

Part of what a run holds at its end is capped by design and fills as the run goes:
the cryptogram and key caches of :mod:`sim.core.crypto` (``lru_cache``, 256 entries
each), the TLV caches of :mod:`sim.emv.tlv` (1,024 decodings, 512 encoded objects), and
the kernel's same-PAN log (200 entries per terminal). :attr:`MemoryBench.capped_bytes` reports it apart, so
the rest (the world's and the host's own state) can be read on its own.
"""

from __future__ import annotations

import gc
import multiprocessing
import random
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import simpy

__all__ = ["GOAL_MEMORY_RATIO", "GOAL_TPS", "MemoryBench", "bare_simpy_rate", "in_process_rate", "memory",
           "run", "traced_run"]

GOAL_TPS = 20_000
"""The goal of the issue: simulated transactions per second on one core."""

GOAL_MEMORY_RATIO = 1.2
"""Memory flat in the length of the run: a 4x longer run's peak within this factor of the shorter one's."""


@dataclass(frozen=True)
class MemoryBench:
    """Peak traced memory of the same estate at two run lengths (see the module docstring)."""

    hours: tuple[float, float]
    transactions: tuple[int, int]
    peak_bytes: tuple[int, int]
    end_bytes: tuple[int, int]
    terminals: int
    ok: tuple[bool, bool]
    capped_bytes: tuple[int, int] = (0, 0)
    """Of ``end_bytes``: caches and logs capped by design (see the module docstring)."""

    @property
    def ratio(self) -> float:
        """The longer run's peak over the shorter run's."""
        return self.peak_bytes[1] / max(self.peak_bytes[0], 1)

    @property
    def uncapped_ratio(self) -> float:
        """The longer run's end bytes over the shorter one's, leaving out what is capped by design."""
        return (self.end_bytes[1] - self.capped_bytes[1]) / max(self.end_bytes[0] - self.capped_bytes[0], 1)

    @property
    def per_hour(self) -> tuple[float, float]:
        """Peak bytes per simulated hour of trading, each run (falls with length when memory is flat)."""
        return (self.peak_bytes[0] / self.hours[0], self.peak_bytes[1] / self.hours[1])

    @property
    def growth_per_transaction(self) -> float:
        """Extra peak bytes per extra transaction of the longer run (0 when flat)."""
        return (self.peak_bytes[1] - self.peak_bytes[0]) / max(self.transactions[1] - self.transactions[0], 1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "hours": list(self.hours), "terminals": self.terminals, "transactions": list(self.transactions),
            "peak_bytes": list(self.peak_bytes), "end_bytes": list(self.end_bytes),
            "peak_bytes_per_hour": [round(x) for x in self.per_hour], "ratio": round(self.ratio, 3),
            "growth_bytes_per_transaction": round(self.growth_per_transaction, 1), "goal_ratio": GOAL_MEMORY_RATIO,
            "capped_bytes": list(self.capped_bytes), "uncapped_end_ratio": round(self.uncapped_ratio, 3),
            "verdict_ok": list(self.ok),
        }


_CAPPED = ("*/sim/core/crypto.py", "*/pyemv/*", "*/functools.py", "*/sim/emv/kernel/config.py", "*/sim/emv/tlv.py")
"""Where the capped caches and logs are allocated (see the module docstring)."""


def traced_run(hours: float, scale: float = 1.0, seed: int = 1) -> tuple[int, int, int, int, bool, int]:
    """One default-estate run of ``hours`` under tracemalloc.

    Returns transactions, peak bytes, end bytes, terminals, verdict ok, capped end bytes.
    """
    from .scenario import load_scenario
    from .world import World

    scenario = load_scenario("default").model_copy(update={"duration_h": hours, "drain_h": 0.5})
    # A few minutes of a one-terminal estate first, so modules imported on first use are not
    # counted as the run's memory (how the process was started would change the figure).
    World(scenario.model_copy(update={"duration_h": 0.1, "drain_h": 0.05}), seed + 1, estate_scale=0.01).run()
    world = World(scenario, seed, estate_scale=scale)  # its cards personalised, as issued
    gc.collect()
    tracemalloc.start()
    try:
        world.run()
        ok = world.verdict().ok
        end, peak = tracemalloc.get_traced_memory()
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    capped = sum(stat.size for stat in snapshot.filter_traces(
        [tracemalloc.Filter(True, pattern) for pattern in _CAPPED]).statistics("filename"))
    return world.metrics.transactions, peak, end, len(world.terminals), ok, capped


def memory(hours: tuple[float, float] = (2.0, 8.0), scale: float = 1.0, seed: int = 1) -> MemoryBench:
    """Peak traced memory at two run lengths, each in a fresh process (see the module docstring)."""
    runs = []
    for h in hours:  # one fresh process each, one after the other
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            runs.append(pool.submit(traced_run, h, scale, seed).result())
    (n0, p0, e0, terminals, ok0, c0), (n1, p1, e1, _, ok1, c1) = runs
    return MemoryBench((hours[0], hours[1]), (n0, n1), (p0, p1), (e0, e1), terminals, (ok0, ok1), (c0, c1))


@dataclass(frozen=True)
class SimBench:
    """The figures of one benchmark run."""

    transactions: int
    cpu_s: float
    wall_s: float
    simulated_tps: float
    simpy_events_per_s: float
    in_process_tps: float
    terminals: int
    hours: float

    @property
    def simulated_tps_wall(self) -> float:
        """Simulated transactions per wall-clock second (moves with the machine's other load)."""
        return self.transactions / max(self.wall_s, 1e-9)

    @property
    def ratio(self) -> float:
        """Simulated transactions per bare SimPy event (same run)."""
        return self.simulated_tps / self.simpy_events_per_s

    @property
    def overhead(self) -> float:
        """Share of a simulated transaction's cost that is not the decision code (kernel, card, host)."""
        return 1.0 - self.simulated_tps / self.in_process_tps

    @property
    def day_of_2m_s(self) -> float:
        """CPU seconds for the issue's reference day: 10,000 terminals x 200 transactions."""
        return 2_000_000 / self.simulated_tps

    def as_dict(self) -> dict[str, Any]:
        return {
            "transactions": self.transactions, "terminals": self.terminals, "hours": self.hours,
            "cpu_s": round(self.cpu_s, 3), "wall_s": round(self.wall_s, 3),
            "simulated_tps": round(self.simulated_tps, 1), "simulated_tps_wall": round(self.simulated_tps_wall, 1),
            "simpy_events_per_s": round(self.simpy_events_per_s, 1), "in_process_tps": round(self.in_process_tps, 1),
            "ratio_to_simpy_event": round(self.ratio, 6), "overhead_share": round(self.overhead, 3),
            "goal_tps": GOAL_TPS, "reference_day_cpu_s": round(self.day_of_2m_s, 1),
        }


def bare_simpy_rate(events: int = 300_000) -> float:
    """Events per CPU-second of a bare SimPy loop (one process, ``env.timeout(1)``)."""
    env = simpy.Environment()

    def loop(env: simpy.Environment) -> Any:
        for _ in range(events):
            yield env.timeout(1)

    env.process(loop(env))
    start = time.process_time()
    env.run()
    return events / max(time.process_time() - start, 1e-9)


def in_process_rate(count: int = 600, seed: int = 1) -> float:
    """Transactions per CPU-second through kernel, card and host with no simulation around them."""
    from ..core.host import Host
    from ..emv.kernel import TerminalConfig, Transaction, run_transaction
    from .population import Population
    from .scenario import load_scenario

    rng = random.Random(seed)
    population = Population(load_scenario("default").cards, random.Random(seed))
    host = Host({"settlement": {"capture_authorizations": False}}, cards=population.cards)
    config = TerminalConfig.from_profile("countertop-ethernet", terminal_id="BENCH001")
    holders = [population.draw(rng) for _ in range(count)]
    for holder in holders:  # personalise outside the timed loop, as a long run amortises it
        if holder.card.card.emv is not None:
            holder.card.image  # noqa: B018
    when, stan = datetime(2026, 11, 27, 9, 0), 1
    start = time.process_time()
    for holder in holders:
        txn = Transaction(config, amount=rng.randint(300, 12000), currency=holder.card.card.currency_info, when=when,
                          unpredictable_number=rng.randbytes(4), stan=stan, rng=rng)
        result = run_transaction(txn, holder.card, host, present=["magstripe"] if holder.swipe_first else ())
        stan = result.stans[-1] % 999_999 + 1 if result.stans else stan
        when += timedelta(seconds=30)
    return count / max(time.process_time() - start, 1e-9)


def run(hours: float = 3.0, scale: float = 1.0, seed: int = 1) -> SimBench:
    """Measure the three rates (see the module docstring)."""
    from .scenario import load_scenario
    from .world import World

    scenario = load_scenario("default").model_copy(update={"duration_h": hours, "drain_h": 0.5})
    events = bare_simpy_rate()
    world = World(scenario, seed, estate_scale=scale)
    for holder in world.population.holders:  # personalise before the clock starts, as a long run amortises it
        if holder.card.card.emv is not None:
            holder.card.image  # noqa: B018
    start, wall = time.process_time(), time.perf_counter()
    world.run()
    cpu, wall = time.process_time() - start, time.perf_counter() - wall
    tps = world.metrics.transactions / max(cpu, 1e-9)
    ceiling = in_process_rate()
    return SimBench(world.metrics.transactions, cpu, wall, tps, max(events, bare_simpy_rate()), ceiling,
                    len(world.terminals), hours)
