"""Properties of the virtual card under arbitrary input (hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.emv import tlv
from sim.emv.apdu import build
from sim.emv.card import VirtualCard
from sim.emv.card_perso import PPSE_NAME, PSE_NAME
from sim.emv.card_state import ALLOWED, State
from sim.emv.errors import CardError
from sim.emv.faults import Fault
from tests.test_card_support import (
    P1_ARQC,
    arpc_for,
    exchange,
    first_ac,
    gpo,
    select,
    start,
)

H = bytes.fromhex
AID_VISA, AID_MC = H("A0000000031010"), H("A0000000041010")

COMMANDS = [(0x00, 0xA4), (0x00, 0xB2), (0x80, 0xA8), (0x80, 0xCA), (0x00, 0x20), (0x80, 0xAE), (0x00, 0x88),
            (0x00, 0xC0), (0x00, 0x84), (0x84, 0xAE)]
USEFUL_DATA = [b"", PSE_NAME, PPSE_NAME, AID_VISA, AID_MC, H("A000000003"), bytes(29), bytes(41), H("8300"),
               tlv.encode({"83": bytes(10)}), H("241234FFFFFFFFFF"), H("01020304"), bytes(255)]

structured = st.builds(
    lambda header, p1, p2, data, le: build(header[0], header[1], p1, p2, data, le),
    st.sampled_from(COMMANDS),
    st.integers(0, 255) | st.sampled_from([0x00, 0x04, 0x0C, 0x14, 0x1C, 0x24, 0x40, 0x80, 0x9F]),
    st.integers(0, 255) | st.sampled_from([0x00, 0x02, 0x0C, 0x14, 0x1C, 0x24, 0x36, 0x13, 0x17, 0x80]),
    st.sampled_from(USEFUL_DATA) | st.binary(max_size=64),
    st.none() | st.integers(0, 256),
)
apdus = st.lists(st.binary(max_size=24) | structured, min_size=1, max_size=25)

FAULTS = [
    Fault("*", "truncate", "probability(0.2)"),
    Fault("READ RECORD", "corrupt_tlv", "every_n(2)"),
    Fault("GENERATE AC", "drop_tag(9F26)", "once"),
    Fault("SELECT", "status_word(6A82)", "once"),
    Fault("GET RESPONSE", "delay(10)"),
    Fault("VERIFY", "pin_blocked", "once"),
    Fault("*", "remove", "probability(0.05)"),
    Fault("GENERATE AC 2", "mute", "once"),
    Fault("ATR", "bad_atr"),
]

SETUPS = ["idle", "directory", "selected", "initiated", "online"]


def _prepare(label: str, setup: str, faults: list[Fault], seed: int) -> VirtualCard:
    card = VirtualCard.from_label(label, faults=faults, seed=seed)
    try:
        card.power_on()
        if setup == "directory":
            select(card, PSE_NAME)
        elif setup == "selected":
            select(card, card.image.aid)
        elif setup in ("initiated", "online"):
            select(card, card.image.aid)
            gpo(card)
            if setup == "online":
                first_ac(card, P1_ARQC)
    except CardError:
        pass
    return card


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    label=st.sampled_from(["healthy", "mc-healthy", "pin-1234", "chip-bad-tlv"]),
    setup=st.sampled_from(SETUPS),
    faults=st.lists(st.sampled_from(FAULTS), max_size=3),
    seed=st.integers(0, 2**16),
    commands=apdus,
)
def test_random_apdus_answer_or_raise_only_card_errors(label, setup, faults, seed, commands):
    card = _prepare(label, setup, faults, seed)
    atc = card.atc
    for apdu in commands:
        try:
            answer = card.execute(apdu)
        except CardError:
            try:
                card.power_on()
            except CardError:
                pass
            continue
        assert isinstance(answer, bytes) and len(answer) >= 2
        assert card.atc >= atc
        atc = card.atc
        assert card.state in ALLOWED


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    label=st.sampled_from(["healthy", "mc-healthy", "online-only-iac", "offline-only-iac"]),
    steps=st.lists(
        st.tuples(
            st.sampled_from([0x00, 0x40, 0x80]),  # first GENERATE AC request
            st.sampled_from([0x00, 0x40]),  # second GENERATE AC request
            st.sampled_from([b"00", b"51", b"Y3", b"Z3"]),  # authorisation response code
            st.sampled_from(["valid", "invalid", "none"]),  # tag 91
            st.booleans(),  # pull the card before the second GENERATE AC
        ),
        min_size=1,
        max_size=8,
    ),
)
def test_atc_strictly_increases(label, steps):
    card = VirtualCard.from_label(label)
    seen: list[int] = []
    for first_p1, second_p1, arc, issuer_data, pull in steps:
        start(card)
        answer = first_ac(card, first_p1)
        fields = tlv.decode(answer[:-2])["77"]
        seen.append(int.from_bytes(fields["9F36"], "big"))
        if card.state is not State.ONLINE:
            continue
        if pull:
            card.remove()
            continue
        tag_91 = {
            "valid": arpc_for(card, fields["9F26"], arc.decode()),
            "invalid": bytes(8) + arc,
            "none": bytes(10),
        }[issuer_data]
        second = exchange(card, build(0x80, 0xAE, second_p1, 0x00, arc + tag_91 + bytes(29), le=0))
        assert tlv.decode(second[:-2])["77"]["9F36"] == fields["9F36"]
        assert card.state is State.COMPLETED
    assert seen == sorted(set(seen)) and seen[0] == 1 and card.atc == seen[-1]


@settings(max_examples=30, deadline=None)
@given(first_p1=st.sampled_from([0x00, 0x40, 0x80]), offline=st.integers(0, 12))
def test_never_upgrades(first_p1, offline):
    from sim.emv.card_risk import CardCounters

    card = start(VirtualCard.from_label("healthy", counters=CardCounters(offline_count=offline)))
    cid = tlv.decode(first_ac(card, first_p1)[:-2])["77"]["9F27"][0] & 0xC0
    order = {0x00: 0, 0x80: 1, 0x40: 2}  # AAC < ARQC < TC
    assert order[cid] <= order[first_p1]
