"""Short C-APDU parsing and building, R-APDU helpers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.emv.apdu import SW, ApduError, Command, build, parse, parse_recurring, response, sw_of

H = bytes.fromhex


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("00A40400", Command(0x00, 0xA4, 0x04, 0x00)),
        ("80CA9F3600", Command(0x80, 0xCA, 0x9F, 0x36, b"", 256)),
        ("00B2010C1D", Command(0x00, 0xB2, 0x01, 0x0C, b"", 0x1D)),
        ("00A4040007A0000000031010", Command(0x00, 0xA4, 0x04, 0x00, H("A0000000031010"))),
        ("00A4040007A000000003101000", Command(0x00, 0xA4, 0x04, 0x00, H("A0000000031010"), 256)),
        ("80AE80000201021D", Command(0x80, 0xAE, 0x80, 0x00, H("0102"), 0x1D)),
    ],
)
def test_parse_cases(raw, expected):
    cmd = parse(H(raw))
    assert cmd == expected
    assert cmd.encode() == H(raw)


def test_case_numbers_and_p1p2():
    assert [parse(H(x)).case for x in ("00A40400", "00B2010C00", "00200080021234", "0088000002123400")] == [1, 2, 3, 4]
    assert parse(H("80CA9F1700")).p1p2 == 0x9F17


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "at least 4"),
        ("00A404", "at least 4"),
        ("00A4040002A0", "Lc = 2 but 1 bytes follow"),
        ("00A4040001A00000", "Lc = 1 but 3 bytes follow"),
        ("00A40400000007", "extended-length"),
    ],
)
def test_parse_refuses_non_short_apdus(raw, message):
    with pytest.raises(ApduError, match=message):
        parse(H(raw))


def test_build_refuses_bad_fields():
    with pytest.raises(ApduError, match="CLA 256"):
        build(256, 0xA4, 0, 0)
    with pytest.raises(ApduError, match="at most 255"):
        build(0, 0xA4, 0, 0, bytes(256))
    with pytest.raises(ApduError, match="Le 257"):
        build(0, 0xA4, 0, 0, le=257)
    assert build(0, 0xB2, 1, 0x0C, le=256) == build(0, 0xB2, 1, 0x0C, le=0) == H("00B2010C00")


def test_response_and_status_words():
    assert response(H("6F00"), SW.OK) == H("6F009000")
    assert response(sw=SW.NOT_FOUND) == H("6A82")
    assert sw_of(H("01026A83")) == SW.RECORD_NOT_FOUND
    assert SW.CONDITIONS_NOT_SATISFIED.hex == "6985"
    with pytest.raises(ApduError):
        sw_of(b"\x90")


@settings(max_examples=200, deadline=None)
@given(
    header=st.tuples(*(st.integers(0, 255) for _ in range(4))),
    data=st.binary(max_size=255),
    le=st.none() | st.integers(1, 256),
)
def test_build_parse_round_trip(header, data, le):
    cmd = parse(build(*header, data, le))
    assert (cmd.cla, cmd.ins, cmd.p1, cmd.p2) == header
    assert cmd.data == data and cmd.le == le


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_parse_never_raises_anything_else(raw):
    try:
        cmd = parse(raw)
    except ApduError:
        return
    assert cmd.encode() == raw


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_remembered_parse_agrees_with_parse(raw):
    try:
        expected = parse(raw)
    except ApduError:
        with pytest.raises(ApduError):
            parse_recurring(raw)
        return
    assert parse_recurring(raw) == expected


def test_only_commands_without_transaction_data_or_pin_are_remembered():
    read_record = H("00B2010C00")
    assert parse_recurring(read_record) is parse_recurring(bytearray(read_record))  # one parse shared
    verify = H("0020008008241234FFFFFFFFFF")  # a plaintext PIN block: never kept
    assert parse_recurring(verify) == parse(verify)
    assert parse_recurring(verify) is not parse_recurring(verify)
    generate_ac = H("80AE8000020000")
    assert parse_recurring(generate_ac) is not parse_recurring(generate_ac)
