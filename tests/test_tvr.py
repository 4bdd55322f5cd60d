"""TVR and TSI: named bits at the EMV Book 3 Annex C addresses, set/test, hex, names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.emv.tvr import TSI_BITS, TVR_BITS, Bit, Tsi, Tvr, TvrError

# (address, name) pairs the conformance catalogue and the action codes rely on.
CATALOGUE = [
    ("1:80", "offline_data_authentication_not_performed"),
    ("1:40", "sda_failed"),
    ("1:20", "icc_data_missing"),
    ("1:10", "card_on_exception_file"),
    ("1:08", "dda_failed"),
    ("2:80", "application_versions_differ"),
    ("2:40", "expired_application"),
    ("2:20", "application_not_yet_effective"),
    ("2:10", "service_not_allowed"),
    ("2:08", "new_card"),
    ("3:80", "cardholder_verification_failed"),
    ("3:40", "unrecognised_cvm"),
    ("3:20", "pin_try_limit_exceeded"),
    ("3:10", "pin_pad_missing"),
    ("3:08", "pin_not_entered"),
    ("3:04", "online_pin_entered"),
    ("4:80", "transaction_exceeds_floor_limit"),
    ("4:40", "lcol_exceeded"),
    ("4:20", "ucol_exceeded"),
    ("4:10", "random_selection"),
    ("4:08", "merchant_forced_online"),
    ("5:40", "issuer_authentication_failed"),
]


@pytest.mark.parametrize("address,name", CATALOGUE)
def test_addresses_and_names_agree(address: str, name: str) -> None:
    assert Tvr.bit(address).name == name
    assert Tvr.bit(name).address == address
    tvr = Tvr()
    tvr.set(address)
    assert tvr.test(name) and tvr.names() == [name] and tvr.addresses() == [address]


def test_hex_layout_matches_byte_and_mask() -> None:
    tvr = Tvr()
    tvr.set("expired_application", "transaction_exceeds_floor_limit", "5:40")
    assert tvr.hex() == "0040008040"
    assert bytes(tvr) == bytes.fromhex("0040008040")
    assert Tvr.from_hex("0040008040") == tvr


def test_bits_are_unique_and_inside_the_register() -> None:
    for table, size in ((TVR_BITS, 5), (TSI_BITS, 2)):
        addresses = [(b.byte, b.mask) for b in table]
        assert len(set(addresses)) == len(addresses)
        assert len({b.name for b in table}) == len(table)
        assert all(1 <= b.byte <= size and bin(b.mask).count("1") == 1 for b in table)


def test_tsi_bits() -> None:
    tsi = Tsi()
    tsi.set("offline_data_authentication_performed", "terminal_risk_management_performed")
    assert tsi.hex() == "8800"
    assert tsi.names() == ["offline_data_authentication_performed", "terminal_risk_management_performed"]


def test_intersects_and_matching_explain_an_action_code() -> None:
    tvr = Tvr.from_hex("8000008000")
    assert tvr.intersects(bytes.fromhex("DC4000A800"))
    assert tvr.matching(bytes.fromhex("0000008000")) == ["transaction_exceeds_floor_limit"]
    assert not tvr.intersects(bytes(5))


def test_copy_is_independent() -> None:
    tvr = Tvr()
    snapshot = tvr.copy()
    tvr.set("1:80")
    assert snapshot.hex() == "0000000000" and tvr.hex() == "8000000000"


@pytest.mark.parametrize("bad", ["6:80", "1:03", "nonsense", "x:yy", "1:"])
def test_unknown_bits_are_refused_with_the_known_names(bad: str) -> None:
    with pytest.raises(TvrError, match="not a Tvr bit"):
        Tvr.bit(bad)


def test_a_tsi_bit_is_not_a_tvr_bit() -> None:
    with pytest.raises(TvrError):
        Tvr().set(TSI_BITS[0])
    with pytest.raises(TvrError):
        Tvr().set(Bit(1, 0x80, "made_up", "x"))


@pytest.mark.parametrize("text", ["00", "0000000000FF", "zz00000000"])
def test_wrong_sizes_and_bad_hex_are_refused(text: str) -> None:
    with pytest.raises(TvrError):
        Tvr.from_hex(text)


def test_intersects_refuses_a_mask_of_another_size() -> None:
    with pytest.raises(TvrError):
        Tvr().intersects(bytes(4))


@given(st.binary(min_size=5, max_size=5))
def test_hex_round_trip_and_names_are_the_named_set_bits(raw: bytes) -> None:
    tvr = Tvr(raw)
    assert Tvr.from_hex(tvr.hex()) == tvr
    for bit in TVR_BITS:
        assert tvr.test(bit) == bool(raw[bit.byte - 1] & bit.mask)
        assert (bit.name in tvr.names()) == tvr.test(bit)
