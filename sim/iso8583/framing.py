"""Framing: how ISO 8583 messages are delimited on a TCP stream.

TCP delivers bytes, not messages. Every host puts a length header in front of
each message; some add a 5-byte TPDU (routing header: ID, destination, source)
after it. This module turns messages into frames and back, and knows nothing
of ISO 8583 itself.

Supported length headers (``Framing.kind``):

============  ============================================  ===========
kind          header                                        max length
============  ============================================  ===========
``be2``       2-byte unsigned big-endian (the default)      65535
``le2``       2-byte unsigned little-endian                 65535
``ascii4``    4 ASCII decimal digits (``"0123"``)           9999
============  ============================================  ===========

The length counts the bytes after the header (TPDU included), never itself.

Examples
--------
>>> f = Framing()
>>> f.frame(b"0800")
b'\\x00\\x040800'
>>> d = f.decoder()
>>> d.feed(b"\\x00\\x04")
[]
>>> d.feed(b"0800\\x00")
[Frame(payload=b'0800', tpdu=None)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

from .errors import FramingError

Kind = Literal["be2", "le2", "ascii4"]
KINDS: tuple[str, ...] = ("be2", "le2", "ascii4")
TPDU_LEN = 5
_HEADER_LEN = {"be2": 2, "le2": 2, "ascii4": 4}
_LIMIT = {"be2": 0xFFFF, "le2": 0xFFFF, "ascii4": 9999}
DEFAULT_MAX_LENGTH = 8192
"""Largest frame accepted by default: far above any real 8583 message, far below memory trouble."""


class Frame(NamedTuple):
    """One delimited message: its ISO 8583 bytes and, if the framing has one, its TPDU.

    A named tuple: one is cut for every message received (see
    :class:`sim.core.issuer.Decision`).
    """

    payload: bytes
    tpdu: bytes | None = None


_new_frame = tuple.__new__
"""``Frame(payload)`` without the named tuple's Python ``__new__``: ``_new_frame(Frame, (payload, None))``."""


def reply_tpdu(tpdu: bytes) -> bytes:
    """The TPDU for a reply: same ID, destination and source swapped.

    >>> reply_tpdu(bytes.fromhex("6000120034")).hex()
    '6000340012'
    """
    if len(tpdu) != TPDU_LEN:
        raise FramingError(f"a TPDU is {TPDU_LEN} bytes, got {len(tpdu)}")
    return tpdu[:1] + tpdu[3:5] + tpdu[1:3]


@dataclass(frozen=True)
class Framing:
    """A framing: length header kind, TPDU or not, and the largest frame accepted.

    Parameters
    ----------
    kind : {"be2", "le2", "ascii4"}
        The length header.
    tpdu : bool
        A 5-byte TPDU follows the header.
    max_length : int
        Frames longer than this (header excluded) are refused with :class:`FramingError`.
    """

    kind: Kind = "be2"
    tpdu: bool = False
    max_length: int = DEFAULT_MAX_LENGTH

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FramingError(f"framing kind {self.kind!r} is unknown; allowed: {', '.join(KINDS)}")
        limit = _LIMIT[self.kind]
        if not 1 <= self.max_length <= limit:
            raise FramingError(f"max_length {self.max_length} out of range for {self.kind}; allowed: 1..{limit}")

    @property
    def header_length(self) -> int:
        """Bytes in the length header."""
        return _HEADER_LEN[self.kind]

    def frame(self, payload: bytes, tpdu: bytes | None = None) -> bytes:
        """Prefix ``payload`` with the length header (and TPDU when this framing has one)."""
        if self.tpdu:
            if tpdu is None or len(tpdu) != TPDU_LEN:
                raise FramingError(f"framing {self.kind}+tpdu needs a {TPDU_LEN}-byte TPDU, got {tpdu!r}")
            body = tpdu + payload
        else:
            if tpdu is not None:
                raise FramingError(f"framing {self.kind} has no TPDU, but one was given")
            body = payload
        n = len(body)
        if n > self.max_length:
            raise FramingError(f"frame of {n} bytes exceeds max_length {self.max_length}")
        if self.kind == "be2":
            return n.to_bytes(2, "big") + body
        if self.kind == "le2":
            return n.to_bytes(2, "little") + body
        return b"%04d" % n + body

    def decoder(self) -> "StreamDecoder":
        """A fresh stream decoder for one connection."""
        return StreamDecoder(self)

    def describe(self) -> str:
        """Short label, e.g. ``be2`` or ``ascii4+tpdu``."""
        return self.kind + ("+tpdu" if self.tpdu else "")


def parse_framing(label: str, max_length: int = DEFAULT_MAX_LENGTH) -> Framing:
    """Build a Framing from a label such as ``be2``, ``le2+tpdu`` or ``ascii4``."""
    kind, _, extra = label.partition("+")
    if extra not in ("", "tpdu"):
        raise FramingError(f"framing {label!r}: suffix {extra!r} unknown; allowed: +tpdu")
    return Framing(kind, bool(extra), max_length)  # type: ignore[arg-type]


class StreamDecoder:
    """Reassembles frames from TCP chunks of any size.

    Feed it whatever ``recv`` returned, one byte or many frames at a time; it
    returns the whole frames completed so far and keeps the rest. After a
    :class:`FramingError` the stream cannot be resynchronised: every later call
    raises again, and the caller should drop the connection. The decoder keeps the
    error's text, not the exception: a raised exception holds its traceback, whose
    frames hold the decoder, and that cycle would wait for the cyclic collector.
    """

    __slots__ = ("_framing", "_buf", "_error")

    def __init__(self, framing: Framing) -> None:
        self._framing = framing
        self._buf = bytearray()
        self._error: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole frame (a partial frame at close)."""
        return len(self._buf)

    def _length(self, header: bytes) -> int:
        kind = self._framing.kind
        if kind == "be2":
            return int.from_bytes(header, "big")
        if kind == "le2":
            return int.from_bytes(header, "little")
        if not (header.isdigit() and header.isascii()):
            raise FramingError(f"ascii4 length header {bytes(header)!r} is not 4 decimal digits")
        return int(header)

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return the frames they complete, in order.

        The usual ``recv`` of a busy connection is whole frames with nothing buffered
        before them (one frame at a server, the answers to what a pipelining client sent
        at a client): with be2 framing these are cut from ``data`` itself, without copying
        it through the buffer; only a partial frame at its end is buffered.
        """
        if self._error is not None:
            raise FramingError(self._error)
        buf = self._buf
        framing = self._framing
        frames: list[Frame] = []
        if not buf and framing.kind == "be2" and not framing.tpdu and type(data) is bytes:
            size = len(data)
            limit = framing.max_length
            new_frame = _new_frame
            pos = 0
            while size - pos >= 2:
                n = (data[pos] << 8) | data[pos + 1]
                end = pos + 2 + n
                if not 0 < n <= limit or end > size:
                    break  # the general path below reports a bad header and keeps a partial frame
                frames.append(new_frame(Frame, (data[pos + 2:end], None)))
                pos = end
            if pos == size:
                return frames
            buf += memoryview(data)[pos:]  # a partial frame, or what the general path refuses
        else:
            buf += data
        hlen = framing.header_length
        minimum = TPDU_LEN + 1 if framing.tpdu else 1
        pos = 0
        end = len(buf)
        while end - pos >= hlen:
            n = self._length(bytes(buf[pos : pos + hlen]))
            if n > framing.max_length or n < minimum:
                self._error = (
                    f"frame length {n} out of range; allowed: {minimum}..{framing.max_length} ({framing.describe()})"
                )
                del buf[:]
                raise FramingError(self._error)
            if end - pos - hlen < n:
                break
            start = pos + hlen
            if framing.tpdu:
                frames.append(Frame(bytes(buf[start + TPDU_LEN : start + n]), bytes(buf[start : start + TPDU_LEN])))
            else:
                frames.append(Frame(bytes(buf[start : start + n])))
            pos = start + n
        if pos:
            del buf[:pos]
        return frames
