"""Issuer crypto: pyemv's published vectors, pyemv's CVN classes as oracle, round trips with the card set."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psec import des as psec_des
from pyemv import cvn as pyemv_cvn
from pyemv import kd as pyemv_kd
from pyemv.tools import key_check_digits

from sim.core.cards import load_cards
from sim.core.crypto import (
    TEST_ZPK,
    TEST_ZPK_NAME,
    ArqcResult,
    CryptoError,
    PinResult,
    ac_data,
    arpc,
    card_arqc,
    chip_data,
    decrypt_pin,
    encrypt_pin_block,
    extract_cvr,
    generate_ac,
    icc_master_key,
    issuer_application_data,
    session_key,
    verify_arpc,
    verify_arqc,
    verify_pin_block,
)

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

CARDS = load_cards()
CHIP_CARDS = [c for c in CARDS.cards if c.chip]

# pyemv's published test vectors (tests/test_cvn_hsm.py and module docstrings) ------------------

VECTOR_IMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
VECTOR_PAN = "1234567890123456"


def _h(text: str) -> bytes:
    return bytes.fromhex(text)


def test_icc_master_key_option_a_vectors() -> None:
    # pyemv.kd docstring vectors
    assert icc_master_key(VECTOR_IMK, "99012345678901234", "45").hex().upper() == "67F8292358083E5EA7AB7FDA58D53B6B"
    assert icc_master_key(VECTOR_IMK, "12345678901234567", "01").hex().upper() == "73AD54688CEF2934B0979857E3C719F1"
    # pyemv CVN test: ICC MK-AC check digits for PAN 1234567890123456, PSN 00
    assert key_check_digits(icc_master_key(VECTOR_IMK, VECTOR_PAN, "00")).hex().upper() == "BAB0"


def test_visa_cvn10_vector() -> None:
    icc_mk = icc_master_key(VECTOR_IMK, VECTOR_PAN, "00")
    icc = {
        "9F02": _h("000000004000"), "9F03": _h("000000000000"), "9F1A": _h("0124"), "95": _h("8000048000"),
        "5F2A": _h("0124"), "9A": _h("191105"), "9C": _h("01"), "9F37": _h("52BF4585"), "82": _h("1800"),
        "9F36": _h("001C"), "9F10": _h("06010A03A06010"),
    }
    assert session_key(icc_mk, 10, icc["9F36"], icc["9F37"]) == icc_mk  # CVN 10: no session key
    arqc = generate_ac(icc_mk, 10, icc)
    assert arqc.hex().upper() == "29CCA15AE665FA2E"
    assert arpc(icc_mk, arqc, "00").hex().upper() == "28993816AFAE4AEB" + "3030"  # ARPC-RC 3030 is ASCII "00"


def test_mastercard_cvn16_vector() -> None:
    icc_mk = icc_master_key(VECTOR_IMK, VECTOR_PAN, "00")
    icc = {
        "9F02": _h("000000009999"), "9F03": _h("000000000000"), "9F1A": _h("0124"), "95": _h("8000000000"),
        "5F2A": _h("0124"), "9A": _h("209906"), "9C": _h("00"), "9F37": _h("ABCDEF12"), "82": _h("1800"),
        "9F36": _h("001C"), "9F10": _h("0110A00003220000000000000000000000FF"),
    }
    assert key_check_digits(session_key(icc_mk, 16, icc["9F36"], icc["9F37"])).hex().upper() == "2FD5"
    arqc = generate_ac(icc_mk, 16, icc)
    assert arqc.hex().upper() == "24CCF3DEE3158C70"
    assert arpc(icc_mk, arqc, _h("0010")).hex().upper() == "73F6BBF389A6586C" + "0010"


def test_pin_block_vectors() -> None:
    # psec.pinblock docstring: ISO 0 block of PIN 1234 for PAN 5544332211009966
    key = VECTOR_IMK
    encrypted = encrypt_pin_block("1234", "5544332211009966", key)
    assert psec_des.decrypt_tdes_ecb(key, _h(encrypted)).hex().upper() == "041277CDDEEFF669"
    assert decrypt_pin(encrypted, "5544332211009966", key) == "1234"


def test_test_zone_pin_key_is_named_and_has_its_documented_check_value() -> None:
    assert "TEST ONLY" in TEST_ZPK_NAME
    assert psec_des.generate_kcv(TEST_ZPK).hex().upper() == "D159"


# pyemv's CVN classes as oracle for every chip card of the set -----------------------------------

ORACLES = {10: pyemv_cvn.VisaCVN10, 16: pyemv_cvn.MasterCardCVN16}


@settings(max_examples=40, deadline=None)
@given(
    card=st.sampled_from(CHIP_CARDS),
    amount=st.integers(0, 10**12 - 1),
    un=st.binary(min_size=4, max_size=4),
    atc=st.integers(0, 0xFFFF),
    tvr=st.binary(min_size=5, max_size=5),
)
def test_matches_pyemv_cvn_classes(card, amount: int, un: bytes, atc: int, tvr: bytes) -> None:
    issuer = CARDS.issuer(card.issuer)
    icc = chip_data(issuer, card, amount=amount, currency="978", country="250", date=date(2026, 3, 15),
                    un=un, atc=atc, tvr=tvr)
    oracle = ORACLES[card.emv.cvn](issuer.imk, issuer.imk, issuer.imk, card.pan, card.psn)
    assert oracle.icc_mk_ac == icc_master_key(issuer, card)
    args = {f"tag_{t.lower()}": icc[t] for t in ("9F02", "9F03", "9F1A", "95", "5F2A", "9A", "9C", "9F37", "82", "9F36")}
    expected = oracle.generate_ac(**args, cvr=extract_cvr(card.emv.cvn, icc["9F10"]))
    assert icc["9F26"] == expected
    assert arpc(icc_master_key(issuer, card), expected, "00")[:8] == oracle.generate_arpc(expected, b"00")
    assert verify_arqc(issuer, card, icc, amount=amount).ok


# Round trips and failures with the card set ------------------------------------------------------


def _icc(label: str, **changes):
    card = CARDS.card(label)
    issuer = CARDS.issuer(card.issuer)
    base = dict(amount=2500, currency="978", country="250", date=date(2026, 3, 15), un=_h("1A2B3C4D"), atc=7)
    base.update(changes)
    return issuer, card, chip_data(issuer, card, **base)


@pytest.mark.parametrize("label", [c.label for c in CHIP_CARDS])
def test_every_chip_card_round_trips(label: str) -> None:
    issuer, card, icc = _icc(label)
    check = verify_arqc(issuer, card, icc, amount=2500)
    assert check.ok and check.cvn == card.emv.cvn and check.atc == 7
    for tag in ("9F26", "9F27", "9F10", "9F37", "9F36", "95", "9A", "9C", "9F02", "5F2A", "82", "9F1A"):
        assert tag in icc
    icc_mk = icc_master_key(issuer, card)
    tag_91 = arpc(icc_mk, icc["9F26"], "00")
    assert verify_arpc(icc_mk, icc["9F26"], tag_91)


@pytest.mark.parametrize("tag", ["9F02", "9F03", "9F1A", "95", "5F2A", "9A", "9C", "9F37", "82", "9F36", "9F10", "9F26"])
def test_any_tampered_byte_fails(tag: str) -> None:
    issuer, card, icc = _icc("healthy")
    changed = bytearray(icc[tag])
    changed[-1] ^= 0x01
    icc[tag] = bytes(changed)
    check = verify_arqc(issuer, card, icc)
    assert check.result is ArqcResult.MISMATCH


def test_amount_must_match_de4() -> None:
    issuer, card, icc = _icc("healthy", amount=2500)
    assert verify_arqc(issuer, card, icc, amount=2501).result is ArqcResult.AMOUNT_MISMATCH
    assert verify_arqc(issuer, card, icc, amount=2500).ok


def test_failures_are_results_not_exceptions() -> None:
    issuer, card, icc = _icc("healthy")
    missing = dict(icc)
    del missing["9F36"]
    assert verify_arqc(issuer, card, missing).result is ArqcResult.MISSING_DATA
    short = dict(icc, **{"9F26": icc["9F26"][:4]})
    assert verify_arqc(issuer, card, short).result is ArqcResult.MISSING_DATA
    nested = dict(icc, **{"9F02": {"9F02": b"\x00"}})
    assert verify_arqc(issuer, card, nested).result is ArqcResult.MISSING_DATA
    wrong_cvn = dict(icc, **{"9F10": issuer_application_data(16)})
    assert verify_arqc(issuer, card, wrong_cvn).result is ArqcResult.WRONG_CVN
    stripe = CARDS.card("magstripe-only")
    assert verify_arqc(CARDS.issuer(stripe.issuer), stripe, icc).result is ArqcResult.NO_CHIP
    other_issuer = CARDS.issuer("possim-mc-test")
    assert verify_arqc(other_issuer, card, icc).result is ArqcResult.MISMATCH


def test_amount_other_may_be_left_out_when_zero() -> None:
    issuer, card, icc = _icc("healthy")
    del icc["9F03"]
    assert verify_arqc(issuer, card, icc).ok


@pytest.mark.parametrize(("label", "amount", "currency_code"), [("jpy-healthy", 1000, "392"), ("kwd-healthy", 1234, "414")])
def test_exponent_0_and_3_amounts_are_bcd_minor_units(label: str, amount: int, currency_code: str) -> None:
    issuer, card, icc = _icc(label, amount=amount, currency=currency_code)
    assert icc["9F02"] == bytes.fromhex(f"{amount:012d}")
    assert icc["5F2A"] == bytes.fromhex(currency_code.zfill(4))
    assert verify_arqc(issuer, card, icc, amount=amount).ok


def test_arpc_binds_the_response_code_and_the_arqc() -> None:
    issuer, card, icc = _icc("mc-healthy")
    icc_mk = icc_master_key(issuer, card)
    approved = arpc(icc_mk, icc["9F26"], "00")
    declined = arpc(icc_mk, icc["9F26"], "51")
    assert approved[8:] == b"00" and declined[8:] == b"51" and approved[:8] != declined[:8]
    assert verify_arpc(icc_mk, icc["9F26"], declined)
    assert not verify_arpc(icc_mk, icc["9F26"], approved[:8] + b"51")
    assert not verify_arpc(icc_mk, bytes(8), approved)
    assert not verify_arpc(icc_mk, icc["9F26"], approved[:9])
    with pytest.raises(CryptoError, match="2 characters"):
        arpc(icc_mk, icc["9F26"], "000")


def test_bad_inputs_raise_crypto_error() -> None:
    card = CARDS.card("healthy")
    issuer = CARDS.issuer(card.issuer)
    with pytest.raises(CryptoError, match="not supported"):
        session_key(bytes(16), 18, b"\x00\x01", bytes(4))
    with pytest.raises(CryptoError, match="missing"):
        ac_data(10, {})
    with pytest.raises(CryptoError, match="no chip"):
        card_arqc(issuer, CARDS.card("magstripe-only"), {})
    with pytest.raises(CryptoError, match="minor units"):
        chip_data(issuer, card, amount=25.0, currency="978", country="250", date=date(2026, 1, 1), un=bytes(4), atc=1)  # type: ignore[arg-type]
    with pytest.raises(CryptoError, match="4 bytes"):
        chip_data(issuer, card, amount=1, currency="978", country="250", date=date(2026, 1, 1), un=bytes(3), atc=1)
    with pytest.raises(CryptoError, match="4 bytes"):
        issuer_application_data(10, bytes(5))
    with pytest.raises(CryptoError, match="6 bytes"):
        issuer_application_data(16, bytes(4))
    with pytest.raises(CryptoError, match="at least"):
        extract_cvr(16, bytes(4))


# Online PIN --------------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(pin=st.text("0123456789", min_size=4, max_size=12), card=st.sampled_from(CARDS.cards))
def test_pin_blocks_round_trip_under_the_test_zone_key(pin: str, card) -> None:
    block = encrypt_pin_block(pin, card.pan)
    assert len(block) == 16 and block == block.upper()
    assert verify_pin_block(block, card.pan, pin) is PinResult.CORRECT
    other = "0000" if pin != "0000" else "1111"
    assert verify_pin_block(block, card.pan, other) is PinResult.WRONG


def test_pin_block_failures() -> None:
    card = CARDS.card("pin-1234")
    block = encrypt_pin_block("1234", card.pan)
    assert verify_pin_block(block, card.pan, "1234") is PinResult.CORRECT
    assert verify_pin_block(block, card.pan, "4321") is PinResult.WRONG
    assert verify_pin_block("00" * 8, card.pan, "1234") is PinResult.UNREADABLE
    assert verify_pin_block("not hex at all!!", card.pan, "1234") is PinResult.UNREADABLE
    wrong_key = encrypt_pin_block("1234", card.pan, bytes.fromhex("11" * 8 + "22" * 8))
    assert verify_pin_block(wrong_key, card.pan, "1234") is not PinResult.CORRECT
    with pytest.raises(CryptoError, match="PIN block"):
        encrypt_pin_block("12", card.pan)


def test_icc_master_key_uses_pyemv_option_a_with_the_cards_psn() -> None:
    card = CARDS.card("healthy")
    issuer = CARDS.issuer(card.issuer)
    assert icc_master_key(issuer, card) == pyemv_kd.derive_icc_mk_a(issuer.imk, card.pan, card.psn)
    assert icc_master_key(issuer, card) != pyemv_kd.derive_icc_mk_a(issuer.imk, card.pan, "00")


def test_pyemv_and_psec_build_triple_des_without_deprecation_warnings() -> None:
    import warnings

    from cryptography.hazmat.decrepit.ciphers import algorithms as decrepit
    from cryptography.hazmat.primitives.ciphers import algorithms as primitives
    from pyemv import ac as pyemv_ac
    from pyemv import mac as pyemv_mac

    from sim.core import crypto

    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        arpc = pyemv_ac.generate_arpc_1(key, bytes(8), b"00")
        mac = pyemv_mac.mac_iso9797_3(key[:8], key[8:], bytes(16), 2)
        block = psec_des.encrypt_tdes_ecb(key, bytes(8))
    # neither the module's hook nor a one- or two-key TripleDES was asked: nothing warned at all
    assert [str(w.message) for w in caught] == []
    # the same class computes the same bytes as a cipher built through cryptography directly
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    encryptor = Cipher(decrepit.TripleDES(key), modes.ECB()).encryptor()
    assert block == encryptor.update(bytes(8)) + encryptor.finalize()
    assert len(arpc) == 8 and len(mac) == 8
    # every other name still comes from cryptography's module; a second call changes nothing
    assert pyemv_mac._algorithms.AES is primitives.AES  # type: ignore[attr-defined]
    assert crypto._direct_cipher_lookups() == []


def test_expanded_triple_des_keys_give_the_libraries_own_ciphers() -> None:
    """The one- and two-key TripleDES the libraries now get computes what cryptography's
    own expansion of the same key does, for single DES (MAC chaining) and 3DES."""
    import warnings

    from cryptography.hazmat.decrepit.ciphers import algorithms as decrepit
    from cryptography.hazmat.primitives.ciphers import Cipher, modes
    from pyemv import mac as pyemv_mac

    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    data = bytes(range(24))
    for part in (key, key[:8], key[8:]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            own = Cipher(decrepit.TripleDES(part), modes.CBC(bytes(8))).encryptor()
        built = Cipher(pyemv_mac._algorithms.TripleDES(part), modes.CBC(bytes(8))).encryptor()  # type: ignore[attr-defined]
        assert built.update(data) == own.update(data)
    # pyemv's published vector for its ISO 9797-1 algorithm 3 MAC
    mac = pyemv_mac.mac_iso9797_3(key, bytes.fromhex("FEDCBA98765432100123456789ABCDEF"), bytes.fromhex("1234567890ABCDEF"), 2)
    assert mac.hex().upper() == "644AA5C915DBDAF8"
