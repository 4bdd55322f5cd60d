"""``possim bench ...``: throughput of possim layers as ratios against a same-run baseline."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

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
