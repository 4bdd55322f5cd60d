"""The issuer ledger: postings, holds, exactly-once booking, partial reversals, invariants."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.core.ledger import (
    REFUSALS,
    TRANSITIONS,
    Event,
    Kind,
    Ledger,
    LedgerError,
    Outcome,
    TxnKey,
    TxnState,
)

PAN_A = "4761739001010010"
PAN_B = "5413330089010012"
AT = datetime(2026, 3, 15, 10, 30)


def key(stan: int, tid: str = "TERM0001") -> TxnKey:
    return TxnKey(tid, f"{stan:06d}", "0315103000")


@pytest.fixture
def ledger() -> Ledger:
    book = Ledger()
    book.open_account(PAN_A, "EUR", 10_000)
    book.open_account(PAN_B, "USD", 5_000)
    return book


def test_debit_books_once(ledger: Ledger) -> None:
    first = ledger.debit(key(1), PAN_A, 2_500, at=AT)
    assert first.booked and first.amount == 2_500
    assert ledger.debit(key(1), PAN_A, 2_500).outcome is Outcome.DUPLICATE
    assert ledger.debit(key(1), PAN_A, 9_999).outcome is Outcome.DUPLICATE
    assert ledger.balance(PAN_A) == 7_500
    assert [p.kind for p in ledger.entries()] == [Kind.DEBIT]
    posting = ledger.entries()[0]
    assert (posting.terminal_id, posting.stan, posting.transmitted) == ("TERM0001", "000001", "0315103000")
    assert posting.amount == 2_500 and posting.currency == "EUR" and posting.at == AT
    assert posting.balance_effect == -2_500 and posting.hold_effect == 0 and posting.booked


def test_hold_capture_release(ledger: Ledger) -> None:
    ledger.hold(key(1), PAN_A, 3_000)
    assert (ledger.balance(PAN_A), ledger.held(PAN_A), ledger.available(PAN_A)) == (10_000, 3_000, 7_000)
    partial = ledger.reverse(key(1), 1_000, by=key(50))
    assert partial.booked and partial.posting.kind is Kind.RELEASE
    assert ledger.held(PAN_A) == 2_000
    captured = ledger.capture(key(1), 2_600, by=key(2))  # a tip on top of the remaining hold
    assert captured.booked and captured.posting.kind is Kind.CAPTURE
    assert captured.posting.hold_effect == -2_000 and captured.posting.reference == key(2)
    assert (ledger.balance(PAN_A), ledger.held(PAN_A)) == (7_400, 0)
    assert ledger.capture(key(1), 2_600, by=key(2)).outcome is Outcome.DUPLICATE
    assert ledger.state(key(1)) is TxnState.CAPTURED
    ledger.reverse(key(1), by=key(51))
    assert ledger.balance(PAN_A) == 10_000


def test_full_release_of_a_hold(ledger: Ledger) -> None:
    ledger.hold(key(1), PAN_A, 3_000)
    assert ledger.reverse(key(1)).booked
    assert ledger.held(PAN_A) == 0 and ledger.balance(PAN_A) == 10_000
    assert ledger.reverse(key(1)).outcome is Outcome.DUPLICATE
    assert ledger.reverse(key(1), by=key(9)).outcome is Outcome.NOTHING_LEFT


def test_capture_of_unknown_hold(ledger: Ledger) -> None:
    assert ledger.capture(key(1), 100).outcome is Outcome.UNKNOWN_ORIGINAL
    ledger.debit(key(2), PAN_A, 100)
    assert ledger.capture(key(2), 100).outcome is Outcome.DUPLICATE
    assert ledger.balance(PAN_A) == 9_900


def test_partial_reversals_never_undo_more_than_booked(ledger: Ledger) -> None:
    ledger.debit(key(1), PAN_A, 2_500)
    assert ledger.reverse(key(1), 1_000, by=key(10)).amount == 1_000
    assert ledger.reverse(key(1), 1_000, by=key(10)).outcome is Outcome.DUPLICATE  # 0401 repeat
    assert ledger.reverse(key(1), 5_000, by=key(11)).amount == 1_500  # capped
    assert ledger.reverse(key(1), 1, by=key(12)).outcome is Outcome.NOTHING_LEFT
    assert ledger.balance(PAN_A) == 10_000
    effect = ledger.net_effect(key(1))
    assert (effect.booked, effect.reversed, effect.balance, effect.held) == (2_500, 2_500, 0, 0)


def test_refund_and_its_reversal(ledger: Ledger) -> None:
    assert ledger.credit(key(1), PAN_B, 700).booked
    assert ledger.balance(PAN_B) == 5_700
    reversal = ledger.reverse(key(1), by=key(2))
    assert reversal.posting.balance_effect == -700
    assert ledger.balance(PAN_B) == 5_000


def test_reversal_of_unknown_original_is_recorded_not_booked(ledger: Ledger) -> None:
    result = ledger.reverse(key(7), 2_500, by=key(8), pan=PAN_A, currency="EUR")
    assert result.outcome is Outcome.UNKNOWN_ORIGINAL and not result.booked
    posting = result.posting
    assert not posting.booked and posting.balance_effect == 0 and posting.hold_effect == 0
    assert posting.note == "original unknown" and posting.kind is Kind.REVERSAL
    assert ledger.state(key(7)) is TxnState.REVERSED_UNSEEN
    # the original arriving late is never booked
    assert ledger.debit(key(7), PAN_A, 2_500).outcome is Outcome.ALREADY_REVERSED
    assert ledger.hold(key(7), PAN_A, 2_500).outcome is Outcome.ALREADY_REVERSED
    assert ledger.capture(key(7), 2_500).outcome is Outcome.ALREADY_REVERSED
    assert ledger.balance(PAN_A) == 10_000
    assert ledger.reverse(key(7), by=key(8)).outcome is Outcome.DUPLICATE
    assert ledger.reverse(key(7), by=key(9)).outcome is Outcome.UNKNOWN_ORIGINAL


def test_balance_may_go_negative_for_money_already_spent(ledger: Ledger) -> None:
    ledger.debit(key(1), PAN_B, 8_000)
    assert ledger.balance(PAN_B) == -3_000 and ledger.available(PAN_B) == -3_000


def test_entries_are_immutable_records_with_masked_pans(ledger: Ledger) -> None:
    ledger.debit(key(1), PAN_A, 2_500)
    entries = ledger.entries()
    assert isinstance(entries, tuple)
    with pytest.raises(AttributeError):  # read-only
        entries[0].amount = 1  # type: ignore[misc]
    shown = repr(entries[0]) + str(entries[0]) + repr(ledger.account(PAN_A)) + repr(ledger.net_effect(key(1)))
    assert PAN_A not in shown and "476173******0010" in shown
    assert entries[0].pan == PAN_A and entries[0].masked_pan == "476173******0010"
    assert entries[0].key == key(1)
    ledger.debit(key(2), PAN_A, 1)
    assert len(entries) == 1 and len(ledger) == 2 and list(ledger) == list(ledger.entries())


def test_bad_calls(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="non-negative int"):
        ledger.debit(key(1), PAN_A, 10.5)  # type: ignore[arg-type]
    with pytest.raises(LedgerError, match="non-negative int"):
        ledger.debit(key(1), PAN_A, -1)
    with pytest.raises(LedgerError, match="non-negative int"):
        ledger.debit(key(1), PAN_A, True)  # type: ignore[arg-type]
    with pytest.raises(LedgerError, match=r"no account for 400000\*+0002"):
        ledger.debit(key(1), "4000000000000002", 1)
    with pytest.raises(LedgerError, match="already open"):
        ledger.open_account(PAN_A, "EUR", 1)
    assert ledger.entries() == ()


def test_accounts_and_views(ledger: Ledger) -> None:
    view = ledger.account(PAN_B)
    assert view.currency.alpha == "USD" and view.available == 5_000
    assert {v.pan for v in ledger.accounts()} == {PAN_A, PAN_B}
    assert ledger.has_account(PAN_A) and not ledger.has_account("4000000000000002")
    assert ledger.transaction(key(1)) is None and ledger.net_effect(key(1)) is None
    ledger.hold(key(1), PAN_B, 10)
    assert ledger.transaction(key(1)).state is TxnState.HELD


def test_state_rules_are_data() -> None:
    for state in TxnState:
        assert (state, Event.REVERSE) in TRANSITIONS, state
    assert not set(TRANSITIONS) & set(REFUSALS)


# Property: random sequences keep the books straight ----------------------------------------------

KEYS = [key(n) for n in range(1, 6)]
BY = [key(n, "REVERSER") for n in range(1, 4)]
PANS = {PAN_A: 10_000, PAN_B: 5_000}
ORIGINAL_KINDS = {Kind.DEBIT, Kind.CREDIT, Kind.HOLD}

operation = st.one_of(
    st.tuples(st.sampled_from(["debit", "credit", "hold"]), st.sampled_from(KEYS), st.integers(0, 6_000)),
    st.tuples(st.just("capture"), st.sampled_from(KEYS), st.integers(0, 6_000), st.sampled_from(BY)),
    st.tuples(st.just("reverse"), st.sampled_from(KEYS), st.none() | st.integers(0, 6_000), st.none() | st.sampled_from(BY)),
)


def pan_of(k: TxnKey) -> str:
    return PAN_A if int(k.stan) % 2 else PAN_B


def apply(ledger: Ledger, op: tuple) -> Outcome:
    name, k = op[0], op[1]
    if name in ("debit", "credit", "hold"):
        return getattr(ledger, name)(k, pan_of(k), op[2]).outcome
    if name == "capture":
        return ledger.capture(k, op[2], by=op[3]).outcome
    return ledger.reverse(k, op[2], by=op[3]).outcome


def check_books(ledger: Ledger) -> None:
    entries = ledger.entries()
    assert [p.seq for p in entries] == list(range(1, len(entries) + 1))
    for pan, opening in PANS.items():
        mine = [p for p in entries if p.pan == pan]
        held = ledger.held(pan)
        # balance = opening + every booked effect (money conserved); holds likewise
        assert ledger.balance(pan) == opening + sum(p.balance_effect for p in mine)
        assert held == sum(p.hold_effect for p in mine) >= 0
        assert ledger.available(pan) == ledger.balance(pan) - held
    # each original booked at most once, captured at most once
    originals = Counter(p.key for p in entries if p.kind in ORIGINAL_KINDS)
    captures = Counter(p.key for p in entries if p.kind is Kind.CAPTURE)
    assert max(originals.values(), default=0) <= 1 and max(captures.values(), default=0) <= 1
    assert all(p.balance_effect == p.hold_effect == 0 for p in entries if not p.booked)
    for effect in ledger.net_effects():
        assert 0 <= effect.reversed <= effect.booked or effect.state is TxnState.REVERSED_UNSEEN
        assert effect.held >= 0
        postings = [p for p in entries if p.key == effect.key]
        assert effect.balance == sum(p.balance_effect for p in postings)
        assert effect.held == sum(p.hold_effect for p in postings)
        if effect.state is TxnState.DEBITED:
            assert -effect.booked <= effect.balance <= 0
        elif effect.state is TxnState.CREDITED:
            assert 0 <= effect.balance <= effect.booked
        elif effect.state is TxnState.HELD:
            assert effect.balance == 0 and effect.held == effect.booked - effect.reversed
        elif effect.state is TxnState.REVERSED_UNSEEN:
            assert effect.balance == effect.held == 0


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(operation, max_size=40))
def test_random_sequences_keep_the_books(ops: list[tuple]) -> None:
    ledger = Ledger()
    for pan, opening in PANS.items():
        ledger.open_account(pan, "EUR", opening)
    first = []
    for op in ops:
        first.append(apply(ledger, op))
        check_books(ledger)
    # replaying every message the ledger took (repeats, duplicates) books nothing more; a capture
    # refused for want of its hold is the one message that may book later, once the hold exists
    balances = {pan: (ledger.balance(pan), ledger.held(pan)) for pan in PANS}
    booked_before = sum(1 for p in ledger.entries() if p.booked)
    for op, outcome in zip(ops, first):
        if op[0] == "capture" and outcome is Outcome.UNKNOWN_ORIGINAL:
            continue
        assert apply(ledger, op) is not Outcome.BOOKED
    assert {pan: (ledger.balance(pan), ledger.held(pan)) for pan in PANS} == balances
    assert sum(1 for p in ledger.entries() if p.booked) == booked_before
    check_books(ledger)


@settings(max_examples=100, deadline=None)
@given(amount=st.integers(1, 10_000), parts=st.lists(st.integers(0, 4_000), max_size=8))
def test_partial_reversals_sum_to_at_most_the_original(amount: int, parts: list[int]) -> None:
    ledger = Ledger()
    ledger.open_account(PAN_A, "JPY", 0)
    ledger.debit(key(1), PAN_A, amount)
    reversed_total = 0
    for n, part in enumerate(parts):
        result = ledger.reverse(key(1), part, by=key(100 + n))
        reversed_total += result.amount
        assert type(result.amount) is int
    assert reversed_total == min(amount, sum(parts))
    assert ledger.balance(PAN_A) == -amount + reversed_total
