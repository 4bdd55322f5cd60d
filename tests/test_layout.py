"""The layout codec gives exactly pyiso8583's fields and bytes, and fails where pyiso8583 fails."""

from __future__ import annotations

import copy
import string

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from iso8583.specs import default_ascii

from sim.iso8583.dialect import DEFAULT, Dialect
from sim.iso8583.errors import DecodeError, MessageError
from sim.iso8583.layout import LayoutCodec

from tests.strategies import ebcdic_binary_bitmap, message_fields


def _bcd_trace() -> Dialect:
    """DE7 and DE11 as packed BCD, DE55 as bytes: binary data, written and read as hex."""
    spec = copy.deepcopy(default_ascii)
    spec["7"].update(data_enc="b", max_len=5)
    spec["11"].update(data_enc="b", max_len=3)
    spec["55"].update(data_enc="b", len_enc="b", len_type=2)
    return Dialect("bcd-trace", spec)


def _nibble_pan() -> Dialect:
    """DE2 as BCD counted in nibbles, left-padded: pyiso8583 pads it, so the codec leaves it to pyiso8583."""
    spec = copy.deepcopy(default_ascii)
    spec["2"].update(data_enc="b", len_enc="b", len_type=1, max_len=19, len_count="nibbles", left_pad="0")
    return Dialect("nibble-pan", spec)


DIALECTS = [DEFAULT, ebcdic_binary_bitmap(), _bcd_trace(), _nibble_pan()]


def _same_shape(data: st.DataObject, fields: dict[str, str]) -> dict[str, str]:
    """``fields`` with some values redrawn at the same length, each character in its own class."""
    out = dict(fields)
    for key in data.draw(st.lists(st.sampled_from(sorted(k for k in fields if k != "t")), unique=True, max_size=6)):
        chars = []
        for ch in fields[key]:
            pool = string.digits if ch.isdigit() else "ABCDEF" if ch in "ABCDEF" else string.ascii_uppercase + " "
            chars.append(data.draw(st.sampled_from(pool)))
        out[key] = "".join(chars)
    return out


def _outcome(call, *args):
    try:
        return "ok", call(*args)
    except (MessageError, DecodeError) as exc:
        return "error", (type(exc), exc.field)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dialect=st.sampled_from(DIALECTS), messages=st.lists(message_fields(), min_size=1, max_size=5), data=st.data(),
       capacity=st.sampled_from([1, 2, 4096]))
def test_encode_and_decode_equal_pyiso8583(dialect: Dialect, messages, data, capacity: int) -> None:
    """Messages, then each again with values redrawn at the same lengths: the codec's bytes and
    fields are pyiso8583's (or both refuse the message, naming the same field), in the same order."""
    codec = LayoutCodec(dialect, capacity=capacity)
    stream = messages + [_same_shape(data, m) for m in messages] + messages
    for fields in stream:
        mine, theirs = _outcome(codec.encode, fields), _outcome(dialect.encode, dict(fields))
        assert mine == theirs
        if mine[0] != "ok":
            continue
        raw = mine[1]
        for _ in range(2):  # learnt (unless known), then read in place
            decoded = codec.decode(raw)
            assert decoded == dialect.decode(raw)
            assert list(decoded) == list(dialect.decode(raw))
    if capacity == 4096 and len({tuple(m) for m in messages}) == len(messages):
        assert codec.hits > 0  # the last round at least was laid out before


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dialect=st.sampled_from(DIALECTS), fields=message_fields(), where=st.integers(0, 10_000),
       byte=st.integers(0, 255), cut=st.integers(0, 3))
def test_damaged_frames_of_a_known_shape_fail_as_pyiso8583_does(
    dialect: Dialect, fields, where: int, byte: int, cut: int,
) -> None:
    """A frame of a shape the codec knows, with one byte changed (or bytes cut or added): the codec
    decodes it to pyiso8583's fields, or raises the DecodeError pyiso8583 raises."""
    codec = LayoutCodec(dialect)
    try:
        raw = dialect.encode(dict(fields))
    except MessageError:
        return
    assert codec.decode(raw) == dialect.decode(raw)
    damaged = bytearray(raw)
    damaged[where % len(raw)] = byte
    if cut == 1:
        damaged = damaged[:-1]
    elif cut == 2:
        damaged += b"0"
    mine, theirs = _outcome(codec.decode, bytes(damaged)), _outcome(dialect.decode, bytes(damaged))
    assert mine == theirs


def test_values_the_dialect_refuses_are_refused_with_its_error() -> None:
    codec = LayoutCodec(DEFAULT)
    echo = {"t": "0800", "7": "1130100000", "11": "000001", "41": "TERM0001", "70": "301"}
    codec.encode(echo)
    refused = (({**echo, "41": "TERMé001"}, "41"), ({**echo, "11": "0000011"}, "11"), ({**echo, "11": 1}, None))
    for bad, field in refused:
        with pytest.raises(MessageError) as caught:
            codec.encode(bad)
        if field:
            assert caught.value.field == field
    bcd = _bcd_trace()
    codec = LayoutCodec(bcd)
    codec.encode(echo)
    with pytest.raises(MessageError) as caught:
        codec.encode({**echo, "11": "00000G"})  # not hex: pyiso8583 says so
    assert caught.value.field == "11"
    assert codec.encode(echo) == bcd.encode(dict(echo)) and codec.hits == 1


def test_a_stream_of_one_shape_is_laid_out_once_and_memory_is_bounded() -> None:
    codec = LayoutCodec(DEFAULT, capacity=8)
    sale = {"t": "0200", "2": "4761739001010010", "3": "000000", "4": "000000001000", "7": "1130100000", "11": "000001",
            "22": "051", "41": "TERM0001", "49": "978"}
    for n in range(1, 200):
        raw = codec.encode({**sale, "11": f"{n:06d}", "4": f"{n:012d}"})
        assert codec.decode(raw)["11"] == f"{n:06d}"
    assert codec.misses == 2 and codec.hits == 2 * 199 - 2  # one encode and one decode learnt the shape
    for n in range(1, 60):  # sixty shapes (PANs of growing length): the codec starts afresh when full
        pan = "4" * (n % 8 + 12) + str(n)
        codec.decode(codec.encode({**sale, "2": pan[:19], "41": f"T{n:07d}"}))
    assert sum(len(s.known) for shapes in codec._shapes.values() for s in shapes) <= 8
    assert sum(1 + len(p.pieces) for p in codec._plans.values() if p) <= 8 + 1


def test_many_shapes_of_one_length_are_not_all_remembered() -> None:
    """A peer sending one length in many shapes (characters moved between DE44 and DE48): the codec
    keeps a few shapes of that length, and still decodes every message as pyiso8583 does."""
    from sim.iso8583.layout import SHAPES_PER_LENGTH

    codec = LayoutCodec(DEFAULT)
    base = {"t": "0800", "7": "1130100000", "11": "000001", "70": "301"}
    raws = []
    for n in range(1, 26):  # DE44 (LLVAR) and DE48 (LLLVAR) share 60 characters: same length, new layout
        raws.append(DEFAULT.encode({**base, "44": "A" * n, "48": "B" * (60 - n)}))
    assert len({len(r) for r in raws}) == 1
    for raw in raws + raws:
        assert codec.decode(raw) == DEFAULT.decode(raw)
    assert len(codec._shapes[len(raws[0])]) == SHAPES_PER_LENGTH
