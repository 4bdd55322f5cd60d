"""One frame through the host core: decode (partially when it must), answer, encode.

The live server and the replay at start-up both call :func:`core_answer`, so that a
replayed request goes through exactly the code path the live one went through and
the replayed answer can be compared with the stored one byte for byte.

A frame that does not decode still deserves an answer when the host can tell what
it was: pyiso8583 reports the fields it decoded before the failure
(``DecodeError.doc_dec``), and when those include the MTI of a request and the
matching key (DE11, and DE41 when the bitmap says the message has one), the host
answers 30 (ONL-13) and the terminal can match it. Otherwise nothing can be
matched, and the server closes that connection (REV-04).

On a dialect that MACs (SEC-01) every answer leaves signed under the key of its
terminal (DE41): the core signs its own, and the answers the driver builds or changes
itself -- a format error 30, a 96 after a fault, the rules overlay's answers -- go
through :func:`sign_fields`. The request's MAC is checked by the core
(``host.handle(msg, now, dialect, raw=raw)``), over the very bytes received.

Examples
--------
>>> from sim.iso8583.samples import sample_sale
>>> raw = sample_sale().encode()
>>> decode_frame(raw).complete
True
>>> cut = decode_frame(raw[:200])
>>> cut.complete, cut.partial["11"], format_error_fields(cut.partial, datetime(2026, 11, 22))["39"]
(False, '000001', '30')
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping, NamedTuple

import iso8583

from ..core.host import Host
from ..iso8583.catalogue import MESSAGE_TYPES
from ..iso8583.layout import LayoutCodec
from ..iso8583.dialect import DEFAULT, Dialect
from ..iso8583.errors import WireError
from ..iso8583.mac import MacKeys, sign
from ..iso8583.message import Message

FORMAT_ERROR = "30"
SYSTEM_MALFUNCTION = "96"
_KEY_FIELDS = ("7", "11", "41", "70")


class Decoded(NamedTuple):
    """What could be read from one frame.

    Attributes
    ----------
    fields : dict or None
        Every field, when the frame decoded completely; else ``None``.
    partial : dict
        The fields decoded before the failure (all of them when complete).
    error : str or None
        Why decoding stopped.

    A named tuple: one is made for every frame (see :class:`sim.core.issuer.Decision`).
    """

    fields: dict[str, str] | None
    partial: dict[str, str]
    error: str | None = None

    @property
    def complete(self) -> bool:
        """True when the whole frame decoded."""
        return self.fields is not None


def decode_frame(raw: bytes, dialect: Dialect = DEFAULT, codec: LayoutCodec | None = None) -> Decoded:
    """Decode ``raw``; never raises on bad input (hypothesis-tested over TCP).

    With ``codec`` (of ``dialect``), a frame of a shape met before is read in place
    (:mod:`sim.iso8583.layout`: the same fields, at a fraction of the cost), and a new
    shape is learnt.
    """
    if codec is not None:
        known = codec.read(raw)
        if known is not None:
            return Decoded(known, known)
    try:
        fields, encoded = iso8583.decode(raw, dialect.spec)
    except iso8583.DecodeError as exc:
        return Decoded(None, dict(exc.doc_dec), str(exc))
    except (KeyError, TypeError, IndexError, ValueError, UnicodeError, OverflowError) as exc:
        return Decoded(None, {}, f"cannot decode: {exc!r}")
    if codec is not None:
        codec.learn(raw, fields, encoded)
    return Decoded(fields, fields)


def _bit(partial: Mapping[str, str], number: int) -> bool | None:
    """Whether the bitmap says field ``number`` is present; ``None`` when that bitmap was not read."""
    key, base = ("p", 0) if number <= 64 else ("1", 64)
    bitmap = partial.get(key)
    if bitmap is None:
        return None
    try:
        value = int(bitmap, 16)
    except ValueError:
        return None
    return bool(value >> (64 - (number - base)) & 1)


def _digits(value: str | None, width: int) -> bool:
    return value is not None and len(value) == width and value.isascii() and value.isdigit()


def format_error_fields(partial: Mapping[str, str], now: datetime, code: str = FORMAT_ERROR) -> dict[str, str] | None:
    """The fields of a 30 answer to a frame that did not decode, or ``None`` when it cannot be matched.

    It needs a request MTI, a 6-digit DE11, and DE41 whenever the bitmap announces one
    (the client matches on MTI class + DE41 + DE11). DE7 is echoed when it was read,
    else it is the driver's ``now``.
    """
    mti = partial.get("t", "")
    mtype = MESSAGE_TYPES.get(mti)
    if mtype is None or mtype.response is None:
        return None
    stan = partial.get("11")
    if not _digits(stan, 6):
        return None
    fields = {"t": mtype.response, "11": stan or ""}
    if "41" in partial:
        fields["41"] = partial["41"]
    elif _bit(partial, 41) is not False:
        return None  # announced (or unknowable) but unread: the key is incomplete
    when = partial.get("7")
    fields["7"] = when if _digits(when, 10) else now.strftime("%m%d%H%M%S")
    if "70" in partial:
        fields["70"] = partial["70"]
    fields["39"] = code
    return fields


def encode_fields(fields: Mapping[str, str], dialect: Dialect, codec: LayoutCodec | None = None) -> bytes | None:
    """Encode a field dict, or ``None`` when the dialect refuses it.

    ``codec``: of ``dialect``, as in :func:`decode_frame`.
    """
    try:
        if codec is not None:
            return codec.encode(fields)
        return dialect.encode({k: v for k, v in fields.items() if k not in ("p", "1")})
    except WireError:
        return None


def sign_fields(fields: Mapping[str, str], dialect: Dialect, keys: MacKeys | None) -> dict[str, str]:
    """An answer's fields with the MAC of its terminal (DE41) when ``dialect`` MACs.

    Unchanged when the dialect does not MAC, no ``keys`` are given, the terminal has no
    key (as the core leaves its own answers then), or the fields do not encode (the
    caller's encode then fails as for any such answer). Any MAC already there is
    replaced: this is how an answer changed after the core signed it is signed again.

    >>> from sim.iso8583.dialect import BUILTIN
    >>> mac = BUILTIN["iso8583-1987-ascii-mac"]
    >>> answer = {"t": "0810", "7": "1122103000", "11": "000001", "39": "00", "41": "TERM0001", "70": "301"}
    >>> from sim.iso8583.mac import TEST_MAC_KEY, verify
    >>> verify(Message(sign_fields(answer, mac, MacKeys())), mac, TEST_MAC_KEY).value
    'valid'
    >>> "64" in sign_fields(answer, DEFAULT, MacKeys())
    False
    """
    if dialect.mac_field is None or keys is None:
        return dict(fields)
    key = keys.key_for(fields.get("41"))
    if key is None:
        return dict(fields)
    try:
        return dict(sign(Message(dict(fields)), dialect, key).fields)
    except WireError:
        return dict(fields)


class CoreAnswer(NamedTuple):
    """The core's answer to one request.

    Attributes
    ----------
    raw : bytes
        The answer as it goes on the wire (without framing).
    fields : dict
        Its fields, for the journal and the rules overlay.
    fault : str or None
        Set when the core raised (a bug in the core, not traffic): the driver then
        answered 96 itself, and says why here.
    icc : dict or None
        The request's DE55 objects as the core decoded them (``None``: it did not), so
        the driver need not decode them again (:func:`~.redact.redact_request`).

    A named tuple: one is made for every request (see :class:`sim.core.issuer.Decision`).
    """

    raw: bytes
    fields: dict[str, str]
    fault: str | None = None
    icc: dict[str, Any] | None = None


def _fallback(request: Mapping[str, str], code: str, now: datetime) -> dict[str, str]:
    fields = format_error_fields(request, now, code)
    if fields is not None:
        return fields
    mti = request.get("t", "")
    mtype = MESSAGE_TYPES.get(mti)
    out = {"t": (mtype.response if mtype is not None and mtype.response else mti) or "0000", "39": code}
    for key in _KEY_FIELDS:
        if key in request:
            out[key] = request[key]
    return out


def core_answer(
    host: Host, fields: dict[str, Any], now: datetime, dialect: Dialect = DEFAULT, *,
    raw: bytes | None = None, check_mac: bool = True, codec: LayoutCodec | None = None,
) -> CoreAnswer:
    """Run one completely decoded request through ``host`` at ``now`` and encode the answer.

    The core gets the dialect, so on a MAC-ing dialect it checks the request's MAC
    (over ``raw``, the frame the fields were decoded from, when given; else over their
    encoding) and signs its answer. ``check_mac=False`` hands the core no dialect, so it
    checks and signs nothing: only for replay, of requests whose MAC the core found
    valid at receipt (the redacted copy in the replay log no longer matches it) or that
    were stored before the live host checked MACs.

    Never raises on bad input: the core answers format problems 30 itself; should it
    raise anyway, or its answer not encode, the driver answers 96 with the request's
    key fields (signed like any answer) so the terminal is not left waiting, and records
    why in ``fault``. The same inputs always give the same bytes (the replay relies on it),
    with or without ``codec`` (of ``dialect``, as in :func:`decode_frame`).
    """
    fault: str | None = None
    request = Message(fields)
    try:
        answer = host.handle(request, now, dialect if check_mac else None, raw=raw).fields
    except Exception as exc:  # noqa: BLE001 - the server outlives a bug in the core
        fault = f"core raised {type(exc).__name__}: {exc}"
        answer = _fallback(fields, SYSTEM_MALFUNCTION, now)
        if check_mac:
            answer = sign_fields(answer, dialect, host.mac_keys)
    encoded = encode_fields(answer, dialect, codec)
    if encoded is None:
        fault = fault or f"the core's {answer.get('t')} answer does not encode under {dialect.name}"
        answer = _fallback(fields, SYSTEM_MALFUNCTION, now)
        if check_mac:
            answer = sign_fields(answer, dialect, host.mac_keys)
        encoded = encode_fields(answer, dialect) or b""
    return CoreAnswer(encoded, answer, fault, request.decoded_icc)


def plain_answer(
    fields: Mapping[str, str], code: str, now: datetime, dialect: Dialect, keys: MacKeys | None = None,
) -> tuple[bytes, dict[str, str]] | None:
    """An answer with ``code`` built by the driver alone (the rules overlay's ``core = false``).

    Signed with the terminal's key from ``keys`` when the dialect MACs (:func:`sign_fields`).
    """
    from ..iso8583.message import response

    try:
        answer = dict(response(Message(dict(fields)), code).fields)
    except (WireError, KeyError):
        answer = _fallback(fields, code, now)
    answer = sign_fields(answer, dialect, keys)
    raw = encode_fields(answer, dialect)
    return None if raw is None else (raw, answer)
