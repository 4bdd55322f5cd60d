"""Independent replications: the same scenario under seeds ``seed, seed+1, ...`` in parallel processes.

One run says what happened under one draw of chance; a capacity or what-if question
needs to know how much of a figure is the scenario and how much the draw. Each
replication is a whole run in its own process (``concurrent.futures``, one worker per
core at most), and the figures are reported as means with a 95% confidence interval
from Student's t distribution over the replications.

The t quantiles are the standard table values (two-sided 95%, by degrees of freedom);
beyond 30 degrees of freedom the normal quantile (``statistics.NormalDist``) is used.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from rich.table import Table

from .scenario import Scenario

__all__ = ["Estimate", "Replications", "estimate", "replicate", "replication_table"]

_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045,
         2.042)
"""Student's t, 0.975 quantile, for 1..30 degrees of freedom."""


@dataclass(frozen=True)
class Estimate:
    """A mean over replications and the half-width of its 95% confidence interval."""

    mean: float
    half_width: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return {"mean": round(self.mean, 6), "ci95": round(self.half_width, 6), "n": self.n}


def estimate(values: list[float]) -> Estimate:
    """Mean and 95% CI half-width (t distribution) of ``values``.

    >>> e = estimate([10.0, 12.0, 14.0])
    >>> e.mean, round(e.half_width, 3)
    (12.0, 4.969)
    >>> estimate([5.0]).half_width
    0.0
    """
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return Estimate(mean, 0.0, n)
    df = n - 1
    t = _T975[df - 1] if df <= len(_T975) else statistics.NormalDist().inv_cdf(0.975)
    return Estimate(mean, t * statistics.stdev(values) / math.sqrt(n), n)


def _figures(report: dict[str, Any]) -> dict[str, float]:
    """The numbers of one report that are averaged across replications."""
    total = report["transactions"] or 1
    out = {"transactions": float(report["transactions"])}
    for code, count in report["outcomes"].items():
        out[f"share {code} %"] = 100.0 * count / total
    out["offline approved"] = float(report["offline"]["approved"])
    out["offline pending"] = float(report["offline"]["pending"])
    out["reversals sent"] = float(report["reversals"]["sent"])
    out["fallbacks"] = float(report["fallbacks"])
    out["stand-in"] = float(report["stand_in"])
    out["link failovers"] = float(report["links"]["failovers"])
    out["receipts not printed"] = float(sum(n for k, n in report["receipts"].items() if k != "printed"))
    for p in ("p50", "p90", "p99"):
        out[f"latency {p} ms"] = float(report["latency_ms"][p])
    out["reconciliation ok"] = 1.0 if report["reconciliation"]["ok"] else 0.0
    return out


@dataclass
class Replications:
    """The reports of every replication and the estimates across them."""

    scenario: str
    seeds: list[int]
    reports: list[dict[str, Any]]
    estimates: dict[str, Estimate]

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "seeds": self.seeds,
            "estimates": {name: e.to_dict() for name, e in self.estimates.items()},
            "reports": self.reports,
        }

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def _one(args: tuple[dict[str, Any], int, float]) -> dict[str, Any]:
    import warnings

    warnings.filterwarnings("ignore", message=".*TripleDES")
    from .report import simulate
    from .scenario import parse_scenario

    data, seed, scale = args
    _, report = simulate(parse_scenario(data), seed, estate_scale=scale)
    return report


def replicate(scenario: Scenario, seed: int, count: int, *, estate_scale: float = 1.0,
              workers: int | None = None) -> Replications:
    """Run ``count`` replications (seeds ``seed..seed+count-1``) in parallel processes."""
    seeds = [seed + i for i in range(count)]
    data = scenario.model_dump(mode="json")
    jobs = [(data, s, estate_scale) for s in seeds]
    workers = workers or min(count, os.cpu_count() or 1)
    if workers == 1:
        reports = [_one(job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            reports = list(pool.map(_one, jobs))
    names: list[str] = []
    per: list[dict[str, float]] = [_figures(r) for r in reports]
    for figures in per:
        names.extend(n for n in figures if n not in names)
    estimates = {name: estimate([f.get(name, 0.0) for f in per]) for name in names}
    return Replications(scenario.name, seeds, reports, estimates)


def replication_table(result: Replications) -> Table:
    """A rich table of the estimates."""
    table = Table(title=f"possim simulate {result.scenario}: {len(result.seeds)} replications "
                        f"(seeds {result.seeds[0]}..{result.seeds[-1]}), mean and 95% confidence interval")
    table.add_column("figure")
    table.add_column("mean", justify="right")
    table.add_column("± 95% CI", justify="right")
    for name, e in result.estimates.items():
        table.add_row(name, f"{e.mean:,.2f}", f"{e.half_width:,.2f}")
    return table
