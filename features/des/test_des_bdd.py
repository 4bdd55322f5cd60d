"""Step definitions for features/des/simulation.feature: small SimPy worlds on the real core."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from pytest_bdd import given, parsers, scenarios, then, when

from sim.des.report import build_report
from sim.des.scenario import parse_scenario
from sim.des.terminal import Terminal
from sim.des.world import World

scenarios("des")

MIX = [{"label": "healthy", "weight": 50}, {"label": "mc-healthy", "weight": 25},
       {"label": "insufficient-funds", "weight": 5}, {"label": "chip-swiped-first", "weight": 3},
       {"label": "kwd-healthy", "weight": 2}]


@dataclass
class Run:
    estate: list[dict[str, Any]] = field(default_factory=list)
    hours: float = 2.0
    faults: list[dict[str, Any]] = field(default_factory=list)
    world: World | None = None
    report: dict[str, Any] | None = None
    finished: list[tuple[str, float, str]] = field(default_factory=list)
    cuts_with_stored_approvals: int = 0
    full_store: set[str] = field(default_factory=set)


@pytest.fixture
def run() -> Run:
    return Run()


@given(parsers.parse('an estate of {a:d} "{pa}" and {b:d} "{pb}" terminals trading for {hours:g} hours'))
def estate(run: Run, a: int, pa: str, b: int, pb: str, hours: float) -> None:
    run.estate = [{"profile": p, "count": n} for p, n in ((pa, a), (pb, b)) if n]
    run.hours = hours


@given(parsers.parse("the acquirer refuses connections from hour {start:g} for {hours:g} hour"))
def acquirer_outage(run: Run, start: float, hours: float) -> None:
    run.faults.append({"kind": "acquirer_outage", "start_h": start, "duration_h": hours})


@given(parsers.parse("the local network is down from hour {start:g} for {hours:g} hours"))
def network_outage(run: Run, start: float, hours: float) -> None:
    run.faults.append({"kind": "network_outage", "start_h": start, "duration_h": hours})


@given(parsers.parse("the power fails {rate:g} times per terminal-hour from hour {start:g} for {hours:g} hours"))
def power_loss(run: Run, rate: float, start: float, hours: float) -> None:
    run.faults.append({"kind": "power_loss", "start_h": start, "duration_h": hours, "rate_per_hour": rate})


@given(parsers.parse("the offline store is full on half of the terminals from hour {start:g} for {hours:g} hour"))
def store_full(run: Run, start: float, hours: float) -> None:
    run.faults.append({"kind": "store_full", "start_h": start, "duration_h": hours, "fraction": 0.5})


@given(parsers.parse("loss bursts hit every link from hour {start:g} for {hours:g} hours"))
def loss_burst(run: Run, start: float, hours: float) -> None:
    run.faults.append({"kind": "loss_burst", "start_h": start, "duration_h": hours, "p_enter": 0.15,
                       "p_leave": 0.2, "loss_bad": 0.8})


@given(parsers.parse('the issuer "{issuer}" is down from hour {start:g} for {hours:g} hours'))
def issuer_down(run: Run, issuer: str, start: float, hours: float) -> None:
    run.faults.append({"kind": "issuer_down", "issuer": issuer, "start_h": start, "duration_h": hours})


@when("the day is simulated")
def simulate(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = parse_scenario({
        "name": "feature", "seed": 8, "duration_h": run.hours, "drain_h": 1.5, "interval_min": 10,
        "start": "2026-11-27T10:00:00", "estate": run.estate, "reboot_s": 30,
        "cards": {"holders": 300, "mix": MIX},
        "traffic": {"rate_per_hour": 40, "diurnal": [1] * 24},
        "host": {"standin_limits": {"EUR": 6000, "USD": 6000, "JPY": 6000, "KWD": 6000}},
        "faults": run.faults,
    }, "feature")
    finish, lose = Terminal._finish, Terminal._lose_power

    def on_finish(terminal: Terminal, result, request, reply) -> None:  # noqa: ANN001
        run.finished.append((terminal.id, terminal.env.now, result.arc or result.outcome.value))
        finish(terminal, result, request, reply)

    def on_cut(terminal: Terminal) -> None:
        if any(r.kind == "advice" for r in terminal.store.records):
            run.cuts_with_stored_approvals += 1
        lose(terminal)

    monkeypatch.setattr(Terminal, "_finish", on_finish)
    monkeypatch.setattr(Terminal, "_lose_power", on_cut)
    run.world = World(scenario)
    for fault in scenario.faults:
        if fault.kind == "store_full":
            run.world.env.run(until=fault.start_h * 3600 + 1)
            run.full_store = {t.id for t in run.world.terminals if t.store.blocked}
    run.world.run()
    run.report = build_report(run.world, run.world.verdict())


def _codes(run: Run, start: float, end: float, terminals: set[str] | None = None) -> list[str]:
    return [code for tid, t, code in run.finished
            if start * 3600 <= t < end * 3600 and (terminals is None or tid in terminals)]


@then(parsers.parse("no transaction is approved online between hour {start:g} and hour {end:g}"))
def none_online(run: Run, start: float, end: float) -> None:
    codes = _codes(run, start, end)
    assert codes and "00" not in codes


@then(parsers.parse('some transactions are decided "{a}" or "{b}" between hour {start:g} and hour {end:g}'))
def some_decided(run: Run, a: str, b: str, start: float, end: float) -> None:
    assert {a, b} & set(_codes(run, start, end))


@then("every offline approval is forwarded and acknowledged")
def all_forwarded(run: Run) -> None:
    off = run.report["offline"]
    assert off["approved"] > 0 and off["forwarded"] == off["approved"] and off["pending"] == 0


@then("the store-and-forward backlog is empty at the end")
def backlog_empty(run: Run) -> None:
    timeline = run.report["per_interval"]
    assert max(b["backlog"] for b in timeline) > 0 and timeline[-1]["backlog"] == 0 and run.world.backlog == 0


@then("the reconciliation verdict is OK")
def verdict_ok(run: Run) -> None:
    rec = run.report["reconciliation"]
    assert rec["ok"] and rec["lost"] == rec["duplicated"] == rec["unexpected"] == 0, rec["findings"]


@then("some power cuts happened while offline approvals were in the store")
def cuts_with_approvals(run: Run) -> None:
    assert run.cuts_with_stored_approvals > 0 and run.world.metrics.power_losses >= run.cuts_with_stored_approvals


@then(parsers.parse("the terminals whose store is full approve nothing offline between hour {start:g} and hour {end:g}"))
def full_store_no_offline(run: Run, start: float, end: float) -> None:
    assert run.full_store
    full = _codes(run, start + 0.001, end, run.full_store)
    others = _codes(run, start + 0.001, end, {t.id for t in run.world.terminals} - run.full_store)
    assert full and not {"Y1", "Y3"} & set(full)
    assert {"Y1", "Y3"} & set(others), "the other terminals still approve offline"


@then("some online requests timed out")
def timed_out(run: Run) -> None:
    assert run.world.metrics.timeouts > 0


@then("every reversal is acknowledged")
def reversals_acked(run: Run) -> None:
    rev = run.report["reversals"]
    assert rev["sent"] > 0 and rev["acknowledged"] == rev["sent"] and rev["pending"] == 0


@then("some transactions are approved by stand-in")
def stand_in(run: Run) -> None:
    assert run.report["stand_in"] > 0
