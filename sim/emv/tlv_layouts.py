"""TLV data by layout: pyemv decodes the first of each layout; the rest are read in place.

A host decodes a DE55 in every chip request, and every terminal of one kind sends the
same data objects in the same order with the same lengths: only the values change
(amount, unpredictable number, counters, cryptogram). pyemv spends 8-9 us on each such
DE55 working out again, object by object, where each tag, length and value lies. This
module does that work once per layout and no decoding of its own.

Design
------
The *layout* of flat BER-TLV data (primitive objects only, one after the other) is its
tag and length bytes, in order, and the length of each value. When pyemv has decoded
such data, :meth:`TlvLayouts.learn` rebuilds it from the decoded objects -- each
object's tag and length bytes from pyemv's own encoding of it -- and only when that
gives back exactly the bytes decoded does it keep the layout, as one regular
expression: the tag and length bytes literally, each value as a group of its length.
Data of the same size that matches it in full (:meth:`TlvLayouts.read`) has the same
tag and length bytes at the same places, so pyemv would find the same objects there;
its values are the groups, sliced from the data. Templates (constructed objects) and
anything pyemv reads otherwise than it writes (a length in more bytes than it needs)
are never learnt, so such data is always pyemv's to decode. Neither are layouts of
track data (``tlv.TRACK_TAGS``), which stays out of every cache (SEC-03).

At most :data:`LAYOUTS_PER_SIZE` layouts of one size are tried, and the whole store
starts afresh past :data:`MAX_LAYOUTS`, so a peer sending one-off layouts costs only
pyemv's decoding and a bounded store. Tests (hypothesis) check that a read gives
exactly pyemv's decoding, and nothing where pyemv decodes otherwise.

Examples
--------
>>> from pyemv import tlv
>>> layouts = TlvLayouts()
>>> first = bytes.fromhex("9F02060000000010009F3704 1A2B3C4D".replace(" ", ""))
>>> layouts.learn(first, tlv.decode(first))
True
>>> later = bytes.fromhex("9F02060000000025009F3704 0A0B0C0D".replace(" ", ""))
>>> layouts.read(later) == tlv.decode(later), layouts.read(later)["9F37"].hex()
(True, '0a0b0c0d')
>>> layouts.read(bytes.fromhex("9F0206000000002500")) is None  # another layout
True
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

__all__ = ["LAYOUTS_PER_SIZE", "MAX_LAYOUTS", "TlvLayouts"]

LAYOUTS_PER_SIZE = 8
"""Layouts of one data size tried before pyemv decodes: data of many layouts but one size
cannot make every read slow (past this many, new layouts of that size are not kept)."""

MAX_LAYOUTS = 256
"""Layouts kept in all; past this the store starts afresh (memory bounded whatever the traffic)."""


class TlvLayouts:
    """The layouts of flat TLV data pyemv has decoded, each a pattern and its tags."""

    __slots__ = ("_by_size", "_count", "_encode", "_never")

    def __init__(self, encode: Callable[[Mapping[str, Any]], bytes] | None = None,
                 never: frozenset[str] = frozenset()) -> None:
        """``encode``: pyemv's TLV encoding (the tag and length bytes of each object come from
        it); ``never``: tags whose data is never learnt (track data)."""
        if encode is None:
            from pyemv import tlv

            encode = tlv.encode
        self._encode = encode
        self._never = never
        self._by_size: dict[int, list[tuple[Any, tuple[str, ...]]]] = {}
        self._count = 0

    def read(self, data: bytes) -> dict[str, bytes] | None:
        """pyemv's decoding of ``data`` from a learnt layout, or ``None`` when none matches it in full."""
        for pattern, tags in self._by_size.get(len(data), ()):
            found = pattern(data)
            if found is not None:
                return dict(zip(tags, found.groups()))
        return None

    def learn(self, data: bytes, decoded: Mapping[str, Any]) -> bool:
        """Keep the layout of ``data``, which pyemv decoded as ``decoded``; ``True`` when kept.

        Kept only when every object is primitive (a ``bytes`` value), none is in ``never``,
        and the objects encoded one after the other are ``data`` again.
        """
        size = len(data)
        known = self._by_size.get(size, ())
        if len(known) >= LAYOUTS_PER_SIZE or not decoded:
            return False
        parts, tags, pos = [], [], 0
        for tag, value in decoded.items():
            if type(value) is not bytes or tag in self._never:
                return False
            encoded = self._encode({tag: value})
            head = len(encoded) - len(value)
            if data[pos:pos + len(encoded)] != encoded:
                return False
            parts.append(re.escape(encoded[:head]) + b"(.{%d})" % len(value))
            tags.append(tag)
            pos += len(encoded)
        if pos != size:
            return False
        if self._count >= MAX_LAYOUTS:
            self._by_size.clear()
            self._count = 0
        self._by_size.setdefault(size, []).append((re.compile(b"".join(parts), re.DOTALL).fullmatch, tuple(tags)))
        self._count += 1
        return True

    def __len__(self) -> int:
        return self._count
