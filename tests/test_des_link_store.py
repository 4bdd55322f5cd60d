"""The link (latency, Bernoulli and Gilbert-Elliott loss) and the durable store, as properties."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from sim.des.link import GilbertElliott, Link
from sim.des.store import Record, Store
from sim.iso8583.message import advice, reversal, transaction_request
from sim.profiles import load_profile

ETHERNET = load_profile("countertop-ethernet").comms.primary_link
THREE_G = load_profile("mobile-3g").comms.primary_link


@given(seed=st.integers(0, 2**32), factor=st.floats(1.0, 20.0))
@settings(max_examples=50, deadline=None)
def test_transit_is_at_least_half_the_latency_times_the_factor(seed: int, factor: float) -> None:
    link = Link(THREE_G, random.Random(seed))
    link.factor = factor
    for _ in range(50):
        delay = link.transit()
        assert delay is None or delay >= link.latency_s / 2 * factor - 1e-12


@given(seed=st.integers(0, 2**32))
@settings(max_examples=30, deadline=None)
def test_lossless_link_never_loses(seed: int) -> None:
    link = Link(ETHERNET, random.Random(seed))
    assert link.loss == 0.0
    assert all(link.transit() is not None for _ in range(200))


@given(seed=st.integers(0, 2**32), p_enter=st.floats(0.01, 0.2), p_leave=st.floats(0.05, 0.5))
@settings(max_examples=30, deadline=None)
def test_gilbert_elliott_losses_come_in_bursts(seed: int, p_enter: float, p_leave: float) -> None:
    """All-lost bad state, loss-free good state: every run of losses is one stay in the bad state,
    so runs average 1/p_leave packets -- far longer than independent losses at the same rate give."""
    rng = random.Random(seed)
    chain = GilbertElliott(p_enter, p_leave, loss_bad=1.0, loss_good=0.0)
    lost = [chain.lost(rng) for _ in range(20_000)]
    runs, current = [], 0
    for x in lost:
        if x:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    rate = sum(lost) / len(lost)
    assert runs, "some bursts happen"
    mean_run = sum(runs) / len(runs)
    assert abs(mean_run - 1 / p_leave) < 0.35 / p_leave  # geometric stay of mean 1/p_leave
    assert mean_run > 1.0 / (1.0 - rate)  # independent losses at this rate would average 1/(1-rate)


@given(seed=st.integers(0, 2**32))
@settings(max_examples=20, deadline=None)
def test_gilbert_elliott_without_entry_is_the_good_channel(seed: int) -> None:
    rng = random.Random(seed)
    chain = GilbertElliott(0.0, 0.5, loss_bad=1.0, loss_good=0.0)
    assert not any(chain.lost(rng) for _ in range(1000)) and not chain.bad


def test_outage_and_burst_switches_nest() -> None:
    link = Link(THREE_G, random.Random(1))
    link.down += 1
    link.down += 1
    link.down -= 1
    assert not link.up
    link.down -= 1
    assert link.up
    link.start_burst(1.0, 0.0001, 1.0)
    assert all(link.transit() is None for _ in range(100))
    link.end_burst()
    assert any(link.transit() is not None for _ in range(100))


def _sale(stan: int):
    return transaction_request("0200", pan="4761739001010010", amount=1000 + stan, currency="978", stan=stan,
                               transmitted="1127100000", terminal_id="T0000001", entry_mode="051", icc={"9F26": bytes(8)})


def _record(kind: str, stan: int) -> Record:
    sale = _sale(stan)
    if kind == "reversal":
        msg = reversal(sale, stan=stan + 500_000, transmitted="1127100100")
    elif kind == "advice":
        msg = advice(response_code="Y1", pan="4761739001010010", amount=1000 + stan, currency="978", stan=stan,
                     transmitted="1127100000", terminal_id="T0000001", entry_mode="051", icc={"9F26": bytes(8)})
    else:
        msg = sale
    return Record(kind, msg, (sale.terminal_id or "", sale.stan or "", sale.transmitted), sale.amount or 0)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from(["advice", "reversal", "inflight", "completion"])),
        st.tuples(st.just("ack"), st.integers(0, 50)),
        st.tuples(st.just("block"), st.booleans()),
    ),
    max_size=60,
)


@given(capacity=st.integers(0, 8), ops=operations)
@settings(max_examples=80, deadline=None)
def test_store_never_drops_and_counts_overflow(capacity: int, ops: list) -> None:
    """Whatever happens, every record added and not acknowledged is still there, in order."""
    store, model, added, blocked = Store(capacity), [], 0, 0
    expected_overflow = 0
    for op, arg in ops:
        if op == "add":
            record = _record(arg, added + 1)
            added += 1
            if len(model) >= capacity:
                expected_overflow += 1
            store.add(record)
            model.append(record)
        elif op == "ack" and model:
            record = model.pop(arg % len(model))
            store.remove(record)
        elif op == "block":
            if arg:
                blocked += 1
                store.blocked += 1
            elif blocked:
                blocked -= 1
                store.blocked -= 1
        assert store.records == model
        assert store.free == (0 if blocked else max(0, capacity - len(model)))
        assert store.owed() == [r for r in model if r.kind != "inflight"]
        assert store.backlog == len(store.owed())
    assert store.overflow == expected_overflow


def test_repeats_go_as_0221_and_0401() -> None:
    for kind, first, again in (("advice", "0220", "0221"), ("reversal", "0400", "0401")):
        record = _record(kind, 7)
        assert record.wire().mti == first
        record.sent = True
        assert record.wire().mti == again and record.wire().stan == record.message.stan
