"""BER-TLV for DE55 and card responses, through pyemv (no hand-written codec).

Values are ``bytes`` keyed by upper-case hex tags. Constructed templates are kept
nested on decode unless ``flatten`` is asked for.

Examples
--------
>>> data = encode({"9F02": bytes.fromhex("000000001000"), "5F2A": bytes.fromhex("0840")})
>>> data.hex().upper()
'9F02060000000010005F2A020840'
>>> decode(data)["5F2A"].hex()
'0840'
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache
from typing import Any, Mapping

from pyemv import tlv as _tlv

from .tlv_layouts import TlvLayouts


class TlvError(ValueError):
    """TLV bytes are malformed (bad tag, length past the end), or a value is not encodable."""


def decode(data: bytes, *, flatten: bool = False) -> dict[str, Any]:
    """Decode BER-TLV bytes into ``{tag: bytes | dict}``; raises :class:`TlvError`.

    The result is the caller's own (a fresh dict, nested templates too), whatever
    :func:`_decoded` remembered.
    """
    objects, remembered = _decoded(bytes(data), flatten)
    return copy_objects(objects) if remembered else objects


def decode_view(data: bytes) -> Mapping[str, Any]:
    """:func:`decode` for a caller that only reads: the remembered decoding itself, not a copy.

    The kernel reads most answers once (a GENERATE AC answer, a GET DATA counter, a
    record whose values it copies out); copying the decoded dict first would cost it
    more than the lookup. Never change what it returns; use :func:`decode` to get an
    object of one's own.
    """
    return _decoded(bytes(data), False)[0]


TRACK_TAGS = frozenset({"56", "57", "9F1F", "9F20", "9F6B"})
"""Track 1 and 2 data, their discretionary data, and their contactless equivalents."""

_DECODED_MAX = 1024
_decodings: OrderedDict[tuple[bytes, bool], dict[str, Any]] = OrderedDict()
_layouts = TlvLayouts(never=TRACK_TAGS)


def _holds_track(objects: Mapping[str, Any]) -> bool:
    for tag, value in objects.items():
        if tag in TRACK_TAGS or (type(value) is dict and _holds_track(value)):
            return True
    return False


def _decoded(data: bytes, flatten: bool) -> tuple[dict[str, Any], bool]:
    """pyemv's decoding, remembered, and whether it is (then callers that change it copy it).

    A card answers the same SELECT, GET PROCESSING OPTIONS and READ RECORD bytes to
    every transaction, and copying the decoded dict costs a fraction of decoding it
    again. Up to :data:`_DECODED_MAX` decodings, the oldest forgotten first. One
    holding track data (:data:`TRACK_TAGS`) is never remembered: nothing keeps track
    data after the authorization that used it (SEC-03).

    Data not seen before but of a layout pyemv has decoded (every DE55 of one kind of
    terminal) is read in place (:mod:`.tlv_layouts`) into a dict nothing remembers, so
    one-off data (a cryptogram, an unpredictable number) neither evicts what recurs nor
    costs a copy.
    """
    key = (data, flatten)
    found = _decodings.get(key)
    if found is not None:
        return found, True
    fresh = _layouts.read(data)  # flat data: ``flatten`` changes nothing
    if fresh is not None:
        return fresh, False
    try:
        decoded = _tlv.decode(data, flatten=flatten)
    except (_tlv.DecodeError, ValueError, IndexError, TypeError) as exc:
        raise TlvError(f"malformed TLV: {exc}") from None
    _layouts.learn(data, decoded)
    if _holds_track(decoded):
        return decoded, False
    if len(_decodings) >= _DECODED_MAX:
        _decodings.popitem(last=False)
    _decodings[key] = decoded
    return decoded, True


def copy_objects(objects: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of decoded objects, nested templates copied too (values are immutable bytes):
    what a cache of decoded data hands out, so no caller can change what it remembers."""
    out = dict(objects)  # a C-level copy first: most answers (DE55 among them) nest nothing
    for tag, value in objects.items():
        if type(value) is dict:
            out[tag] = copy_objects(value)
    return out


@lru_cache(maxsize=512)
def encode_primitive(tag: str, value: bytes) -> bytes:
    """:func:`encode` of one primitive object, remembered: a card answers GET DATA for the
    same few counters, whose values (small ATCs) recur across cards and transactions."""
    return encode({tag: value})


def encode_each(objects: Mapping[str, Any]) -> bytes:
    """:func:`encode`, one primitive object at a time through :func:`encode_primitive`.

    BER-TLV data is its objects one after the other, so joining the objects encoded
    one by one gives the bytes :func:`encode` gives for them all. DE55 repeats most of
    its objects (terminal, card and application data) from one transaction to the next;
    only the few that change (cryptogram, unpredictable number, amount...) are encoded
    afresh. Anything but plain ``bytes`` values (a template, hex text) goes through
    :func:`encode` whole.
    """
    parts = []
    for tag, value in objects.items():
        if type(value) is not bytes:
            return encode(objects)
        parts.append(encode_primitive(tag, value))
    return b"".join(parts)


def encode(objects: Mapping[str, Any]) -> bytes:
    """Encode ``{tag: bytes | hex str | dict}`` as BER-TLV; raises :class:`TlvError`."""
    try:
        return _tlv.encode(objects)
    except (_tlv.EncodeError, ValueError, TypeError) as exc:
        raise TlvError(f"cannot encode TLV: {exc}") from None
