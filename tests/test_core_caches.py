"""Remembered pure computations (TLV decoding, cryptograms, ARPCs) never change an answer."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyemv import ac as pyemv_ac
from pyemv import tlv as pyemv_tlv

from sim.core import crypto
from sim.core.cards import load_cards
from sim.emv import tlv

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

CARDS = load_cards()


def _sale(label: str, **changes):
    card = CARDS.card(label)
    issuer = CARDS.issuer(card.issuer)
    base = dict(amount=2500, currency="978", country="250", date=date(2026, 3, 15), un=bytes.fromhex("1A2B3C4D"), atc=7)
    base.update(changes)
    return issuer, card, crypto.chip_data(issuer, card, **base)


def test_decoded_tlv_belongs_to_the_caller() -> None:
    raw = tlv.encode({"77": {"9F27": b"\x80", "9F36": b"\x00\x07"}, "9F26": bytes(8)})
    first = tlv.decode(raw)
    first["77"]["9F27"] = b"\x00"  # a caller editing its copy (as fault injection does)
    first["9F26"] = b"changed"
    again = tlv.decode(raw)
    assert again == pyemv_tlv.decode(raw)
    assert again["77"]["9F27"] == b"\x80" and again["9F26"] == bytes(8)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(["9F02", "5F2A", "9A", "9F37", "82", "95"]), st.binary(max_size=8), min_size=1))
def test_decoding_twice_gives_what_pyemv_gives(objects: dict[str, bytes]) -> None:
    raw = tlv.encode(objects)
    assert tlv.decode(raw) == pyemv_tlv.decode(raw) == tlv.decode(raw)
    assert tlv.decode(raw, flatten=True) == pyemv_tlv.decode(raw, flatten=True)


def test_malformed_tlv_is_refused_every_time() -> None:
    for _ in range(2):
        with pytest.raises(tlv.TlvError):
            tlv.decode(bytes.fromhex("9F0206000000"))


@pytest.mark.parametrize("label", ["healthy", "mc-healthy"])
def test_remembered_cryptograms_are_pyemvs(label: str) -> None:
    issuer, card, icc = _sale(label)
    icc_mk = crypto.icc_master_key(issuer, card)
    key = crypto.session_key(icc_mk, card.emv.cvn, icc["9F36"], icc["9F37"])
    padding = pyemv_ac.PaddingType.VISA if card.emv.cvn == 10 else pyemv_ac.PaddingType.EMV
    fresh = pyemv_ac.generate_ac(key, crypto.ac_data(card.emv.cvn, icc), padding, 8)
    assert icc["9F26"] == fresh  # what the card put in DE55 ...
    assert crypto.verify_arqc(issuer, card, icc).ok  # ... and what the issuer checks it against
    tag_91 = crypto.arpc(icc_mk, icc["9F26"], "00")
    assert tag_91[:8] == pyemv_ac.generate_arpc_1(icc_mk, icc["9F26"], b"00")
    crypto.forget_cryptograms()
    assert crypto.verify_arqc(issuer, card, icc).ok
    assert crypto.verify_arpc(icc_mk, icc["9F26"], tag_91)


def test_a_card_with_another_key_still_fails_after_the_genuine_one_was_remembered() -> None:
    issuer, card, icc = _sale("healthy")
    assert crypto.verify_arqc(issuer, card, icc).ok
    other = issuer.model_copy(update={"imk_ac": "00112233445566778899AABBCCDDEEFF"})
    assert crypto.verify_arqc(other, card, icc).result is crypto.ArqcResult.MISMATCH
    forged = dict(icc, **{"9F26": bytes(8)})
    assert crypto.verify_arqc(issuer, card, forged).result is crypto.ArqcResult.MISMATCH
    icc_mk = crypto.icc_master_key(issuer, card)
    tag_91 = crypto.arpc(icc_mk, icc["9F26"], "00")
    assert not crypto.verify_arpc(icc_mk, icc["9F26"], tag_91[:8] + b"05")  # code swapped: ARPC no longer fits


def test_caches_are_bounded() -> None:
    for cached in (crypto._mac_ac, crypto._arpc_1):
        assert cached.cache_info().maxsize is not None
    for n in range(tlv._DECODED_MAX + 50):  # in a template: pyemv decodes each (no layout is learnt)
        tlv.decode(tlv.encode({"77": {"9F36": n.to_bytes(2, "big")}}))
    assert len(tlv._decodings) == tlv._DECODED_MAX


def test_no_decoding_holding_track_data_is_remembered() -> None:
    """SEC-03: a READ RECORD answer with track 2 equivalent data is decoded afresh each time."""
    record = tlv.encode({"70": {"57": bytes.fromhex("4761739001010010D28122011234567899"), "5F20": b"TEST/CARD"}})
    plain = tlv.encode({"70": {"5F25": bytes.fromhex("200101"), "5F24": bytes.fromhex("281231")}})
    assert tlv.decode(record)["70"]["57"].hex().upper().startswith("4761739001010010D2812")
    assert tlv.decode_view(plain)["70"]["5F24"] == bytes.fromhex("281231")
    remembered = list(tlv._decodings.values())
    assert not any(tlv._holds_track(d) for d in remembered)
    assert any(d.get("70", {}).get("5F24") == bytes.fromhex("281231") for d in remembered)
