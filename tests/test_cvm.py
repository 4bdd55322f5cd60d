"""CVM lists: parsing, conditions, and the walking rules of EMV Book 3 10.5."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.emv.cvm import (
    Attempt,
    Condition,
    CvmCode,
    CvmContext,
    CvmError,
    CvmList,
    CvmResult,
    CvmResults,
    CvmRule,
    capability_codes,
    condition_satisfied,
    process,
    run,
)

ALL = capability_codes(bytes.fromhex("E0F8C0"))
HEALTHY = CvmList.parse(bytes.fromhex("000000000000000042031E031F03"))
EUR = "978"


def ctx(**kw: object) -> CvmContext:
    base = dict(amount=1000, currency=EUR, application_currency=EUR, supported=ALL)
    base.update(kw)
    return CvmContext(**base)  # type: ignore[arg-type]


def test_parse_amounts_and_rules() -> None:
    cvm_list = CvmList.parse(bytes.fromhex("000003E8000007D0" "4103" "0206" "1F00"))
    assert (cvm_list.amount_x, cvm_list.amount_y) == (1000, 2000)
    assert cvm_list.rules == (CvmRule(0x01, True, 0x03), CvmRule(0x02, False, 0x06), CvmRule(0x1F, False, 0x00))
    assert cvm_list.rules[0].method is CvmCode.PLAINTEXT_PIN_ICC


@pytest.mark.parametrize("raw", ["", "00000000000000", "000000000000000042"])
def test_malformed_lists_raise_cvm_error(raw: str) -> None:
    with pytest.raises(CvmError):
        CvmList.parse(bytes.fromhex(raw))


def test_capabilities_map_to_codes() -> None:
    assert capability_codes(bytes.fromhex("E06800")) == {
        CvmCode.FAIL, CvmCode.ENCIPHERED_PIN_ONLINE, CvmCode.SIGNATURE, CvmCode.NO_CVM}
    assert CvmCode.PLAINTEXT_PIN_ICC_AND_SIGNATURE in capability_codes(bytes.fromhex("00A000"))
    with pytest.raises(CvmError):
        capability_codes(b"\x00")


@pytest.mark.parametrize(
    "condition,kw,expected",
    [
        (Condition.ALWAYS, {}, True),
        (Condition.UNATTENDED_CASH, {"transaction_type": "01", "unattended": True}, True),
        (Condition.UNATTENDED_CASH, {"transaction_type": "01"}, False),
        (Condition.NOT_CASH_OR_CASHBACK, {}, True),
        (Condition.NOT_CASH_OR_CASHBACK, {"transaction_type": "09"}, False),
        (Condition.MANUAL_CASH, {"transaction_type": "01"}, True),
        (Condition.CASHBACK, {"transaction_type": "09"}, True),
        (Condition.UNDER_X, {"amount": 999}, True),
        (Condition.UNDER_X, {"amount": 1000}, False),
        (Condition.OVER_X, {"amount": 1001}, True),
        (Condition.UNDER_Y, {"amount": 1999}, True),
        (Condition.OVER_Y, {"amount": 2000}, False),
        (Condition.OVER_Y, {"amount": 2001}, True),
        (Condition.OVER_X, {"amount": 5000, "application_currency": "840"}, False),
        (Condition.OVER_X, {"amount": 5000, "application_currency": None}, False),
    ],
)
def test_conditions(condition: int, kw: dict, expected: bool) -> None:
    cvm_list = CvmList(1000, 2000, ())
    assert condition_satisfied(CvmRule(CvmCode.SIGNATURE, False, condition), cvm_list, ctx(**kw)) is expected


def test_terminal_supports_condition_and_unknown_conditions() -> None:
    cvm_list = CvmList(0, 0, ())
    no_sig = ctx(supported=frozenset({CvmCode.NO_CVM}))
    assert not condition_satisfied(CvmRule(CvmCode.SIGNATURE, False, 0x03), cvm_list, no_sig)
    assert condition_satisfied(CvmRule(CvmCode.NO_CVM, False, 0x03), cvm_list, no_sig)
    assert not condition_satisfied(CvmRule(CvmCode.NO_CVM, False, 0x0A), cvm_list, ctx())
    assert not condition_satisfied(CvmRule(CvmCode.NO_CVM, False, 0x80), cvm_list, ctx())


def test_online_pin_first() -> None:
    decision = run(HEALTHY, ctx(), lambda rule: Attempt.UNKNOWN)
    assert decision.results.hex() == "420300" and decision.online_pin and decision.verified
    assert decision.tvr_bits == ()


def test_bypassed_pin_falls_through_to_signature() -> None:
    seen = []

    def perform(rule: CvmRule) -> Attempt:
        seen.append(rule.method)
        return Attempt.FAILED if rule.method is CvmCode.ENCIPHERED_PIN_ONLINE else Attempt.UNKNOWN

    decision = run(HEALTHY, ctx(), perform)
    assert seen == [CvmCode.ENCIPHERED_PIN_ONLINE, CvmCode.SIGNATURE]
    assert decision.results.hex() == "1E0300" and decision.signature_required and not decision.online_pin


def test_fail_cvm_rule() -> None:
    decision = run(CvmList.parse(bytes.fromhex("00000000000000000000")), ctx(), lambda r: Attempt.SUCCESSFUL)
    assert not decision.verified and decision.results.hex() == "000001"
    assert decision.tvr_bits == ("cardholder_verification_failed",)


def test_unrecognised_cvm_sets_3_40_and_moves_on() -> None:
    decision = run(CvmList.parse(bytes.fromhex("0000000000000000" "4A00" "1F00")), ctx(), lambda r: Attempt.SUCCESSFUL)
    assert decision.tvr_bits == ("unrecognised_cvm",) and decision.verified and decision.results.hex() == "1F0002"


def test_no_applicable_rule_fails_with_3f() -> None:
    decision = run(CvmList.parse(bytes.fromhex("0000000000000000" "1E05")), ctx(), lambda r: Attempt.UNKNOWN)
    assert decision.results == CvmResults.not_performed(CvmResult.FAILED)
    assert decision.results.hex() == "3F0001" and not decision.verified


def test_pin_pad_missing_fails_pin_rules_with_3_10() -> None:
    cvm_list = CvmList.parse(bytes.fromhex("0000000000000000" "4100" "1E00"))
    decision = run(cvm_list, ctx(pin_pad_working=False), lambda r: Attempt.UNKNOWN)
    assert decision.tvr_bits == ("pin_pad_missing",) and decision.results.hex() == "1E0000"


def test_failure_without_apply_next_stops_the_walk() -> None:
    cvm_list = CvmList.parse(bytes.fromhex("0000000000000000" "0100" "1F00"))
    decision = run(cvm_list, ctx(), lambda r: Attempt.FAILED)
    assert decision.results.hex() == "010001" and not decision.verified


def test_unsupported_method_with_always_condition_fails() -> None:
    cvm_list = CvmList.parse(bytes.fromhex("0000000000000000" "5E00" "1F00"))
    decision = run(cvm_list, ctx(supported=frozenset({CvmCode.NO_CVM})), lambda r: Attempt.SUCCESSFUL)
    assert decision.results.hex() == "1F0002"


def test_signature_reported_successful_stays_unknown() -> None:
    cvm_list = CvmList.parse(bytes.fromhex("0000000000000000" "0300"))
    decision = run(cvm_list, ctx(), lambda r: Attempt.SUCCESSFUL)
    assert decision.results.hex() == "030000" and decision.signature_required


@given(st.binary(max_size=30))
def test_any_bytes_parse_or_raise_only_cvm_error(raw: bytes) -> None:
    try:
        cvm_list = CvmList.parse(raw)
    except CvmError:
        return
    again = CvmList.parse(cvm_list.encode())
    assert again == cvm_list
    assert cvm_list.encode() == bytes(raw[:8]) + bytes(b & 0x7F if i % 2 == 0 else b for i, b in enumerate(raw[8:]))


_rules = st.builds(CvmRule, st.integers(0, 0x3F), st.booleans(), st.integers(0, 0x0B))
_lists = st.builds(CvmList, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.lists(_rules, max_size=6).map(tuple))
_contexts = st.builds(
    CvmContext,
    amount=st.integers(0, 10**7),
    currency=st.sampled_from(["978", "840"]),
    application_currency=st.sampled_from(["978", "840", None]),
    transaction_type=st.sampled_from(["00", "01", "09", "20"]),
    unattended=st.booleans(),
    supported=st.sampled_from([ALL, capability_codes(bytes.fromhex("000800")), capability_codes(bytes.fromhex("E06800"))]),
    pin_pad_working=st.booleans(),
)


@given(_lists, _contexts, st.lists(st.sampled_from(list(Attempt)), max_size=8))
def test_walk_invariants(cvm_list: CvmList, context: CvmContext, attempts: list[Attempt]) -> None:
    assert CvmList.parse(cvm_list.encode()) == cvm_list
    outcomes = iter(attempts)
    performed: list[CvmRule] = []

    def perform(rule: CvmRule) -> Attempt:
        performed.append(rule)
        return next(outcomes, Attempt.FAILED)

    decision = run(cvm_list, context, perform)
    for rule in performed:  # only applicable, recognised, supported rules are ever performed
        assert condition_satisfied(rule, cvm_list, context)
        assert rule.method is not None and rule.method in context.supported
    assert decision.verified == ("cardholder_verification_failed" not in decision.tvr_bits)
    assert (decision.results.result is CvmResult.FAILED) == (not decision.verified)
    if "unrecognised_cvm" in decision.tvr_bits:
        assert any(r.method is None for r in cvm_list.rules)
    if decision.online_pin:
        assert decision.results.method & 0x3F == CvmCode.ENCIPHERED_PIN_ONLINE


def test_process_is_a_generator_of_rules() -> None:
    walk = process(HEALTHY, ctx())
    first = next(walk)
    assert first.method is CvmCode.ENCIPHERED_PIN_ONLINE
    with pytest.raises(StopIteration) as stop:
        walk.send(Attempt.UNKNOWN)
    assert stop.value.value.results.hex() == "420300"
