"""Answers for a load generator: pyiso8583 decodes a layout once, later answers are read where it found their fields.

A load generator reads the same few hundred answers again and again: the answer
to a pooled request differs from the last answer to it only in the trace number,
the times and dates, the retrieval reference, the authorization code, the
response code, the terminal (the terminals of one process send the same pooled
requests) and, in a reversal, the original data elements -- fixed-length text at
fixed places. pyiso8583 spends about 25 us decoding a typical answer;
most of it re-reading bytes it has read before.

Design
------
:class:`AnswerDecoder` is the mirror of :class:`sim.load.wire.Template`. The first
time it meets an answer it lets pyiso8583 decode it in full; ``iso8583.decode``
returns, beside the fields, the encoded length prefix and data of every field in
the order it read them, so summing their lengths gives where each field's data
lies. The data of the fields of :data:`VARYING` that are text (a text ``data_enc``,
no padding, lengths counted in bytes) are the answer's *varying spans*; every other
byte (MTI, bitmaps, every length prefix, the other fields' data) is its *fixed
part*, and the decoder remembers pyiso8583's fields under it.

A later answer of the same length whose fixed part is byte for byte one it has
remembered is the remembered fields with the varying spans read again, each as
``bytes.decode`` of its codec -- which is what pyiso8583 itself does with the data
of a text field, fixed or variable in length (``_decode_text_data``; a variable
field's length prefix is in the fixed part, so its data has the same length and
place). This is exact, not a guess:
pyiso8583 reads a message front to back, and every byte that decides where the
next field starts (bitmaps, length prefixes) lies in the fixed part, so it would
find every field at the same place, read the same fixed bytes to the same values,
and the varying spans to what ``decode`` gives. Anything else -- a new layout, a
span that does not decode -- goes through ``iso8583.decode`` (and its errors
through :meth:`Dialect.decode`, which names the field). Tests (hypothesis) check
that the decoder returns exactly pyiso8583's fields, for several dialects.

The decoder remembers at most ``capacity`` layouts and starts afresh when full
(requests built in full give one-off answers): memory stays bounded, and the
pooled answers are learnt again on their next occurrence. A stream whose answers
do not repeat is noticed when the decoder fills up, and it stops learning.

Examples
--------
>>> from sim.iso8583.dialect import DEFAULT
>>> fields = {"t": "0810", "7": "1130100000", "11": "000001", "39": "00", "41": "LOAD0001", "70": "301"}
>>> answers = AnswerDecoder(DEFAULT)
>>> first = answers.decode(DEFAULT.encode(dict(fields)))
>>> again = answers.decode(DEFAULT.encode({**fields, "11": "000002", "39": "91"}))
>>> again["11"], again["39"], answers.hits, answers.misses
('000002', '91', 1, 1)
>>> again == DEFAULT.decode(DEFAULT.encode({**fields, "11": "000002", "39": "91"}))
True
"""

from __future__ import annotations

from typing import Any

import iso8583

from ..iso8583.dialect import DEFAULT, Dialect
from ..iso8583.layout import HEX, Shape, data_codec, spans

__all__ = ["KEY_AND_CODE", "VARYING", "AnswerDecoder"]

KEY_AND_CODE: tuple[str, ...] = ("t", "41", "11", "39")
"""What a load generator reads of an answer: the MTI, DE41 and DE11 that pair it with its
request (QMUX key), and DE39 to judge it (``AnswerDecoder(wanted=KEY_AND_CODE)``)."""

VARYING: tuple[str, ...] = ("2", "4", "7", "11", "12", "13", "14", "37", "38", "39", "41", "55", "90")
"""Fields that change from one answer to the next: the PAN and amount (a stream without a
pool draws them afresh), expiry, transmission date and time, trace number, local time and
date, retrieval reference number, authorization code, response code, terminal (one
decoder serves all the terminals of a load generator process), the issuer's chip data
(DE55: the ARPC of each fresh cryptogram) and a reversal's original data elements.
What stays in the fixed part (MTI, bitmaps, length prefixes, processing code, entry mode,
merchant, currency...) names a kind of answer, so a stream of any variety reads most
answers in place."""


def _text_codec(props: dict[str, Any]) -> str | None:
    """The codec pyiso8583 decodes a text field's data with, or None when it does more than decode.

    >>> _text_codec({"data_enc": "ascii", "len_type": 3, "max_len": 510})
    'ascii'
    >>> _text_codec({"data_enc": "b", "len_type": 0, "max_len": 8}) is None
    True
    """
    codec = data_codec(props)
    return None if codec == HEX else codec


_BITMAPS = ("1", "65")
"""Bitmaps: they decide which fields follow, so they are never varying spans."""


class AnswerDecoder:
    """Decodes answers as pyiso8583 does, reusing what it learnt from earlier answers of the same layout.

    Parameters
    ----------
    dialect : Dialect
        Whose spec decodes the answers.
    varying : tuple of str
        Fields read again from every answer (:data:`VARYING`); fields the spec does
        not give as text are part of the fixed bytes instead.
    capacity : int
        Layouts remembered before the decoder starts afresh.
    wanted : tuple of str, optional
        Only these fields are returned (those the answer has), read in place alone:
        a load generator that pairs an answer with its request and judges its DE39
        reads four fields, not a dozen.

    Attributes
    ----------
    hits, misses : int
        Answers read from a remembered layout, and answers decoded in full.
    learning : bool
        False once the decoder found that the answers do not repeat: when it is full
        and has read fewer answers in place than it decoded in full (``--traffic-pool
        0``: every chip answer is new), it stops remembering layouts and every answer
        is a plain pyiso8583 decode.
    """

    __slots__ = ("dialect", "spec", "varying", "capacity", "hits", "misses", "learning", "wanted", "_layouts", "_by_reads",
                 "_size")

    def __init__(self, dialect: Dialect = DEFAULT, varying: tuple[str, ...] = VARYING, capacity: int = 1024,
                 wanted: tuple[str, ...] | None = None) -> None:
        self.dialect = dialect
        self.wanted = wanted
        self.spec = dialect.spec
        self.varying = tuple(k for k in varying if k.isdigit() and k not in _BITMAPS)
        self.capacity = max(1, capacity)
        self.hits = self.misses = 0
        self.learning = True
        self._layouts: dict[int, list[tuple[Shape, tuple[int, ...], tuple[tuple[str, int, int, str], ...]]]] = {}
        """Payload length -> (layout, its cuts, the reads of the fields returned) of each layout of that length."""
        self._by_reads: dict[tuple[int, tuple[tuple[str, int, int, str], ...]], Shape] = {}
        self._size = 0

    def decode(self, payload: bytes) -> dict[str, str]:
        """The fields of ``payload``, exactly as :meth:`Dialect.decode` gives them (a new dict each call).

        Raises :class:`~sim.iso8583.errors.DecodeError` as :meth:`Dialect.decode` does.
        """
        if type(payload) is not bytes:
            payload = bytes(payload)  # the fixed part is a dict key
        layouts = self._layouts.get(len(payload))
        if layouts is not None:
            for layout, cuts, reads in layouts:
                if len(cuts) == 4:  # the usual layout: one run of varying fields (inlined: the hot path)
                    known = layout.known.get(payload[cuts[0]:cuts[1]] + payload[cuts[2]:cuts[3]])
                else:
                    known = layout.known.get(layout.frame(payload))
                if known is None:
                    continue
                fields = known.copy()  # the returned fields outside the varying spans
                try:
                    for key, start, end, codec in reads:
                        fields[key] = payload[start:end].decode(codec)
                except UnicodeError:
                    break  # pyiso8583 refuses it too: let it say why
                self.hits += 1
                return fields
        fields = self._learn(payload)
        if self.wanted is not None:
            return {key: fields[key] for key in self.wanted if key in fields}
        return fields

    def _learn(self, payload: bytes) -> dict[str, str]:
        """Decode ``payload`` in full and remember its layout, with the fields it returns
        outside the varying spans (all of them, or the wanted ones)."""
        self.misses += 1
        try:
            fields, encoded = iso8583.decode(payload, self.spec)
        except Exception:  # noqa: BLE001 -- the dialect raises the same failure as a DecodeError naming the field
            return self.dialect.decode(payload)
        if not self.learning:
            return fields
        if self._size >= self.capacity:
            self._layouts.clear()
            self._by_reads.clear()
            self._size = 0
            if self.hits < self.misses:
                self.learning = False  # the answers do not repeat (e.g. a fresh ARQC in each): stop paying for it
                return fields
        layout = self._layout(payload, encoded)
        if layout is not None:
            fixed = layout.frame(payload)
            if fixed not in layout.known:
                self._size += 1
            wanted = self.wanted
            if wanted is None:
                layout.known[fixed] = dict(fields)
            else:
                varying = {read[0] for read in layout.reads}
                layout.known[fixed] = {key: fields[key] for key in wanted if key in fields and key not in varying}
        return fields

    def _layout(self, payload: bytes, encoded: dict[str, Any]) -> Shape | None:
        """The layout of ``payload`` (shared with earlier answers of the same shape), or None
        when pyiso8583's pieces do not add up to the payload."""
        where = spans(encoded, len(payload))
        if where is None:
            return None
        reads = []
        for key in self.varying:
            if key not in where:
                continue
            start, end = where[key]
            codec = _text_codec(self.spec.get(key, {}))
            if codec is None or end == start or payload[start:end] != encoded[key]["data"]:
                continue
            reads.append((key, start, end, codec))
        reads.sort(key=lambda r: r[1])
        ident = (len(payload), tuple(reads))
        layout = self._by_reads.get(ident)
        if layout is None:
            layout = Shape(len(payload), tuple(reads))
            self._by_reads[ident] = layout
            wanted = self.wanted
            returned = layout.reads if wanted is None else tuple(read for read in layout.reads if read[0] in wanted)
            self._layouts.setdefault(len(payload), []).append((layout, layout.cuts, returned))
        return layout
