"""Host state that only a window needs is pruned, and nothing a later message may name is lost.

The SimPy world's memory stays flat: its streaming verdict is the batch checker's on the
whole history, while the host and the checker hold only recent traffic and what is owed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from sim.core.history import check, posting_effect
from sim.core.host import Host
from sim.core.ledger import Ledger, Outcome, TxnKey
from sim.core.settlement import Settlement, Totals
from sim.des.world import World
from sim.iso8583.message import advice, financial_request, repeat, reversal
from tests.test_des_world import small

PAN = "4761739001010010"
T0 = datetime(2026, 11, 22, 10, 0)


def sale(stan: int, amount: int = 1000, *, tid: str = "TERM0001") -> object:
    return financial_request(pan=PAN, amount=amount, currency="978", stan=stan, transmitted="1122100000",
                             terminal_id=tid, entry_mode="012", expiry="2812")


def offline(stan: int, amount: int = 700) -> object:
    return advice(response_code="Y1", pan=PAN, amount=amount, currency="978", stan=stan, transmitted="1122100000",
                  terminal_id="TERM0001", entry_mode="012", expiry="2812")


def test_ledger_forgets_closed_originals_keeps_open_holds_and_streams_every_posting() -> None:
    seen = []
    ledger = Ledger(keep_postings=2, on_posting=seen.append)
    ledger.open_account(PAN, "EUR", 100_000)
    for i in range(1, 6):
        ledger.debit(TxnKey("T1", f"{i:06d}", "1122100000"), PAN, 100, at=T0 + timedelta(minutes=i))
    ledger.hold(TxnKey("T1", "000009", "1122100000"), PAN, 500, at=T0)
    assert [p.seq for p in ledger.entries()] == [5, 6] and [p.seq for p in seen] == [1, 2, 3, 4, 5, 6]
    assert ledger.prune(T0 + timedelta(minutes=3)) == 2  # stans 1 and 2; the hold stays though older
    assert ledger.originals == 4 and ledger.held(PAN) == 500 and ledger.balance(PAN) == 100_000 - 500
    assert ledger.debit(TxnKey("T1", "000003", "1122100000"), PAN, 100).outcome is Outcome.DUPLICATE
    assert ledger.capture(TxnKey("T1", "000009", "1122100000"), 450, at=T0).outcome is Outcome.BOOKED


def test_host_keeps_everything_a_later_message_may_name_within_its_window() -> None:
    host = Host({"issuer": {"retain_s": 3600}, "acquirer": {"retain_s": 3600}, "settlement": {"retain_s": 3600}})
    visa = host.issuers["possim-visa-test"]
    start = visa.balance(PAN)
    assert host.handle(sale(1), T0).response_code == "00"
    assert host.handle(offline(2), T0).response_code == "00"
    late = T0 + timedelta(minutes=50)  # inside the window: repeats book nothing, a reversal finds its original
    host.prune(late)
    assert host.handle(repeat(offline(2)), late).response_code == "00"
    rev = reversal(sale(1), stan=3, transmitted="1122105000")
    del rev.fields["2"]  # routed by the acquirer's memory of the authorization
    assert host.handle(rev, late).response_code == "00"
    assert visa.balance(PAN) == start - 700
    assert visa.ledger.originals == 2 and host.prune(late) == 0
    assert host.prune(T0 + timedelta(hours=3)) >= 2  # past the window: originals and routes forgotten
    assert visa.ledger.originals == 0 and visa.balance(PAN) == start - 700


def test_without_a_window_nothing_is_pruned() -> None:
    host = Host()
    host.handle(sale(1), T0)
    assert host.prune(T0 + timedelta(days=30)) == 0 and host.issuers["possim-visa-test"].ledger.originals == 1


def test_settlement_folds_old_entries_and_keeps_totals_and_report_exact() -> None:
    s = Settlement({"cutoff": "23:00", "retain_s": 600})
    for i in range(1, 5):
        s.record(sale(i, 100 * i), "00", T0 + timedelta(minutes=i))
    before = s.totals("TERM0001", "978")
    report = s.report_csv(T0.date())
    assert s.prune(T0 + timedelta(hours=2)) == 0  # unsettled: kept (a reversal or upload may name them)
    assert s.prune(T0, before=T0 + timedelta(minutes=3), unsettled=True) == 2
    assert len(s.entries()) == 2 and s.totals("TERM0001", "978") == before and s.report_csv(T0.date()) == report
    s.reverse(reversal(sale(4, 400), stan=9, transmitted="1122103000"), T0 + timedelta(minutes=5))
    assert s.totals("TERM0001", "978") == Totals(debits_count=3, debits_amount=600)


@pytest.mark.parametrize("faults", [
    [{"kind": "acquirer_outage", "mode": "silent", "start_h": 0.4, "duration_h": 0.3, "fraction": 0.5},
     {"kind": "power_loss", "start_h": 0.2, "duration_h": 1.5, "rate_per_hour": 1.0},
     {"kind": "issuer_down", "issuer": "possim-mc-test", "start_h": 0.8, "duration_h": 0.3}],
    [{"kind": "network_outage", "start_h": 0.3, "duration_h": 0.6, "fraction": 0.5},
     {"kind": "loss_burst", "start_h": 0.0, "duration_h": 2.0, "fraction": 0.7, "p_enter": 0.05, "p_leave": 0.3,
      "loss_bad": 0.8}],
], ids=["silent-outage-power-issuer-down", "network-outage-loss"])
def test_world_streaming_verdict_is_the_batch_verdict_and_memory_is_retired(monkeypatch: pytest.MonkeyPatch,
                                                                           faults: list[dict]) -> None:
    effects = []
    posted = World._posted

    def tap(world: World, posting) -> None:  # noqa: ANN001
        effect = posting_effect(posting)
        if effect is not None:
            effects.append(effect)
        posted(world, posting)

    monkeypatch.setattr(World, "_posted", tap)
    world = World(small(faults, hours=2.0, drain=0.5), keep_history=True)
    world.run()
    streamed, batch = world.verdict(), check(world.history(), effects)
    assert streamed == batch and streamed.ok, streamed.pretty()
    assert streamed.attempts > 200 and world.checker.retired > 0.7 * streamed.attempts
    originals = sum(i.ledger.originals for i in world.host.issuers.values())
    assert originals < 0.3 * streamed.effects and len(world.host.settlement.entries()) < 0.3 * streamed.effects


def test_memory_figures_and_the_cli_refuses_bad_lengths() -> None:
    from sim.des.bench import MemoryBench
    from tests.test_des_cli import flat, run

    bench = MemoryBench((2.0, 8.0), (100, 400), (1000, 1100), (900, 1000), 4, (True, True), (100, 150))
    assert bench.ratio == 1.1 and bench.per_hour == (500.0, 137.5) and bench.uncapped_ratio == 850 / 800
    assert round(bench.growth_per_transaction, 3) == round(100 / 300, 3)
    for bad in ("8,2", "2", "x,8", "0,8"):
        result = run("bench", "sim", "--memory-hours", bad)
        assert result.exit_code == 2 and "memory-hours" in flat(result.output), result.output
