"""Settlement: batches per terminal and currency, 0500 reconciliation, upload, cut-off, daily report."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.core.settlement import BatchState, Settlement, Totals
from sim.iso8583.errors import MessageError
from sim.iso8583.message import Message, OriginalData, advice, financial_request, reconciliation_request, repeat, reversal

PAN = "4761739001010010"
DAY = datetime(2026, 11, 22, 10, 0, 0)


def sale(stan: int, amount: int, *, currency: str = "978", tid: str = "TERM0001", refund: bool = False,
         transmitted: str = "1122100000") -> Message:
    return financial_request(
        pan=PAN, amount=amount, currency=currency, stan=stan, transmitted=transmitted, terminal_id=tid,
        entry_mode="012", processing_code="200000" if refund else "000000",
    )


def offline(stan: int, amount: int, *, code: str = "Y1", tid: str = "TERM0001", currency: str = "978") -> Message:
    return advice(
        response_code=code, pan=PAN, amount=amount, currency=currency, stan=stan, transmitted="1122100000",
        terminal_id=tid, entry_mode="012",
    )


def eod(totals: Totals, *, currency: str = "978", tid: str = "TERM0001", stan: int = 900) -> Message:
    return reconciliation_request(
        terminal_id=tid, stan=stan, transmitted="1122180000", currency=currency,
        credits_count=totals.credits_count, credits_amount=totals.credits_amount,
        debits_count=totals.debits_count, debits_amount=totals.debits_amount,
    )


def test_sales_and_refunds_are_debits_and_credits_per_currency() -> None:
    s = Settlement()
    s.record(sale(1, 1000), "00", DAY)
    s.record(sale(2, 250), "00", DAY)
    s.record(sale(3, 400, refund=True), "00", DAY)
    s.record(sale(4, 700, currency="392"), "00", DAY)
    assert s.totals("TERM0001", "978") == Totals(credits_count=1, credits_amount=400, debits_count=2, debits_amount=1250)
    assert s.totals("TERM0001", "392") == Totals(debits_count=1, debits_amount=700)
    assert s.totals("TERM0002", "978") == Totals()


def test_declines_repeats_and_offline_declines_do_not_count() -> None:
    s = Settlement()
    assert s.record(sale(1, 1000), "51", DAY) is None
    first = offline(2, 300)
    assert s.record(first, "Y1", DAY, source="offline") is not None
    assert s.record(repeat(first), "Y1", DAY, source="offline") is None  # 0221: same key
    assert s.record(offline(3, 900, code="Z1"), "Z1", DAY, source="offline") is None
    assert s.record(sale(4, 50), "00", DAY) is not None
    assert s.record(sale(4, 50), "00", DAY) is None  # duplicate 0200
    assert s.totals("TERM0001", "978") == Totals(debits_count=2, debits_amount=350)


def test_entries_keep_only_masked_pans() -> None:
    s = Settlement()
    entry = s.record(sale(1, 1000), "00", DAY)
    assert entry is not None and entry.pan == "476173******0010"
    assert PAN not in repr(s.entries())


def test_reversal_nets_out_once_full_and_partial() -> None:
    s = Settlement()
    first, second = sale(1, 1000), sale(2, 800)
    s.record(first, "00", DAY)
    s.record(second, "00", DAY)
    rev = reversal(first, stan=3, transmitted="1122100100")
    netted = s.reverse(rev, DAY)
    assert netted is not None and netted.effective == 0
    assert s.reverse(repeat(rev), DAY) is None  # 0401 changes nothing
    partial = reversal(second, stan=4, transmitted="1122100200", amount=300)
    assert s.reverse(partial, DAY).effective == 500  # type: ignore[union-attr]
    assert s.totals("TERM0001", "978") == Totals(debits_count=1, debits_amount=500)
    unknown = reversal(sale(9, 10), stan=5, transmitted="1122100300")
    assert s.reverse(unknown, DAY) is None


def test_reversal_after_settlement_becomes_an_opposite_entry_in_the_next_batch() -> None:
    s = Settlement()
    original = sale(1, 1000)
    s.record(original, "00", DAY)
    assert s.reconcile(eod(s.totals("TERM0001", "978")), DAY).response_code == "00"
    contra = s.reverse(reversal(original, stan=2, transmitted="1122110000"), DAY + timedelta(hours=1))
    assert contra is not None and contra.kind == "credit" and contra.source == "reversal" and contra.batch == 2
    assert s.totals("TERM0001", "978") == Totals(credits_count=1, credits_amount=1000)


def test_reconciliation_match_answers_00_and_settles_the_batch() -> None:
    s = Settlement()
    s.record(sale(1, 1000), "00", DAY)
    s.record(sale(2, 400, refund=True), "00", DAY)
    answer = s.reconcile(eod(Totals(1, 400, 1, 1000)), DAY + timedelta(hours=8))
    assert answer.mti == "0510" and answer.response_code == "00"
    assert (answer.get("74"), answer.get("86"), answer.get("76"), answer.get("88")) == (
        "0000000001", "0000000000000400", "0000000001", "0000000000001000")
    assert [b.state for b in s.batches("TERM0001", "978")] == [BatchState.RECONCILED]
    s.record(sale(3, 10), "00", DAY + timedelta(hours=9))
    assert [b.number for b in s.batches("TERM0001", "978")] == [1, 2]
    assert s.totals("TERM0001", "978") == Totals(debits_count=1, debits_amount=10)


def test_mismatch_answers_95_then_upload_adds_what_is_missing_once_and_closes() -> None:
    s = Settlement()
    known = sale(1, 1000)
    s.record(known, "00", DAY)
    missing = offline(2, 300)  # the host never got this advice
    terminal = Totals(debits_count=2, debits_amount=1300)
    answer = s.reconcile(eod(terminal), DAY + timedelta(hours=8))
    assert answer.response_code == "95" and answer.get("88") == "0000000000001000"
    assert s.reconciliations[-1].matched is False
    assert s.batches("TERM0001", "978")[0].state is BatchState.OPEN
    declined = offline(3, 50, code="Z1")
    result = s.upload("TERM0001", [known, missing, repeat(missing), declined], DAY + timedelta(hours=8))
    assert [e.stan for e in result.added] == ["000002"] and result.added[0].source == "upload"
    assert (result.known, result.skipped) == (2, 1)
    assert result.closed == (("978", 1),)
    assert dict(result.totals)["978"] == terminal
    assert s.batches("TERM0001", "978")[0].state is BatchState.UPLOADED
    assert s.totals("TERM0001", "978") == Totals()


def test_upload_refuses_another_terminals_messages() -> None:
    s = Settlement()
    with pytest.raises(MessageError) as err:
        s.upload("TERM0001", [offline(1, 10, tid="TERM0002")], DAY)
    assert err.value.field == "41"
    with pytest.raises(MessageError) as err:
        s.upload("TERM0001", [offline(1, 10, currency="840")], DAY, currency="978")
    assert err.value.field == "49"


def test_transactions_after_cutoff_go_in_the_next_batch_and_business_day() -> None:
    s = Settlement({"cutoff": "22:00"})
    s.record(sale(1, 1000), "00", datetime(2026, 11, 22, 21, 59))
    s.record(sale(2, 500), "00", datetime(2026, 11, 22, 22, 0))
    batches = s.batches("TERM0001", "978")
    assert [(b.number, b.business_day, b.state, b.totals.debits_amount) for b in batches] == [
        (1, date(2026, 11, 22), BatchState.CUT_OFF, 1000),
        (2, date(2026, 11, 23), BatchState.OPEN, 500),
    ]
    # A terminal settling after the cut-off is compared with everything it has not settled.
    answer = s.reconcile(eod(Totals(debits_count=2, debits_amount=1500)), datetime(2026, 11, 22, 23, 0))
    assert answer.response_code == "00"
    assert {b.state for b in s.batches("TERM0001", "978")} == {BatchState.RECONCILED}


def test_offline_approval_forwarded_after_cutoff_lands_in_next_batch_once() -> None:
    """SET-02."""
    s = Settlement({"cutoff": "22:00"})
    s.record(sale(1, 1000), "00", datetime(2026, 11, 22, 21, 0))
    late = offline(2, 300)  # approved offline at 21:50, forwarded at 22:10
    s.record(late, "Y1", datetime(2026, 11, 22, 22, 10), source="offline")
    s.record(repeat(late), "Y1", datetime(2026, 11, 22, 22, 11), source="offline")
    s.upload("TERM0001", [late], datetime(2026, 11, 22, 22, 30))
    batches = s.batches("TERM0001", "978")
    assert [[e.stan for e in b.entries] for b in batches] == [["000001"], ["000002"]]
    assert batches[1].business_day == date(2026, 11, 23)
    assert len(s.report_rows(date(2026, 11, 23))) == 1
    assert s.report_rows(date(2026, 11, 23))[0].totals == Totals(debits_count=1, debits_amount=300)


def test_daily_report_csv_uses_integer_minor_units_and_exact_decimals() -> None:
    s = Settlement()
    s.record(sale(1, 123456, currency="414"), "00", DAY)  # KWD, exponent 3
    s.record(sale(2, 1000, currency="392"), "00", DAY)  # JPY, exponent 0
    s.record(sale(3, 250, currency="978"), "00", DAY)
    s.record(sale(4, 1005, currency="978", refund=True), "00", DAY)
    s.record(sale(5, 999, currency="978", tid="TERM0002"), "00", DAY)
    s.record(sale(6, 777, currency="978"), "00", DAY + timedelta(days=1))  # another day
    text = s.report_csv(DAY.date())
    rows = list(csv.DictReader(io.StringIO(text)))
    assert PAN not in text and "476173" not in text
    by = {(r["terminal_id"], r["currency"]): r for r in rows}
    assert len(rows) == 4
    kwd = by[("TERM0001", "KWD")]
    assert (kwd["currency_numeric"], kwd["debits_minor"], kwd["debits"]) == ("414", "123456", "123.456")
    assert by[("TERM0001", "JPY")]["debits"] == "1000"
    eur = by[("TERM0001", "EUR")]
    assert (eur["debits"], eur["credits_count"], eur["credits"], eur["net_minor"], eur["net"]) == (
        "2.50", "1", "10.05", "-755", "-7.55")
    assert by[("TERM0002", "EUR")]["debits_count"] == "1"
    assert text.splitlines()[0].split(",")[:4] == ["business_day", "terminal_id", "currency", "currency_numeric"]


def test_authorizations_can_be_left_out_of_the_batch() -> None:
    auth = sale(1, 1000).replace(t="0100")
    assert Settlement().record(auth, "00", DAY) is not None
    assert Settlement({"capture_authorizations": False}).record(auth, "00", DAY) is None


def completion(auth: Message, stan: int, amount: int) -> Message:
    """The 0220 a dual-message terminal sends to capture ``auth``, DE90 naming it."""
    return advice(
        response_code="00", pan=PAN, amount=amount, currency="978", stan=stan, transmitted="1122100500",
        terminal_id="TERM0001", entry_mode="012",
        extra={"90": OriginalData(auth.mti, auth.stan or "", auth.transmitted or "").encode()},
    )


def test_a_completion_captures_its_authorization_once_at_the_captured_amount() -> None:
    s = Settlement()
    auth = sale(1, 4000).replace(t="0100")
    s.record(auth, "00", DAY)
    done = completion(auth, 2, 3500)
    captured = s.record(done, "00", DAY)
    assert captured is not None and captured.amount == 3500 and captured.stan == "000001"
    assert s.record(repeat(done), "00", DAY) is None  # 0221 of the completion
    assert s.totals("TERM0001", "978") == Totals(debits_count=1, debits_amount=3500)
    terminal = eod(Totals(debits_count=1, debits_amount=3500))
    assert s.reconcile(terminal, DAY).response_code == "00"


def test_a_completion_can_be_reversed_and_uploaded_without_counting_twice() -> None:
    s = Settlement()
    auth = sale(1, 4000).replace(t="0100")
    s.record(auth, "00", DAY)
    done = completion(auth, 2, 4000)
    s.record(done, "00", DAY)
    assert s.upload("TERM0001", [auth, done], DAY).known == 2
    s2 = Settlement()
    s2.record(auth, "00", DAY)
    s2.record(done, "00", DAY)
    assert s2.reverse(reversal(done, stan=3, transmitted="1122100600"), DAY).effective == 0  # type: ignore[union-attr]
    assert s2.totals("TERM0001", "978") == Totals()


def test_a_completion_without_a_counted_authorization_counts_on_its_own() -> None:
    s = Settlement({"capture_authorizations": False})
    auth = sale(1, 4000).replace(t="0100")
    assert s.record(auth, "00", DAY) is None
    assert s.record(completion(auth, 2, 4000), "00", DAY) is not None
    assert s.totals("TERM0001", "978") == Totals(debits_count=1, debits_amount=4000)


def test_the_same_0500_again_gets_the_first_answer_not_a_new_judgement() -> None:
    s = Settlement()
    s.record(sale(1, 1000), "00", DAY)
    first = eod(Totals(debits_count=1, debits_amount=1000))
    assert s.reconcile(first, DAY).response_code == "00"  # the batch is settled; the answer is lost
    s.record(sale(2, 500), "00", DAY + timedelta(minutes=1))  # the next batch opens
    again = s.reconcile(first, DAY + timedelta(minutes=2))
    assert again.response_code == "00" and len(s.reconciliations) == 1
    assert s.totals("TERM0001", "978") == Totals(debits_count=1, debits_amount=500)
    other = eod(Totals(debits_count=1, debits_amount=999))  # same key, other content: judged afresh
    assert s.reconcile(other, DAY + timedelta(minutes=3)).response_code == "95"
    assert len(s._answered) == 1
    s.prune(DAY + timedelta(hours=2), before=DAY + timedelta(hours=1))  # past the retention: forgotten
    assert s._answered == {}


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match="cutoff"):
        Settlement({"cutoff": "25:00"})
    with pytest.raises(ValueError, match="'cut_off'"):
        Settlement({"cut_off": "22:00"})
    with pytest.raises(MessageError) as err:
        Settlement().record(eod(Totals()), "00", DAY)
    assert err.value.field == "t"


# Property: totals equal the sum computed independently ------------------------------------------

_op = st.one_of(
    st.tuples(st.just("sale"), st.sampled_from(["T1", "T2"]), st.sampled_from(["978", "392", "414"]),
              st.integers(1, 10**9), st.sampled_from(["00", "51", "Y1", "Z3"]), st.booleans()),
    st.tuples(st.just("reverse"), st.integers(0, 10**6), st.integers(1, 10**9), st.booleans()),
    st.tuples(st.just("repeat"), st.integers(0, 10**6)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_op, max_size=40))
def test_batch_totals_equal_an_independent_sum(ops: list[tuple]) -> None:
    s = Settlement()
    standing: dict[tuple[str, str], int] = {}  # (tid, stan) -> amount still standing
    meta: dict[tuple[str, str], tuple[str, bool]] = {}  # (tid, stan) -> currency, is credit
    approved: list[Message] = []
    stan = 0
    for op in ops:
        stan += 1
        if op[0] == "sale":
            _, tid, cur, amount, code, refund = op
            msg = sale(stan, amount, currency=cur, tid=tid, refund=refund)
            s.record(msg, code, DAY)
            if code in ("00", "Y1"):
                standing[(tid, msg.stan)] = amount  # type: ignore[index]
                meta[(tid, msg.stan)] = (cur, refund)  # type: ignore[index]
                approved.append(msg)
        elif op[0] == "reverse" and approved:
            _, pick, amount, full = op
            original = approved[pick % len(approved)]
            part = None if full else min(amount, original.amount or 0)
            rev = reversal(original, stan=stan, transmitted="1122100500", amount=part)
            s.reverse(rev, DAY)
            key = (original.terminal_id, original.stan)
            standing[key] -= min(rev.amount, standing[key])  # type: ignore[index, arg-type]
        elif op[0] == "repeat" and approved:
            again = approved[op[1] % len(approved)]
            s.record(again, "00", DAY)  # same key: must change nothing
    expected: dict[tuple[str, str], Totals] = {}
    for key, left in standing.items():
        cur, refund = meta[key]
        t = expected.get((key[0], cur), Totals())
        if left > 0:
            t = Totals(
                t.credits_count + refund, t.credits_amount + left * refund,
                t.debits_count + (not refund), t.debits_amount + left * (not refund),
            )
        expected[(key[0], cur)] = t
    for tid in ("T1", "T2"):
        for cur in ("978", "392", "414"):
            want = expected.get((tid, cur), Totals())
            assert s.totals(tid, cur) == want
            if want != Totals():
                assert s.reconcile(eod(want, currency=cur, tid=tid), DAY).response_code == "00"
                assert s.totals(tid, cur) == Totals()
