"""Messages by layout: pyiso8583 lays out each shape of message once; the rest are read and written in place.

A host decodes and encodes messages of a few dozen shapes: a chip sale, a swipe, a
reversal, an echo and their answers, each with the same fields in the same order and
the same variable lengths, message after message. pyiso8583 spends 20-25 us on each
decode and each encode of such a message, most of it working out again where each
field lies and what its length prefix says. This module does the same work once per
shape and no codec of its own.

Design
------
``iso8583.decode`` and ``iso8583.encode`` return, beside the fields or the bytes, the
encoded length prefix and data of every field in the order they lie on the wire
(header, MTI, bitmaps, then the fields by number). Summing their lengths gives where
each field's data lies. Of a message, only its *frame* decides where things lie: the
bitmaps, which say which fields follow, and the length prefixes, which say how long each
variable field is. Every field's data is then a *span* whose place follows from the frame.

**Decoding.** The first message of a shape goes through ``iso8583.decode``, and
:class:`LayoutCodec` remembers its spans and its frame bytes (bitmaps and prefixes,
joined). A later message of the same length whose frame bytes are the same is read span
by span: a text field as ``bytes.decode`` of its ``data_enc``, a binary field as
``bytes.hex().upper()`` -- exactly what pyiso8583 does with a field's data once it has
found it (``_decode_text_data``, ``_decode_field``). Its checks (lengths within
``max_len``, fixed lengths exact) depend on the frame alone, so they passed for the
first message and pass again. Fields whose data pyiso8583 does more with (padding,
lengths counted in nibbles) are part of the frame instead: read only from the first
message, so a message differing there is a new shape.

**Encoding.** For a set of field keys, the first encode of each combination of data
lengths goes through ``iso8583.encode``; the codec keeps the bytes between the fields'
data (bitmaps, length prefixes). A later encode with the same keys and data lengths
joins those pieces with each field's data as pyiso8583 makes it (``str.encode`` of its
``data_enc``, ``binascii.a2b_hex`` for binary): the bitmaps follow from the keys, the
prefixes and every length check from the lengths. A value that does not encode, or a
field pyiso8583 pads, goes through ``iso8583.encode``, which raises its own error.

Both caches hold at most ``capacity`` shapes and start afresh when full, so memory is
bounded whatever the traffic; a stream of one-off shapes only costs the full codec. A
message is compared with at most :data:`SHAPES_PER_LENGTH` shapes of its length.
Tests (hypothesis) check that the codec gives exactly pyiso8583's fields and bytes,
and fails where it fails, for several dialects.

Examples
--------
>>> from sim.iso8583.dialect import DEFAULT
>>> codec = LayoutCodec(DEFAULT)
>>> echo = {"t": "0800", "7": "1130100000", "11": "000001", "41": "TERM0001", "70": "301"}
>>> raw = codec.encode(echo)
>>> raw == DEFAULT.encode(dict(echo)), codec.encode({**echo, "11": "000002"}) == DEFAULT.encode({**echo, "11": "000002"})
(True, True)
>>> codec.decode(raw) == DEFAULT.decode(raw), codec.decode(raw)["11"], codec.hits
(True, '000001', 2)
"""

from __future__ import annotations

import binascii
from operator import itemgetter
from typing import Any, Mapping

import iso8583

from .dialect import DEFAULT, Dialect

__all__ = ["HEX", "SHAPES_PER_LENGTH", "LayoutCodec", "Shape", "data_codec", "spans"]

HEX = "b"
"""The :func:`data_codec` of binary data: pyiso8583's ``data_enc`` ``"b"``, data as upper-case hex text."""

SHAPES_PER_LENGTH = 16
"""Shapes of one message length the codec remembers: a message is compared with each of
them, so a peer sending messages of many shapes but one length cannot make every read
slow (past this many, new shapes of that length go through pyiso8583 each time)."""

_FRAME_KEYS = frozenset({"p", "1", "65"})
"""Bitmaps (and the extended bitmap indicator): they decide which fields follow, so they are always frame."""


def data_codec(props: Mapping[str, Any]) -> str | None:
    """How pyiso8583 turns a field's data into its value and back, when it does nothing else.

    The field's text ``data_enc``, or :data:`HEX` for binary data; ``None`` when
    pyiso8583 also pads the value or counts its length in nibbles.

    >>> data_codec({"data_enc": "ascii", "len_type": 3, "max_len": 999}), data_codec({"data_enc": "b", "max_len": 8})
    ('ascii', 'b')
    >>> data_codec({"data_enc": "b", "len_count": "nibbles", "left_pad": "0"}) is None
    True
    """
    if "left_pad" in props or "right_pad" in props or props.get("len_count", "bytes") != "bytes":
        return None
    codec = props.get("data_enc")
    return codec if isinstance(codec, str) else None


def spans(encoded: Mapping[str, Mapping[str, bytes]], size: int) -> dict[str, tuple[int, int]] | None:
    """Where each field's data lies in a message of ``size`` bytes, from pyiso8583's encoded pieces.

    ``None`` when the pieces do not add up to the message (pyiso8583 laid it out
    otherwise than its dict says: never read or write such a message in place).

    >>> raw, encoded = iso8583.encode({"t": "0800", "11": "000001", "70": "301"}, DEFAULT.spec)
    >>> spans(encoded, len(raw))["11"], raw[36:42]
    ((36, 42), bytearray(b'000001'))
    """
    out: dict[str, tuple[int, int]] = {}
    pos = 0
    for key, piece in encoded.items():
        start = pos + len(piece["len"])
        pos = start + len(piece["data"])
        out[key] = (start, pos)
    return out if pos == size else None


class Shape:
    """Messages of one length whose fields' data lie in the same places (shared with :mod:`sim.load.answers`)."""

    __slots__ = ("cuts", "reads", "known", "_stretches")

    def __init__(self, size: int, reads: tuple[tuple[str, int, int, str], ...]) -> None:
        cuts: list[int] = []
        pos = 0
        for _, start, end, _ in reads:  # in wire order; adjacent spans leave no frame bytes between them
            if start > pos:
                cuts += [pos, start]
            pos = end
        cuts += [pos, size]
        self.cuts = tuple(cuts)
        """Start and end of each stretch of frame bytes, flattened: (a0, b0, a1, b1, ...)."""
        self.reads = reads
        """(field, start, end, codec) of each field read in place."""
        self.known: dict[bytes, dict[str, str]] = {}
        """Frame bytes -> pyiso8583's fields of a message with that frame."""
        stretches = [slice(self.cuts[i], self.cuts[i + 1]) for i in range(0, len(self.cuts), 2)]
        self._stretches = itemgetter(*stretches) if len(stretches) > 1 else None
        """The stretches of frame bytes cut out of a message in one call (a tuple of them)."""

    def frame(self, payload: bytes) -> bytes:
        """The bytes of ``payload`` outside the spans read in place, joined.

        >>> Shape(10, (("11", 2, 4, "ascii"), ("39", 6, 8, "ascii"))).frame(b"0123456789")
        b'014589'
        """
        stretches = self._stretches
        if stretches is None:
            cuts = self.cuts
            return bytes(payload[cuts[0]:cuts[1]])
        return b"".join(stretches(payload))


class _Plan:
    """Encodes of one set of field keys: their data in wire order, the frame pieces by data lengths."""

    __slots__ = ("order", "pieces")

    def __init__(self, order: tuple[tuple[str, str], ...]) -> None:
        self.order = order
        """(field, codec) of each field whose data is written in place, in wire order."""
        self.pieces: dict[tuple[int, ...], tuple[bytes, ...]] = {}
        """Data lengths -> the bytes before, between and after the data (one more than the fields)."""


class LayoutCodec:
    """pyiso8583's decode and encode under ``dialect``, each shape of message laid out once.

    Parameters
    ----------
    dialect : Dialect
        Whose spec decodes and encodes.
    capacity : int
        Shapes remembered (each way) before the codec starts afresh.

    Attributes
    ----------
    hits, misses : int
        Messages read or written in place, and messages left to pyiso8583.

    Notes
    -----
    One per server or connection; not thread-safe (it learns as it goes).
    """

    __slots__ = ("dialect", "spec", "capacity", "hits", "misses",
                 "_shapes", "_by_reads", "_decoded", "_plans", "_encoded")

    def __init__(self, dialect: Dialect = DEFAULT, capacity: int = 4096) -> None:
        self.dialect = dialect
        self.spec = dialect.spec
        self.capacity = max(1, capacity)
        self.hits = self.misses = 0
        self._shapes: dict[int, list[Shape]] = {}
        self._by_reads: dict[tuple[int, tuple[tuple[str, int, int, str], ...]], Shape] = {}
        self._decoded = 0
        self._plans: dict[tuple[str, ...], _Plan | None] = {}
        self._encoded = 0

    # decoding ---------------------------------------------------------------------------------

    def decode(self, payload: bytes) -> dict[str, str]:
        """The fields of ``payload`` as :meth:`Dialect.decode` gives them (a new dict each call).

        Raises
        ------
        DecodeError
            As :meth:`Dialect.decode`, naming the field.
        """
        fields = self.read(payload)
        if fields is not None:
            return fields
        try:
            fields, encoded = iso8583.decode(payload, self.spec)
        except Exception:  # noqa: BLE001 -- the dialect raises the same failure as a DecodeError naming the field
            return self.dialect.decode(payload)
        self.learn(payload, fields, encoded)
        return fields

    def read(self, payload: bytes) -> dict[str, str] | None:
        """The fields of ``payload`` when its shape is known, else ``None`` (decode it, then :meth:`learn`)."""
        if type(payload) is not bytes:
            payload = bytes(payload)
        shapes = self._shapes.get(len(payload))
        if shapes is None:
            return None
        for shape in shapes:
            known = shape.known.get(shape.frame(payload))
            if known is None:
                continue
            fields = known.copy()
            try:
                for key, start, end, codec in shape.reads:
                    data = payload[start:end]
                    fields[key] = data.hex().upper() if codec == HEX else data.decode(codec)
            except UnicodeError:
                return None  # pyiso8583 refuses it too: let it say why
            self.hits += 1
            return fields
        return None

    def learn(self, payload: bytes, fields: Mapping[str, str], encoded: Mapping[str, Mapping[str, bytes]]) -> None:
        """Remember the shape of ``payload``, which pyiso8583 decoded to ``fields`` and ``encoded``."""
        self.misses += 1
        payload = bytes(payload)
        where = spans(encoded, len(payload))
        if where is None:
            return
        if self._decoded >= self.capacity:
            self._shapes.clear()
            self._by_reads.clear()
            self._decoded = 0
        reads = []
        for key, (start, end) in where.items():
            if key in _FRAME_KEYS or end == start:
                continue
            codec = data_codec(self.spec.get(key, {}))
            if codec is None or payload[start:end] != encoded[key]["data"]:
                continue
            reads.append((key, start, end, codec))
        ident = (len(payload), tuple(reads))
        shape = self._by_reads.get(ident)
        if shape is None:
            same_length = self._shapes.setdefault(len(payload), [])
            if len(same_length) >= SHAPES_PER_LENGTH:
                return
            shape = Shape(len(payload), tuple(reads))
            self._by_reads[ident] = shape
            same_length.append(shape)
        frame = shape.frame(payload)
        if frame not in shape.known:
            self._decoded += 1
            shape.known[frame] = dict(fields)

    # encoding ---------------------------------------------------------------------------------

    def encode(self, fields: Mapping[str, str]) -> bytes:
        """The bytes of ``fields`` as :meth:`Dialect.encode` gives them (``fields`` is not changed).

        Bitmap keys (``"p"``, ``"1"``) in ``fields`` are ignored, as pyiso8583 recomputes them.

        Raises
        ------
        MessageError
            As :meth:`Dialect.encode`, naming the field pyiso8583 refused.
        """
        data = {k: v for k, v in fields.items() if k != "p" and k != "1"} if "p" in fields or "1" in fields else fields
        keys = tuple(data)
        plan = self._plans.get(keys, False)
        if plan is False:
            return self._learn_encoding(data, keys)
        if plan is None:
            self.misses += 1
            return self.dialect.encode(dict(data))
        try:
            datas = [binascii.a2b_hex(data[key]) if codec == HEX else data[key].encode(codec)
                     for key, codec in plan.order]
        except (ValueError, TypeError, AttributeError, LookupError):  # UnicodeError and binascii.Error are ValueErrors
            self.misses += 1
            return self.dialect.encode(dict(data))  # it raises naming the field, or encodes what it pads
        pieces = plan.pieces.get(tuple(map(len, datas)))
        if pieces is None:
            return self._learn_encoding(data, keys)
        out: list[bytes] = [b""] * (2 * len(datas) + 1)
        out[0::2] = pieces
        out[1::2] = datas
        self.hits += 1
        return b"".join(out)

    def _learn_encoding(self, data: Mapping[str, str], keys: tuple[str, ...]) -> bytes:
        self.misses += 1
        try:
            raw, encoded = iso8583.encode(dict(data), self.spec)
        except Exception:  # noqa: BLE001 -- the dialect raises it as a MessageError naming the field
            return self.dialect.encode(dict(data))
        raw = bytes(raw)
        where = spans(encoded, len(raw))
        if self._encoded >= self.capacity:
            self._plans.clear()
            self._encoded = 0
        plan = self._plans.get(keys)
        if plan is None and keys not in self._plans:
            plan = self._plan(keys, data, encoded) if where is not None else None
            self._plans[keys] = plan
            self._encoded += 1
        if plan is None or where is None:
            return raw
        cuts = [0]
        lengths = []
        for key, _ in plan.order:
            start, end = where[key]
            cuts += [start, end]
            lengths.append(end - start)
        cuts.append(len(raw))
        pieces = tuple(raw[cuts[i]:cuts[i + 1]] for i in range(0, len(cuts), 2))
        if tuple(lengths) not in plan.pieces:
            self._encoded += 1
            plan.pieces[tuple(lengths)] = pieces
        return raw

    def _plan(self, keys: tuple[str, ...], data: Mapping[str, str],
              encoded: Mapping[str, Mapping[str, bytes]]) -> _Plan | None:
        """The fields written in place for ``keys``, or None when one of them is not written as pyiso8583 gave it."""
        order = []
        for key, piece in encoded.items():
            if key not in keys:
                continue  # bitmaps
            codec = data_codec(self.spec.get(key, {}))
            if codec is None:
                return None
            value = data[key]
            try:
                made = binascii.a2b_hex(value) if codec == HEX else value.encode(codec)
            except (ValueError, TypeError, AttributeError, LookupError):
                return None
            if made != piece["data"]:
                return None
            order.append((key, codec))
        if len(order) != len(keys):
            return None
        return _Plan(tuple(order))

