"""DOL parsing and data building (EMV Book 3 5.4): resizing rules, zeros for unknowns, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.emv.dol import (
    DolEntry,
    DolError,
    build_dol_data,
    build_dol_values,
    encode_dol,
    fit,
    parse_dol,
    split_dol_data,
)


def test_parse_one_and_two_byte_tags() -> None:
    entries = parse_dol(bytes.fromhex("9F0206" "9A03" "9C01" "BF0C02"))
    assert entries == (DolEntry("9F02", 6), DolEntry("9A", 3), DolEntry("9C", 1), DolEntry("BF0C", 2))
    assert entries[3].constructed and not entries[0].constructed


def test_numeric_values_pad_left_and_lose_leftmost_bytes() -> None:
    assert fit("9F02", bytes.fromhex("1000"), 6) == bytes.fromhex("000000001000")
    assert fit("9F02", bytes.fromhex("000000001000"), 4) == bytes.fromhex("00001000")


def test_compressed_numeric_pads_with_ff_and_cuts_right() -> None:
    assert fit("5A", bytes.fromhex("4761"), 4) == bytes.fromhex("4761FFFF")
    assert fit("5A", bytes.fromhex("47617390"), 2) == bytes.fromhex("4761")


def test_binary_and_text_pad_right_with_zeros_and_cut_right() -> None:
    assert fit("9F37", bytes.fromhex("AB"), 4) == bytes.fromhex("AB000000")
    assert fit("9F1C", b"TERM000123", 8) == b"TERM0001"
    assert fit("DF99", bytes.fromhex("0102"), 3) == bytes.fromhex("010200")


def test_unknown_missing_and_constructed_tags_are_zeros() -> None:
    dol = parse_dol(bytes.fromhex("9F3704DF010270029F0206"))
    data = build_dol_data(dol, {"9F37": bytes.fromhex("01020304"), "70": b"xx", "9F02": bytes.fromhex("01")})
    assert data.hex().upper() == "01020304" "0000" "0000" "000000000001"


def test_split_returns_the_values_as_sent() -> None:
    dol = parse_dol(bytes.fromhex("9F02065F2A02"))
    data = build_dol_data(dol, {"9F02": bytes.fromhex("2500"), "5F2A": bytes.fromhex("0978")})
    assert split_dol_data(dol, data) == {"9F02": bytes.fromhex("000000002500"), "5F2A": bytes.fromhex("0978")}
    with pytest.raises(DolError, match="asks for 8"):
        split_dol_data(dol, data[:-1])


@pytest.mark.parametrize(
    "raw,why",
    [
        ("9F", "truncated"),
        ("9F02", "no length"),
        ("00 02", "cannot start a tag"),
        ("FF 02", "cannot start a tag"),
        ("9F8080 01", "longer than 3 bytes"),
    ],
)
def test_malformed_dols_raise_dol_error(raw: str, why: str) -> None:
    with pytest.raises(DolError, match=why):
        parse_dol(bytes.fromhex(raw.replace(" ", "")))


_tags = st.one_of(
    st.integers(0x01, 0xFE).filter(lambda b: b & 0x1F != 0x1F).map(lambda b: bytes([b])),
    st.tuples(st.integers(0, 0xFE).map(lambda b: b | 0x1F).filter(lambda b: b != 0xFF), st.integers(0, 0x7F)).map(lambda t: bytes(t)),
)
_entries = st.lists(st.tuples(_tags, st.integers(0, 255)), max_size=12)


@given(_entries)
def test_valid_dols_round_trip(items: list[tuple[bytes, int]]) -> None:
    raw = b"".join(tag + bytes([length]) for tag, length in items)
    entries = parse_dol(raw)
    assert encode_dol(entries) == raw
    assert [(e.tag, e.length) for e in entries] == [(t.hex().upper(), n) for t, n in items]


@given(st.binary(max_size=40))
def test_any_bytes_parse_or_raise_only_dol_error(raw: bytes) -> None:
    try:
        entries = parse_dol(raw)
    except DolError:
        return
    assert encode_dol(entries) == raw


@given(_entries, st.dictionaries(st.sampled_from(["9F02", "9F37", "5F2A", "9A", "5A", "95", "9F1C"]),
                                 st.binary(max_size=12)))
def test_built_data_always_has_the_length_the_dol_asks_for(items: list[tuple[bytes, int]], values: dict) -> None:
    entries = parse_dol(b"".join(tag + bytes([length]) for tag, length in items))
    data = build_dol_data(entries, values)
    assert len(data) == sum(e.length for e in entries)
    split = split_dol_data(entries, data)
    assert set(split) == {e.tag for e in entries}


@given(_entries, st.dictionaries(st.sampled_from(["9F02", "9F37", "5F2A", "9A", "5A", "95", "9F1C"]),
                                 st.binary(max_size=12)))
def test_values_built_beside_the_data_are_what_splitting_the_data_gives(items: list[tuple[bytes, int]],
                                                                         values: dict) -> None:
    entries = parse_dol(b"".join(tag + bytes([length]) for tag, length in items))
    data, sent = build_dol_values(entries, values)
    assert data == build_dol_data(entries, values)
    assert sent == split_dol_data(entries, data)


def test_a_remembered_parse_is_the_same_for_equal_bytes_and_entries_know_their_format() -> None:
    first = parse_dol(bytes.fromhex("9F0206" "5A08" "BF0C02" "9F3704"))
    again = parse_dol(bytearray.fromhex("9F0206" "5A08" "BF0C02" "9F3704"))
    assert again == first
    assert [e.fmt for e in first] == ["n", "cn", "constructed", "b"]
    assert DolEntry("9F02", 6) == first[0] and hash(DolEntry("9F02", 6)) == hash(first[0])
