"""TLV layouts: a read in place gives exactly pyemv's decoding, and nothing where pyemv decodes otherwise."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyemv import tlv as pyemv_tlv

from sim.emv import tlv
from sim.emv.tlv_layouts import LAYOUTS_PER_SIZE, MAX_LAYOUTS, TlvLayouts

PRIMITIVE_TAGS = ["9F02", "9F03", "9F1A", "95", "5F2A", "9A", "9C", "9F37", "82", "9F36", "9F26", "9F27", "9F10",
                  "9F33", "9F34", "9F35", "84", "9F09", "5F34", "9F1E", "9F41", "DF8101"]

layouts_of = st.lists(
    st.tuples(st.sampled_from(PRIMITIVE_TAGS), st.integers(0, 300)), min_size=1, max_size=12, unique_by=lambda t: t[0],
)


def _filled(layout: list[tuple[str, int]], data: st.DataObject) -> dict[str, bytes]:
    return {tag: data.draw(st.binary(min_size=size, max_size=size)) for tag, size in layout}


@settings(max_examples=150, deadline=None)
@given(layout=layouts_of, data=st.data())
def test_a_later_message_of_a_learnt_layout_reads_as_pyemv_decodes_it(layout: list[tuple[str, int]], data: st.DataObject) -> None:
    layouts = TlvLayouts()
    first = pyemv_tlv.encode(_filled(layout, data))
    assert layouts.learn(first, pyemv_tlv.decode(first))
    later = pyemv_tlv.encode(_filled(layout, data))
    assert layouts.read(later) == pyemv_tlv.decode(later)
    assert list(layouts.read(later)) == [tag for tag, _ in layout]  # pyemv's order too


@settings(max_examples=200, deadline=None)
@given(layout=layouts_of, data=st.data())
def test_changed_tag_or_length_bytes_never_read_otherwise_than_pyemv(layout: list[tuple[str, int]], data: st.DataObject) -> None:
    layouts = TlvLayouts()
    first = pyemv_tlv.encode(_filled(layout, data))
    layouts.learn(first, pyemv_tlv.decode(first))
    later = bytearray(pyemv_tlv.encode(_filled(layout, data)))
    at = data.draw(st.integers(0, len(later) - 1))
    later[at] = data.draw(st.integers(0, 255))
    read = layouts.read(bytes(later))
    if read is None:
        return
    assert read == pyemv_tlv.decode(bytes(later))


@settings(max_examples=100, deadline=None)
@given(junk=st.binary(max_size=120))
def test_random_bytes_read_only_as_pyemv_decodes_them(junk: bytes) -> None:
    layouts = TlvLayouts()
    for objects in ({"9F36": b"\x00\x01"}, {"9F37": bytes(4), "9F36": bytes(2)}, {"82": bytes(2), "95": bytes(5)}):
        data = pyemv_tlv.encode(objects)
        layouts.learn(data, pyemv_tlv.decode(data))
    read = layouts.read(junk)
    if read is not None:
        assert read == pyemv_tlv.decode(junk)


def test_templates_track_data_and_other_encodings_are_never_learnt() -> None:
    layouts = TlvLayouts(never=tlv.TRACK_TAGS)
    template = pyemv_tlv.encode({"70": {"5F24": bytes.fromhex("281231")}})
    assert not layouts.learn(template, pyemv_tlv.decode(template))
    track = pyemv_tlv.encode({"57": bytes.fromhex("4761739001010010D28122011234567899")})
    assert not layouts.learn(track, pyemv_tlv.decode(track))
    long_form = bytes.fromhex("9F3681020007")  # a length in two bytes where one does: pyemv reads it, writes it shorter
    assert pyemv_tlv.decode(long_form) == {"9F36": b"\x00\x07"}
    assert not layouts.learn(long_form, pyemv_tlv.decode(long_form))
    assert len(layouts) == 0
    assert layouts.read(track) is None and layouts.read(template) is None


def test_layouts_are_bounded_per_size_and_in_all() -> None:
    layouts = TlvLayouts()
    tags = [f"DF81{n:02X}" for n in range(0x01, 0x7F)]
    kept = [layouts.learn(d, pyemv_tlv.decode(d)) for d in (pyemv_tlv.encode({t: b"\x01"}) for t in tags[:LAYOUTS_PER_SIZE + 3])]
    assert kept == [True] * LAYOUTS_PER_SIZE + [False] * 3
    layouts = TlvLayouts()
    for size in range(MAX_LAYOUTS + 5):
        data = pyemv_tlv.encode({"9F10": bytes(size % 200), "9F1E": bytes(size // 200 + 1)})
        assert layouts.learn(data, pyemv_tlv.decode(data))
    assert len(layouts) == 5  # started afresh once full


def test_decode_reads_new_data_of_a_known_layout_without_remembering_it() -> None:
    first = tlv.encode({"9F02": bytes.fromhex("000000001000"), "9F26": bytes.fromhex("1122334455667788"), "9F24": b"\x01"})
    tlv.decode(first)
    before = dict(tlv._decodings)
    later = tlv.encode({"9F02": bytes.fromhex("000000002500"), "9F26": bytes.fromhex("8877665544332211"), "9F24": b"\x02"})
    got = tlv.decode(later)
    assert got == pyemv_tlv.decode(later) and tlv.decode_view(later) == got
    assert dict(tlv._decodings) == before  # a one-off cryptogram evicts nothing
    got["9F02"] = b"changed"  # the caller's own dict
    assert tlv.decode(later)["9F02"] == bytes.fromhex("000000002500")


def test_malformed_data_still_raises_tlv_error() -> None:
    with pytest.raises(tlv.TlvError):
        tlv.decode(bytes.fromhex("9F0206000000"))
