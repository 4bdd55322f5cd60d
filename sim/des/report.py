"""The JSON report of a run: the figures a tester reads, and nothing that changes between identical runs.

Top-level keys, exactly (the schema is documented in README.md, "Simulation"):
``seed``, ``scenario``, ``transactions``, ``outcomes``, ``offline``, ``reversals``,
``fallbacks``, ``stand_in``, ``receipts``, ``links``, ``latency_ms``, ``reconciliation``, ``per_interval``.

No wall-clock time, host name or path goes in: the same scenario and seed give the
same bytes (:func:`dumps` sorts nothing it does not need to and fixes the layout).
PANs appear only masked (in reconciliation findings).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..core.history import Verdict
    from .world import World

__all__ = ["REPORT_KEYS", "build_report", "dumps", "simulate"]

REPORT_KEYS = ("seed", "scenario", "transactions", "outcomes", "offline", "reversals", "fallbacks", "stand_in",
               "receipts", "links", "latency_ms", "reconciliation", "per_interval")
"""The report's top-level keys, in order."""

FINDINGS_SHOWN = 20
"""At most this many findings of each kind are listed (all are counted)."""


def _outcome_order(item: tuple[str, int]) -> tuple[int, str]:
    key = item[0]
    return (0 if key.isdigit() else 1 if len(key) == 2 else 2, key)


def build_report(world: "World", verdict: "Verdict") -> dict[str, Any]:
    """The report of a finished run (call after :meth:`World.run`)."""
    m = world.metrics
    owed = [r for t in world.terminals for r in t.store.records]
    interval_h = m.interval_s / 3600.0
    faults = world.scenario.faults
    timeline = []
    for bucket in m.timeline:
        entry = bucket.to_dict()
        start_h = bucket.start_s / 3600.0
        entry["faults"] = sorted({f.kind for f in faults if f.start_h < start_h + interval_h and f.end_h > start_h})
        timeline.append(entry)
    return {
        "seed": world.seed,
        "scenario": world.scenario.name,
        "transactions": m.transactions,
        "outcomes": dict(sorted(m.outcomes.items(), key=_outcome_order)),
        "offline": {
            "approved": m.offline_approved,
            "forwarded": m.offline_forwarded,
            "pending": sum(1 for r in owed if r.kind == "advice"),
            "repeats": m.advice_repeats,
        },
        "reversals": {
            "sent": m.reversals_sent,
            "acknowledged": m.reversals_acknowledged,
            "pending": sum(1 for r in owed if r.kind in ("reversal", "inflight")),
            "repeats": m.reversal_repeats,
        },
        "fallbacks": m.fallbacks,
        "stand_in": m.stand_in,
        "receipts": dict(sorted(m.receipts.items())),
        "links": {"failovers": m.link_failovers, "failbacks": m.link_failbacks},
        "latency_ms": m.latency_ms(),
        "reconciliation": {
            "ok": verdict.ok,
            "lost": len(verdict.lost),
            "duplicated": len(verdict.duplicated),
            "unexpected": len(verdict.unexpected),
            "mismatched": len(verdict.mismatched),
            "resolved": len(verdict.resolved),
            "attempts": verdict.attempts,
            "booked": verdict.effects,
            "balances": [
                {"currency": b.currency, "expected": b.expected, "booked": b.booked, "difference": b.difference}
                for b in verdict.balances
            ],
            "settlement": dict(sorted(m.settlements.items())),
            "findings": [
                {"kind": kind, **f.to_dict()}
                for kind, items in (("lost", verdict.lost), ("duplicated", verdict.duplicated),
                                    ("unexpected", verdict.unexpected), ("mismatched", verdict.mismatched))
                for f in items[:FINDINGS_SHOWN]
            ],
        },
        "per_interval": timeline,
    }


def dumps(report: dict[str, Any]) -> str:
    """The report as JSON text: fixed layout, so equal reports are equal bytes."""
    return json.dumps(report, indent=2, ensure_ascii=True) + "\n"


def simulate(scenario: Any, seed: int | None = None, *, estate_scale: float = 1.0, steps: int = 1,
             on_step: Any = None, keep_history: bool = False) -> tuple["World", dict[str, Any]]:
    """Build a world, run it, check it; return the world and its report.

    ``keep_history`` keeps every history event for :meth:`World.history` (memory grows with the run).

    >>> from sim.des.scenario import load_scenario
    >>> small = load_scenario("default").model_copy(update={"duration_h": 0.2, "drain_h": 0.2})
    >>> _, report = simulate(small, estate_scale=0.05)
    >>> tuple(report) == REPORT_KEYS, report["reconciliation"]["ok"]
    (True, True)
    """
    from .world import World

    world = World(scenario, seed, estate_scale=estate_scale, keep_history=keep_history)
    world.run(steps, on_step)
    return world, build_report(world, world.verdict())
