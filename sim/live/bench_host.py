"""``possim bench host``: the live host against a bare echo server, same client, same run.

What it measures
----------------
Authorizations per second and latency (p50, p99, from an HdrHistogram) of a
``possim host`` process doing everything it does in service -- decode, the full
issuer logic (ARQC verification, ARPC, limits, ledger) and the message journal --
driven at a fixed concurrency (``connections`` connections, one request in flight on
each, closed loop) by :class:`~sim.live.client.Client` running in *this* process.
That is the goal's configuration ("full issuer logic, journal on"). In the same
rounds (unless ``state`` is off) a second host also keeps the durable replay log
(``--state``: SQLite, group commit, an fsync before each group's answers leave); its
figure is reported beside the first, as what durability costs on this machine's disk.

The baseline is a bare asyncio server in its own process that only echoes framed
messages back (:func:`sim.live.client.echo_server`): the cost of the sockets, the
framing, the event loop and of the client itself. The same client drives it with the
same messages in the same run, and the report gives host / echo as a ratio. The goal
is a ratio of at least :data:`GOAL_RATIO`.

Requests are chip sales with valid ARQCs on the funded cards of a load card set
(:func:`sim.live.sales.write_load_cards`: velocity and balances lifted, so nothing
declines after a while). ARQCs are made once for a pool of ``pool`` distinct sales
before timing; each request then takes a pool entry with its own DE41 and DE11 (the
ARQC does not cover them), so every request is a new transaction to the host, never a
duplicate. The connections start the pool at evenly spaced entries, so the host meets
an entry again only after ``pool`` other requests. At the default
(:data:`DISTINCT_POOL`) that is past every cache of the host's per-transaction work
(the cryptogram's MAC, the session key, the ARPC: 256 entries each; DE55 decodings:
1,024): the host verifies each ARQC, derives each key and decodes each DE55 as it must
for terminals, which never send a cryptogram twice. A small pool (``--pool 64``)
measures a host whose caches answer that work, as for a load generator that reuses a
pool of cryptograms (the load kit's ``--pool``).

``dialect`` and ``framing`` choose the wire (any built-in dialect or spec file, any
framing label): the host serves it, the client speaks it (signing requests and
checking answers with the TEST ONLY MAC key on a dialect that MACs), and the echo
server frames the same way.

The servers and this client share the machine's cores: on a 2-core machine the
client's work is part of every figure. Rounds take echo, host and durable host in
turn; the best round of each counts.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

GOAL_RATIO = 0.5
DISTINCT_POOL = 4096
"""Distinct sales the client cycles through by default: more than any per-transaction cache of the host holds."""
CARD_LABELS = ("healthy", "mc-healthy", "kwd-healthy", "jpy-healthy")


@dataclass
class TargetResult:
    """One server's figures for its best round."""

    name: str
    completed: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    client_cpu_us: float = 0.0
    """CPU the driving client spent per answer (it shares the machine with the server)."""
    server_cpu_us: float = 0.0
    """CPU the server process spent per answer (Linux ``/proc``; 0 when unknown)."""

    @property
    def rate(self) -> float:
        """Answers per second in the measured window."""
        return self.completed / self.seconds if self.seconds else 0.0


@dataclass
class BenchResult:
    """The run: settings, both targets, the ratio."""

    connections: int
    duration: float
    rounds: int
    loop: str
    journal: bool
    state: bool
    echo: TargetResult
    host: TargetResult
    host_status: dict[str, Any] = field(default_factory=dict)
    dialect: str = "iso8583-1987-ascii"
    framing: str = "be2"
    durable: TargetResult | None = None
    """The host with its replay log on as well (``state``), or ``None``."""
    durable_status: dict[str, Any] = field(default_factory=dict)
    pool: int = DISTINCT_POOL
    """Distinct sales (ARQCs) the client cycled through."""

    @property
    def ratio(self) -> float:
        """Host authorizations/s over echo answers/s: the goal's configuration (journal as asked, no replay log)."""
        return self.host.rate / self.echo.rate if self.echo.rate else 0.0

    @property
    def durable_ratio(self) -> float | None:
        """The host with the replay log on, over echo (``None`` when not measured)."""
        if self.durable is None or not self.echo.rate:
            return None
        return self.durable.rate / self.echo.rate

    @property
    def ok(self) -> bool:
        """The ratio meets the goal and every host answer was an approval."""
        hosts = [self.host] + ([self.durable] if self.durable is not None else [])
        return self.ratio >= GOAL_RATIO and all(t.errors == 0 and set(t.codes) <= {"00"} for t in hosts)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        out = asdict(self)
        out["echo"]["rate"] = self.echo.rate
        out["host"]["rate"] = self.host.rate
        if self.durable is not None:
            out["durable"]["rate"] = self.durable.rate
        out["ratio"] = self.ratio
        out["durable_ratio"] = self.durable_ratio
        out["goal_ratio"] = GOAL_RATIO
        out["ok"] = self.ok
        return out


def request_pool(size: int = 64) -> list[dict[str, str]]:
    """``size`` distinct chip sales (valid ARQCs) as field dicts, on the load card set's funded cards."""
    from ..core.cards import load_cards
    from .host_server import utc_now
    from .sales import chip_sale

    cards = load_cards()
    now = utc_now()
    pool = []
    for i in range(size):
        sale = chip_sale(CARD_LABELS[i % len(CARD_LABELS)], 100 + i, stan=i + 1, when=now, card_set=cards)
        pool.append({k: v for k, v in sale.fields.items() if k not in ("p", "1")})
    return pool


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``), or 0.0 when unknown."""
    import os

    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def first_entry(connection: int, size: int, connections: int) -> int:
    """The pool entry connection number ``connection`` starts at: evenly spaced, so that with
    every connection stepping through the pool at the same pace an entry comes round again
    only after about ``size`` requests (consecutive starts would send it ``connections``
    times in a row).

    >>> [first_entry(n, 4096, 4) for n in range(4)]
    [0, 1024, 2048, 3072]
    >>> [first_entry(n, 2, 4) for n in range(4)]
    [0, 0, 1, 1]
    """
    return connection * size // connections


async def _drive(port: int, pool: list[dict[str, str]], connections: int, warmup: float, duration: float,
                 tag: str, server_pid: int | None = None, dialect: Any = None,
                 framing: Any = None) -> tuple[TargetResult, float]:
    from hdrh.histogram import HdrHistogram

    from .client import Client, ClientError

    hist = HdrHistogram(1, 60_000_000, 3)  # microseconds
    codes: Counter[str] = Counter()
    errors = 0
    completed = 0
    measuring = False
    stop = False
    from ..iso8583.dialect import DEFAULT

    clients = [await Client.connect("127.0.0.1", port, timeout=30, dialect=dialect or DEFAULT, framing=framing)
               for _ in range(connections)]

    async def loop(n: int, client: Client) -> None:
        nonlocal completed, errors
        terminal = f"{tag}{n:0{8 - len(tag)}d}"
        stan = 0
        i = first_entry(n, len(pool), connections)
        request = client.request_fields
        perf = time.perf_counter
        while not stop:
            stan += 1
            fields = dict(pool[i % len(pool)])
            i += 1
            fields["41"] = terminal
            fields["11"] = f"{stan:06d}"
            t0 = perf()
            try:
                answer = await request(fields)
            except ClientError:
                errors += 1
                continue
            if measuring:
                hist.record_value(max(1, int((perf() - t0) * 1_000_000)))
                completed += 1
                codes[answer.get("39", "--")] += 1

    tasks = [asyncio.ensure_future(loop(n, c)) for n, c in enumerate(clients)]
    await asyncio.sleep(warmup)
    measuring = True
    server_cpu = process_cpu(server_pid) if server_pid else 0.0
    start_cpu = time.process_time()
    t0 = time.perf_counter()
    await asyncio.sleep(duration)
    measuring = False
    seconds = time.perf_counter() - t0
    client_cpu = time.process_time() - start_cpu
    server_cpu = (process_cpu(server_pid) - server_cpu) if server_pid else 0.0
    stop = True
    failures = [r for r in await asyncio.gather(*tasks, return_exceptions=True) if isinstance(r, BaseException)]
    if failures:
        raise failures[0]
    for c in clients:
        await c.close()
    result = TargetResult(
        "", completed, seconds,
        hist.get_value_at_percentile(50) / 1000, hist.get_value_at_percentile(99) / 1000,
        hist.get_max_value() / 1000, errors, dict(codes), client_cpu / completed * 1e6 if completed else 0.0,
        server_cpu / completed * 1e6 if completed else 0.0,
    )
    return result, client_cpu


def run(
    connections: int = 32,
    duration: float = 5.0,
    warmup: float = 1.0,
    rounds: int = 2,
    journal: bool = True,
    state: bool = True,
    work_dir: Path | None = None,
    progress: Any = None,
    dialect: str | None = None,
    framing: str = "be2",
    pool: int = DISTINCT_POOL,
) -> BenchResult:
    """Start the servers as processes, drive each ``rounds`` times in turn, stop them by PID.

    The host runs with its journal (``journal``) and without the replay log: the
    goal's configuration. With ``state``, a second host with the replay log on too is
    measured in the same rounds (:attr:`BenchResult.durable`): every answer then waits
    for its commit group's fsync, so that figure also depends on the disk.

    ``dialect`` (a built-in name or spec file; default the default dialect) and
    ``framing`` (a label such as ``be2`` or ``ascii4+tpdu``) are checked here, before
    any process starts: :class:`~sim.iso8583.errors.WireError` names what is allowed.
    ``pool``: distinct sales the client cycles through (see the module notes).
    """
    from .admin import admin_call_sync
    from .loop import loop_name
    from .loop import run as run_loop
    from .process import start, start_command
    from .sales import write_load_cards

    from ..iso8583.dialect import resolve_dialect
    from ..iso8583.framing import parse_framing

    wire_dialect = resolve_dialect(dialect)
    wire_framing = parse_framing(framing)
    if work_dir is None:
        with tempfile.TemporaryDirectory(prefix="possim-bench-host-") as tmp:
            return run(connections, duration, warmup, rounds, journal, state, Path(tmp), progress, dialect, framing,
                       pool)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    args = ["host", "--cards", str(write_load_cards(work / "cards.toml")), "--max-connections", str(connections + 16),
            "--framing", framing]
    if dialect is not None:
        args += ["--dialect", dialect]
    if pool < 1:
        raise ValueError(f"pool {pool} must be >= 1 (distinct sales)")
    sales = request_pool(pool)
    echo = start_command([sys.executable, "-m", "sim.live.bench_host", "--ready-file", str(work / "echo.ready.json"),
                          "--framing", framing], work / "echo.ready.json")
    servers = {"echo": echo}
    try:
        servers["host"] = start(args + (["--journal", str(work / "journal.jsonl")] if journal else []), log_dir=work)
        if state:
            durable_args = args + (["--journal", str(work / "durable-journal.jsonl")] if journal else [])
            servers["durable"] = start(durable_args + ["--state", str(work / "state")], log_dir=work)
    except BaseException:
        for proc in servers.values():
            proc.stop()
        raise
    best: dict[str, TargetResult] = {}
    statuses: dict[str, dict[str, Any]] = {}
    try:
        for r in range(rounds):
            for name, proc in servers.items():
                if progress:
                    progress(f"round {r + 1}/{rounds}: {name}")
                result, _cpu = run_loop(_drive(proc.port, sales, connections, warmup, duration, f"B{r:01d}{name[0].upper()}",
                                                 proc.pid, wire_dialect, wire_framing))
                result.name = name
                if name not in best or result.rate > best[name].rate:
                    best[name] = result
        for name, proc in servers.items():
            if name != "echo":
                statuses[name] = admin_call_sync(proc.admin_port, {"cmd": "status"})
    finally:
        for proc in servers.values():
            proc.stop()
    return BenchResult(connections, duration, rounds, loop_name(), journal, state, best["echo"], best["host"],
                       statuses["host"], wire_dialect.name, wire_framing.describe(), best.get("durable"),
                       statuses.get("durable", {}), pool)


def _echo_main(argv: list[str]) -> None:
    """``python -m sim.live.bench_host --ready-file F [--port N] [--framing L]``: the bare echo server as a process."""
    import argparse
    import signal

    from .client import echo_server
    from .loop import run as run_loop
    from .process import write_ready_file

    parser = argparse.ArgumentParser(description="Bare asyncio echo server of framed messages (bench baseline).")
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--framing", default="be2")
    ns = parser.parse_args(argv)
    from ..iso8583.framing import parse_framing

    framing = parse_framing(ns.framing)

    async def main() -> None:
        server = await echo_server(port=ns.port, framing=framing)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        write_ready_file(ns.ready_file, kind="echo", port=server.sockets[0].getsockname()[1])
        await stop.wait()
        server.close()

    run_loop(main())


if __name__ == "__main__":
    _echo_main(sys.argv[1:])
