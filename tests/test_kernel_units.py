"""Unit tests of the kernel's pure modules: selection data, records, restrictions, risk, action, entry, messages."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.emv import tlv
from sim.emv.kernel import Application, ExceptionFile, Outcome, PanLog, TerminalConfig, TransactionResult
from sim.emv.kernel.action import ActionCodes, decide, unable_online
from sim.emv.kernel.commands import (
    CryptogramType,
    get_data,
    get_processing_options,
    parse_generate_ac,
    plaintext_pin_block,
    select,
    split,
)
from sim.emv.kernel.config import pan_digest
from sim.emv.kernel.entry import TrackError, entry_mode, parse_track2, track2_from_tag57
from sim.emv.kernel.issuer_auth import cvr_says_issuer_authentication_failed
from sim.emv.kernel.messages import CardFields, build_advice, build_request, build_reversal, icc_data, next_stan
from sim.emv.kernel.records import CardDataError, merge_record, missing_mandatory, parse_afl, parse_gpo_response
from sim.emv.kernel.restrictions import check, emv_date, usage_allowed
from sim.emv.kernel.risk import floor_limit_exceeded, random_selected, velocity
from sim.emv.kernel.selection import (
    Candidate,
    SelectionError,
    objects,
    order_candidates,
    parse_directory_record,
    parse_fci,
    ppse_entries,
)
from sim.emv.tvr import Tvr

from tests.test_kernel_helpers import WHEN

VISA = bytes.fromhex("A0000000031010")
APP = Application(VISA, "VISA", True, bytes.fromhex("008C"))


# Selection ---------------------------------------------------------------------------------------


def test_objects_keeps_repeats_and_skips_padding() -> None:
    data = bytes.fromhex("00" "6103 4F0101" "FF" "6103 4F0102")
    assert list(objects(data)) == [("61", bytes.fromhex("4F0101")), ("61", bytes.fromhex("4F0102"))]
    long = b"\x70\x81\x80" + bytes(128)
    assert list(objects(long)) == [("70", bytes(128))]
    for bad in ("9F", "6105 4F01", "70 85 00", "5A"):
        with pytest.raises(SelectionError):
            list(objects(bytes.fromhex(bad.replace(" ", ""))))


def test_directory_record_with_two_applications() -> None:
    record = bytes.fromhex("701C" "610C 4F07A0000000031010 870102" "610C 4F07A0000000041010 870181")
    entries = parse_directory_record(record)
    assert [(e.aid.hex().upper(), e.priority, e.confirmation_required) for e in entries] == [
        ("A0000000031010", 2, False), ("A0000000041010", 1, True)]
    with pytest.raises(SelectionError):
        parse_directory_record(bytes.fromhex("6100"))


def test_fci_errors() -> None:
    with pytest.raises(SelectionError, match="not an FCI"):
        parse_fci(bytes.fromhex("7000"))
    with pytest.raises(SelectionError, match="no DF name"):
        parse_fci(bytes.fromhex("6F02A500"))
    with pytest.raises(SelectionError):
        parse_fci(bytes.fromhex("6F05"))


def test_ppse_entries() -> None:
    fci = tlv.encode({"6F": {"84": b"2PAY.SYS.DDF01", "A5": {"BF0C": {"61": {"4F": VISA, "50": b"VISA", "87": b"\x01"}}}}})
    assert ppse_entries(fci) == [(VISA, "VISA", 1, False)]
    assert ppse_entries(b"\x6f\x00") == [] and ppse_entries(b"garbage") == []


def test_candidates_are_ordered_by_priority_and_confirmation_is_respected() -> None:
    c1 = Candidate(VISA, "A", None, False, APP)
    c2 = Candidate(VISA + b"\x01", "B", 2, False, APP)
    c3 = Candidate(VISA + b"\x02", "C", 1, True, APP)
    assert order_candidates([c1, c2, c3], TerminalConfig()) == [c3, c2, c1]
    unattended = TerminalConfig(cardholder_confirmation=False)
    assert order_candidates([c1, c2, c3], unattended) == [c2, c1]


def test_partial_selection_matching() -> None:
    assert APP.matches(VISA) and APP.matches(VISA + b"\x01")
    exact = Application(VISA, "VISA", partial_selection=False)
    assert exact.matches(VISA) and not exact.matches(VISA + b"\x01")
    assert not APP.matches(bytes.fromhex("A0000000041010"))


# Records -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("afl", ["100101", "00010100", "08000100", "08020100", "08010103", "0F010100"])
def test_bad_afl(afl: str) -> None:
    with pytest.raises(CardDataError):
        parse_afl(bytes.fromhex(afl))


def test_gpo_formats() -> None:
    aip, afl, extra = parse_gpo_response(tlv.encode({"77": {"82": b"\x18\x00", "94": bytes.fromhex("08010100"),
                                                             "9F36": b"\x00\x01"}}))
    assert aip == b"\x18\x00" and afl[0].sfi == 1 and extra == {"9F36": b"\x00\x01"}
    for bad in ("8001 18", "7700", "7703 820118", "9000", "80"):
        with pytest.raises(CardDataError):
            parse_gpo_response(bytes.fromhex(bad.replace(" ", "")))


def test_records_merge_rules() -> None:
    card: dict = {}
    merge_record(card, 1, 1, tlv.encode({"70": {"5A": b"\x47", "5F24": b"\x28\x12\x31"}}))
    with pytest.raises(CardDataError, match="appears twice"):
        merge_record(card, 2, 1, tlv.encode({"70": {"5A": b"\x47"}}))
    with pytest.raises(CardDataError, match="not a '70' template"):
        merge_record(card, 2, 1, tlv.encode({"77": {"8C": b"\x01"}}))
    merge_record(card, 11, 1, tlv.encode({"8C": b"\x9f\x02\x06"}))  # SFI 11-30 need no template
    assert missing_mandatory(card) == ["8D"]
    with pytest.raises(CardDataError, match="malformed"):
        merge_record(card, 2, 2, bytes.fromhex("70FF00"))


# Restrictions ------------------------------------------------------------------------------------


def test_emv_dates() -> None:
    assert emv_date(bytes.fromhex("491231")) == date(2049, 12, 31)
    assert emv_date(bytes.fromhex("500101")) == date(1950, 1, 1)
    assert emv_date(bytes.fromhex("281332")) is None and emv_date(b"\x28") is None


def test_restriction_bits() -> None:
    card = {
        "9F08": bytes.fromhex("0002"), "9F07": bytes.fromhex("AB00"), "5F28": bytes.fromhex("0250"),
        "5F25": bytes.fromhex("270101"), "5F24": bytes.fromhex("251231"),
    }
    bits = check(card, terminal_version=bytes.fromhex("008C"), country="250", transaction_type="00",
                 terminal_type="22", today=date(2026, 3, 15))
    assert bits == ["application_versions_differ", "expired_application", "application_not_yet_effective"]
    assert check({"5F24": bytes.fromhex("261231")}, terminal_version=None, country="250", transaction_type="00",
                 terminal_type="22", today=date(2026, 12, 31)) == []
    assert check({}, terminal_version=None, country="250", transaction_type="00", terminal_type="22",
                 today=date(2026, 1, 1)) == ["expired_application"]


@pytest.mark.parametrize(
    "auc,domestic,kind,atm,ok",
    [
        ("FF00", True, "00", False, True),
        ("FF00", True, "09", False, False),  # no cashback allowed
        ("FF80", True, "09", False, True),
        ("FF80", False, "09", False, False),
        ("2900", True, "00", False, True),  # domestic goods, not ATM
        ("2900", False, "00", False, False),  # international goods not allowed
        ("8100", True, "01", False, True),
        ("8100", False, "01", False, False),
        ("FD00", True, "00", True, False),  # not valid at ATMs
        ("FE00", True, "00", False, False),  # not valid at terminals other than ATMs
        ("0100", None, "00", False, True),  # no issuer country: only the ATM check
        ("01", True, "00", False, False),
    ],
)
def test_application_usage_control(auc: str, domestic, kind: str, atm: bool, ok: bool) -> None:
    assert usage_allowed(bytes.fromhex(auc), domestic=domestic, transaction_type=kind, atm=atm) is ok


# Risk --------------------------------------------------------------------------------------------


def test_floor_limit_is_reached_at_equality() -> None:
    assert floor_limit_exceeded(5000, 0, 5000) and not floor_limit_exceeded(4999, 0, 5000)
    assert floor_limit_exceeded(1, 0, 0)


@pytest.mark.parametrize(
    "amount,draw,selected",
    [
        (500, 10, True), (500, 11, False),  # below the threshold: target 10 %
        (1000, 10, True), (1000, 11, False),  # at the threshold: still 10 %
        (3000, 30, True), (3000, 31, False),  # half way: 10 + 40 * 0.5 = 30 %
        (4999, 49, True), (4999, 50, False),  # just below the floor: 49.99 %
        (5000, 1, False),  # at the floor: not random selection's business
    ],
)
def test_random_selection_interpolates_between_target_and_max(amount: int, draw: int, selected: bool) -> None:
    assert random_selected(amount=amount, floor_limit=5000, threshold=1000, target=10, max_target=50, draw=draw) is selected


def test_random_selection_edge_cases() -> None:
    assert random_selected(amount=10, floor_limit=100, threshold=100, target=5, max_target=50, draw=5)
    with pytest.raises(ValueError):
        random_selected(amount=10, floor_limit=100, threshold=0, target=5, max_target=50, draw=0)


@given(st.integers(0, 10**6), st.integers(1, 10**6), st.integers(0, 10**6), st.integers(0, 99), st.integers(0, 99),
       st.integers(1, 99))
def test_random_selection_matches_the_rational_formula(amount, floor, threshold, target, extra, draw) -> None:
    from fractions import Fraction

    max_target = min(99, target + extra)
    got = random_selected(amount=amount, floor_limit=floor, threshold=threshold, target=target,
                          max_target=max_target, draw=draw)
    if amount >= floor:
        assert got is False
    elif amount < threshold or floor <= threshold:
        assert got == (draw <= target)
    else:
        percent = target + (max_target - target) * Fraction(amount - threshold, floor - threshold)
        assert got == (draw <= percent)


@pytest.mark.parametrize(
    "atc,last,bits",
    [
        (None, 5, ["lcol_exceeded", "ucol_exceeded"]),
        (3, 5, ["lcol_exceeded", "ucol_exceeded"]),
        (5, 5, ["lcol_exceeded", "ucol_exceeded"]),  # GPO did not count this transaction: a broken counter
        (0, 0, ["lcol_exceeded", "ucol_exceeded"]),
        (6, 5, []),
        (10, 5, []),
        (11, 5, ["lcol_exceeded"]),
        (16, 5, ["lcol_exceeded", "ucol_exceeded"]),
        (1, 0, ["new_card"]),
        (6, 0, ["lcol_exceeded", "new_card"]),
    ],
)
def test_velocity(atc, last, bits) -> None:
    assert velocity(atc=atc, last_online_atc=last, lcol=5, ucol=10) == bits


# Action analysis -----------------------------------------------------------------------------------


def codes(denial="0000000000", online="0000000000", default="0000000000", **iac) -> ActionCodes:
    card = {tag: bytes.fromhex(value) for tag, value in iac.items()}
    return ActionCodes.of(card, bytes.fromhex(denial), bytes.fromhex(online), bytes.fromhex(default))


def test_absent_iacs_default_to_zeros_and_ones() -> None:
    absent = codes()
    assert absent.iac_denial == bytes(5) and absent.iac_online == b"\xff" * 5 and absent.iac_default == b"\xff" * 5
    assert codes(**{"9F0E": "0010"}).iac_denial == bytes(5)  # wrong length: treated as absent


def test_decide_branches() -> None:
    tvr = Tvr.from_hex("0000008000")
    zeros = {"9F0E": "0000000000", "9F0F": "0000000000", "9F0D": "0000000000"}
    assert decide(tvr, codes(denial="0000008000", **zeros), online_capable=True, offline_allowed=True).cryptogram is CryptogramType.AAC
    assert decide(tvr, codes(online="0000008000", **zeros), online_capable=True, offline_allowed=True).cryptogram is CryptogramType.ARQC
    assert decide(tvr, codes(**zeros), online_capable=True, offline_allowed=True).cryptogram is CryptogramType.TC
    assert decide(tvr, codes(**zeros), online_capable=True, offline_allowed=False).cryptogram is CryptogramType.ARQC
    assert decide(tvr, codes(**zeros), online_capable=True, offline_allowed=True, force_online=True).cryptogram is CryptogramType.ARQC
    assert decide(tvr, codes(default="0000008000", **zeros), online_capable=False, offline_allowed=True).cryptogram is CryptogramType.AAC
    assert decide(tvr, codes(**zeros), online_capable=False, offline_allowed=True).cryptogram is CryptogramType.TC
    assert decide(tvr, codes(**zeros), online_capable=False, offline_allowed=False).cryptogram is CryptogramType.AAC
    why = decide(tvr, codes(), online_capable=True, offline_allowed=True)
    assert why.matched == ("transaction_exceeds_floor_limit",) and "online" in why.reason


def test_unable_online() -> None:
    tvr = Tvr.from_hex("8000000000")
    assert unable_online(tvr, codes(**{"9F0D": "0000000000"})).cryptogram is CryptogramType.TC
    assert unable_online(tvr, codes(**{"9F0D": "8000000000"})).cryptogram is CryptogramType.AAC
    assert unable_online(tvr, codes(**{"9F0D": "0000000000"}), offline_allowed=False).cryptogram is CryptogramType.AAC


# Commands ----------------------------------------------------------------------------------------


def test_command_builders() -> None:
    assert select(VISA, next_occurrence=True).hex().upper() == "00A4040207A000000003101000"
    assert get_processing_options(b"").hex().upper() == "80A80000028300" "00"
    assert get_data("9F17").hex().upper() == "80CA9F1700"
    with pytest.raises(ValueError):
        plaintext_pin_block("12")
    with pytest.raises(ValueError):
        split(b"\x90")


def test_generate_ac_answers() -> None:
    fmt1 = tlv.encode({"80": bytes.fromhex("80" "0007" "1122334455667788" "06010A03A00000")})
    answer = parse_generate_ac(fmt1)
    assert answer is not None and answer.type is CryptogramType.ARQC and answer.objects["9F36"] == b"\x00\x07"
    fmt2 = tlv.encode({"77": {"9F27": b"\x40", "9F36": b"\x00\x07", "9F26": bytes(8)}})
    assert parse_generate_ac(fmt2).type is CryptogramType.TC  # type: ignore[union-attr]
    assert parse_generate_ac(tlv.encode({"77": {"9F27": b"\xc0", "9F36": b"\x00\x07", "9F26": bytes(8)}})) is None
    assert parse_generate_ac(tlv.encode({"77": {"9F27": b"\x40"}})) is None
    assert parse_generate_ac(tlv.encode({"80": bytes(5)})) is None
    assert parse_generate_ac(b"\x9f") is None and parse_generate_ac(bytes.fromhex("7000")) is None


def test_issuer_authentication_from_the_cvr() -> None:
    assert cvr_says_issuer_authentication_failed(bytes.fromhex("06010A03A80800"))
    assert cvr_says_issuer_authentication_failed(bytes.fromhex("0110" "A0100F000400" + "00" * 10))
    assert cvr_says_issuer_authentication_failed(bytes.fromhex("0110" "A0100F000000" + "00" * 10)) is False
    assert cvr_says_issuer_authentication_failed(bytes.fromhex("0110" "A0000F000000" + "00" * 10)) is None


# Entry modes and track 2 -----------------------------------------------------------------------------


def test_entry_modes() -> None:
    assert [entry_mode(i, pin_digit="1") for i in ("contact", "contactless", "magstripe", "manual")] == [
        "051", "071", "901", "011"]
    assert entry_mode("magstripe", pin_digit="2", chip_failed=True) == "802"
    assert entry_mode("manual", pin_digit="1", chip_failed=True) == "791"


def test_track2() -> None:
    track = parse_track2("5413330089010046=28121010000000000F")
    assert (track.pan, track.expiry, track.service_code, track.chip_card, track.pin_required) == (
        "5413330089010046", "2812", "101", False, False)
    assert "5413330089010046" not in repr(track)
    assert track2_from_tag57(bytes.fromhex("4761739001010010D2812201000000000F")) == "4761739001010010D2812201000000000"
    for bad in ("4761739001010010", "47617D2812201", "4761739001010010D28"):
        with pytest.raises(TrackError):
            parse_track2(bad)


# Messages ----------------------------------------------------------------------------------------


CARD = CardFields("4761739001010010", "2812", "01", "4761739001010010D28122010000000000")
COMMON = dict(amount=2500, currency="978", stan=7, when=WHEN, terminal_id="TERM0001", merchant_id="POSSIM000000001",
              entry_mode="051")


def test_request_advice_reversal() -> None:
    icc = icc_data({"9F26": bytes(8), "95": bytes(5), "XX": b"1", "9F02": bytes.fromhex("000000002500")})
    assert list(icc) == ["9F26", "95", "9F02"]
    request = build_request("0200", CARD, icc=icc, pin_block="0123456789ABCDEF", **COMMON)
    assert request.fields["23"] == "001" and request.fields["35"].startswith("4761739001010010D")
    assert request.fields["12"] == "103000" and request.fields["13"] == "0315" and request.fields["42"] == "POSSIM000000001"
    advice = build_advice(CARD, response_code="Y1", icc=icc, **COMMON)
    assert advice.mti == "0220" and advice.response_code == "Y1" and "35" not in advice.fields and "52" not in advice.fields
    reversal = build_reversal(request, stan=8, when=WHEN, reason="68", auth_code="000123")
    assert reversal.mti == "0400" and reversal.original.stan == "000007" and reversal.fields["38"] == "000123"
    assert "35" not in reversal.fields and "52" not in reversal.fields and reversal.response_code == "68"
    assert next_stan(999_999) == 1 and next_stan(1) == 2


# Config and result -------------------------------------------------------------------------------


def test_exception_file_and_pan_log() -> None:
    listed = ExceptionFile.of("4761739001010010", ("4761739001010028", "02"))
    assert listed.contains("4761739001010010", "01")
    assert listed.contains("4761739001010028", "02") and not listed.contains("4761739001010028", "01")
    assert "4761739001010010" not in repr(listed)
    log = PanLog(size=2)
    for amount in (100, 200, 300):
        log = log.record("4761739001010010", "978", amount)
    assert log.latest("4761739001010010", "978") == 300 and len(log.entries) == 2
    assert log.latest("4761739001010010", "840") == 0
    assert log.record_digest(pan_digest("1"), "978", 5).latest("1", "978") == 5
    assert "4761739001010010" not in repr(log) and "4761739001010010" not in str(log.entries)


def test_config_lookups() -> None:
    config = TerminalConfig.from_profile("countertop-ethernet", exception_file=["4761739001010010"])
    assert config.exception_file.contains("4761739001010010")
    assert config.floor_limit("978", "contactless") == 5000 and config.floor_limit("999") == 0
    mc = config.application(bytes.fromhex("A0000000041010"))
    assert mc is not None and config.action_codes(mc)[1] == bytes.fromhex("F470C49800")
    assert config.action_codes(config.application(VISA))[1] == bytes.fromhex("DC4004F800")
    assert config.ca_key("A000000003", 0xF1) is not None and config.ca_key("A000000003", 0x01) is None
    assert config.pin_capability_digit == "1" and not config.online_only
    assert TerminalConfig(terminal_type="21").online_only and TerminalConfig(offline_store_free=0).online_only


def test_result_helpers() -> None:
    result = TransactionResult(
        outcome=Outcome.DECLINED, reason="r", arc="Z1", tvr="0000008000", tsi="0000",
        tvr_bits=("transaction_exceeds_floor_limit",), cvm="", cvm_label="", entry_mode="051",
        cryptogram="AAC", amount_minor=1, currency="978",
    )
    assert result.declined and not result.approved and not result.terminated
    assert result.has_bit("4:80") and not result.has_bit("1:10") and result.pending_mtis == ()
    assert result.summary().startswith("declined arc=Z1 ac=AAC de22=051")


# What is remembered across transactions ---------------------------------------------------------


def test_a_remembered_fci_cannot_be_changed_by_one_transaction_for_the_next() -> None:
    raw = bytes.fromhex("6F1A8407A0000000031010A50F500456495341870101" "9F38039F3704")
    fci = parse_fci(raw)
    with pytest.raises(TypeError):
        fci.proprietary["50"] = b"EVIL"  # type: ignore[index]
    assert parse_fci(raw).label == "VISA" and parse_fci(raw) is fci
    entries = parse_directory_record(bytes.fromhex("700E" "610C 4F07A0000000031010 870101".replace(" ", "")))
    entries.clear()  # the caller's own list
    assert len(parse_directory_record(bytes.fromhex("700E610C4F07A0000000031010870101"))) == 1


def test_gpo_extra_objects_are_the_callers_own() -> None:
    raw = bytes.fromhex("770F" "82021800" "940408010100" "9F36020001")
    aip, afl, extra = parse_gpo_response(raw)
    extra["9F36"] = b"\xff"
    assert parse_gpo_response(raw)[2] == {"9F36": b"\x00\x01"}
    assert aip == bytes.fromhex("1800") and [(e.sfi, e.first, e.last) for e in afl] == [(1, 1, 1)]


@given(st.dictionaries(st.sampled_from(["9F26", "9F27", "9F10", "9F37", "95", "9A", "9F02", "5F2A", "82", "84"]),
                       st.binary(max_size=40), min_size=1))
def test_de55_encoded_object_by_object_is_what_pyemv_encodes_whole(objects_: dict[str, bytes]) -> None:
    assert tlv.encode_each(objects_) == tlv.encode(objects_)


def test_a_decoding_view_is_the_decoding_and_a_record_merge_owns_its_templates() -> None:
    record = bytes.fromhex("700B" "5A0447617390" "A503" "500141")
    assert tlv.decode_view(record) == tlv.decode(record)
    card: dict = {}
    merge_record(card, 2, 1, record)
    card["A5"]["50"] = b"Z"
    assert tlv.decode(record)["70"]["A5"] == {"50": b"A"}


def test_same_pan_log_by_digest_agrees_with_by_pan() -> None:
    log = PanLog().record("4761739001010010", "978", 1500).record("5413330089020011", "978", 700)
    assert log.latest_digest(pan_digest("4761739001010010"), "978") == log.latest("4761739001010010", "978") == 1500
    assert log.latest_digest(pan_digest("4761739001010010"), "840") == 0
