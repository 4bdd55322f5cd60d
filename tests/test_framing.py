"""Framing: the stream decoder reassembles frames under any chunking and refuses garbage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.iso8583.errors import FramingError, WireError
from sim.iso8583.framing import KINDS, Frame, Framing, parse_framing, reply_tpdu

framings = st.builds(Framing, st.sampled_from(KINDS), st.booleans())
payloads = st.lists(st.binary(min_size=1, max_size=300), max_size=12)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:])]


@settings(max_examples=300, deadline=None)
@given(framing=framings, bodies=payloads, cuts=st.lists(st.integers(0, 10_000), max_size=30), data=st.data())
def test_any_frames_under_any_chunking(framing: Framing, bodies: list[bytes], cuts: list[int], data: st.DataObject) -> None:
    tpdus = [data.draw(st.binary(min_size=5, max_size=5)) if framing.tpdu else None for _ in bodies]
    stream = b"".join(framing.frame(b, t) for b, t in zip(bodies, tpdus))
    decoder = framing.decoder()
    got: list[Frame] = []
    for chunk in _chunks(stream, cuts):
        got.extend(decoder.feed(chunk))
    assert got == [Frame(b, t) for b, t in zip(bodies, tpdus)]
    assert decoder.buffered == 0


@pytest.mark.parametrize("kind", KINDS)
def test_one_byte_at_a_time_and_many_at_once(kind: str) -> None:
    framing = Framing(kind)  # type: ignore[arg-type]
    bodies = [b"0800" + bytes([i]) * i for i in range(1, 20)]
    stream = b"".join(framing.frame(b) for b in bodies)
    decoder = framing.decoder()
    one = [f.payload for byte in stream for f in decoder.feed(bytes([byte]))]
    assert one == bodies
    assert [f.payload for f in framing.decoder().feed(stream)] == bodies


def test_header_encodings() -> None:
    assert Framing("be2").frame(b"ab") == b"\x00\x02ab"
    assert Framing("le2").frame(b"ab") == b"\x02\x00ab"
    assert Framing("ascii4").frame(b"ab") == b"0002ab"
    tpdu = bytes.fromhex("6000010002")
    assert Framing("be2", tpdu=True).frame(b"ab", tpdu) == b"\x00\x07" + tpdu + b"ab"
    assert reply_tpdu(tpdu) == bytes.fromhex("6000020001")


@pytest.mark.parametrize(
    ("framing", "stream", "message"),
    [
        (Framing("ascii4"), b"00-5hello", "not 4 decimal digits"),
        (Framing("ascii4"), b"abcdhello", "not 4 decimal digits"),
        (Framing("ascii4"), b"-001x", "not 4 decimal digits"),
        (Framing("be2"), b"\xff\xff" + b"x" * 10, "out of range"),
        (Framing("le2", max_length=100), b"\x65\x00", "out of range"),
        (Framing("be2"), b"\x00\x00", "out of range"),
        (Framing("be2", tpdu=True), b"\x00\x03abc", "out of range"),
    ],
)
def test_garbage_and_oversize_lengths(framing: Framing, stream: bytes, message: str) -> None:
    decoder = framing.decoder()
    with pytest.raises(FramingError, match=message):
        decoder.feed(stream)
    with pytest.raises(FramingError):  # a broken stream stays broken
        decoder.feed(framing.frame(b"0800", bytes(5) if framing.tpdu else None))


def test_frames_before_garbage_are_not_lost() -> None:
    framing = Framing("ascii4")
    decoder = framing.decoder()
    good = framing.frame(b"0800abc")
    assert decoder.feed(good) == [Frame(b"0800abc")]
    with pytest.raises(FramingError):
        decoder.feed(b"zzzz")


@settings(max_examples=300, deadline=None)
@given(framing=framings, junk=st.binary(max_size=200))
def test_random_bytes_raise_only_framing_errors(framing: Framing, junk: bytes) -> None:
    try:
        framing.decoder().feed(junk)
    except FramingError:
        pass


@settings(max_examples=300, deadline=None)
@given(framing=framings, bodies=payloads, tail=st.binary(max_size=40), data=st.data())
def test_a_chunk_of_whole_frames_reads_as_the_same_bytes_one_at_a_time(
    framing: Framing, bodies: list[bytes], tail: bytes, data: st.DataObject
) -> None:
    """Whole frames then anything (a partial frame, a bad header): one ``feed`` of it all
    gives the frames, the error or the bytes kept that feeding it byte by byte gives."""
    tpdus = [data.draw(st.binary(min_size=5, max_size=5)) if framing.tpdu else None for _ in bodies]
    stream = b"".join(framing.frame(b, t) for b, t in zip(bodies, tpdus)) + tail

    def read(chunks: list[bytes]) -> tuple[list[Frame], str | None, int]:
        decoder, got = framing.decoder(), []
        try:
            for chunk in chunks:
                got.extend(decoder.feed(chunk))
        except FramingError as exc:
            return [], str(exc), 0  # what one feed raised on is lost with it; the stream is dead
        return got, None, decoder.buffered

    whole, error, kept = read([stream])
    one_by_one, error_one, kept_one = read([stream[i:i + 1] for i in range(len(stream))])
    assert (error, kept) == (error_one, kept_one)
    if error is None:
        assert whole == one_by_one
        assert whole[: len(bodies)] == [Frame(b, t) for b, t in zip(bodies, tpdus)]


def test_framing_configuration_errors() -> None:
    with pytest.raises(FramingError, match="allowed: be2, le2, ascii4"):
        Framing("be4")  # type: ignore[arg-type]
    with pytest.raises(FramingError, match="1..9999"):
        Framing("ascii4", max_length=20000)
    with pytest.raises(FramingError, match="needs a 5-byte TPDU"):
        Framing("be2", tpdu=True).frame(b"x")
    with pytest.raises(FramingError, match="exceeds max_length"):
        Framing("be2", max_length=3).frame(b"0800")
    assert parse_framing("le2+tpdu") == Framing("le2", True)
    with pytest.raises(WireError, match="suffix"):
        parse_framing("be2+mac")
