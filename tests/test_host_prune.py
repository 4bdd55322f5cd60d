"""A host configured with ``prune.every_s`` prunes on message time, so a replay of its messages
prunes at the same points; the live host runs with bounded records and a day's window."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from sim.core.host import Host
from sim.core.ledger import TxnState
from sim.iso8583.dialect import DEFAULT
from sim.live.exchange import core_answer, decode_frame
from sim.live.host_server import LIVE_CORE_DEFAULTS, HostServer, HostSettings, live_core_config
from sim.live.store import Event, replay
from sim.iso8583.message import financial_request, reversal

PAN = "4761739001010010"
T0 = datetime(2026, 11, 22, 10, 0)
WINDOW = {"issuer": {"retain_s": 60}, "acquirer": {"retain_s": 60}, "settlement": {"retain_s": 60},
          "prune": {"every_s": 10}}


def sale(stan: int, at: datetime, amount: int = 1000):
    return financial_request(pan=PAN, amount=amount, currency="978", stan=stan, transmitted=at.strftime("%m%d%H%M%S"),
                             terminal_id="TERM0001", entry_mode="012", expiry="2812")


def issuer_of(host: Host):
    return host.issuer_for(PAN)


def test_prune_runs_on_the_first_message_due_and_not_before() -> None:
    host = Host(WINDOW)
    first = sale(1, T0)
    assert host.handle(first, T0).response_code == "00"
    key = ("TERM0001", "000001", first.transmitted)
    state = issuer_of(host).ledger.state
    from sim.core.ledger import TxnKey

    txn = TxnKey(*key)
    # a message inside the retention window prunes nothing of it
    host.handle(sale(2, T0 + timedelta(seconds=30)), T0 + timedelta(seconds=30))
    assert state(txn) is TxnState.DEBITED
    # past retain_s, and a prune due: the original is forgotten, its money is not
    balance = host.balance(PAN)
    host.handle(sale(3, T0 + timedelta(seconds=75)), T0 + timedelta(seconds=75))
    assert state(txn) is TxnState.ABSENT
    assert host.balance(PAN) == balance - 1000


def test_without_the_prune_section_nothing_is_forgotten() -> None:
    host = Host({k: v for k, v in WINDOW.items() if k != "prune"})
    first = sale(1, T0)
    host.handle(first, T0)
    host.handle(sale(2, T0 + timedelta(hours=5)), T0 + timedelta(hours=5))
    from sim.core.ledger import TxnKey

    assert issuer_of(host).ledger.state(TxnKey("TERM0001", "000001", first.transmitted)) is TxnState.DEBITED


@pytest.mark.parametrize("section, allowed", [
    ({"every_s": 0}, "seconds > 0"), ({"every_s": "60"}, "seconds > 0"), ({"every_s": True}, "seconds > 0"),
    ({"often": 5}, "allowed: every_s, unsettled"), ({"unsettled": "yes"}, "true or false"),
])
def test_bad_prune_section_is_named(section: dict, allowed: str) -> None:
    with pytest.raises(ValueError, match=allowed) as info:
        Host({"prune": section})
    assert "[prune]" in str(info.value)


def _recorded(host: Host, messages: list[tuple[object, datetime]]) -> list[Event]:
    events = []
    for seq, (msg, at) in enumerate(messages, 1):
        raw = msg.encode(DEFAULT)
        fields = decode_frame(raw, DEFAULT).fields
        answer = core_answer(host, fields, at, DEFAULT, raw=raw)
        events.append(Event(seq, "message", at, DEFAULT.name, raw, None, answer.raw, answer.fault, None))
    return events


def test_replay_of_a_pruning_host_prunes_at_the_same_points() -> None:
    # a reversal after its original was forgotten releases nothing: the replay must agree
    original = sale(1, T0, amount=2500)
    late = reversal(original, stan=99, transmitted=(T0 + timedelta(seconds=200)).strftime("%m%d%H%M%S"))
    messages = [(original, T0)] + [(sale(n, T0 + timedelta(seconds=15 * n)), T0 + timedelta(seconds=15 * n))
                                   for n in range(2, 13)] + [(late, T0 + timedelta(seconds=200))]
    live = Host(WINDOW)
    events = _recorded(live, messages)
    again = Host(WINDOW)
    report = replay(events, again, {DEFAULT.name: DEFAULT})
    assert report.ok and report.messages == len(messages)
    assert again.balance(PAN) == live.balance(PAN)
    # the same messages without pruning do reverse the original: pruning changed the money,
    # and the replay followed it
    keep_all = Host({k: v for k, v in WINDOW.items() if k != "prune"})
    _recorded(keep_all, messages)
    assert keep_all.balance(PAN) == live.balance(PAN) + 2500


def test_live_defaults_sit_under_the_operators_config() -> None:
    merged = live_core_config({"issuer": {"retain_s": 3600}, "standin": {"limits": {"EUR": 1}}})
    assert merged["issuer"] == {**LIVE_CORE_DEFAULTS["issuer"], "retain_s": 3600}
    assert merged["standin"] == {"limits": {"EUR": 1}}
    assert merged["prune"] == LIVE_CORE_DEFAULTS["prune"]
    Host(merged)  # a valid core configuration


def test_live_host_records_are_bounded(tmp_path: Path) -> None:
    server = HostServer(HostSettings(port=0, core_config={"issuer": {"keep_decisions": 5, "keep_postings": 7}}))
    at = T0
    for n in range(1, 21):
        at += timedelta(seconds=1)
        msg = sale(n, at, amount=10)
        raw = msg.encode(DEFAULT)
        assert core_answer(server.host, decode_frame(raw, DEFAULT).fields, at, DEFAULT, raw=raw).fields["39"] == "00"
    issuer = issuer_of(server.host)
    assert len(issuer.decisions) == 5
    assert len(issuer.ledger.entries()) == 7
    assert server.host.prune_every == timedelta(seconds=LIVE_CORE_DEFAULTS["prune"]["every_s"])


@pytest.mark.parametrize("settle_every, unsettled", [(120, False), (None, True)])
def test_memory_of_a_pruning_host_is_flat_in_the_length_of_the_run(
    tmp_path: Path, settle_every: int | None, unsettled: bool,
) -> None:
    """A terminal selling every second, settling every two minutes or never (a load tool's): the
    memory the host holds after 10 and after 40 windows' worth of trading is the same within 20%."""
    import tracemalloc

    from sim.core.cards import load_cards
    from sim.iso8583.message import reconciliation_request
    from sim.live.sales import write_load_cards

    cards = load_cards(write_load_cards(tmp_path / "cards.toml"))
    config = {"issuer": {"retain_s": 60, "duplicate_window_s": 30, "keep_decisions": 50, "keep_postings": 50},
              "acquirer": {"retain_s": 60, "keep_records": 50, "duplicate_window_s": 30}, "settlement": {"retain_s": 60},
              "prune": {"every_s": 10, "unsettled": unsettled}}
    host = Host(config, cards=cards)
    pan = cards.card("healthy").pan
    clock = {"t": T0, "stan": 0, "count": 0, "amount": 0}

    def trade(seconds: int) -> None:
        for _ in range(seconds):
            clock["t"] += timedelta(seconds=1)
            clock["stan"] = clock["stan"] % 999_999 + 1
            at = clock["t"]
            msg = financial_request(pan=pan, amount=100, currency="978", stan=clock["stan"],
                                    transmitted=at.strftime("%m%d%H%M%S"), terminal_id="TERM0001",
                                    entry_mode="012", expiry="2812")
            assert host.handle(msg, at).response_code == "00"
            clock["count"] += 1
            clock["amount"] += 100
            if clock["count"] == settle_every:
                clock["stan"] += 1
                settle = reconciliation_request(terminal_id="TERM0001", stan=clock["stan"],
                                                transmitted=at.strftime("%m%d%H%M%S"), currency="978",
                                                credits_count=0, credits_amount=0,
                                                debits_count=clock["count"], debits_amount=clock["amount"])
                assert host.handle(settle, at).response_code == "00"
                clock["count"] = clock["amount"] = 0

    trade(600)  # warm: every window filled once
    tracemalloc.start()
    try:
        trade(600)
        short = tracemalloc.get_traced_memory()[0]
        trade(1800)
        long = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert long <= 1.2 * short + 64 * 1024, (short, long)
    if settle_every is None:  # folded, not lost: the open batch's totals count every sale
        totals = host.settlement.totals("TERM0001", "978")
        assert (totals.debits_count, totals.debits_amount) == (3000, 300_000)


@pytest.mark.parametrize("unsettled, counted", [(False, 1), (True, 2)])
def test_open_batches_stay_whole_unless_told_so_an_upload_does_not_count_twice(unsettled: bool, counted: int) -> None:
    """The live default keeps an open batch's entries past retain_s: a batch upload after a 0510 95
    finds the sale already counted. Folding open batches (load tools' hosts) would count it again."""
    from sim.iso8583.message import batch_upload, reconciliation_request

    config = live_core_config({**WINDOW, "prune": {"every_s": 10, "unsettled": unsettled}})
    host = Host(config)
    first = sale(1, T0)
    assert host.handle(first, T0).response_code == "00"
    at = T0
    for n in range(2, 12):  # traffic on another terminal carries time past retain_s, with prunes
        at += timedelta(seconds=15)
        other = sale(n, at).replace(DE41="TERM0002")
        host.handle(other, at)
    wrong = reconciliation_request(terminal_id="TERM0001", stan=20, transmitted=at.strftime("%m%d%H%M%S"), currency="978",
                                   credits_count=0, credits_amount=0, debits_count=2, debits_amount=2000)
    assert host.handle(wrong, at).response_code == "95"
    upload = batch_upload(first.replace(DE39="00"), stan=21, transmitted=at.strftime("%m%d%H%M%S"))
    assert host.handle(upload, at).response_code == "00"
    assert host.settlement.totals("TERM0001", "978").debits_count == counted


def test_answers_kept_for_duplicates_are_capped_and_a_forgotten_repeat_is_never_booked_twice() -> None:
    """``keep_answers`` caps the duplicate windows of the acquirer and the issuers: the latest
    answers are replayed as ever; a repeat of one forgotten is answered 94 by the issuer's
    ledger, and the card is debited once."""
    from sim.iso8583.samples import sample_sale

    host = Host({"acquirer": {"keep_answers": 2}, "issuer": {"keep_answers": 2}})
    now = datetime(2026, 11, 22, 10, 30)
    sales = [sample_sale(stan=n).replace(DE22="012", DE55=None, DE35=None) for n in (1, 2, 3)]
    answers = [host.handle(s, now + timedelta(seconds=i)) for i, s in enumerate(sales)]
    assert [a.response_code for a in answers] == ["00", "00", "00"]
    assert len(host.acquirer._answers) == 2
    assert all(len(i._seen) <= 2 for i in host.issuers.values())
    latest = host.handle(sales[2], now + timedelta(seconds=10))
    assert (latest.response_code, latest.auth_code) == ("00", answers[2].auth_code)  # still remembered: replayed
    forgotten = host.handle(sales[0], now + timedelta(seconds=11))
    assert forgotten.response_code == "94"
    card = host.cards.card("healthy")
    assert host.balance(card.pan) == card.balance - 3 * sales[0].amount


@pytest.mark.parametrize("section", ["acquirer", "issuer"])
@pytest.mark.parametrize("value", [0, -1, True, 2.5])
def test_keep_answers_must_be_a_positive_integer(section: str, value: object) -> None:
    with pytest.raises(ValueError, match="keep_answers.*allowed: an integer >= 1"):
        Host({section: {"keep_answers": value}})
