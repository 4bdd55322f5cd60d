"""Plots of a run (matplotlib, Agg backend, one PNG): outcomes and backlog over time, latency CDF.

Three panels, read top to bottom the way an incident review goes: what happened to the
customers (outcomes per interval, grouped), what the terminals still owed the host
(store-and-forward backlog at the end of each interval), and how long online
authorizations took (CDF from the HDR histogram). Fault windows are shaded on the two
timelines and named in the legend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .scenario import FAULT_KINDS, Scenario  # noqa: E402

__all__ = ["GROUPS", "group_of", "plot_report"]

GROUPS = ("approved online", "approved offline (Y1/Y3)", "declined", "no decision")
"""How outcome codes are grouped on the plot."""

_COLOURS = {"approved online": "#2a9d8f", "approved offline (Y1/Y3)": "#e9c46a", "declined": "#e76f51",
            "no decision": "#6c757d"}
_FAULT_COLOURS = dict(zip(FAULT_KINDS, ("#d62828", "#f77f00", "#7209b7", "#3a86ff", "#8338ec", "#ff006e",
                                        "#000000", "#fb8500", "#6c757d")))


def group_of(code: str) -> str:
    """The plot group of an outcome code.

    >>> [group_of(c) for c in ("00", "Y3", "51", "Z3", "terminated", "power-lost")]
    ['approved online', 'approved offline (Y1/Y3)', 'declined', 'declined', 'no decision', 'no decision']
    """
    if code == "00":
        return "approved online"
    if code in ("Y1", "Y3"):
        return "approved offline (Y1/Y3)"
    if code in ("terminated", "power-lost"):
        return "no decision"
    return "declined"


def _shade(ax: Any, scenario: Scenario, seen: set[str]) -> None:
    for fault in scenario.faults:
        label = fault.kind.replace("_", " ") if fault.kind not in seen else None
        seen.add(fault.kind)
        ax.axvspan(fault.start_h, fault.end_h, color=_FAULT_COLOURS.get(fault.kind, "grey"), alpha=0.15, label=label,
                   zorder=0)


def plot_report(report: dict[str, Any], cdf: Sequence[tuple[int, float]], scenario: Scenario, path: Path) -> list[Path]:
    """Draw the report's timeline and the latency CDF into ``path`` (PNG); returns the files written."""
    timeline = report["per_interval"]
    hours = [b["start_s"] / 3600.0 for b in timeline]
    width = (hours[1] - hours[0]) if len(hours) > 1 else scenario.interval_min / 60.0
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(11, 11), gridspec_kw={"height_ratios": [3, 2, 2]})
    bottom = [0] * len(timeline)
    for group in GROUPS:
        values = [sum(n for code, n in b["outcomes"].items() if group_of(code) == group) for b in timeline]
        ax1.bar(hours, values, width=width, bottom=bottom, align="edge", color=_COLOURS[group], label=group, zorder=2)
        bottom = [a + b for a, b in zip(bottom, values)]
    seen: set[str] = set()
    _shade(ax1, scenario, seen)
    ax1.set_ylabel("transactions per interval")
    ax1.set_title(f"{report['scenario']} (seed {report['seed']}): {report['transactions']:,} transactions, "
                  f"reconciliation {'OK' if report['reconciliation']['ok'] else 'FAILED'}")
    ax1.legend(loc="upper left", fontsize="small", ncol=2)

    ax2.step(hours, [b["backlog"] for b in timeline], where="post", color="#264653", label="owed to the host", zorder=2)
    _shade(ax2, scenario, set())
    ax2.set_ylabel("store-and-forward backlog")
    ax2.set_xlabel("hours from the start")
    ax2.legend(loc="upper left", fontsize="small")

    if cdf:
        ax3.plot([ms for ms, _ in cdf], [share for _, share in cdf], color="#1d3557")
        ax3.set_xscale("log")
    lat = report["latency_ms"]
    ax3.set_title(f"online round trip: p50 {lat['p50']} ms, p90 {lat['p90']} ms, p99 {lat['p99']} ms, max {lat['max']} ms",
                  fontsize="medium")
    ax3.set_xlabel("ms (log scale)")
    ax3.set_ylabel("share of online requests")
    ax3.set_ylim(0, 1.01)
    ax3.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return [path]
