"""Batch upload over the wire (SET-01): 0320/0330 per transaction, then a 0500 960000.

The host core takes each uploaded transaction by its original key (DE90), so a
transaction it already counted, or an upload repeated, is never counted twice; an
uploaded advice the issuer never saw is booked by it once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from sim.core.cards import load_cards
from sim.core.host import Host
from sim.core.settlement import BatchState, Settlement, Totals
from sim.iso8583.catalogue import validate
from sim.iso8583.message import (
    Message,
    advice,
    batch_upload,
    financial_request,
    parse,
    reconciliation_request,
    repeat,
    uploaded_transaction,
)
from tests.strategies import message_fields

CARDS = load_cards()
HEALTHY = CARDS.card("healthy")
DAY = datetime(2026, 11, 22, 10, 0, 0)
TID = "TERM0007"


def keyed(stan: int, amount: int, *, refund: bool = False, tid: str = TID) -> Message:
    return financial_request(
        pan=HEALTHY.pan, amount=amount, currency="978", stan=stan, transmitted="1122100000", terminal_id=tid,
        entry_mode="012", expiry=HEALTHY.expiry, processing_code="200000" if refund else "000000",
    )


def offline(stan: int, amount: int, code: str = "Y1", tid: str = TID) -> Message:
    return advice(
        response_code=code, pan=HEALTHY.pan, amount=amount, currency="978", stan=stan, transmitted="1122100000",
        terminal_id=tid, entry_mode="012", expiry=HEALTHY.expiry,
    )


def eod(totals: Totals, stan: int, *, after_upload: bool) -> Message:
    return reconciliation_request(
        terminal_id=TID, stan=stan, transmitted="1122180000", currency="978",
        credits_count=totals.credits_count, credits_amount=totals.credits_amount,
        debits_count=totals.debits_count, debits_amount=totals.debits_amount,
        processing_code="960000" if after_upload else "920000",
    )


def test_upload_message_round_trips_and_carries_no_track_or_pin() -> None:
    swiped = financial_request(
        track2=f"{HEALTHY.pan}D28122010000000000", amount=500, currency="978", stan=3, transmitted="1122100000",
        terminal_id=TID, entry_mode="901", pin_block="0123456789ABCDEF",
    )
    up = batch_upload(swiped, stan=90, transmitted="1122180000")
    assert "35" not in up.fields and "52" not in up.fields and up.get("2") == HEALTHY.pan
    again = parse(up.encode())
    assert (again.mti, again.stan, again.response_code) == ("0320", "000090", "00")
    assert (again.original.mti, again.original.stan, again.original.transmitted) == ("0200", "000003", "1122100000")
    txn = uploaded_transaction(again)
    assert (txn.mti, txn.stan, txn.transmitted, txn.amount) == ("0200", "000003", "1122100000", 500)
    assert validate(repeat(up).fields).name == "batch upload repeat"


def test_mismatch_95_then_0320s_then_960000_settles_as_uploaded() -> None:
    host = Host()
    before = host.balance(HEALTHY.pan)
    sale = keyed(1, 1000)
    assert host.handle(sale, DAY).response_code == "00"
    missing = offline(2, 300)  # the host never got this advice
    declined = offline(3, 50, code="Z1")
    terminal = Totals(debits_count=2, debits_amount=1300)
    assert host.handle(eod(terminal, 4, after_upload=False), DAY).response_code == "95"
    uploads = [batch_upload(m, stan=10 + i, transmitted="1122180100") for i, m in enumerate([sale, missing, declined])]
    uploads.append(repeat(uploads[1]))  # the 0330 got lost: the terminal repeats it
    answers = [host.handle(u, DAY + timedelta(minutes=1)) for u in uploads]
    assert [(a.mti, a.response_code, a.stan) for a in answers] == [
        ("0330", "00", "000010"), ("0330", "00", "000011"), ("0330", "00", "000012"), ("0330", "00", "000011")]
    reasons = [d.reason for d in host.acquirer.decisions if d.mti in ("0320", "0321")]
    assert [r.rsplit(": ", 1)[1] for r in reasons] == ["already counted", "added to the batch", "not counted", "already counted"]
    assert host.settlement.totals(TID, "978") == terminal
    assert host.balance(HEALTHY.pan) == before - 1300  # the advice reached the issuer once
    answer = host.handle(eod(terminal, 20, after_upload=True), DAY + timedelta(minutes=2))
    assert (answer.response_code, answer.processing_code) == ("00", "960000")
    assert [b.state for b in host.settlement.batches(TID, "978")] == [BatchState.UPLOADED]
    assert host.settlement.reconciliations[-1].after_upload


def test_960000_answers_95_again_while_totals_still_differ() -> None:
    host = Host()
    host.handle(keyed(1, 1000), DAY)
    terminal = Totals(debits_count=2, debits_amount=1300)
    assert host.handle(eod(terminal, 2, after_upload=False), DAY).response_code == "95"
    assert host.handle(eod(terminal, 3, after_upload=True), DAY).response_code == "95"  # nothing was uploaded
    assert [b.state for b in host.settlement.batches(TID, "978")] == [BatchState.OPEN]


def test_bad_uploads_are_answered_30_and_count_nothing() -> None:
    host = Host()
    good = batch_upload(offline(2, 300), stan=10, transmitted="1122180100")
    bad = [
        good.replace(DE90=None),  # no original data
        good.replace(DE90="0400" + good.get("90")[4:]),  # a reversal is not a transaction to count
        good.replace(DE90="12345"),  # not 42 digits
        good.replace(DE2="47617390010100AB"),  # PAN not digits
        good.replace(DE4="12.50"),
        good.replace(t="0330"),  # a response sent as a request
    ]
    for msg in bad:
        answer = host.handle(msg, DAY)
        assert answer.response_code == "30", (msg, answer)
    assert host.settlement.entries() == []
    assert host.balance(HEALTHY.pan) == HEALTHY.balance


def test_in_process_upload_takes_0320s_too_and_forwards_advices_once() -> None:
    host = Host()
    before = host.balance(HEALTHY.pan)
    missing = offline(2, 300)
    ups = [batch_upload(missing, stan=10, transmitted="1122180100"), missing]
    result = host.batch_upload(TID, ups, DAY)
    assert [e.stan for e in result.added] == ["000002"] and result.known == 1
    assert result.closed == (("978", 1),)
    assert host.balance(HEALTHY.pan) == before - 300


# Idempotence: any interleaving and repetition of live traffic and uploads ----------------------------------

TXNS = [(i, 100 * i + 7, kind) for i, kind in enumerate(["online", "offline", "declined", "refund", "offline", "online"], 1)]


def _message(stan: int, amount: int, kind: str) -> Message:
    if kind == "refund":
        return keyed(stan, amount, refund=True)
    if kind == "online":
        return keyed(stan, amount)
    return offline(stan, amount, code="Z1" if kind == "declined" else "Y1")


def _independent_sum(kinds: dict[int, str]) -> Totals:
    t = Totals()
    for stan, amount, kind in TXNS:
        if stan not in kinds or kind == "declined":
            continue
        if kind == "refund":
            t = Totals(t.credits_count + 1, t.credits_amount + amount, t.debits_count, t.debits_amount)
        else:
            t = Totals(t.credits_count, t.credits_amount, t.debits_count + 1, t.debits_amount + amount)
    return t


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from(["live", "upload", "upload-repeat", "in-process"]),
                                st.integers(0, len(TXNS) - 1)), max_size=25))
def test_uploads_never_count_a_transaction_twice(steps: list[tuple[str, int]]) -> None:
    s = Settlement()
    seen: dict[int, str] = {}
    upload_stan = 500
    for how, index in steps:
        stan, amount, kind = TXNS[index]
        msg = _message(stan, amount, kind)
        upload_stan += 1
        if how == "live":
            s.record(msg, msg.response_code or "00", DAY)
        elif how == "in-process":
            s.upload(TID, [msg], DAY)  # closes the batch: what is counted stays counted, in a settled batch
        else:
            up = batch_upload(msg, stan=upload_stan, transmitted="1122180000")
            s.add_upload(repeat(up) if how == "upload-repeat" else up, DAY)
        seen[stan] = kind
    counted = Totals()
    for entry in s.entries(TID):
        counted = counted.add(entry)
    assert counted == _independent_sum(seen)
    assert len({e.key for e in s.entries()}) == len(s.entries())
    assert all(e.stan != "000003" for e in s.entries())  # the declined one is never counted


def test_wireshark_decodes_an_upload_exchange(tmp_path) -> None:
    import pytest

    from tests.test_tshark_oracle import TSHARK, _check
    from sim.iso8583.message import response
    from sim.iso8583.pcap import write_pcap

    if TSHARK is None:
        pytest.skip("tshark is not installed (Debian: apt-get install tshark)")
    up = batch_upload(offline(2, 300), stan=10, transmitted="1122180100")
    wanted = [up, response(up, "00"), repeat(up)]
    write_pcap(tmp_path / "upload.pcap", wanted)
    _check(tmp_path / "upload.pcap", wanted)


def test_terminal_store_plans_each_upload_once_and_repeats_after_a_send(tmp_path) -> None:
    from sim.live.terminal.store import TerminalStore

    path = tmp_path / "terminal.sqlite"
    store = TerminalStore(path)
    first = batch_upload(offline(2, 300), stan=10, transmitted="1122180100")
    store.plan_upload(1, "978", [(7, first)])
    store.plan_upload(1, "978", [(7, batch_upload(offline(2, 300), stan=99, transmitted="1122190000"))])
    (row,) = store.uploads(1, "978")
    assert (row.attempt, row.message.stan, row.wire_form.mti, row.done) == (7, "000010", "0320", False)
    store.upload_sending(row.id)
    store.close()  # a restart: what was committed is all there is
    store = TerminalStore(path)
    (row,) = store.uploads(1, "978")
    assert (row.sends, row.wire_form.mti, row.wire_form.stan) == (1, "0321", "000010")
    store.upload_answered(row.id, "30", taken=False)
    assert not store.uploads(1, "978")[0].done and store.summary()["upload_pending"] == 1
    store.upload_answered(row.id, "00", taken=True)
    assert store.uploads(1, "978")[0].done and store.summary()["upload_pending"] == 0
    assert store.planned_uploads(1) == {7} and store.uploads(2, "978") == []


@settings(max_examples=60, deadline=None)
@given(fields=st.sampled_from(["0320", "0321"]).flatmap(message_fields))
def test_any_catalogue_valid_upload_is_answered_never_raised(fields: dict[str, str]) -> None:
    from sim.iso8583.catalogue import response_mti

    assert response_mti("0320") == response_mti("0321") == "0330"
    host = Host()
    answer = host.handle(Message(dict(fields)), DAY)
    assert answer.mti == "0330" and answer.response_code in ("00", "30"), (fields, answer)
    assert answer.stan == fields["11"]
    if answer.response_code == "30":  # nothing counted for a refused upload
        assert host.settlement.entries() == []
