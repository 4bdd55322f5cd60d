"""``possim bench load``: is the Locust load kit ever the bottleneck?

One run, five measurements, each its own client process driving its own target at
the same concurrency (``connections`` TCP connections, ``in_flight`` requests in flight
on each, closed loop), one after the other:

==================  ===============================  =========================================
name                client                           target
==================  ===============================  =========================================
``bare``            bare gevent loop                 the bare asyncio echo server of
                    (:mod:`sim.bench.load_bare`):    ``possim bench host``
                    pre-encoded frames, each lane
                    writing its own and waiting for
                    its answer, answers taken by
                    length only
``bare batched``    the same frames, connections     the echo server
                    run as the load kit's: the
                    reader queues each answered
                    lane's next frame, one write
                    per ``recv``
``bare+codec``      ``bare batched`` doing the load  the echo server
                    kit's ISO 8583 work: the next
                    request of the traffic stream,
                    its bytes spliced by
                    :mod:`sim.load.wire`, the
                    answer decoded as pyiso8583
                    does (:mod:`sim.load.answers`)
                    and matched by key and MTI
``locust echo``     one Locust process (no           the echo server (``--echo-server``)
                    workers), ``RetailUser``
``locust host``     the same                         ``possim host`` with the load card set
==================  ===============================  =========================================

The goal (:data:`GOAL_RATIO`): one Locust process reaches at least 80% of the bare
loop's rate on the echo server -- the simplest client, ``bare``. The other two loops
say where a Locust process's time goes, and the JSON output splits its client CPU per
request that way (``cpu_us_split``): ``bare batched`` is the socket work the Locust
users pay (a request costs no write and no greenlet switch of its own, so it is far
cheaper than ``bare``'s), ``bare+codec`` minus ``bare batched`` is their ISO 8583 work
(the traffic stream, splicing, decoding, matching), and ``locust echo`` minus
``bare+codec`` is Locust's own cost (mostly firing the request event into Locust's
statistics; also the users and the kit's answer timeouts). Every client also
reports its CPU seconds in the measured window, so the CPU cost per request is
comparable even when other work shares the machine (rates are not: on a 2-core
machine the echo server, the client and anything else running share the cores); the
JSON gives the ratios both ways (``ratios``: rates, ``ratios_by_cpu``: CPU per
request).

Every client is measured in its steady state, after a one-second warm-up
(:data:`WARMUP`): the bare loops' ``--warmup``, Locust's ``--measure-after`` (counted
from the end of spawning, its requests from its own statistics). With ``rounds`` above
one the five clients run in turn that many times and each client's best round (its
highest rate) counts, as in the other benchmarks: on a shared machine one client's
round can lose a fifth of its rate to the neighbours, and interleaving spreads such
spells over all of them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

GOAL_RATIO = 0.8

WARMUP = 1.0
"""Seconds every client runs before its measured window (the bare loops' ``--warmup``,
Locust's ``--measure-after``): steady state, answer layouts learnt."""


@dataclass
class Measure:
    """One client against one target."""

    name: str
    requests: int
    seconds: float
    cpu_seconds: float
    failures: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None

    @property
    def rate(self) -> float:
        """Requests answered per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_us(self) -> float:
        """Client CPU microseconds per request."""
        return self.cpu_seconds / self.requests * 1e6 if self.requests else 0.0


@dataclass
class LoadBench:
    """The run's settings and measures; ratios against ``bare``."""

    connections: int
    in_flight: int
    duration: float
    measures: dict[str, Measure] = field(default_factory=dict)
    rounds: int = 1

    def keep_best(self, measure: Measure) -> None:
        """Keep ``measure`` when it is its client's first, or faster than its best so far."""
        best = self.measures.get(measure.name)
        if best is None or measure.rate > best.rate:
            self.measures[measure.name] = measure

    def ratio(self, name: str, baseline: str = "bare") -> float:
        """``name``'s rate over ``baseline``'s."""
        base = self.measures[baseline].rate
        return self.measures[name].rate / base if base else 0.0

    def cpu_ratio(self, name: str, baseline: str = "bare") -> float:
        """``baseline``'s CPU per request over ``name``'s: the rate ratio of the two clients
        each with a core of its own (what the rates show only on an idle machine)."""
        cost = self.measures[name].cpu_us
        return self.measures[baseline].cpu_us / cost if cost else 0.0

    @property
    def ok(self) -> bool:
        """One Locust process reaches the goal share of the bare loop on the echo server."""
        return self.ratio("locust echo") >= GOAL_RATIO

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"connections": self.connections, "in_flight": self.in_flight, "duration": self.duration,
                               "rounds": self.rounds}
        out["measures"] = {k: {**asdict(m), "rate": m.rate, "cpu_us_per_request": m.cpu_us} for k, m in self.measures.items()}
        pairs = [("locust echo", "bare"), ("locust echo", "bare+codec"), ("bare+codec", "bare"),
                 ("locust echo", "bare batched"), ("bare+codec", "bare batched")]
        pairs = [(a, b) for a, b in pairs if a in self.measures and b in self.measures]
        out["ratios"] = {f"{a} / {b}": self.ratio(a, b) for a, b in pairs}
        out["ratios_by_cpu"] = {f"{a} / {b}": self.cpu_ratio(a, b) for a, b in pairs}
        cpu = {k: m.cpu_us for k, m in self.measures.items()}
        if {"bare batched", "bare+codec", "locust echo"} <= set(cpu):
            out["cpu_us_split"] = {
                "sockets, the kit's way (bare batched)": cpu["bare batched"],
                "ISO 8583 work (bare+codec - bare batched)": cpu["bare+codec"] - cpu["bare batched"],
                "Locust (locust echo - bare+codec)": cpu["locust echo"] - cpu["bare+codec"],
            }
        out["goal"] = GOAL_RATIO
        out["ok"] = self.ok
        return out


_BARE_MODES = {"bare": [], "bare batched": ["--batched"], "bare+codec": ["--codec"]}
"""The bare loops by name, and their :mod:`sim.bench.load_bare` options."""


def _bare(port: int, connections: int, in_flight: int, duration: float, name: str) -> Measure:
    argv = [sys.executable, "-W", "ignore", "-m", "sim.bench.load_bare", "--port", str(port), "--connections", str(connections),
            "--in-flight", str(in_flight), "--duration", f"{duration:g}", "--warmup", f"{WARMUP:g}", *_BARE_MODES[name]]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    if done.returncode != 0:
        raise RuntimeError(f"{name} loop failed (exit {done.returncode}): {done.stderr[-2000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return Measure(name, figures["completed"], figures["seconds"], figures["cpu_seconds"])


def _locust(name: str, port: int, connections: int, in_flight: int, duration: float, out: Path, echo: bool) -> Measure:
    from ..load.run import LoadPlan, run

    plan = LoadPlan(
        shape="mix", target=("127.0.0.1", port), out=out / name.replace(" ", "_"), users=connections, in_flight=in_flight,
        duration=duration + WARMUP + 1.0, spawn_rate=10_000, echo_server=echo, html=False, measure_after=WARMUP,
        extra=["--reset-stats", "RetailUser"],
    )
    result = run(plan)
    total = result.total
    if total is None or "wall_seconds" not in result.process or "requests" not in result.process:
        raise RuntimeError(f"locust run against {name} gave no figures (exit {result.returncode}): {result.output[-2000:]}")
    process = result.process
    return Measure(name, int(process["requests"]), process["wall_seconds"], process["cpu_seconds"], total.failures,
                   total.median_ms, total.p99_ms)


def run(connections: int = 8, in_flight: int = 4, duration: float = 8.0, rounds: int = 1,
        progress: Callable[[str], None] | None = None) -> LoadBench:
    """Start the echo server and a host, measure the five clients ``rounds`` times in turn
    (each one's best round counts), stop both servers by PID."""
    from ..live.process import start_command
    from ..load.cli import start_load_host

    if rounds < 1:
        raise ValueError(f"rounds {rounds} must be >= 1")
    bench = LoadBench(connections, in_flight, duration, rounds=rounds)
    with tempfile.TemporaryDirectory(prefix="possim-bench-load-") as tmp:
        work = Path(tmp)
        ready = work / "echo.ready.json"
        echo = start_command([sys.executable, "-m", "sim.live.bench_host", "--ready-file", str(ready)], ready)
        host = None
        try:
            host = start_load_host(work / "host")
            for r in range(rounds):
                for name in (*_BARE_MODES, "locust echo", "locust host"):
                    if progress is not None:
                        progress(f"round {r + 1}/{rounds}: {name}")
                    if name in _BARE_MODES:
                        bench.keep_best(_bare(echo.port, connections, in_flight, duration, name))
                    elif name == "locust echo":
                        bench.keep_best(_locust(name, echo.port, connections, in_flight, duration, work, True))
                    else:
                        bench.keep_best(_locust(name, host.port, connections, in_flight, duration, work, False))
        finally:
            echo.stop()
            if host is not None:
                host.stop()
    return bench
