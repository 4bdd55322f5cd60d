"""The streaming history checker gives the batch checker's verdict, findings and money, in bounded memory."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.core.history import BookedEffect, HistoryEvent, Verdict, check
from sim.core.history_stream import StreamingCheck
from tests.test_history import APPROVED, DUPLICABLE, PAN, RELEASED, attempts, booked, ev, model


def picture(v: Verdict) -> dict:
    """Everything a verdict says, findings as sorted lists (equal-key ties may come in either order)."""
    d = v.to_dict()
    for name in ("lost", "duplicated", "unexpected", "mismatched", "resolved"):
        d[name] = sorted(d[name], key=repr)
    return d


def faulty_history(plan: list[dict], orphans: int) -> tuple[list[list[HistoryEvent]], list[list[BookedEffect]]]:
    """Per attempt: its events and bookings, with the plan's faults injected (lost, duplicated, unexpected)."""
    events_of, effects_of = [], []
    for a in plan:
        events, effects, _ = model(a)
        fault, fate = a["fault"], a["fate"]
        if fault == "lose" and fate in APPROVED:
            effects = []
        elif fault == "duplicate" and fate in DUPLICABLE:
            effects = effects + effects[:1]
        elif fault == "unexpected" and fate in RELEASED:
            effects = effects[:1]
        events_of.append(events)
        effects_of.append(effects)
    for i in range(orphans):  # bookings nothing attempted, on STANs no attempt uses
        events_of.append([])
        effects_of.append([BookedEffect("T9", str(900 + i), "1122103000", PAN, 100 + i, "978")])
    return events_of, effects_of


@settings(max_examples=150, deadline=None)
@given(attempts(), st.lists(st.booleans(), max_size=25), st.integers(0, 3), st.randoms(use_true_random=False),
       st.floats(0.0, 1.0))
def test_streaming_and_batch_checkers_agree(plan: list[dict], share: list[bool], orphans: int, rnd,
                                            retire_share: float) -> None:
    for i, same in enumerate(share[1:len(plan)], start=1):  # STANs shared by attempts of other DE7s
        if same:
            plan[i]["tid"], plan[i]["stan"] = plan[i - 1]["tid"], plan[i - 1]["stan"]
    events_of, effects_of = faulty_history(plan, orphans)
    try:
        check([e for events in events_of for e in events], [])
    except ValueError:  # one key's events disagree on currency or direction: both refuse it
        stream = StreamingCheck()
        with pytest.raises(ValueError, match="disagree"):
            for events in events_of:
                for e in events:
                    stream.event(e)
        return

    # The stream: each attempt's events in order, bookings anywhere, attempts interleaved at random.
    queues = [[("event", e) for e in events] + [("booked", b) for b in effects]
              for events, effects in zip(events_of, effects_of, strict=True)]
    for q in queues:  # bookings may come before, between or after the terminal's events
        for item in [x for x in q if x[0] == "booked"]:
            q.remove(item)
            q.insert(rnd.randint(0, len(q)), item)
    slot_of = {}
    remaining: dict[tuple[str, str], int] = {}
    for i, q in enumerate(queues):
        for _, item in q:
            slot = (item.terminal_id, item.stan)
            slot_of[i] = slot
            remaining[slot] = remaining.get(slot, 0) + 1
    stream = StreamingCheck()
    history, ledger = [], []  # what the stream was fed, in its order: the batch checker reads the same
    live = [i for i, q in enumerate(queues) if q]
    clock = 0.0
    while live:
        i = rnd.choice(live)
        kind, item = queues[i].pop(0)
        clock += 1.0
        (stream.event if kind == "event" else stream.booked)(item, at=clock)
        (history if kind == "event" else ledger).append(item)
        slot = slot_of[i]
        remaining[slot] -= 1
        if not queues[i]:
            live.remove(i)
        if remaining[slot] == 0 and rnd.random() < retire_share:  # nothing more will name it: may retire
            assert stream.retire(slot)
    if rnd.random() < 0.5:  # or sweep what is quiet and finished, keeping nothing back
        stream.retire_before(clock + 1.0)
        assert stream.open == 0
    streamed, batch = stream.verdict(), check(history, ledger)
    assert picture(streamed) == picture(batch)
    assert streamed.ok == batch.ok
    assert streamed.balances == batch.balances


def test_retired_slots_are_forgotten_and_their_findings_kept() -> None:
    stream = StreamingCheck()
    for stan in range(1, 201):
        stream.event(ev("invoked", stan), at=stan)
        stream.event(ev("approved-online", stan), at=stan)
        if stan != 77:  # one approval never booked
            stream.booked(booked(stan), at=stan)
        stream.retire_before(stan - 10)  # a slot quiet for 10 s retires
        assert stream.open <= 11
    v = stream.verdict()
    assert [f.stan for f in v.lost] == ["000077"] and not v.ok
    assert v.attempts == 200 and v.effects == 199 and stream.retired >= 189
    assert v.balances[0].expected == 200 * 1000 and v.balances[0].booked == 199 * 1000


def test_kept_slots_stay_open_and_a_late_booking_still_counts() -> None:
    stream = StreamingCheck()
    stream.event(ev("invoked", 5), at=0.0)
    stream.event(ev("unknown", 5), at=1.0)
    assert stream.retire_before(100.0, keep={("T1", "000005")}) == 0 and stream.open == 1
    assert stream.first_seen(("T1", "000005")) == 0.0
    stream.booked(booked(5), at=150.0)  # the late answer's booking
    stream.event(ev("reversed", 5), at=160.0)
    assert stream.retire_before(100.0) == 0  # active since the watermark
    stream.booked(booked(5, kind="credit"), at=161.0)
    assert stream.retire_before(200.0) == 1
    assert stream.verdict().ok


def test_corrupt_history_is_refused_as_the_batch_checker_does() -> None:
    stream = StreamingCheck()
    stream.event(ev("invoked"))
    with pytest.raises(ValueError, match="disagree"):
        stream.event(ev("approved-online", cur="840"))
