"""sim.live.traffic: realistic, seeded requests whose expected DE39 the issuer agrees with."""

from __future__ import annotations

import warnings
from collections import Counter
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sim.core import crypto
from sim.core.cards import default_path, load_cards
from sim.core.host import Host
from sim.iso8583.message import Message, parse
from sim.live.traffic import (
    DEFAULT_CARD_MIX,
    KINDS,
    LIFTED_VELOCITY,
    CardRole,
    Traffic,
    expected_code,
    load_card_set,
    load_card_set_toml,
)

warnings.filterwarnings("ignore", module="pyemv")
NOW = datetime(2026, 11, 30, 10, 0)
CARDS = load_card_set()


def _run(seed: int, n: int, pool: int = 0) -> tuple[list, Host]:
    host = Host(cards=CARDS)
    traffic = Traffic(seed=seed, cards=CARDS, pool=pool)
    now = NOW
    seen = []
    for _ in range(n):
        now += timedelta(milliseconds=137)
        request = traffic.next(now)
        seen.append((request, host.handle(request.message, now)))
    for request in traffic.advice_burst(now, 5):
        seen.append((request, host.handle(request.message, now)))
    return seen, host


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), pool=st.sampled_from([0, 8]))
def test_the_issuer_gives_every_request_its_expected_code(seed: int, pool: int) -> None:
    seen, _ = _run(seed, 150, pool)
    wrong = [(r.kind, r.card, r.expected, a.response_code) for r, a in seen if a.response_code != r.expected]
    assert wrong == []
    assert {a.mti for _, a in seen} <= {"0210", "0230", "0410", "0810"}


def test_a_long_run_has_every_kind_and_the_card_mix_declines() -> None:
    seen, _ = _run(7, 2500)
    kinds = Counter(r.kind for r, _ in seen)
    assert set(kinds) == set(KINDS)
    codes = Counter(a.response_code for r, a in seen if r.kind in ("chip sale", "contactless", "swipe sale"))
    sales = sum(codes.values())
    # Declines by card weight: e.g. 51 is the over-balance card's share of the mix.
    total = sum(w for w, _ in DEFAULT_CARD_MIX.values())
    for label, code in (("insufficient-funds", "51"), ("expired", "54"), ("low-limits", "61"), ("lost", "41")):
        share = DEFAULT_CARD_MIX[label][0] / total
        assert abs(codes[code] / sales - share) < 0.025, (code, codes[code] / sales, share)
    assert 0.10 < 1 - codes["00"] / sales < 0.25


def test_every_chip_arqc_verifies_under_the_card_key_and_de4_is_minor_units() -> None:
    traffic = Traffic(seed=11, cards=CARDS)
    checked = 0
    for i in range(300):
        request = traffic.next(NOW + timedelta(seconds=i))
        msg = parse(request.encode())  # through the wire and back
        fields = msg.fields
        if "4" in fields:
            assert len(fields["4"]) == 12 and fields["4"].isdigit()
            assert isinstance(msg.amount, int)
        if "55" in fields and msg.mti == "0200":
            card = CARDS.by_pan(msg.pan)
            issuer = CARDS.issuer(card.issuer)
            assert crypto.verify_arqc(issuer, card, msg.icc, amount=msg.amount).ok
            # Independently: the ARQC is pyemv's AC over the DE55 data under the card's session key.
            icc_mk = crypto.icc_master_key(issuer, card)
            assert crypto.generate_ac(icc_mk, card.emv.cvn, msg.icc) == msg.icc["9F26"]
            assert msg.icc["9F02"] == bytes.fromhex(fields["4"])
            checked += 1
    assert checked > 150


def test_same_seed_same_bytes_and_unique_keys() -> None:
    a = [Traffic(seed=5, cards=CARDS).next(NOW).encode() for _ in range(1)]
    t1, t2 = Traffic(seed=5, cards=CARDS, pool=4), Traffic(seed=5, cards=CARDS, pool=4)
    stream1 = [t1.next(NOW + timedelta(seconds=i)).encode() for i in range(60)]
    stream2 = [t2.next(NOW + timedelta(seconds=i)).encode() for i in range(60)]
    assert stream1 == stream2 and a == [Traffic(seed=5, cards=CARDS).next(NOW).encode()]
    t3 = Traffic(seed=6, cards=CARDS)
    keys = [t3.next(NOW).key for _ in range(500)]
    assert len(set(keys)) == len(keys)


def test_reversals_point_at_earlier_approved_sales_and_release_them() -> None:
    seen, host = _run(3, 1200)
    sent = {(r.message.stan, r.message.transmitted): r for r, _ in seen}
    reversals = [r for r, _ in seen if r.kind == "reversal"]
    assert reversals
    for rev in reversals:
        original = rev.message.original
        target = sent[(original.stan, original.transmitted)]
        assert target.expected == "00" and target.message.mti == "0200"
        assert rev.message.amount == target.message.amount


@pytest.mark.parametrize("pool", [0, 3])
def test_a_reversal_names_a_recent_sale_at_least_the_lag_old(pool: int) -> None:
    """A reversal targets one of the last 2 x ``reversal_lag`` approved sales not yet reversed,
    sent at least ``reversal_lag`` requests earlier: a cancellation soon after the sale, never
    one so old that a stream must keep thousands of sales to find it."""
    lag = 8
    traffic = Traffic(seed=9, cards=CARDS, pool=pool, reversal_lag=lag)
    traffic.prefill(NOW)
    position: dict[tuple[str, str], int] = {}
    open_sales: list[int] = []  # positions of the approved sales not yet reversed, in order
    reversed_ = 0
    now = NOW
    for i in range(3000):
        now += timedelta(seconds=1)
        request = traffic.next(now)
        fields = request.fields
        if request.kind == "reversal":
            original = (fields["90"][4:10], fields["90"][10:20])  # the sale's DE11 and DE7
            at = position[original]
            assert i - at >= lag
            assert at in open_sales[-2 * lag:], (i, at, open_sales[-2 * lag:])
            open_sales.remove(at)
            reversed_ += 1
        else:
            position[(fields["11"], fields["7"])] = i
            if request.kind in ("chip sale", "contactless", "swipe sale") and request.expected == "00":
                open_sales.append(i)
    assert reversed_ > 20


def test_a_pooled_sales_reversal_is_the_one_reversal_builds_for_it() -> None:
    """Reversals of pooled sales are restamped from one built per pool entry: each must be
    exactly what :func:`reversal` makes of its own sale (DE90 naming that sale)."""
    from sim.iso8583.message import reversal

    traffic = Traffic(seed=4, cards=CARDS, pool=3, reversal_lag=8)
    traffic.prefill(NOW)
    sent = {}
    checked = 0
    now = NOW
    for _ in range(1500):
        now += timedelta(seconds=1)
        request = traffic.next(now)
        sent[request.key[1:]] = request
        if request.kind != "reversal":
            continue
        assert request.template is not None
        de90 = request.fields["90"]
        sale = sent[("LOAD0001", de90[4:10])]
        assert sale.fields["7"] == de90[10:20] and sale.template is not None
        built = reversal(Message(dict(sale.fields)), stan=request.fields["11"], transmitted=now, reason="17")
        assert dict(request.fields) == {k: v for k, v in built.fields.items() if k not in ("p", "1")}
        checked += 1
    assert checked > 20 and len(traffic._reversals) <= 3 * 3  # one per pooled sale (chip, tap, swipe)


def test_expected_code_follows_the_issuer_order() -> None:
    shipped = load_cards()
    assert expected_code(shipped.card("stolen"), debit=True, amount=10**9, now=NOW) == ("43", "card stolen")
    assert expected_code(shipped.card("insufficient-funds"), debit=True, amount=501, now=NOW)[0] == "51"
    assert expected_code(shipped.card("insufficient-funds"), debit=False, amount=501, now=NOW)[0] == "00"
    assert expected_code(shipped.card("healthy"), debit=True, amount=500001, now=NOW)[0] == "61"
    assert expected_code(shipped.card("healthy"), debit=True, amount=500000, now=NOW)[0] == "00"


def test_the_load_card_set_file_is_the_load_card_set() -> None:
    text = load_card_set_toml(default_path().read_text(encoding="utf-8"))
    import tempfile, pathlib

    with tempfile.TemporaryDirectory() as d:
        path = pathlib.Path(d) / "cards.toml"
        path.write_text(text, encoding="utf-8")
        from_file = load_cards(path)
    assert from_file.cards == CARDS.cards and from_file.issuers == CARDS.issuers
    lifted = {c.label for c in CARDS.cards if c.velocity_count == LIFTED_VELOCITY}
    assert lifted == {label for label, (_, role) in DEFAULT_CARD_MIX.items() if role is CardRole.APPROVE}


def test_bad_arguments_are_refused_with_what_is_allowed() -> None:
    with pytest.raises(ValueError, match="8 characters"):
        Traffic(terminal_id="T1")
    with pytest.raises(ValueError, match="allowed: chip sale"):
        Traffic(mix={"wire transfer": 1})
    with pytest.raises(ValueError, match="allows 20 approvals"):
        Traffic(cards=load_cards())
    with pytest.raises(ValueError, match="not in the card set"):
        Traffic(card_mix={"no-such-card": (1, CardRole.APPROVE)})
    with pytest.raises(ValueError, match="allowed: chip sale"):
        Traffic().make("cheque", NOW)


def test_prefill_builds_the_pools_without_using_trace_numbers_or_reversing_unsent_sales() -> None:
    filled, fresh = Traffic(seed=9, cards=CARDS, pool=6), Traffic(seed=9, cards=CARDS, pool=6)
    filled.prefill(NOW)
    first = filled.next(NOW)
    assert first.message.stan == fresh.next(NOW).message.stan == "000001"
    host = Host(cards=CARDS)
    assert host.handle(first.message, NOW).response_code == first.expected
    now = NOW
    sent = {(first.message.stan, first.message.transmitted)}
    for _ in range(400):
        now += timedelta(seconds=1)
        request = filled.next(now)
        if request.kind == "reversal":
            assert (request.message.original.stan, request.message.original.transmitted) in sent
        sent.add((request.message.stan, request.message.transmitted))
        assert host.handle(request.message, now).response_code == request.expected


def test_streams_sharing_a_pool_each_send_their_own_terminal_trace_numbers_and_reversals() -> None:
    """Terminals of one load generator restamp one pool (``pool_from``): every request carries
    its own stream's DE41 and key, the issuer answers it as expected, its bytes spliced by the
    one encoder the streams share are pyiso8583's, and a reversal names its own stream's sale."""
    from sim.iso8583.dialect import DEFAULT
    from sim.iso8583.framing import Framing
    from sim.load.wire import WireEncoder

    owner = Traffic(seed=1, terminal_id="LOADA001", cards=CARDS, pool=4, reversal_lag=8)
    owner.prefill(NOW)
    built = {kind: list(entries) for kind, entries in owner._pools.items()}
    sharer = Traffic(seed=2, terminal_id="LOADB002", cards=CARDS, pool=4, reversal_lag=8, pool_from=owner)
    sharer.prefill(NOW)
    assert {kind: list(entries) for kind, entries in owner._pools.items()} == built  # nothing built twice
    wire = WireEncoder(DEFAULT, Framing())
    wire.prepare(owner.templates() + sharer.templates())
    host = Host(cards=CARDS)
    sent: dict[str, set[tuple[str, str]]] = {"LOADA001": set(), "LOADB002": set()}
    keys = set()
    pooled = reversals = 0
    now = NOW
    for i in range(1600):
        now += timedelta(milliseconds=450)
        stream = (owner, sharer)[i % 2]
        request = stream.next(now)
        fields = request.fields
        assert fields["41"] == stream.terminal_id and request.key == (request.mti[:2], stream.terminal_id, fields["11"])
        assert request.key not in keys
        keys.add(request.key)
        assert wire.frame(request)[2:] == DEFAULT.encode(dict(fields))
        assert host.handle(request.message, now).response_code == request.expected, (request, i)
        pooled += request.template is not None
        if request.kind == "reversal":
            assert (fields["90"][4:10], fields["90"][10:20]) in sent[stream.terminal_id]
            reversals += 1
        sent[stream.terminal_id].add((fields["11"], fields["7"]))
    assert pooled > 1400 and reversals > 20
    with pytest.raises(ValueError, match="pool 8 differs from the pool of the stream shared"):
        Traffic(cards=CARDS, pool=8, pool_from=owner)


@pytest.mark.parametrize("seed,pool", [(0, 64), (5, 64), (9, 200), (3, 17)])
def test_a_pool_of_sales_holds_each_card_at_its_share_of_the_mix(seed: int, pool: int) -> None:
    """A pool is drawn from at random, so its cards are the run's card mix: each card sits in
    it within one entry of its weight's share (in 64 random draws the most common card's
    count varies by 3.7, one standard deviation)."""
    traffic = Traffic(seed=seed, cards=CARDS, pool=pool)
    traffic.prefill(NOW)
    total = sum(w for w, _ in DEFAULT_CARD_MIX.values())
    for kind in ("chip sale", "contactless"):
        held = Counter(entry.card.label for entry in traffic._pools[kind])
        assert sum(held.values()) == pool
        for label, (weight, _) in DEFAULT_CARD_MIX.items():
            assert abs(held[label] - pool * weight / total) < 1, (kind, label, held[label], pool * weight / total)
