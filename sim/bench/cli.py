"""``possim bench ...``: throughput of possim layers as ratios against a same-run baseline."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ..live.bench_host import DISTINCT_POOL

bench_app = typer.Typer(help="Benchmarks, each reported as a ratio against a baseline measured in the same run.")
console = Console()


@bench_app.command("codec")
def codec(
    iterations: int = typer.Option(3000, min=100, help="Messages per timed round."),
    rounds: int = typer.Option(7, min=1, help="Interleaved rounds; the best of each path counts."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    check: bool = typer.Option(False, help="Exit 1 when a ratio misses the goal."),
) -> None:
    """Build+encode and decode+parse of a chip 0200 with DE55, against bare pyiso8583."""
    from .codec import GOAL_RATIO, run

    result = run(iterations, rounds)
    if as_json:
        console.print_json(json.dumps(result.as_dict()))
    else:
        table = Table(title=f"possim bench codec ({rounds} rounds x {iterations} messages, best round)")
        table.add_column("path")
        table.add_column("messages/s", justify="right")
        for name, rate in result.rates.items():
            table.add_row(name, f"{rate:,.0f}")
        console.print(table)
        for label, ratio in (("build+encode", result.encode_ratio), ("decode+parse", result.decode_ratio)):
            mark = "[green]ok[/green]" if ratio >= GOAL_RATIO else "[red]below goal[/red]"
            console.print(f"{label}: possim / pyiso8583 = {ratio:.3f} (goal >= {GOAL_RATIO}) {mark}")
    if check and not result.ok:
        raise typer.Exit(1)


@bench_app.command("core")
def core(
    operations: int = typer.Option(300, min=20, help="Messages per timed round."),
    transactions: int = typer.Option(100, min=10, help="Whole chip transactions per timed round."),
    rounds: int = typer.Option(5, min=1, help="Interleaved rounds; the best of each path counts."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """CPU us per operation of the sans-IO core (host.handle, parse, a whole chip transaction) beside bare pyiso8583."""
    from .core import run as run_core

    result = run_core(operations, rounds, transactions)
    if as_json:
        console.print_json(json.dumps(result.as_dict()))
        return
    table = Table(title=f"possim bench core ({rounds} rounds, best round, CPU time)")
    table.add_column("operation")
    table.add_column("CPU us/op", justify="right")
    table.add_column("x baseline", justify="right")
    for name, us in result.us.items():
        table.add_row(name, f"{us:,.1f}", f"{result.ratio(name):.2f}")
    console.print(table)


@bench_app.command("host")
def host(
    connections: int = typer.Option(32, min=1, max=1000, help="Connections, one request in flight on each."),
    duration: float = typer.Option(5.0, min=0.5, help="Measured seconds per round and server."),
    warmup: float = typer.Option(1.0, min=0.0, help="Seconds driven before measuring."),
    rounds: int = typer.Option(2, min=1, help="Rounds taking each server in turn; the best of each counts."),
    journal: bool = typer.Option(True, "--journal/--no-journal", help="Hosts write their message journal."),
    state: bool = typer.Option(True, "--state/--no-state",
                               help="Also measure a host committing its durable replay log (fsync per commit group)."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    check: bool = typer.Option(False, help="Exit 1 when the ratio misses the goal or an answer was not 00."),
    dialect: Optional[str] = typer.Option(None, "--dialect", help="Built-in dialect name or a .json/.toml spec file."),
    framing: str = typer.Option("be2", "--framing", help="be2, le2 or ascii4, optionally +tpdu."),
    pool: int = typer.Option(DISTINCT_POOL, "--pool", min=1,
                             help="Distinct chip sales (ARQCs) the client cycles through; at the default none comes "
                                  "round while the host still remembers its cryptography, as with real terminals."),
) -> None:
    """Authorizations/s and p50/p99 of possim host beside a bare echo server, driven by the same client."""
    from ..iso8583.errors import WireError
    from ..live.bench_host import GOAL_RATIO, run

    try:
        result = run(connections, duration, warmup, rounds, journal, state,
                     progress=None if as_json else (lambda text: console.print(f"[dim]{text}[/dim]")),
                     dialect=dialect, framing=framing, pool=pool)
    except WireError as exc:
        raise typer.BadParameter(str(exc), param_hint="--dialect/--framing") from None
    if as_json:
        console.print_json(json.dumps(result.as_dict()))
    else:
        table = Table(title=f"possim bench host: {result.dialect}, {result.framing}, {connections} connections, "
                            f"{rounds} x {duration:g} s, {result.loop}, {pool:,} distinct sales, "
                            f"journal {'on' if journal else 'off'}; best round")
        for column in ("server", "answers/s", "p50 ms", "p99 ms", "max ms", "srv CPU/ans", "cli CPU/ans", "err", "DE39"):
            table.add_column(column, justify="left" if column in ("server", "DE39") else "right")
        rows = [("echo", result.echo), ("host", result.host)]
        if result.durable is not None:
            rows.append(("host + replay log", result.durable))
        for label, t in rows:
            codes = ", ".join(f"{k}:{v}" for k, v in sorted(t.codes.items())) if t.name != "echo" else "-"
            table.add_row(label, f"{t.rate:,.0f}", f"{t.p50_ms:.2f}", f"{t.p99_ms:.2f}", f"{t.max_ms:.1f}",
                          f"{t.server_cpu_us:.0f} us", f"{t.client_cpu_us:.0f} us", str(t.errors), codes)
        console.print(table)
        mark = "[green]ok[/green]" if result.ratio >= GOAL_RATIO else "[red]below goal[/red]"
        console.print(f"host / echo = {result.ratio:.3f} (goal >= {GOAL_RATIO}, full issuer logic, journal "
                      f"{'on' if journal else 'off'}) {mark}")
        if result.durable_ratio is not None:
            status = result.durable_status
            per_commit = status.get("events_stored", 0) / status["commits"] if status.get("commits") else 0.0
            console.print(f"host + replay log / echo = {result.durable_ratio:.3f} "
                          f"(each answer after its group's fsync; {per_commit:.1f} requests per commit)")
    if check and not result.ok:
        raise typer.Exit(1)


@bench_app.command("sim")
def sim(
    hours: float = typer.Option(3.0, min=0.1, max=48.0, help="Simulated trading hours of the default estate."),
    scale: float = typer.Option(1.0, min=0.01, max=100.0, help="Multiply the default estate's terminal counts."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    check: bool = typer.Option(False, help="Exit 1 when the simulated rate misses the goal."),
    memory_hours: str = typer.Option("2,8", "--memory-hours",
                                     help="Two run lengths (hours) for the memory figure, e.g. 2,8; 'off' to skip."),
) -> None:
    """Simulated end-to-end transactions per CPU-second at full fidelity, beside bare SimPy events per second;
    then peak traced memory at two run lengths of the same estate."""
    from ..des.bench import GOAL_MEMORY_RATIO, GOAL_TPS, memory, run as run_sim

    lengths: tuple[float, float] | None = None
    if memory_hours != "off":
        parts = memory_hours.split(",")
        try:
            lengths = (float(parts[0]), float(parts[1])) if len(parts) == 2 else None
        except ValueError:
            lengths = None
        if lengths is None or not 0.1 <= lengths[0] < lengths[1] <= 48:
            raise typer.BadParameter(f"{memory_hours!r}; allowed: two lengths in hours, shorter first, "
                                     "0.1 to 48 (e.g. 2,8), or 'off'", param_hint="--memory-hours")
    result = run_sim(hours, scale)
    mem = memory(lengths, scale) if lengths is not None else None
    if as_json:
        data = result.as_dict()
        if mem is not None:
            data["memory"] = mem.as_dict()
        console.print_json(json.dumps(data))
    else:
        table = Table(title=f"possim bench sim ({result.terminals} terminals, {hours:g} h simulated, CPU time)")
        table.add_column("path")
        table.add_column("per CPU-second", justify="right")
        table.add_row("simulated transactions (kernel + card + host + SimPy world)", f"{result.simulated_tps:,.0f}")
        table.add_row("in-process transactions (kernel + card + host, no simulation)", f"{result.in_process_tps:,.0f}")
        table.add_row("bare SimPy events (env.timeout loop)", f"{result.simpy_events_per_s:,.0f}")
        console.print(table)
        console.print(f"{result.transactions:,} transactions in {result.cpu_s:.2f} CPU-s, {result.wall_s:.2f} wall-s "
                      f"({result.simulated_tps_wall:,.0f} per wall-second on this machine's load); "
                      f"simulated / bare SimPy event = {result.ratio:.5f} "
                      f"(one transaction costs {1 / result.ratio:,.0f} bare events)")
        console.print(f"simulation overhead over the decision code: {100 * result.overhead:.0f}%; "
                      f"10,000 terminals x 200 transactions would take {result.day_of_2m_s / 60:,.1f} CPU-minutes")
        mark = "[green]ok[/green]" if result.simulated_tps >= GOAL_TPS else "[red]below goal[/red]"
        console.print(f"goal >= {GOAL_TPS:,} simulated transactions/s: {result.simulated_tps:,.0f} {mark}")
        if mem is not None:
            table = Table(title=f"memory: peak traced (tracemalloc), {mem.terminals} terminals, a fresh process per run")
            for column in ("run", "transactions", "peak MB", "peak MB per simulated hour", "end MB",
                           "of which capped caches MB"):
                table.add_column(column, justify="right")
            for i in (0, 1):
                table.add_row(f"{mem.hours[i]:g} h", f"{mem.transactions[i]:,}", f"{mem.peak_bytes[i] / 1e6:.2f}",
                              f"{mem.per_hour[i] / 1e6:.2f}", f"{mem.end_bytes[i] / 1e6:.2f}",
                              f"{mem.capped_bytes[i] / 1e6:.2f}")
            console.print(table)
            mark = "[green]ok[/green]" if mem.ratio <= GOAL_MEMORY_RATIO else "[red]above goal[/red]"
            console.print(f"longer / shorter peak = {mem.ratio:.2f} (goal <= {GOAL_MEMORY_RATIO}) {mark}; "
                          f"{mem.growth_per_transaction:,.0f} bytes per extra transaction; without the capped "
                          f"caches, end memory longer / shorter = {mem.uncapped_ratio:.2f}")
    if check and result.simulated_tps < GOAL_TPS:
        raise typer.Exit(1)


@bench_app.command("load")
def load(
    connections: int = typer.Option(8, min=1, max=256, help="TCP connections (Locust users)."),
    in_flight: int = typer.Option(4, "--in-flight", min=1, max=64, help="Requests in flight per connection."),
    duration: float = typer.Option(8.0, min=1.0, help="Measured seconds per client and round."),
    rounds: int = typer.Option(1, min=1, help="Interleaved rounds; the best of each client counts."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    check: bool = typer.Option(False, help="Exit 1 when one Locust process is below the goal share of the bare loop."),
) -> None:
    """One Locust process against the host and the echo server, beside a bare gevent loop."""
    from .load import GOAL_RATIO, run

    progress = None if as_json else (lambda text: console.print(f"[dim]{text}[/dim]"))
    result = run(connections, in_flight, duration, rounds, progress)
    if as_json:
        console.print_json(json.dumps(result.as_dict()))
    else:
        best = f", best of {rounds} rounds" if rounds > 1 else ""
        table = Table(title=f"possim bench load ({connections} connections x {in_flight} in flight, {duration:g} s each{best})")
        for col in ("client -> target", "requests/s", "client CPU us/request", "failures", "p50 ms", "p99 ms"):
            table.add_column(col, justify="left" if col.startswith("client ->") else "right")
        labels = {"bare": "bare gevent loop -> echo", "bare batched": "bare loop, the kit's writes -> echo",
                  "bare+codec": "bare loop, the kit's writes + ISO 8583 -> echo",
                  "locust echo": "Locust, 1 process -> echo", "locust host": "Locust, 1 process -> possim host"}
        for name, m in result.measures.items():
            table.add_row(labels[name], f"{m.rate:,.0f}", f"{m.cpu_us:,.0f}", f"{m.failures:,}",
                          "-" if m.p50_ms is None else f"{m.p50_ms:g}", "-" if m.p99_ms is None else f"{m.p99_ms:g}")
        console.print(table)
        ratio = result.ratio("locust echo")
        mark = "[green]ok[/green]" if result.ok else "[red]below goal[/red]"
        console.print(f"Locust / bare gevent loop on the echo server = {ratio:.3f} (goal >= {GOAL_RATIO}) {mark}")
        console.print(f"Locust / bare loop with the kit's writes and ISO 8583 work = "
                      f"{result.ratio('locust echo', 'bare+codec'):.3f}; bare+codec / bare = {result.ratio('bare+codec'):.3f}")
        console.print(f"by CPU per request (a core per client): Locust / bare = {result.cpu_ratio('locust echo'):.3f}, "
                      f"Locust / bare+codec = {result.cpu_ratio('locust echo', 'bare+codec'):.3f}")
        split = result.as_dict().get("cpu_us_split", {})
        if split:
            console.print("Locust's CPU per request: " + ", ".join(f"{k} {v:.1f} us" for k, v in split.items()))
    if check and not result.ok:
        raise typer.Exit(1)
