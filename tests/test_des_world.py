"""The SimPy world: determinism, conservation, and faults changing outcomes the way CONFORMANCE.md says.

Scenarios here are small (a few terminals, a couple of simulated hours) so the whole
file runs in seconds; each fault is placed in a window the test then inspects.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import pytest

from sim.des.report import REPORT_KEYS, dumps, simulate
from sim.des.scenario import Scenario, ScenarioError, load_scenario, parse_scenario
from sim.des.terminal import Terminal
from sim.des.world import World

MIX = [
    {"label": "healthy", "weight": 50}, {"label": "mc-healthy", "weight": 25},
    {"label": "insufficient-funds", "weight": 5}, {"label": "expired", "weight": 2},
    {"label": "chip-swiped-first", "weight": 3}, {"label": "magstripe-only", "weight": 2},
    {"label": "kwd-healthy", "weight": 2}, {"label": "jpy-healthy", "weight": 2},
]


def small(faults: list[dict] = (), *, estate: list[dict] | None = None, hours: float = 2.0, drain: float = 1.0,
          rate: float = 40, **extra: Any) -> Scenario:
    data = {
        "name": "small", "seed": 4, "duration_h": hours, "drain_h": drain, "interval_min": 10,
        "start": "2026-11-27T10:00:00",
        "estate": estate or [{"profile": "countertop-ethernet", "count": 3}, {"profile": "mobile-3g", "count": 3}],
        "cards": {"holders": 300, "mix": MIX},
        "traffic": {"rate_per_hour": rate, "diurnal": [1] * 24},
        "faults": list(faults),
        **extra,
    }
    return parse_scenario(data, "test")


class Watch:
    """Every finished transaction: (terminal id, simulated second, outcome code, approved)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[tuple[str, float, str, bool]] = []
        original = Terminal._finish

        def finish(terminal: Terminal, result, request, reply) -> None:  # noqa: ANN001
            self.seen.append((terminal.id, terminal.env.now, result.arc or result.outcome.value, result.approved))
            original(terminal, result, request, reply)

        monkeypatch.setattr(Terminal, "_finish", finish)

    def codes(self, start_h: float, end_h: float, terminals: set[str] | None = None) -> Counter:
        return Counter(code for tid, t, code, _ in self.seen
                       if start_h * 3600 <= t < end_h * 3600 and (terminals is None or tid in terminals))


def test_same_seed_same_bytes_other_seed_other_run() -> None:
    scenario = small([{"kind": "acquirer_outage", "mode": "silent", "start_h": 0.5, "duration_h": 0.3, "fraction": 0.5},
                      {"kind": "power_loss", "start_h": 0.2, "duration_h": 1.5, "rate_per_hour": 1.0}], hours=1.2)
    _, first = simulate(scenario)
    _, again = simulate(scenario, steps=7)  # progress slices do not change the run
    _, other = simulate(scenario, seed=99)
    assert dumps(first) == dumps(again)
    assert dumps(first) != dumps(other)
    assert tuple(first) == REPORT_KEYS


def test_every_transaction_ends_in_exactly_one_outcome() -> None:
    scenario = small([{"kind": "power_loss", "start_h": 0.0, "duration_h": 2.0, "rate_per_hour": 3.0},
                      {"kind": "network_outage", "start_h": 0.5, "duration_h": 0.5, "fraction": 0.5}])
    world, report = simulate(scenario)
    m = world.metrics
    assert m.started == m.transactions == sum(report["outcomes"].values()) == report["transactions"] > 100
    assert sum(sum(b["outcomes"].values()) for b in report["per_interval"]) == m.transactions
    assert report["outcomes"].get("power-lost", 0) > 0 and m.power_losses > 0
    assert report["reconciliation"]["ok"], report["reconciliation"]["findings"]


def test_acquirer_outage_turns_online_approvals_into_offline_decisions_and_the_backlog_drains(
        monkeypatch: pytest.MonkeyPatch) -> None:
    watch = Watch(monkeypatch)
    scenario = small([{"kind": "acquirer_outage", "start_h": 0.5, "duration_h": 1.0}], hours=2.0)
    world, report = simulate(scenario)
    during, before = watch.codes(0.5 + 0.01, 1.5), watch.codes(0.0, 0.5)
    assert before["00"] > 0
    assert during["00"] == 0, "no host approval while the acquirer refuses connections"
    assert during["Y3"] + during["Z3"] > 0 and set(during) <= {"Y1", "Y3", "Z1", "Z3", "declined", "terminated"}
    offline_in_window = during["Y1"] + during["Y3"]
    assert offline_in_window > 0
    timeline = report["per_interval"]
    backlog_in_window = max(b["backlog"] for b in timeline if 0.5 <= b["start_s"] / 3600 < 1.5)
    assert backlog_in_window > 0 and timeline[-1]["backlog"] == 0
    assert any("acquirer_outage" in b["faults"] for b in timeline)
    off = report["offline"]
    assert off["approved"] == off["forwarded"] >= offline_in_window and off["pending"] == 0
    assert report["reconciliation"]["ok"]


def test_silent_acquirer_outage_owes_reversals_that_are_acknowledged(monkeypatch: pytest.MonkeyPatch) -> None:
    watch = Watch(monkeypatch)
    scenario = small([{"kind": "acquirer_outage", "mode": "silent", "start_h": 0.5, "duration_h": 0.5}], hours=1.5)
    world, report = simulate(scenario)
    during = watch.codes(0.5 + 0.02, 1.0)
    assert during["00"] == 0 and during["Y3"] + during["Z3"] > 0
    rev = report["reversals"]
    assert rev["sent"] >= world.metrics.timeouts > 0
    assert rev["acknowledged"] == rev["sent"] and rev["pending"] == 0
    assert report["reconciliation"]["ok"]


def test_power_cuts_never_lose_an_offline_approval(monkeypatch: pytest.MonkeyPatch) -> None:
    """OFF-06 / DEV-04: cut the power again and again while the network is down and approvals pile up."""
    scenario = small([{"kind": "network_outage", "start_h": 0.2, "duration_h": 1.3},
                      {"kind": "power_loss", "start_h": 0.1, "duration_h": 1.6, "rate_per_hour": 4.0}],
                     hours=2.0, reboot_s=30)
    backlog_at_cut: list[tuple[Terminal, int]] = []
    lose = Terminal._lose_power

    def spy(terminal: Terminal) -> None:
        backlog_at_cut.append((terminal, sum(r.kind == "advice" for r in terminal.store.records)))
        lose(terminal)

    monkeypatch.setattr(Terminal, "_lose_power", spy)
    world = World(scenario)
    world.run()
    report_offline = world.metrics.offline_approved
    assert len(backlog_at_cut) > 20 and any(n > 0 for _, n in backlog_at_cut)
    assert report_offline > 0
    assert world.metrics.offline_forwarded == report_offline  # every one reached the host after the cuts
    verdict = world.verdict()
    assert verdict.ok and not verdict.lost and not verdict.duplicated


def test_store_full_stops_offline_approvals_without_dropping_any(monkeypatch: pytest.MonkeyPatch) -> None:
    """OFF-07: while a terminal's store says full it approves nothing offline; the rest carry on."""
    watch = Watch(monkeypatch)
    scenario = small([{"kind": "network_outage", "start_h": 0.25, "duration_h": 1.25},
                      {"kind": "store_full", "start_h": 0.5, "duration_h": 1.0, "fraction": 0.5}], hours=2.0)
    world = World(scenario)
    world.run()
    in_window = defaultdict(Counter)
    for tid, t, code, _ in watch.seen:
        if 0.5 * 3600 < t < 1.5 * 3600:
            in_window[tid][code] += 1
    no_offline = {tid for tid, c in in_window.items() if c["Y1"] + c["Y3"] == 0 and c["Z3"] > 0}
    with_offline = {tid for tid, c in in_window.items() if c["Y1"] + c["Y3"] > 0}
    assert len(no_offline) >= 3 and with_offline, (no_offline, with_offline)
    assert world.metrics.offline_approved == world.metrics.offline_forwarded
    assert sum(t.store.overflow for t in world.terminals) == 0
    assert world.verdict().ok


def test_store_full_hits_exactly_the_drawn_terminals(monkeypatch: pytest.MonkeyPatch) -> None:
    watch = Watch(monkeypatch)
    scenario = small([{"kind": "network_outage", "start_h": 0.0, "duration_h": 1.0},
                      {"kind": "store_full", "start_h": 0.0, "duration_h": 1.0, "fraction": 0.5}],
                     hours=1.0, estate=[{"profile": "mobile-3g", "count": 6}])
    world = World(scenario)
    world.env.run(until=1)  # the fault switches on at t=0
    hit = {t.id for t in world.terminals if t.store.blocked}
    assert len(hit) == 3
    world.run()
    offline_at = {tid for tid, t, code, _ in watch.seen if code in ("Y1", "Y3") and t < 3600}
    assert offline_at and not (offline_at & hit)


def test_3g_interference_times_out_reverses_and_loses_nothing() -> None:
    """DEV-03: loss bursts and latency spikes on 3G; timeouts become reversals or offline decisions."""
    scenario = small([{"kind": "loss_burst", "start_h": 0.2, "duration_h": 1.3, "p_enter": 0.15, "p_leave": 0.2,
                       "loss_bad": 0.8},
                      {"kind": "latency_spike", "start_h": 0.5, "duration_h": 0.5, "factor": 6}],
                     estate=[{"profile": "mobile-3g", "count": 6}], hours=2.0, drain=1.5)
    world, report = simulate(scenario)
    m = world.metrics
    assert m.timeouts > 5
    rev, off = report["reversals"], report["offline"]
    assert rev["sent"] >= m.timeouts and rev["acknowledged"] == rev["sent"] and rev["pending"] == 0
    assert rev["repeats"] + off["repeats"] > 0, "lost forwards are repeated (0401/0221)"
    assert off["approved"] == off["forwarded"]
    assert report["reconciliation"]["ok"] and report["reconciliation"]["lost"] == 0


def test_issuer_down_brings_stand_in_and_its_advices_reach_the_issuer() -> None:
    scenario = small([{"kind": "issuer_down", "issuer": "possim-visa-test", "start_h": 0.3, "duration_h": 0.7}],
                     hours=1.5, host={"standin_limits": {"EUR": 6000, "USD": 6000, "JPY": 6000, "KWD": 6000}})
    world, report = simulate(scenario)
    assert report["stand_in"] > 0 and report["outcomes"].get("91", 0) > 0
    assert report["reconciliation"]["ok"]  # the stand-in approvals were booked by the issuer once it came back


def test_reader_failure_falls_back_to_the_stripe(monkeypatch: pytest.MonkeyPatch) -> None:
    watch = Watch(monkeypatch)
    scenario = small([{"kind": "reader_failure", "start_h": 0.5, "duration_h": 0.5}], hours=1.0)
    world, report = simulate(scenario)
    assert report["fallbacks"] > 10
    assert watch.codes(0.5 + 0.01, 1.0)["Y1"] == 0  # a swiped card cannot be approved offline
    assert report["reconciliation"]["ok"]


@pytest.mark.parametrize("name", ["acquirer-outage", "3g-interference", "black-friday", "damaged-cards",
                                  "power-cuts", "store-full"])
def test_shipped_faulty_scenarios_reconcile_when_shortened(name: str) -> None:
    """Each shipped scenario, its estate and population shrunk (fault windows kept): the verdict is OK."""
    scenario = load_scenario(name)
    scenario = scenario.model_copy(update={"cards": scenario.cards.model_copy(update={"holders": 120})})
    world, report = simulate(scenario, estate_scale=0.06)
    assert report["reconciliation"]["ok"], report["reconciliation"]["findings"]
    assert report["transactions"] > 0 and world.backlog == 0


def test_an_undersized_issuer_queues_requests_past_the_timeout() -> None:
    """Host capacity is a SimPy Resource: one slow issuer server makes requests wait, then time out."""
    fast = small(hours=0.5, drain=0.5, estate=[{"profile": "countertop-ethernet", "count": 6}])
    slow = small(hours=0.5, drain=0.5, estate=[{"profile": "countertop-ethernet", "count": 6}],
                 host={"issuer_capacity": 1, "issuer_service_ms": 8000})
    fast_world, fast_report = simulate(fast)
    slow_world, slow_report = simulate(slow)
    assert fast_world.metrics.timeouts == 0
    assert slow_report["latency_ms"]["p50"] > 5 * fast_report["latency_ms"]["p50"]
    assert slow_world.metrics.timeouts > 0 and slow_report["reversals"]["sent"] >= slow_world.metrics.timeouts
    assert slow_report["reconciliation"]["ok"]


def test_an_outage_keeps_open_only_the_transactions_still_owed() -> None:
    """While an outage keeps advices owed, the host's low watermark waits for the oldest of them;
    the history checker holds only what is owed or on its way, not everything since."""
    cheap = {"min": 200, "max": 1500}  # under the floor limits: offline approvals, advices owed
    estate = [{"profile": "countertop-ethernet", "count": 3, "amount": cheap},
              {"profile": "mobile-3g", "count": 3, "amount": cheap}]
    world = World(small([{"kind": "acquirer_outage", "start_h": 0.3, "duration_h": 0.9, "fraction": 0.5}],
                        estate=estate, hours=1.5))
    interval, lagging = world.metrics.interval_s, 0
    for sweep in range(1, int(world.end_s // interval)):
        world.env.run(until=sweep * interval + 1e-3)  # just after the sweep at the end of this interval
        owed = {(r.key[0], r.key[1]) for t in world.terminals for r in t.store.records}
        assert world.checker.open <= len(owed | set(world._in_flight))
        lagging += world.env.now - world.watermark > interval
    assert lagging, "the outage kept the watermark back a whole interval while the other terminals traded"
    world.run()
    assert world.verdict().ok and world.checker.open == 0


def test_same_pan_logs_hold_the_population_digests_not_copies() -> None:
    world = World(small(hours=1.0, drain=0.25))
    world.run()
    entries = [entry for terminal in world.terminals for entry in terminal.pan_log.entries]
    assert entries and all(world.population.digest(digest) is digest for digest, _, _ in entries)


def test_printer_out_of_paper_costs_receipts_not_sales() -> None:
    """DEV-02: while the printer is out of paper the hit terminals trade on, their receipts not printed;
    the money comes out as it does with paper."""
    estate = [{"profile": "countertop-ethernet", "count": 6}]
    with_paper = small([], hours=1.0, estate=estate)
    no_paper = small([{"kind": "printer_out", "start_h": 0.0, "duration_h": 1.0, "fraction": 0.5}],
                     hours=1.0, estate=estate)
    _, before = simulate(with_paper)
    world, after = simulate(no_paper)
    assert before["receipts"] == {"printed": before["transactions"]}
    out = after["receipts"]["not printed: out of paper"]
    assert 0 < out < after["transactions"] and out + after["receipts"]["printed"] == after["transactions"]
    for key in ("transactions", "outcomes", "offline", "reversals", "reconciliation"):
        assert after[key] == before[key], key
    assert {t.id for t in world.terminals if t.printer_out} == set()  # the window closed with the run


def test_a_cell_outage_fails_handhelds_over_to_wifi_and_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """3G down, Wi-Fi up: the handhelds keep going online over Wi-Fi (no offline approvals), then
    return to 3G; with every link down they approve offline instead."""
    estate = [{"profile": "mobile-3g", "count": 4}]
    watch = Watch(monkeypatch)
    cell = small([{"kind": "network_outage", "link": "3g", "start_h": 0.5, "duration_h": 1.0}], estate=estate)
    world, report = simulate(cell)
    in_window = watch.codes(0.55, 1.5)
    assert in_window["00"] > 10 and in_window["Y1"] + in_window["Y3"] + in_window["Z3"] == 0, in_window
    assert report["links"]["failovers"] >= 4 and report["links"]["failbacks"] == report["links"]["failovers"]
    assert all(t.link.kind == "3g" for t in world.terminals)  # back on the cell at the end
    assert report["reconciliation"]["ok"]
    watch.seen.clear()
    dark = small([{"kind": "network_outage", "start_h": 0.5, "duration_h": 1.0}], estate=estate)
    _, report = simulate(dark)
    in_window = watch.codes(0.55, 1.5)
    assert in_window["Y1"] + in_window["Y3"] > 0 and report["links"]["failovers"] == 0
    assert report["reconciliation"]["ok"]


def test_link_is_for_link_faults_and_names_a_link_kind() -> None:
    with pytest.raises(ScenarioError, match="narrows network_outage"):
        small([{"kind": "issuer_down", "issuer": "possim-visa-test", "link": "3g", "start_h": 0, "duration_h": 1}])
    with pytest.raises(ScenarioError, match="faults"):
        small([{"kind": "network_outage", "link": "5g", "start_h": 0, "duration_h": 1}])
