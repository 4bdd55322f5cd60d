"""Kernel invariants under random terminal configurations, hosts and card faults (hypothesis).

The transactions run against the real virtual card; the TVR the decision was
taken on is read back from the first GENERATE AC's CDOL1 data, so each invariant
compares the kernel's request with the action codes exactly as EMV Book 3 10.7 does.
"""

from __future__ import annotations

import dataclasses
import random

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sim.core.host import Host
from sim.emv.faults import Fault
from sim.emv.kernel import ExceptionFile, NeedApdu, Outcome, RandomSelectionParams, TransactionResult
from sim.emv.kernel.commands import CryptogramType
from sim.emv.tvr import TVR_BITS, Tvr
from sim.iso8583.message import Message, response

from tests.test_kernel_helpers import CARDS, Recorder, config, requested_cryptograms, run, timeout, unreachable, virtual

LABELS = ["healthy", "offline-only-iac", "online-only-iac", "mc-healthy", "expired", "pin-1234", "low-limits"]
WEIGHTED = LABELS + ["offline-only-iac"] * 4  # the card whose IACs leave the decision to the TACs
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _or(*codes: bytes) -> bytes:
    out = bytearray(5)
    for code in codes:
        for i, b in enumerate(code):
            out[i] |= b
    return bytes(out)


def decline_51(message: Message) -> Message:
    return response(message, "51")


def _hosts() -> st.SearchStrategy:
    return st.sampled_from(["approve", "decline", "unreachable", "timeout"])


def _host(kind: str):
    return {"approve": lambda: Recorder(Host()), "decline": lambda: decline_51,
            "unreachable": lambda: unreachable, "timeout": lambda: timeout}[kind]()


def _mask(bits: list) -> bytes:
    out = bytearray(5)
    for bit in bits:
        out[bit.byte - 1] |= bit.mask
    return bytes(out)


_action_code = st.one_of(
    st.just(bytes(5)),
    st.sampled_from([bytes.fromhex(h) for h in ("DC4004F800", "DC4000A800", "5C4004F800", "5C40002000", "1010000000")]),
    st.lists(st.sampled_from(TVR_BITS), max_size=3).map(_mask),
)


@st.composite
def terminals(draw: st.DrawFn):
    base = config(draw(st.sampled_from(["countertop-ethernet", "mobile-3g", "legacy-dialup"])))
    floor = draw(st.integers(0, 20000))
    rs = RandomSelectionParams(draw(st.booleans()), draw(st.integers(0, 40)), 99, {"978": draw(st.integers(0, 5000))})
    return dataclasses.replace(
        base,
        terminal_type=draw(st.sampled_from(["21", "22", "23", "25"])),
        floor_limits={"978": floor, "840": floor, "392": floor},
        tac_denial=draw(st.one_of(st.just(bytes(5)), _action_code)),
        tac_online=draw(_action_code),
        tac_default=draw(_action_code),
        random_selection=rs,
        offline_store_free=draw(st.sampled_from([None, 0, 5])),
        applications=tuple(dataclasses.replace(app, tac_denial=None, tac_online=None, tac_default=None)
                           for app in base.applications),
    )


def _decision_tvr(trace: list, card) -> Tvr | None:
    first = next((e for e, _ in trace if isinstance(e, NeedApdu) and e.apdu[1] == 0xAE), None)
    if first is None:
        return None
    return Tvr(card.image.cdol1.split(first.apdu[5:-1])["95"])


def _check_common(result: TransactionResult) -> None:
    assert list(result.tvr_bits) == Tvr.from_hex(result.tvr).names()
    for message in result.pending:
        assert "35" not in message.fields and "52" not in message.fields
    if result.arc in ("Y1", "Z1"):
        assert result.messages == ()
    if result.arc in ("Y1", "Y3"):
        assert result.approved and result.cryptogram == "TC"
        assert [m.response_code for m in result.pending if m.mti == "0220"] == [result.arc]
    if result.approved:
        assert result.arc in ("00", "Y1", "Y3")


@SETTINGS
@given(terminals(), st.sampled_from(WEIGHTED), st.integers(1, 30000), _hosts(), st.integers(0, 2**32 - 1),
       st.booleans(), st.integers(0, 3000))
def test_decisions_follow_the_action_codes(cfg, label, amount, host_kind, seed, listed, logged) -> None:
    card_model = CARDS.card(label)
    currency = card_model.currency
    pan_log = cfg.pan_log.record(card_model.pan, card_model.currency_info.numeric, logged)
    cfg = dataclasses.replace(cfg, exception_file=ExceptionFile.of(card_model.pan) if listed else ExceptionFile(),
                              pan_log=pan_log)
    card = virtual(label)
    trace: list = []
    result = run(cfg, card, _host(host_kind), amount, currency, rng=random.Random(seed), trace=trace)
    _check_common(result)
    event(f"arc {result.arc}")
    tvr = _decision_tvr(trace, card)
    assert tvr is not None, result.reason
    emv = card_model.emv
    assert emv is not None
    denial = _or(cfg.tac_denial, bytes.fromhex(emv.iac_denial))
    online = _or(cfg.tac_online, bytes.fromhex(emv.iac_online))
    default = _or(cfg.tac_default, bytes.fromhex(emv.iac_default))
    floor = cfg.floor_limit(card_model.currency_info.numeric)

    # Floor limit (with the same-PAN log): 4:80 exactly when the sum reaches it.
    assert tvr.test("4:80") == (amount + logged >= floor)
    assert tvr.test("1:10") == listed
    if tvr.test("4:10"):
        assert amount < floor

    asked = requested_cryptograms(trace)[0]
    if tvr.intersects(denial):
        assert asked is CryptogramType.AAC
    elif cfg.online_capable:
        if not cfg.offline_capable or tvr.intersects(online):
            assert asked is CryptogramType.ARQC
        else:
            assert asked is CryptogramType.TC
    else:
        assert asked is (CryptogramType.AAC if not cfg.offline_capable or tvr.intersects(default) else CryptogramType.TC)

    # Outcomes the terminal decides offline only on matching action codes.
    if result.arc == "Y1":
        assert not tvr.intersects(denial)
        assert not cfg.online_capable or not tvr.intersects(online)
    if result.arc == "Z1" and asked is CryptogramType.AAC:
        assert tvr.intersects(denial) or not cfg.online_capable
    if result.arc == "Y3":
        assert not Tvr.from_hex(result.tvr).intersects(default) and cfg.offline_capable
    if result.arc == "Z3" and len(requested_cryptograms(trace)) > 1 and requested_cryptograms(trace)[1] is CryptogramType.AAC:
        assert Tvr.from_hex(result.tvr).intersects(default) or not cfg.offline_capable
    if result.arc in ("Y3", "Z3"):
        assert host_kind in ("unreachable", "timeout") or not cfg.online_capable
    if host_kind == "timeout" and result.messages:
        assert result.pending_mtis[0] == "0400"


_faults = st.builds(
    lambda target, effect, trigger: Fault(target, effect, trigger),
    st.sampled_from(["SELECT", "READ RECORD", "GPO", "GET DATA", "VERIFY", "GENERATE AC 1", "GENERATE AC 2",
                     "GET RESPONSE", "*"]),
    st.sampled_from(["mute", "status_word(6985)", "status_word(6A82)", "status_word(6283)", "corrupt_tlv", "truncate",
                     "drop_tag(5A)", "drop_tag(9F27)", "drop_tag(8C)", "remove", "pin_blocked"]),
    st.sampled_from(["always", "once", "every_n(2)", "every_n(3)"]),
)


@SETTINGS
@given(st.sampled_from(LABELS), st.lists(_faults, max_size=3), st.integers(1, 20000), _hosts(),
       st.sampled_from([["contact"], ["contactless"], ["magstripe"], ["contact", "magstripe", "manual"]]))
def test_card_faults_never_break_the_kernel(label, faults, amount, host_kind, present) -> None:
    card_model = CARDS.card(label)
    issuer_host = Recorder(Host()) if host_kind == "approve" else _host(host_kind)
    result = run(config(), virtual(label, faults=faults), issuer_host, amount, card_model.currency,
                 present=present)
    _check_common(result)
    event(f"{result.outcome.value}")
    assert result.outcome in (Outcome.APPROVED, Outcome.DECLINED, Outcome.TERMINATED)
    reversals = [m for m in result.pending if m.mti == "0400"]
    if reversals:
        assert result.messages and reversals[0].original is not None
    if result.approved and result.cryptogram is not None:
        assert result.cryptogram == "TC"
    if result.terminated:
        assert result.arc in (None, "00") or result.arc == result.host_response_code


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(LABELS), st.integers(1, 20000), st.integers(0, 2**32 - 1))
def test_same_inputs_same_result(label, amount, seed) -> None:
    def once() -> TransactionResult:
        return run(config("mobile-3g"), virtual(label), unreachable, amount, CARDS.card(label).currency,
                   rng=random.Random(seed), stan=500_000)

    first, second = once(), once()
    assert first.summary() == second.summary()
    assert [m.fields for m in first.pending] == [m.fields for m in second.pending]
