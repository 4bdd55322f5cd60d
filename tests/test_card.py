"""The virtual EMV card: every command and status word, the happy path, card risk management."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sim.core import crypto
from sim.core.cards import load_cards
from sim.emv import oda, tlv
from sim.emv.apdu import build
from sim.emv.card import ATR, VirtualCard
from sim.emv.card_perso import PPSE_NAME, PSE_NAME
from sim.emv.card_risk import CardCounters
from sim.emv.card_state import ALLOWED, TRANSITIONS, State
from sim.emv.errors import CardError, CardMuteError, CardNotPoweredError, CardRemovedError
from tests.test_card_support import (
    P1_AAC,
    P1_ARQC,
    P1_TC,
    TERMINAL,
    ac_fields,
    arpc_for,
    data,
    exchange,
    first_ac,
    flat,
    get_data,
    gpo,
    issuer_view,
    pin_block,
    read_by_afl,
    read_record,
    second_ac,
    select,
    start,
    sw,
    verify,
)

H = bytes.fromhex
CHIP_LABELS = [c.label for c in load_cards().cards if c.emv is not None and not c.faults]


@pytest.fixture
def healthy() -> VirtualCard:
    return start(VirtualCard.from_label("healthy"))


# Power, ATR, physical events -------------------------------------------------------------------


def test_atr_is_the_emv_basic_t0_atr():
    card = VirtualCard.from_label("healthy")
    assert card.power_on() == ATR == H("3B600000")
    assert card.state is State.IDLE


def test_stripe_only_card_has_no_chip():
    card = VirtualCard.from_label("magstripe-only")
    with pytest.raises(CardMuteError, match="no chip"):
        card.power_on()
    assert card.swipe().startswith("5413330089010046D2812101")


def test_command_before_power_on_is_a_driver_error():
    card = VirtualCard.from_label("healthy")
    with pytest.raises(CardNotPoweredError):
        card.execute(build(0x00, 0xA4, 0x04, 0x00, PSE_NAME, le=0))
    assert issubclass(CardNotPoweredError, CardError)


def test_removed_card_raises_until_reinserted(healthy):
    healthy.remove()
    assert healthy.state is State.REMOVED
    with pytest.raises(CardRemovedError):
        healthy.execute(build(0x80, 0xCA, 0x9F, 0x36, le=0))
    assert healthy.power_on() == ATR
    assert sw(select(healthy, PSE_NAME)) == 0x9000


def test_swipe_returns_track2_with_d_separator():
    card = VirtualCard.from_label("healthy")
    track = card.swipe()
    pan, sep, rest = track.partition("D")
    assert (pan, sep, rest[:7]) == ("4761739001010010", "D", "2812201")


def test_repr_masks_the_pan():
    card = VirtualCard.from_label("healthy")
    assert "4761739001010010" not in repr(card)
    assert "476173******0010" in repr(card)


def test_from_label_uses_the_given_card_set_and_names_unknown_labels():
    cards = load_cards()
    assert VirtualCard.from_label("mc-healthy", cards).issuer.scheme == "mastercard"
    with pytest.raises(KeyError, match="no card 'nope'"):
        VirtualCard.from_label("nope", cards)


# APDU-level status words ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("apdu", "expected"),
    [
        (H("00A4"), 0x6700),  # shorter than a header
        (H("00A40400FF00"), 0x6700),  # Lc says 255, one byte follows
        (H("00A40400000001"), 0x6700),  # extended length
        (H("84A4040000"), 0x6E00),  # secure messaging CLA
        (H("FFCA000000"), 0x6E00),  # PC/SC pseudo-APDU class
        (H("80A4040000"), 0x6E00),  # SELECT under the proprietary class
        (H("0084000008"), 0x6D00),  # GET CHALLENGE: not implemented
        (H("80CA9F3600"), 0x6985),  # GET DATA before an application is selected
        (H("00A4000002 3F00".replace(" ", "")), 0x6A86),  # SELECT by file id
    ],
)
def test_status_words_for_bad_commands(apdu, expected):
    card = VirtualCard.from_label("healthy")
    card.power_on()
    assert sw(card.execute(apdu)) == expected


# SELECT ------------------------------------------------------------------------------------------


def test_pse_and_its_directory_record():
    card = VirtualCard.from_label("healthy")
    card.power_on()
    fci = data(select(card, PSE_NAME))["6F"]
    assert fci["84"] == PSE_NAME and fci["A5"]["88"] == b"\x01"
    entry = data(read_record(card, 1, 1))["70"]["61"]
    assert entry["4F"] == H("A0000000031010") and entry["87"] == b"\x01"
    assert sw(read_record(card, 1, 2)) == 0x6A83
    assert sw(read_record(card, 2, 1)) == 0x6A82
    assert card.state is State.DIRECTORY


def test_ppse_lists_the_application_in_bf0c():
    card = VirtualCard.from_label("mc-healthy")
    card.power_on()
    fci = data(select(card, PPSE_NAME))["6F"]
    assert fci["84"] == PPSE_NAME
    assert fci["A5"]["BF0C"]["61"]["4F"] == H("A0000000041010")
    assert sw(read_record(card, 1, 1)) == 0x6A82  # the PPSE has no records


def test_select_aid_returns_fci_with_pdol_for_the_visa_style_card():
    card = VirtualCard.from_label("healthy")
    card.power_on()
    fci = data(select(card, H("A0000000031010")))["6F"]
    assert fci["84"] == H("A0000000031010")
    assert fci["A5"]["9F38"] == H("9F1A025F2A029F0206")
    assert card.state is State.SELECTED


def test_select_aid_of_the_mastercard_style_card_has_no_pdol():
    card = VirtualCard.from_label("mc-healthy")
    card.power_on()
    assert "9F38" not in data(select(card, H("A0000000041010")))["6F"]["A5"]


def test_select_partial_aid_next_occurrence_and_unknown():
    card = VirtualCard.from_label("healthy")
    card.power_on()
    assert sw(select(card, H("A000000003"))) == 0x9000
    assert sw(select(card, H("A000000003"), p2=0x02)) == 0x6A82
    assert sw(select(card, H("A0000000041010"))) == 0x6A82
    assert sw(select(card, H("A0000000"))) == 0x6A82  # shorter than a RID
    assert sw(card.execute(build(0x00, 0xA4, 0x04, 0x0C, PSE_NAME))) == 0x6A86
    assert sw(card.execute(build(0x00, 0xA4, 0x04, 0x00))) == 0x6700


# GET PROCESSING OPTIONS ----------------------------------------------------------------------------


def test_gpo_format_2_for_visa_style():
    card = VirtualCard.from_label("healthy")
    card.power_on()
    select(card, card.image.aid)
    body = data(gpo(card, H("0250" "0978" "000000002500")))["77"]
    assert body["82"] == H("1800")
    assert body["94"] == H("10010202" "18010101" "20010300")
    assert card.state is State.INITIATED


def test_gpo_format_1_for_mastercard_style():
    card = VirtualCard.from_label("mc-healthy")
    card.power_on()
    select(card, card.image.aid)
    assert data(gpo(card, b""))["80"] == H("1800" "10010202" "18010101" "20010300")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (tlv.encode({"83": bytes(9)}), 0x6700),  # PDOL asks for 10 bytes
        (tlv.encode({"83": bytes(11)}), 0x6700),
        (tlv.encode({"84": bytes(10)}), 0x6A80),  # not the 83 template
        (H("8314"), 0x6A80),  # malformed TLV
    ],
)
def test_gpo_checks_its_data(body, expected):
    card = VirtualCard.from_label("healthy")
    card.power_on()
    select(card, card.image.aid)
    assert sw(exchange(card, build(0x80, 0xA8, 0x00, 0x00, body, le=0))) == expected
    assert card.state is State.SELECTED


def test_gpo_outside_a_selected_application_is_refused():
    card = VirtualCard.from_label("healthy")
    card.power_on()
    assert sw(gpo(card, bytes(10))) == 0x6985
    start(card)
    assert sw(gpo(card)) == 0x6985  # a second GPO in the same transaction
    select(card, card.image.aid)
    assert sw(exchange(card, build(0x80, 0xA8, 0x01, 0x00, H("8300"), le=0))) == 0x6A86


# READ RECORD ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["healthy", "mc-healthy"])
def test_records_per_afl_hold_the_documented_tags(label):
    card = start(VirtualCard.from_label(label))
    records, _ = read_by_afl(card, card.image.afl)
    tags = flat(records)
    for tag in ("5A", "5F24", "5F25", "5F34", "57", "5F30", "8C", "8D", "8E", "9F07", "9F0D", "9F0E", "9F0F",
                "9F14", "9F23", "9F42", "9F44", "8F", "90", "9F32", "93", "9F4A", "9F46", "9F47", "9F49"):
        assert tag in tags, tag
    assert tags["5A"].hex() == card.card.pan
    assert tags["5F24"] == H("281231")
    assert tags["57"].hex().upper().startswith(card.card.pan + "D2812201")
    assert tags["8C"] == H("9F02069F03069F1A0295055F2A029A039C019F3704")
    assert tags["8D"] == H("8A02910A") + tags["8C"]
    assert tags["9F4A"] == H("82")
    assert tags["9F49"] == H("9F3704")
    assert tags["8E"].hex().upper() == card.card.emv.cvm_list


def test_currency_data_follow_the_card_currency():
    for label, numeric, exponent in (("jpy-healthy", "0392", "00"), ("kwd-healthy", "0414", "03")):
        card = start(VirtualCard.from_label(label))
        tags = flat(read_by_afl(card, card.image.afl)[0])
        assert tags["9F42"].hex() == numeric and tags["9F44"].hex() == exponent


def test_read_record_status_words(healthy):
    assert sw(read_record(healthy, 2, 3)) == 0x6A83
    assert sw(read_record(healthy, 9, 1)) == 0x6A82
    assert sw(exchange(healthy, build(0x00, 0xB2, 0x01, 0x10, le=0))) == 0x6A86  # P2 low bits not 100
    assert sw(exchange(healthy, build(0x00, 0xB2, 0x00, 0x14, le=0))) == 0x6A86  # record 0
    assert sw(healthy.execute(build(0x00, 0xB2, 0x01, 0x14, b"\x00", le=0))) == 0x6700


# GET DATA ---------------------------------------------------------------------------------------------


def test_get_data_counters(healthy):
    # the fixture's card has answered GET PROCESSING OPTIONS: its first transaction has started
    assert data(get_data(healthy, 0x9F36)) == {"9F36": H("0001")}
    assert data(get_data(healthy, 0x9F13)) == {"9F13": H("0000")}
    assert data(get_data(healthy, 0x9F17)) == {"9F17": H("03")}
    assert sw(get_data(healthy, 0x9F4F)) == 0x6A88


# VERIFY -------------------------------------------------------------------------------------------------


def test_offline_pin_right_and_wrong_and_blocked():
    card = start(VirtualCard.from_label("pin-1234"))
    assert sw(verify(card, "0000")) == 0x63C2
    assert card.pin_tries_left == 2
    assert sw(verify(card, "1234")) == 0x9000
    assert card.pin_tries_left == 3  # a right PIN resets the counter
    assert [sw(verify(card, "9999")) for _ in range(3)] == [0x63C2, 0x63C1, 0x63C0]
    assert sw(verify(card, "1234")) == 0x6983
    assert data(get_data(card, 0x9F17)) == {"9F17": H("00")}


def test_verify_without_data_reports_the_tries_left():
    card = start(VirtualCard.from_label("pin-1234"))
    assert sw(card.execute(build(0x00, 0x20, 0x00, 0x80))) == 0x63C3


@pytest.mark.parametrize(
    ("apdu", "expected"),
    [
        (build(0x00, 0x20, 0x00, 0x88, bytes(8)), 0x6A81),  # enciphered PIN: not supported
        (build(0x00, 0x20, 0x00, 0x81, pin_block("1234")), 0x6A86),
        (build(0x00, 0x20, 0x01, 0x80, pin_block("1234")), 0x6A86),
        (build(0x00, 0x20, 0x00, 0x80, pin_block("1234")[:7]), 0x6700),
        (build(0x00, 0x20, 0x00, 0x80, H("241234FFFFFFFF00")), 0x6A80),  # bad filler
        (build(0x00, 0x20, 0x00, 0x80, H("2312340FFFFFFFFF")), 0x6A80),  # 3-digit PIN
        (build(0x00, 0x20, 0x00, 0x80, H("14123AFFFFFFFFFF")), 0x6A80),  # control nibble 1
    ],
)
def test_verify_status_words(apdu, expected):
    card = start(VirtualCard.from_label("pin-1234"))
    assert sw(card.execute(apdu)) == expected
    assert card.pin_tries_left == 3


def test_verify_only_during_a_transaction():
    card = VirtualCard.from_label("pin-1234")
    card.power_on()
    select(card, card.image.aid)
    assert sw(verify(card, "1234")) == 0x6985


# The happy path -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["healthy", "mc-healthy", "jpy-healthy", "kwd-healthy"])
def test_happy_path_online_approval(label):
    card = VirtualCard.from_label(label)
    card.power_on()
    assert sw(select(card, PSE_NAME)) == 0x9000
    aid = data(read_record(card, 1, 1))["70"]["61"]["4F"]
    assert sw(select(card, aid)) == 0x9000
    answer = data(gpo(card))
    afl = answer["77"]["94"] if "77" in answer else answer["80"][2:]
    read_by_afl(card, afl)

    first = first_ac(card, P1_ARQC)
    fields = ac_fields(first)
    assert fields["9F27"] == b"\x80" and fields["9F36"] == H("0001") and len(fields["9F26"]) == 8
    check = crypto.verify_arqc(card.issuer, card.card, issuer_view(card, first), amount=2500)
    assert check.ok, check
    assert card.state is State.ONLINE

    second = second_ac(card, P1_TC, b"00", arpc_for(card, fields["9F26"], "00"))
    result = ac_fields(second)
    assert result["9F27"] == b"\x40"
    assert result["9F36"] == fields["9F36"]  # the second GENERATE AC does not count
    tc_check = crypto.verify_arqc(card.issuer, card.card, issuer_view(card, second))
    assert tc_check.ok  # the TC is computed the same way over the same data
    assert card.state is State.COMPLETED
    assert card.counters.last_online_atc == 1 and card.counters.offline_count == 0


def test_invalid_arpc_gives_aac_and_is_remembered(healthy):
    arqc = ac_fields(first_ac(healthy, P1_ARQC))["9F26"]
    bad = bytearray(arpc_for(healthy, arqc))
    bad[0] ^= 0xFF
    result = ac_fields(second_ac(healthy, P1_TC, b"00", bytes(bad)))
    assert result["9F27"] == b"\x00"
    cvr = result["9F10"][3:7]
    assert cvr[1] & 0x08  # issuer authentication failed (this transaction)
    assert healthy.counters.issuer_auth_failed

    start(healthy)  # next transaction: the card will not approve offline
    again = ac_fields(first_ac(healthy, P1_TC))
    assert again["9F27"] == b"\x80"
    assert again["9F10"][3:7][2] & 0x08  # issuer authentication failure on the last online transaction


def test_arpc_of_a_decline_gives_aac(healthy):
    arqc = ac_fields(first_ac(healthy, P1_ARQC))["9F26"]
    result = ac_fields(second_ac(healthy, P1_TC, b"51", arpc_for(healthy, arqc, "51")))
    assert result["9F27"] == b"\x00"
    assert not healthy.counters.issuer_auth_failed


def test_no_issuer_authentication_data_still_completes(healthy):
    ac_fields(first_ac(healthy, P1_ARQC))
    result = ac_fields(second_ac(healthy, P1_TC, b"00"))
    assert result["9F27"] == b"\x40"
    assert result["9F10"][3:7][2] & 0x04  # issuer authentication not performed


def test_mastercard_style_invalid_arpc_sets_its_cvr_bit():
    card = start(VirtualCard.from_label("mc-healthy"))
    arqc = ac_fields(first_ac(card, P1_ARQC))["9F26"]
    result = ac_fields(second_ac(card, P1_TC, b"00", bytes(10 - 2) + b"00"))
    assert result["9F27"] == b"\x00"
    cvr = result["9F10"][2:8]
    assert cvr[4] & 0x04 and cvr[1] & 0x10  # issuer authentication performed and failed
    assert crypto.verify_arqc(card.issuer, card.card, {**TERMINAL, **result, "82": card.image.aip}).ok
    assert arqc != result["9F26"]


# Card risk management --------------------------------------------------------------------------------------


def test_offline_tc_until_the_lower_limit_then_arqc():
    card = VirtualCard.from_label("healthy")  # LCOL 5
    answers = []
    for _ in range(6):
        start(card)
        answers.append(ac_fields(first_ac(card, P1_TC))["9F27"])
    assert answers == [b"\x40"] * 5 + [b"\x80"]
    assert card.counters.offline_count == 5


def test_unable_to_go_online_tc_below_the_upper_limit_aac_at_it():
    card = VirtualCard.from_label("healthy", counters=CardCounters(offline_count=9))  # UCOL 10
    start(card)
    assert ac_fields(first_ac(card, P1_TC))["9F27"] == b"\x80"
    result = ac_fields(second_ac(card, P1_TC, b"Y3"))
    assert result["9F27"] == b"\x40"
    assert result["9F10"][3:7][1] & 0x01  # unable to go online
    assert card.counters.offline_count == 10
    start(card)
    first_ac(card, P1_TC)
    assert ac_fields(second_ac(card, P1_TC, b"Z3"))["9F27"] == b"\x00"


def test_online_only_card_never_approves_offline():
    card = start(VirtualCard.from_label("online-only-iac"))  # LCOL = UCOL = 0
    assert ac_fields(first_ac(card, P1_TC))["9F27"] == b"\x80"
    assert ac_fields(second_ac(card, P1_TC, b"Y3"))["9F27"] == b"\x00"


def test_new_card_goes_online():
    card = start(VirtualCard.from_label("healthy", counters=CardCounters(new_card=True)))
    result = ac_fields(first_ac(card, P1_TC))
    assert result["9F27"] == b"\x80" and result["9F10"][3:7][2] & 0x10
    second_ac(card, P1_TC, b"00", arpc_for(card, result["9F26"]))
    assert not card.counters.new_card


@pytest.mark.parametrize(("p1", "cid"), [(P1_AAC, b"\x00"), (P1_ARQC, b"\x80"), (P1_TC, b"\x40")])
def test_the_card_never_upgrades(p1, cid):
    card = start(VirtualCard.from_label("offline-only-iac"))
    assert ac_fields(first_ac(card, p1))["9F27"] == cid


def test_atc_counts_first_generate_ac_only():
    card = VirtualCard.from_label("healthy")
    seen = []
    for _ in range(3):
        start(card)
        arqc = ac_fields(first_ac(card, P1_ARQC))
        seen.append(int.from_bytes(arqc["9F36"], "big"))
        second_ac(card, P1_TC, b"00", arpc_for(card, arqc["9F26"]))
    assert seen == [1, 2, 3] and card.atc == 3
    assert data(get_data(card, 0x9F13)) == {"9F13": H("0003")}


def test_abandoned_online_transaction_is_remembered(healthy):
    first_ac(healthy, P1_ARQC)
    healthy.remove()
    assert healthy.counters.online_incomplete
    start(healthy)
    result = ac_fields(first_ac(healthy, P1_TC))
    assert result["9F27"] == b"\x80" and result["9F10"][3:7][2] & 0x80


def test_counters_can_be_restored():
    saved = replace(CardCounters(), atc=41, last_online_atc=40, offline_count=1, pin_tries_left=2)
    card = start(VirtualCard.from_label("healthy", counters=saved))
    assert card.atc == 42 and card.pin_tries_left == 2  # the restored 41, plus this transaction's GPO
    assert ac_fields(first_ac(card, P1_TC))["9F36"] == H("002A")


def test_atc_exhausted_card_refuses():
    card = VirtualCard.from_label("healthy", counters=CardCounters(atc=0xFFFF))
    card.power_on()
    select(card, card.image.aid)
    assert sw(gpo(card)) == 0x6985  # no transaction number left to start one with
    assert card.atc == 0xFFFF


@pytest.mark.parametrize(
    ("p1", "body_len", "expected"),
    [(0xC0, 29, 0x6A86), (P1_TC, 28, 0x6700), (P1_TC, 30, 0x6700)],
)
def test_generate_ac_checks_p1_and_cdol1_length(healthy, p1, body_len, expected):
    assert sw(exchange(healthy, build(0x80, 0xAE, p1, 0x00, bytes(body_len), le=0))) == expected
    assert healthy.atc == 1 and healthy.state is State.INITIATED  # counted at GPO; no cryptogram made


def test_generate_ac_out_of_sequence():
    card = VirtualCard.from_label("healthy")
    card.power_on()
    select(card, card.image.aid)
    assert sw(first_ac(card, P1_TC)) == 0x6985  # before GPO
    gpo(card)
    first_ac(card, P1_TC)
    assert card.state is State.COMPLETED
    assert sw(first_ac(card, P1_TC)) == 0x6985  # after the transaction completed


def test_second_generate_ac_refuses_arqc_and_wrong_cdol2(healthy):
    first_ac(healthy, P1_ARQC)
    assert sw(second_ac(healthy, P1_ARQC, b"00")) == 0x6A86
    assert sw(exchange(healthy, build(0x80, 0xAE, P1_TC, 0x00, bytes(29), le=0))) == 0x6700
    assert healthy.state is State.ONLINE


# Offline data authentication from the card's own records ------------------------------------------------------


@pytest.mark.parametrize("label", CHIP_LABELS)
def test_card_data_pass_sda_and_dda(label):
    card = start(VirtualCard.from_label(label))
    records, oda_records = read_by_afl(card, card.image.afl)
    tags = flat(records)
    pan = tags["5A"].hex().upper().rstrip("F")
    ca = oda.ca_public_key(card.image.aid[:5].hex(), tags["8F"][0])
    issuer_key = oda.recover_issuer_key(ca, tags["90"], tags.get("92"), tags["9F32"], pan, today=_today())
    static = oda.static_data_to_authenticate(oda_records, aip=card.image.aip, tag_list=tags["9F4A"])
    assert len(oda.verify_sda(issuer_key, tags["93"], static)) == 2
    if card.card.expiry >= "2603":
        icc_key = oda.recover_icc_key(issuer_key, tags["9F46"], tags.get("9F48"), tags["9F47"], pan, static,
                                      today=_today())
    else:
        with pytest.raises(oda.OdaError, match="expired"):
            oda.recover_icc_key(issuer_key, tags["9F46"], tags.get("9F48"), tags["9F47"], pan, static, today=_today())
        icc_key = oda.recover_icc_key(issuer_key, tags["9F46"], tags.get("9F48"), tags["9F47"], pan, static)
    ddol_data = TERMINAL["9F37"]
    answer = data(exchange(card, build(0x00, 0x88, 0x00, 0x00, ddol_data, le=0)))
    sdad = answer["80"] if "80" in answer else answer["77"]["9F4B"]
    assert len(oda.verify_dda(icc_key, sdad, ddol_data)) == 8
    with pytest.raises(oda.OdaError, match="hash"):
        oda.verify_dda(icc_key, sdad, H("00000000"))


def _today():
    from datetime import date

    return date(2026, 3, 15)


def test_internal_authenticate_status_words_and_dynamic_numbers(healthy):
    assert sw(exchange(healthy, build(0x00, 0x88, 0x00, 0x00, le=0))) == 0x6700
    assert sw(exchange(healthy, build(0x00, 0x88, 0x01, 0x00, b"\x01", le=0))) == 0x6A86
    one = data(exchange(healthy, build(0x00, 0x88, 0x00, 0x00, b"\x01\x02\x03\x04", le=0)))["80"]
    two = data(exchange(healthy, build(0x00, 0x88, 0x00, 0x00, b"\x01\x02\x03\x04", le=0)))["80"]
    assert one != two  # a fresh ICC dynamic number every time


def test_dda_is_recorded_in_the_cvr(healthy):
    exchange(healthy, build(0x00, 0x88, 0x00, 0x00, b"\x01\x02\x03\x04", le=0))
    assert ac_fields(first_ac(healthy, P1_TC))["9F10"][3:7][3] & 0x02


def test_offline_pin_is_recorded_in_the_cvr():
    card = start(VirtualCard.from_label("pin-1234"))
    verify(card, "1234")
    assert ac_fields(first_ac(card, P1_TC))["9F10"][3:7][1] & 0x04


# T=0 case handling ------------------------------------------------------------------------------------------


def test_case_4_without_le_answers_61xx_then_get_response():
    card = VirtualCard.from_label("healthy")
    card.power_on()
    answer = card.execute(build(0x00, 0xA4, 0x04, 0x00, PSE_NAME))
    assert answer[0] == 0x61 and len(answer) == 2
    size = answer[1]
    full = card.execute(build(0x00, 0xC0, 0x00, 0x00, le=size))
    assert len(full) == size + 2 and full[-2:] == H("9000")
    assert sw(card.execute(build(0x00, 0xC0, 0x00, 0x00, le=size))) == 0x6985  # nothing left


def test_get_response_in_pieces_and_wrong_le():
    card = VirtualCard.from_label("healthy")
    card.power_on()
    size = card.execute(build(0x00, 0xA4, 0x04, 0x00, PSE_NAME))[1]
    assert card.execute(build(0x00, 0xC0, 0x00, 0x00, le=size + 1)) == bytes((0x6C, size))
    part = card.execute(build(0x00, 0xC0, 0x00, 0x00, le=10))
    assert len(part) == 12 and part[-2:] == bytes((0x61, size - 10))
    rest = card.execute(build(0x00, 0xC0, 0x00, 0x00, le=0))
    assert len(rest) == size - 10 + 2 and rest[-2:] == H("9000")
    assert sw(card.execute(build(0x00, 0xC0, 0x01, 0x00, le=0))) == 0x6A86


def test_another_command_discards_the_pending_response():
    card = VirtualCard.from_label("healthy")
    card.power_on()
    card.execute(build(0x00, 0xA4, 0x04, 0x00, PSE_NAME))
    card.execute(build(0x00, 0xB2, 0x01, 0x0C, le=0))
    assert sw(card.execute(build(0x00, 0xC0, 0x00, 0x00, le=0))) == 0x6985


def test_case_2_with_wrong_le_answers_6cxx():
    card = VirtualCard.from_label("healthy")
    card.power_on()
    select(card, PSE_NAME)
    answer = card.execute(build(0x00, 0xB2, 0x01, 0x0C, le=5))
    assert answer[0] == 0x6C
    record = card.execute(build(0x00, 0xB2, 0x01, 0x0C, le=answer[1]))
    assert len(record) == answer[1] + 2 and record[-2:] == H("9000")


def test_case_4_with_wrong_le_does_not_run_twice(healthy):
    answer = healthy.execute(build(0x80, 0xAE, P1_TC, 0x00, bytes(29), le=3))
    assert answer[0] == 0x61 and healthy.atc == 1
    assert sw(healthy.execute(build(0x00, 0xC0, 0x00, 0x00, le=answer[1]))) == 0x9000
    assert healthy.atc == 1


# The state table ------------------------------------------------------------------------------------------


def test_state_tables_cover_every_state():
    assert set(ALLOWED) == set(State) == set(TRANSITIONS)
    for state in (State.POWERED_OFF, State.MUTE, State.REMOVED):
        assert not ALLOWED[state]
