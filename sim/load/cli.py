"""``possim load SHAPE``: a headless Locust run of the ISO 8583 users, with its summary table.

Starts ``possim host`` on an ephemeral loopback port with the load card set (see
:mod:`sim.live.traffic`) unless ``--target HOST:PORT`` names a running host, runs the
named shape as a Locust subprocess, stops the host by its PID, and prints requests,
failures, throughput and latency per transaction kind, then the DE39 answers against
the expected ones. Exit 1 when a request failed (wrong DE39, timeout, connection).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .run import SHAPES, LoadPlan, LoadResult, loadtests_dir, parse_target, run

console = Console()
err = Console(stderr=True)


def _bad(param: str, message: str) -> typer.BadParameter:
    return typer.BadParameter(message, param_hint=param)


LOAD_HOST_CONFIG = """\
# possim load's own host: load users never send a 0500, and reverse or advise only
# what they sent seconds before.
[issuer]
retain_s = 120
[acquirer]
retain_s = 120
[settlement]
retain_s = 120
[prune]
every_s = 10
unsettled = true
"""
"""The ``--config`` of the host ``possim load`` starts (:func:`start_load_host`)."""


def start_load_host(workdir: Path, framing: str = "be2", dialect: Optional[str] = None):
    """``possim host`` on 127.0.0.1, ephemeral port, with the load card set; a ServerProcess.

    Its core keeps :data:`LOAD_HOST_CONFIG`: load users never settle, so the host folds
    their open batches into exact totals after ``retain_s`` (``[prune] unsettled =
    true``), and they reverse or advise only what they sent seconds before, so two
    minutes of originals is plenty. Its memory stays flat however long the run: a few
    hundred megabytes at 5,000 requests/s (an hour of originals, the live default, would
    be gigabytes).
    """
    from ..core.cards import default_path
    from ..live import process
    from ..live.traffic import load_card_set_toml

    workdir.mkdir(parents=True, exist_ok=True)
    cards = workdir / "load_cards.toml"
    cards.write_text(load_card_set_toml(default_path().read_text(encoding="utf-8")), encoding="utf-8")
    config = workdir / "load_host.toml"
    config.write_text(LOAD_HOST_CONFIG, encoding="utf-8")
    args = ["host", "--cards", str(cards), "--framing", framing, "--config", str(config)]
    if dialect:
        args += ["--dialect", dialect]
    return process.start(args, log_dir=workdir)


def summary_table(result: LoadResult) -> Table:
    """Requests, failures, req/s and latency percentiles per request name."""
    plan = result.plan
    table = Table(title=f"possim load {plan.shape}: {plan.target[0]}:{plan.target[1]}, {plan.users} users, "
                        f"{plan.duration:g} s" + (f", {plan.processes} worker processes" if plan.processes else ""))
    table.caption = "latency percentiles and max in ms"
    for col, justify in (("MTI", "left"), ("kind", "left"), ("requests", "right"), ("failures", "right"), ("req/s", "right"),
                         ("p50", "right"), ("p95", "right"), ("p99", "right"), ("max", "right")):
        table.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in result.stats:
        style = "bold" if row.name == "Aggregated" else None
        table.add_row(row.type, row.name, f"{row.requests:,}", f"{row.failures:,}", f"{row.rps:,.0f}", f"{row.median_ms:g}",
                      f"{row.p95_ms:g}", f"{row.p99_ms:g}", f"{row.max_ms:,.0f}", style=style)
    return table


def codes_table(result: LoadResult) -> Table:
    """DE39 answers per kind against the expected codes."""
    from ..iso8583.codes import describe_code

    table = Table(title="DE39 answered vs expected")
    for col in ("kind", "expected", "answered", "count", "meaning"):
        table.add_column(col, justify="right" if col == "count" else "left")
    for (kind, expected, answered), n in sorted(result.codes.items()):
        style = None if expected == answered else "red"
        meaning = describe_code(answered) if answered != "-" else "no answer (timeout or connection failure)"
        table.add_row(kind, expected, answered, f"{n:,}", meaning, style=style)
    return table


def load_command(
    shape: Optional[str] = typer.Argument(None, help=f"Load shape: {', '.join(SHAPES)}."),
    target: Optional[str] = typer.Option(None, "--target", help="HOST:PORT of a running host (default: start one on loopback)."),
    users: int = typer.Option(20, "--users", min=1, help="Peak users (= TCP connections) of the shape."),
    duration: float = typer.Option(30.0, "--duration", min=1.0, help="Seconds the shape lasts."),
    rate: float = typer.Option(200.0, "--rate", min=0.1, help="Requests/s in total (arrival shape: the open model)."),
    in_flight: int = typer.Option(4, "--in-flight", min=1, max=256, help="Requests in flight per connection (closed model)."),
    processes: int = typer.Option(0, "--processes", min=0, max=64, help="Locust worker processes (0: one process)."),
    seed: int = typer.Option(0, "--seed", help="Traffic seed."),
    pool: int = typer.Option(64, "--pool", min=0, help="Requests built in full per kind and process (its users share them), then restamped (0: a fresh ARQC for each)."),
    timeout: float = typer.Option(5.0, "--timeout", min=0.01, help="Seconds to wait for each answer."),
    framing: str = typer.Option("be2", "--framing", help="be2, le2 or ascii4, optionally +tpdu."),
    dialect: Optional[str] = typer.Option(None, "--dialect", help="Dialect name or spec file."),
    out: Path = typer.Option(Path("out/load"), "--out", help="Where the CSV, HTML report and DE39 counts go."),
    verbose: bool = typer.Option(False, "--verbose", help="Show Locust's own output."),
    write_cards: Optional[Path] = typer.Option(
        None, "--write-cards", help="Write the load card set (TOML) for your own `possim host --cards` and exit."),
) -> None:
    """Run a load shape headless against a host and print the summary table."""
    if write_cards is not None:
        from ..core.cards import default_path, load_cards
        from ..live.traffic import load_card_set_toml

        write_cards.parent.mkdir(parents=True, exist_ok=True)
        write_cards.write_text(load_card_set_toml(default_path().read_text(encoding="utf-8")), encoding="utf-8")
        load_cards(write_cards)  # what a host will load: validated
        console.print(f"wrote the load card set to {write_cards}: possim host --cards {write_cards}")
        return
    if shape is None or shape not in SHAPES:
        raise _bad("SHAPE", f"{shape!r} is not a shape; allowed: {', '.join(SHAPES)}" if shape else f"give a shape: {', '.join(SHAPES)}")
    if not (loadtests_dir() / SHAPES[shape]).exists():
        raise _bad("SHAPE", f"the load kit is missing: {loadtests_dir() / SHAPES[shape]} not found (run from a possim checkout)")
    from ..iso8583.errors import FramingError
    from ..iso8583.framing import parse_framing

    try:
        parse_framing(framing)
    except FramingError as exc:
        raise _bad("--framing", str(exc)) from None
    if dialect is not None:
        from ..iso8583.dialect import resolve_dialect
        from ..iso8583.errors import WireError

        try:
            resolve_dialect(dialect)
        except (WireError, OSError, ValueError) as exc:
            raise _bad("--dialect", str(exc)) from None
    address: tuple[str, int] | None = None
    if target is not None:
        try:
            address = parse_target(target)
        except ValueError as exc:
            raise _bad("--target", str(exc)) from None

    host = None
    tmp = tempfile.TemporaryDirectory(prefix="possim-load-")
    try:
        if address is None:
            from ..live.process import ProcessError

            try:
                host = start_load_host(Path(tmp.name), framing, dialect)
            except ProcessError as exc:
                err.print(f"[red]possim load: the host did not start: {exc}[/red]")
                raise typer.Exit(2) from None
            address = ("127.0.0.1", host.port)
            console.print(f"host started: pid {host.pid}, 127.0.0.1:{host.port} (load card set)")
        plan = LoadPlan(
            shape=shape, target=address, out=out, users=users, duration=duration, rate=rate, in_flight=in_flight,
            processes=processes, seed=seed, pool=pool, timeout=timeout, framing=framing, dialect=dialect,
        )
        result = run(plan, echo=console.print if verbose else None)
    finally:
        if host is not None:
            host.stop()
        tmp.cleanup()
    if not result.stats:
        err.print(f"[red]possim load: locust produced no statistics (exit {result.returncode}); its output:[/red]")
        err.print(result.output[-3000:], markup=False, highlight=False)
        raise typer.Exit(2)
    console.print(summary_table(result))
    console.print(codes_table(result))
    total = result.total
    files = [f"{plan.csv_prefix}_stats.csv", str(plan.summary_path)] + ([str(plan.html_path)] if plan.html else [])
    console.print("written: " + ", ".join(files))
    if any(answered in ("65", "51") and expected == "00" for (_, expected, answered) in result.unexpected):
        console.print("[yellow]approvals answered 65/51: the host's cards have no velocity or balance headroom; "
                      "run it with the load card set (possim load --write-cards FILE; possim host --cards FILE)[/yellow]")
    if total is not None and total.failures:
        console.print(f"[red]{total.failures:,} of {total.requests:,} requests failed[/red]")
        for error in result.errors[:10]:
            console.print(f"  {error['type']} {error['name']}: {error['error']} x{error['occurrences']:,}", markup=False)
        raise typer.Exit(1)
