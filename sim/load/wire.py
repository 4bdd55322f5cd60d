"""Request bytes for a load generator: pyiso8583 encodes once, each send restamps in place.

A load generator sends the same few hundred messages again and again with a new
trace number (DE11), transmission time (DE7) and terminal (DE41: the terminals of one
process share the messages), and for sales a new local time and date (DE12, DE13).
Encoding the whole message with pyiso8583 for every send costs about 30 us; the bytes
that change are 26 ASCII digits and 8 characters at fixed places.

Design
------
:class:`Template` lets pyiso8583 encode the message once, then reads the byte
offsets of the restamped fields from pyiso8583's own output: ``iso8583.encode``
returns, beside the bytes, the encoded length prefix and data of every field, in
the order it wrote them (header, MTI, bitmaps, then fields by number). Summing
those lengths gives where each field's data starts; the template checks that the
bytes found there are the ones pyiso8583 reported before it trusts an offset. A
send then joins the unchanged stretches with the new digits -- no codec is
written here: only the replacement of equal-length text that pyiso8583 itself
laid out.

Splicing is exact only when the new value encodes to bytes of the same length in
the same place, so a field is restamped in place only when its spec says fixed
length (``len_type`` 0), a text encoding (not ``b``: binary or BCD data), no
padding, and the new value has ``max_len`` characters, each one byte in that
encoding. Any other field, dialect or value goes through a full pyiso8583 encode
(:meth:`Template.encode` decides per call), so every dialect still works, only
slower. Tests (hypothesis) check that the spliced bytes equal a full pyiso8583
encode of the same fields, for several dialects and framings.

The length header does not change either (same length), so the template keeps the
framed bytes: one ``b"".join`` per send. Of the restamped fields, the trace number and
the terminal change from one send to the next (:data:`PER_SEND`), the times once a
second: the template keeps the bytes between the per-send fields from the last send
of the same times, and a send joins those few pieces with its trace number and
terminal.

Examples
--------
>>> from sim.iso8583.dialect import DEFAULT
>>> fields = {"t": "0800", "7": "1130100000", "11": "000001", "41": "LOAD0001", "70": "301"}
>>> t = Template(fields, DEFAULT)
>>> sorted(t.spliced)
['11', '41', '7']
>>> new = t.encode({"11": "000002", "7": "1130100001"})
>>> new == DEFAULT.encode({**fields, "11": "000002", "7": "1130100001"})
True
>>> t.encode({"41": "OTHER001"}) == DEFAULT.encode({**fields, "41": "OTHER001"})  # not restampable: full encode
True
"""

from __future__ import annotations

from operator import itemgetter
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import iso8583

from ..iso8583.dialect import DEFAULT, Dialect
from ..iso8583.framing import Framing
from ..iso8583.layout import spans

if TYPE_CHECKING:
    from ..live.traffic import Request

__all__ = ["PER_SEND", "RESTAMPED", "TPDU", "Template", "WireEncoder"]

RESTAMPED: tuple[str, ...] = ("7", "11", "12", "13", "41", "90")
"""Fields a pooled request changes per send: transmission date and time, trace number,
local time, local date, terminal, and a reversal's original data elements (all
fixed-length text in ISO 8583:1987: numeric, and ans 8 for DE41)."""

PER_SEND: frozenset[str] = frozenset(("11", "41"))
"""Restamped fields that change from one send to the next: the trace number, and the
terminal (streams of one process send the same pooled messages). The other restamped
fields change once a second at most."""

TPDU = bytes.fromhex("6000010000")
"""TPDU the load kit sends when the framing has one: ID 60, destination 0001, source 0000."""


def _codec(props: Mapping[str, object]) -> str | None:
    """The text codec a fixed-length field's data is in, or None when splicing cannot be exact."""
    if props.get("len_type") != 0 or props.get("data_enc") == "b":
        return None
    if "left_pad" in props or "right_pad" in props or props.get("len_count", "bytes") != "bytes":
        return None
    codec = props.get("data_enc")
    return codec if isinstance(codec, str) else None


def _interleave(pieces: tuple[bytes, ...] | list[bytes], plan: tuple[tuple[str, str, int], ...],
                values: Mapping[str, str]) -> bytes | None:
    """``pieces`` joined with the data of the fields of ``plan`` (field, codec, length) in
    between, or None when a value is missing (KeyError), not in its codec, or not of its length
    (pyiso8583 would refuse it, or pad it: let it say so)."""
    out = [pieces[0]]
    try:
        for i, (key, codec, size) in enumerate(plan, 1):
            data = values[key].encode(codec)
            if len(data) != size:
                return None
            out += (data, pieces[i])
    except (KeyError, UnicodeError):
        return None
    return b"".join(out)


class Template:
    """A message encoded once by pyiso8583, with the byte spans of its restampable fields.

    Parameters
    ----------
    fields : mapping
        The message (pyiso8583 field dict). Not changed; the template keeps a copy.
    dialect : Dialect
        Whose spec encodes it.
    framing : Framing, optional
        When given, :meth:`frame` returns framed bytes (the header does not change).
    restamp : tuple of str
        Fields that may change per send (:data:`RESTAMPED`).

    Attributes
    ----------
    spliced : dict
        Field -> (start, end, codec) of the fields restamped in place (offsets into
        the unframed bytes). Fields of ``restamp`` absent here go through full encodes.
    raw : bytes
        pyiso8583's encoding of ``fields``.
    """

    __slots__ = ("fields", "dialect", "framing", "tpdu", "raw", "spliced", "_pieces", "_order", "_plan", "_header",
                 "_slow", "_fast", "_fast_cuts", "_memo")

    def __init__(self, fields: Mapping[str, str], dialect: Dialect = DEFAULT, framing: Framing | None = None,
                 restamp: tuple[str, ...] = RESTAMPED, tpdu: bytes = TPDU) -> None:
        self.fields = {k: v for k, v in fields.items() if k not in ("p", "1")}
        self.dialect = dialect
        self.framing = framing
        self.tpdu = tpdu if framing is not None and framing.tpdu else None
        raw, encoded = iso8583.encode(dict(self.fields), dialect.spec)
        self.raw = bytes(raw)
        # Where each field lies: the running sum of pyiso8583's encoded pieces, in its order
        # (none when they do not add up to the bytes: then nothing is spliced).
        offsets = spans(encoded, len(self.raw)) or {}
        self.spliced: dict[str, tuple[int, int, str]] = {}
        for key in restamp:
            if key not in offsets or key not in self.fields:
                continue
            codec = _codec(dialect.spec.get(key, {}))
            start, end = offsets[key]
            if codec is None or self.raw[start:end] != encoded[key]["data"]:
                continue
            try:
                if self.fields[key].encode(codec) != encoded[key]["data"]:
                    continue
            except (LookupError, UnicodeError, AttributeError):
                continue
            self.spliced[key] = (start, end, codec)
        # The framed bytes when the framing is a pure prefix (length header, TPDU): the
        # header stays valid, as every splice keeps the length.
        framed = self._frame(self.raw)
        self._header = len(framed) - len(self.raw)
        if framed[self._header:] != self.raw:
            framed, self._header = self.raw, -1  # frame per send instead
        shift = max(self._header, 0)
        self._order = sorted(self.spliced, key=lambda k: self.spliced[k][0])
        cuts = [0]
        for key in self._order:
            start, end, _ = self.spliced[key]
            cuts += [start + shift, end + shift]
        cuts.append(len(framed))
        self._pieces = [framed[cuts[i]:cuts[i + 1]] for i in range(0, len(cuts), 2)]
        self._plan = tuple((key, self.spliced[key][2], self.spliced[key][1] - self.spliced[key][0]) for key in self._order)
        # The per-send fields change every send, the rest (times, a reversal's DE90) once a
        # second at most: the bytes between the per-send fields are kept from the last send
        # of those other values.
        fast = [key for key in self._order if key in PER_SEND]
        slow = [key for key in self._order if key not in PER_SEND]
        self._slow = itemgetter(*slow) if fast and slow else None
        self._fast = tuple((key, self.spliced[key][2], self.spliced[key][1] - self.spliced[key][0]) for key in fast)
        self._fast_cuts = tuple(edge + shift for key in fast for edge in self.spliced[key][:2])
        self._memo: tuple[Any, tuple[bytes, ...]] | None = None
        """(the slow fields' values, the framed bytes before, between and after the per-send fields)."""

    def _frame(self, payload: bytes) -> bytes:
        if self.framing is None:
            return payload
        return self.framing.frame(payload, self.tpdu)

    def _splice(self, values: Mapping[str, str]) -> bytes | None:
        """The pieces joined with ``values`` in place, or None when a value cannot be spliced."""
        plan = self._plan
        if len(values) == len(plan):  # the usual send: a value for every spliced field
            slow = self._slow
            if slow is None:
                return self._join(values)
            try:
                rest = slow(values)
            except KeyError:
                return None  # a field that is not spliced
            memo = self._memo
            if memo is None or memo[0] != rest:
                out = self._join(values)
                if out is not None:
                    cuts = (0, *self._fast_cuts, len(out))
                    self._memo = (rest, tuple(out[cuts[i]:cuts[i + 1]] for i in range(0, len(cuts), 2)))
                return out
            pieces = memo[1]
            if len(pieces) == 3:  # the usual template: DE11 and DE41 (inlined: the hot path)
                (k1, c1, n1), (k2, c2, n2) = self._fast
                try:
                    d1, d2 = values[k1].encode(c1), values[k2].encode(c2)
                except (KeyError, UnicodeError):
                    return None
                if len(d1) != n1 or len(d2) != n2:
                    return None  # pyiso8583 would refuse it (or pad it): let it say so
                return b"".join((pieces[0], d1, pieces[1], d2, pieces[2]))
            return _interleave(pieces, self._fast, values)
        return self._join_some(values)

    def _join(self, values: Mapping[str, str]) -> bytes | None:
        """The pieces joined with a value for every spliced field, or None when one cannot be spliced."""
        return _interleave(self._pieces, self._plan, values)

    def _join_some(self, values: Mapping[str, str]) -> bytes | None:
        """The pieces joined with ``values`` where given and the template's own data elsewhere."""
        spliced = self.spliced
        for key in values:
            if key not in spliced:
                return None
        pieces = self._pieces
        out = [pieces[0]]
        for i, key in enumerate(self._order, 1):
            start, end, codec = spliced[key]
            value = values.get(key)
            if value is None:
                out.append(self.raw[start:end])
            else:
                try:
                    data = value.encode(codec)
                except UnicodeError:
                    return None
                if len(data) != end - start:
                    return None  # pyiso8583 would refuse it (or pad it): let it say so
                out.append(data)
            out.append(pieces[i])
        return b"".join(out)

    def encode(self, values: Mapping[str, str]) -> bytes:
        """The unframed bytes of the template's fields with ``values`` put in.

        Spliced when every changed field is restampable and keeps its fixed length;
        otherwise a full pyiso8583 encode (errors as :meth:`Dialect.encode`).
        """
        spliced = self._splice(values)
        if spliced is None:
            return self.dialect.encode({**self.fields, **values})
        return spliced[self._header:] if self._header > 0 else spliced

    def frame(self, values: Mapping[str, str]) -> bytes:
        """:meth:`encode` with the framing's length header (and TPDU) in front."""
        if self._header >= 0:
            spliced = self._splice(values)
            if spliced is not None:
                return spliced
        return self._frame(self.encode(values))


class WireEncoder:
    """Frames of :class:`~sim.live.traffic.Request` objects: pooled ones spliced, others encoded in full.

    One per connection (or per process): it keeps one :class:`Template` per pooled
    message it has seen, keyed by the identity of the pool's field dict (the
    template holds that dict, so its id cannot be reused while cached).

    >>> from datetime import datetime
    >>> from sim.live.traffic import Traffic
    >>> traffic = Traffic(seed=3, pool=2)
    >>> traffic.prefill(datetime(2026, 11, 30, 10))
    >>> wire = WireEncoder(DEFAULT, Framing())
    >>> r = traffic.make("chip sale", datetime(2026, 11, 30, 10, 0, 1))
    >>> r.template is not None, wire.frame(r)[2:] == DEFAULT.encode(dict(r.fields))
    (True, True)
    """

    __slots__ = ("dialect", "framing", "tpdu", "_templates")

    def __init__(self, dialect: Dialect = DEFAULT, framing: Framing | None = None, tpdu: bytes = TPDU) -> None:
        self.dialect = dialect
        self.framing = framing if framing is not None else Framing()
        self.tpdu = tpdu if self.framing.tpdu else None
        self._templates: dict[int, tuple[Mapping[str, str], Template]] = {}

    def _template(self, fields: Mapping[str, str]) -> Template:
        entry = self._templates.get(id(fields))
        if entry is None or entry[0] is not fields:
            entry = (fields, Template(fields, self.dialect, self.framing, tpdu=self.tpdu or TPDU))
            self._templates[id(fields)] = entry
        return entry[1]

    def prepare(self, templates: Iterable[Mapping[str, str]]) -> None:
        """Encode ``templates`` now (``Traffic.templates()``), before the clock starts."""
        for fields in templates:
            self._template(fields)

    def frame(self, request: "Request") -> bytes:
        """The framed bytes of ``request``."""
        fields = request.template
        if fields is not None:
            return self._template(fields).frame(request.stamps)
        return self.framing.frame(self.dialect.encode(dict(request.fields)), self.tpdu)
