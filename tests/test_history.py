"""The history checker finds lost, duplicated, unexpected and mismatched bookings, and resolves unknowns."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.core.history import BookedEffect, HistoryEvent, check, effects_from, posting_effect

PAN = "4761739001010010"
OTHER_PAN = "5413330089010012"
DE7 = "1122103000"


def ev(kind: str, stan: int = 1, amount: int = 1000, *, tid: str = "T1", cur: str = "978",
       de7: str | None = DE7, direction: str = "debit", pan: str = PAN) -> HistoryEvent:
    return HistoryEvent(kind, tid, str(stan), pan, amount, cur, de7, direction)  # type: ignore[arg-type]


def booked(stan: int = 1, amount: int = 1000, *, tid: str = "T1", cur: str = "978", de7: str | None = DE7,
           kind: str = "debit", pan: str = PAN) -> BookedEffect:
    return BookedEffect(tid, str(stan), de7, pan, amount, cur, kind)


def keys(findings: tuple) -> list[str]:
    return [f.stan for f in findings]


def test_approved_and_booked_once_is_ok() -> None:
    verdict = check([ev("invoked"), ev("approved-online")], [booked()])
    assert verdict.ok and verdict.attempts == 1 and verdict.effects == 1
    assert [(b.currency, b.expected, b.booked, b.difference) for b in verdict.balances] == [("978", 1000, 1000, 0)]


def test_lost_duplicated_and_unexpected_are_named() -> None:
    history = [
        ev("approved-offline", 1), ev("approved-online", 2), ev("invoked", 3), ev("declined", 3),
    ]
    ledger = [booked(2), booked(2), booked(3), booked(4)]
    verdict = check(history, ledger)
    assert not verdict.ok
    assert keys(verdict.lost) == ["000001"] and verdict.lost[0].detail == "approved offline but not booked"
    assert keys(verdict.duplicated) == ["000002"] and verdict.duplicated[0].detail == "booked 2 times"
    assert keys(verdict.unexpected) == ["000003", "000004"]
    assert [f.detail for f in verdict.unexpected] == ["booked though declined", "booked without an attempt"]
    assert verdict.balances[0].difference == 2000  # one lost (-1000), three extra (+3000)


def test_unknown_outcomes_resolve_either_way() -> None:
    history = [ev("invoked", 1), ev("unknown", 1), ev("invoked", 2), ev("unknown", 2), ev("invoked", 3)]
    verdict = check(history, [booked(1)])
    assert verdict.ok
    assert [(r.stan, r.booked) for r in verdict.resolved] == [("000001", True), ("000002", False), ("000003", False)]
    twice = check(history, [booked(1), booked(1)])
    assert keys(twice.duplicated) == ["000001"] and not twice.ok


def test_reversals_must_release_what_was_booked() -> None:
    reversed_sale = [ev("invoked"), ev("approved-online"), ev("reversed")]
    assert check(reversed_sale, [booked(), booked(kind="credit")]).ok
    assert check(reversed_sale, []).ok  # never booked, nothing to release
    stuck = check(reversed_sale, [booked()])
    assert keys(stuck.unexpected) == ["000001"] and stuck.unexpected[0].detail == "booked though reversed"
    # Timeout then reversal (REV-01): whatever the host did, nothing may stay booked.
    timed_out = [ev("invoked"), ev("unknown"), ev("reversed")]
    assert check(timed_out, [booked(), booked(kind="credit")]).ok and not check(timed_out, [booked()]).ok
    # Card declined after host approval (ONL-07): the last outcome wins.
    onl07 = [ev("invoked"), ev("approved-online"), ev("declined"), ev("reversed")]
    assert keys(check(onl07, [booked()]).unexpected) == ["000001"]


def test_partial_reversal_and_refunds() -> None:
    partial = [ev("approved-online", amount=1000), ev("reversed", amount=300)]
    assert check(partial, [booked(amount=1000), booked(amount=300, kind="credit")]).ok
    wrong = check(partial, [booked(amount=1000)])
    assert keys(wrong.mismatched) == ["000001"] and wrong.mismatched[0].expected == 700
    refund = [ev("approved-online", direction="credit")]
    verdict = check(refund, [booked(kind="credit")])
    assert verdict.ok and verdict.balances[0].expected == -1000
    assert keys(check(refund, [booked(kind="debit")]).mismatched) == ["000001"]


def test_transmission_time_matches_exactly_or_when_the_terminal_did_not_record_it() -> None:
    history = [ev("approved-online", 1, de7=None), ev("approved-online", 2)]
    assert check(history, [booked(1, de7="1122110000"), booked(2, de7=None)]).ok
    # Same STAN, different DE7: another transaction (STANs wrap), so not this one.
    verdict = check([ev("approved-online", 1)], [booked(1, de7="1123103000")])
    assert keys(verdict.lost) == ["000001"] and keys(verdict.unexpected) == ["000001"]


def test_wrong_currency_or_card_is_mismatched() -> None:
    verdict = check([ev("approved-online")], [booked(cur="840")])
    assert [f.detail for f in verdict.mismatched] == ["booked in currency USD, attempted in EUR"]
    assert keys(verdict.lost) == ["000001"]
    card = check([ev("approved-online")], [booked(pan=OTHER_PAN)])
    assert [f.detail for f in card.mismatched] == ["booked on card 541333******0012"]


def test_reports_mask_pans_and_format_money_exactly() -> None:
    history = [
        ev("approved-online", 1, 123456, cur="KWD"), ev("invoked", 2, 500, cur="JPY"), ev("unknown", 2, 500, cur="JPY"),
    ]
    verdict = check(history, [booked(3, 10, cur="EUR")])
    text = verdict.pretty()
    assert PAN not in text and "476173******0010" in text
    assert "FAILED (1 lost, 0 duplicated, 1 unexpected, 0 mismatched; 1 unknown outcomes resolved)" in text
    assert "expected 123.456 KWD, booked 0.000 KWD" in text and "500 JPY  not booked" in text
    data = verdict.to_dict()
    assert data["ok"] is False and data["lost"][0]["pan"] == "476173******0010"
    assert {b["currency"]: b["difference"] for b in data["balances"]} == {"414": -123456, "392": 0, "978": 10}
    assert PAN not in repr(data) and PAN not in repr(history) and PAN not in repr(booked())


def test_adapters_build_booked_effects() -> None:
    rows = [
        {"terminal_id": "T1", "stan": 1, "transmitted": DE7, "pan": PAN, "amount": -250, "currency": "EUR"},
        {"terminal_id": "T1", "stan": "2", "pan": PAN, "amount": 100, "currency": "978", "kind": "credit"},
        booked(3),
    ]
    effects = effects_from(rows)
    assert [(e.stan, e.kind, e.amount, e.currency, e.transmitted) for e in effects] == [
        ("000001", "credit", 250, "978", DE7), ("000002", "credit", 100, "978", None), ("000003", "debit", 1000, "978", DE7)]
    postings = [
        SimpleNamespace(terminal_id="T1", stan="000001", transmitted=DE7, pan=PAN, currency="EUR", booked=True,
                        balance_effect=-2500, hold_effect=0),  # debit
        SimpleNamespace(terminal_id="T1", stan="000002", transmitted=DE7, pan=PAN, currency="EUR", booked=True,
                        balance_effect=0, hold_effect=700),  # hold
        SimpleNamespace(terminal_id="T1", stan="000002", transmitted=DE7, pan=PAN, currency="EUR", booked=True,
                        balance_effect=-700, hold_effect=-700),  # capture: nothing more taken
        SimpleNamespace(terminal_id="T1", stan="000001", transmitted=DE7, pan=PAN, currency="EUR", booked=True,
                        balance_effect=1000, hold_effect=0),  # partial reversal
        SimpleNamespace(terminal_id="T1", stan="000009", transmitted=DE7, pan=PAN, currency="EUR", booked=False,
                        balance_effect=0, hold_effect=0),  # recorded, not booked
    ]
    adapted = effects_from(postings, posting_effect)
    assert [(e.stan, e.signed) for e in adapted] == [("000001", 2500), ("000002", 700), ("000001", -1000)]
    assert effects_from(rows[:1], lambda row: None) == []


def test_bad_records_are_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="stan"):
        HistoryEvent("invoked", "T1", "12345678", PAN, 1, "978")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="type"):
        HistoryEvent("approved", "T1", "1", PAN, 1, "978")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="amount"):
        BookedEffect("T1", "1", None, PAN, 1.5, "978")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="currency 'XXQ'"):
        BookedEffect("T1", "1", None, PAN, 1, "XXQ")
    with pytest.raises(ValueError, match="kind"):
        BookedEffect("T1", "1", None, PAN, 1, "978", "refund")
    with pytest.raises(ValueError, match="lacks amount"):
        BookedEffect.from_mapping({"terminal_id": "T1", "stan": "1", "pan": PAN, "currency": "978"})
    with pytest.raises(ValueError, match="disagree"):
        check([ev("invoked"), ev("approved-online", cur="840")], [])


# Property: generated histories with injected faults ---------------------------------------------

FATES = [
    "approved-online", "approved-offline", "declined", "unknown-booked", "unknown-not-booked", "invoked-only",
    "reversed-after-approval", "reversed-after-unknown-booked", "reversed-after-unknown-not-booked",
    "card-declined-after-approval", "partial-reversal",
]
APPROVED = {"approved-online", "approved-offline", "partial-reversal"}
DUPLICABLE = {"approved-online", "approved-offline", "unknown-booked"}
RELEASED = {"declined", "reversed-after-approval", "card-declined-after-approval"}


@st.composite
def attempts(draw: st.DrawFn) -> list[dict]:
    out = []
    for i in range(draw(st.integers(0, 25))):
        amount = draw(st.integers(2, 10**7))
        out.append({
            "tid": draw(st.sampled_from(["T1", "T2", "T3"])),
            "stan": f"{i + 1:06d}",
            "de7": draw(st.sampled_from([None, "1122103000", "1123093000"])),
            "pan": draw(st.sampled_from([PAN, OTHER_PAN])),
            "amount": amount,
            "cur": draw(st.sampled_from(["978", "392", "414"])),
            "kind": draw(st.sampled_from(["debit", "credit"])),
            "fate": draw(st.sampled_from(FATES)),
            "partial": draw(st.integers(1, amount - 1)),
            "ledger_de7": draw(st.booleans()),
            "fault": draw(st.sampled_from(["none", "none", "lose", "duplicate", "unexpected"])),
        })
    return out


def model(a: dict) -> tuple[list[HistoryEvent], list[BookedEffect], int]:
    """The terminal's events, the correct ledger and the true net effect (in the attempt's direction)."""
    def e(kind: str, amount: int | None = None) -> HistoryEvent:
        return HistoryEvent(kind, a["tid"], a["stan"], a["pan"], a["amount"] if amount is None else amount,  # type: ignore[arg-type]
                            a["cur"], a["de7"], a["kind"])

    de7 = a["de7"] or ("1122103000" if a["ledger_de7"] else None)
    flip = "credit" if a["kind"] == "debit" else "debit"

    def b(amount: int, kind: str) -> BookedEffect:
        return BookedEffect(a["tid"], a["stan"], de7, a["pan"], amount, a["cur"], kind)

    amount, fate = a["amount"], a["fate"]
    take, give = b(amount, a["kind"]), b(amount, flip)
    table: dict[str, tuple[list[HistoryEvent], list[BookedEffect], int]] = {
        "approved-online": ([e("invoked"), e("approved-online")], [take], amount),
        "approved-offline": ([e("approved-offline")], [take], amount),
        "declined": ([e("invoked"), e("declined")], [], 0),
        "unknown-booked": ([e("invoked"), e("unknown")], [take], amount),
        "unknown-not-booked": ([e("invoked"), e("unknown")], [], 0),
        "invoked-only": ([e("invoked")], [], 0),
        "reversed-after-approval": ([e("invoked"), e("approved-online"), e("reversed")], [take, give], 0),
        "reversed-after-unknown-booked": ([e("invoked"), e("unknown"), e("reversed")], [take, give], 0),
        "reversed-after-unknown-not-booked": ([e("invoked"), e("unknown"), e("reversed")], [], 0),
        "card-declined-after-approval": ([e("invoked"), e("approved-online"), e("declined"), e("reversed")], [take, give], 0),
        "partial-reversal": ([e("invoked"), e("approved-online"), e("reversed", a["partial"])],
                             [take, b(a["partial"], flip)], amount - a["partial"]),
    }
    return table[fate]


@settings(max_examples=200, deadline=None)
@given(attempts(), st.integers(0, 4), st.randoms(use_true_random=False))
def test_checker_finds_exactly_the_injected_faults(plan: list[dict], orphans: int, rnd) -> None:
    streams: list[list[HistoryEvent]] = []
    ledger: list[BookedEffect] = []
    want: dict[str, set[str]] = {"lost": set(), "duplicated": set(), "unexpected": set()}
    want_resolved: dict[str, bool] = {}
    money: dict[str, list[int]] = {}
    for a in plan:
        events, effects, net = model(a)
        sign = 1 if a["kind"] == "debit" else -1
        fault, fate = a["fault"], a["fate"]
        if fault == "lose" and fate in APPROVED:
            effects = []
            want["lost"].add(a["stan"])
        elif fault == "duplicate" and fate in DUPLICABLE:
            effects = effects + effects[:1]
            want["duplicated"].add(a["stan"])
        elif fault == "unexpected" and fate in RELEASED:
            take = BookedEffect(a["tid"], a["stan"], a["de7"], a["pan"], a["amount"], a["cur"], a["kind"])
            effects = effects[:1] if effects else [take]  # the release (or the decline) was not honoured
            want["unexpected"].add(a["stan"])
        elif fate in ("unknown-booked", "unknown-not-booked", "invoked-only"):
            want_resolved[a["stan"]] = fate == "unknown-booked"
        streams.append(events)
        ledger.extend(effects)
        money.setdefault(a["cur"], [0, 0])[0] += sign * net
    for i in range(orphans):
        stray = BookedEffect(rnd.choice(["T1", "T9"]), f"{900000 + i}", None, PAN, rnd.randint(1, 10**6), "978")
        ledger.append(stray)
        want["unexpected"].add(stray.stan)
    for effect in ledger:
        money.setdefault(effect.currency, [0, 0])[1] += effect.signed
    history = []  # attempts interleave at random, each keeps its own order
    while streams:
        stream = rnd.choice(streams)
        history.append(stream.pop(0))
        if not stream:
            streams.remove(stream)
    rnd.shuffle(ledger)

    verdict = check(history, ledger)

    assert {f.stan for f in verdict.lost} == want["lost"]
    assert {f.stan for f in verdict.duplicated} == want["duplicated"]
    assert {f.stan for f in verdict.unexpected} == want["unexpected"]
    assert verdict.mismatched == ()
    assert {r.stan: r.booked for r in verdict.resolved} == want_resolved
    assert {b.currency: (b.expected, b.booked) for b in verdict.balances} == {c: tuple(v) for c, v in money.items()}
    assert verdict.ok == (not any(want.values()))
