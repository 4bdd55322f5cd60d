"""``possim simulate``: run a scenario, show a progress bar and a summary table, write the report and plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .scenario import ScenarioError, check_references, list_scenarios, load_scenario

console = Console()

_STEPS = 200
"""Progress bar updates per run (slices of simulated time; they do not change the result)."""


def _bad(param: str, message: str) -> typer.BadParameter:
    return typer.BadParameter(message, param_hint=param)


def summary_table(report: dict[str, Any], title: str) -> Table:
    """The rich summary of one report: outcomes, store-and-forward, reversals, latency, verdict."""
    table = Table(title=title, show_header=True)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("detail")
    total = report["transactions"] or 1
    table.add_row("transactions", f"{report['transactions']:,}", f"seed {report['seed']}")
    for code, count in report["outcomes"].items():
        table.add_row(f"  outcome {code}", f"{count:,}", f"{100 * count / total:.2f}%")
    off, rev, lat, rec = report["offline"], report["reversals"], report["latency_ms"], report["reconciliation"]
    table.add_row("offline approvals", f"{off['approved']:,}",
                  f"forwarded {off['forwarded']:,}, pending {off['pending']:,}, repeats {off['repeats']:,}")
    table.add_row("reversals", f"{rev['sent']:,}",
                  f"acknowledged {rev['acknowledged']:,}, pending {rev['pending']:,}, repeats {rev['repeats']:,}")
    table.add_row("fallbacks", f"{report['fallbacks']:,}", "chip failed: stripe (80x) or keyed (79x)")
    table.add_row("stand-in approvals", f"{report['stand_in']:,}", "approved by the scheme for a down issuer")
    unprinted = {k.removeprefix("not printed: "): n for k, n in report["receipts"].items() if k != "printed"}
    table.add_row("link failovers", f"{report['links']['failovers']:,}",
                  f"to a fallback link (3G to Wi-Fi), {report['links']['failbacks']:,} back")
    table.add_row("receipts not printed", f"{sum(unprinted.values()):,}",
                  ", ".join(f"{why} {n:,}" for why, n in unprinted.items()) or "every receipt printed")
    table.add_row("online latency", f"{lat['p50']} ms", f"p90 {lat['p90']} ms, p99 {lat['p99']} ms, max {lat['max']} ms")
    settle = ", ".join(f"{code}: {n}" for code, n in rec["settlement"].items()) or "none"
    table.add_row("settlement (0510)", "", settle)
    verdict = "[green]OK[/green]" if rec["ok"] else "[red]FAILED[/red]"
    table.add_row("reconciliation", verdict,
                  f"lost {rec['lost']}, duplicated {rec['duplicated']}, unexpected {rec['unexpected']}, "
                  f"mismatched {rec['mismatched']}; {rec['resolved']} unknown outcomes resolved")
    return table


def simulate_command(
    scenario: str = typer.Argument("default", help=f"Shipped scenario ({', '.join(list_scenarios())}) or a TOML file."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="Seed (default: the scenario's)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the JSON report here."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the PNG plots here (FILE.png)."),
    replications: int = typer.Option(1, "--replications", min=1, max=1000,
                                     help="Independent seeds (seed, seed+1, ...) in parallel processes: means with 95% CIs."),
    scale: float = typer.Option(1.0, "--scale", min=0.001, max=1000.0, help="Multiply every estate count."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Simulate an estate of terminals under the scenario's faults; report outcomes and the reconciliation verdict."""
    try:
        chosen = load_scenario(scenario)
        check_references(chosen, scenario)
    except ScenarioError as exc:
        raise _bad("SCENARIO", str(exc)) from None
    if plot is not None and plot.suffix.lower() != ".png":
        raise _bad("--plot", f"{plot} must end in .png")
    for target, name in ((json_out, "--json"), (plot, "--plot")):
        if target is not None and target.exists() and target.is_dir():
            raise _bad(name, f"{target} is a directory; give a file name")
    if plot is not None and replications > 1:
        raise _bad("--plot", "plots are of one run; use --plot without --replications")
    run_seed = chosen.seed if seed is None else seed

    if replications > 1:
        from .replications import replicate, replication_table

        result = replicate(chosen, run_seed, replications, estate_scale=scale)
        console.print(replication_table(result))
        if json_out is not None:
            _write(json_out, result.dumps())
        ok = all(r["reconciliation"]["ok"] for r in result.reports)
        if not ok:
            raise typer.Exit(1)
        return

    from .report import dumps, simulate

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                  TimeElapsedColumn(), console=console, disable=quiet, transient=False) as progress:
        task = progress.add_task(f"simulating {chosen.name} (seed {run_seed})", total=1.0)
        world, report = simulate(chosen, run_seed, estate_scale=scale, steps=_STEPS,
                                 on_step=lambda done: progress.update(task, completed=done))
    console.print(summary_table(report, f"possim simulate {chosen.name}: {len(world.terminals)} terminals, "
                                        f"{chosen.duration_h:g} h + {chosen.drain_h:g} h drain"))
    if json_out is not None:
        _write(json_out, dumps(report))
        console.print(f"report: {json_out}")
    if plot is not None:
        from .plots import plot_report

        plot.parent.mkdir(parents=True, exist_ok=True)
        written = plot_report(report, world.metrics.latency_cdf(), chosen, plot)
        console.print(f"plots: {', '.join(str(p) for p in written)}")
    if not report["reconciliation"]["ok"]:
        raise typer.Exit(1)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
