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

from typing import Any, Mapping

from pyemv import tlv as _tlv


class TlvError(ValueError):
    """TLV bytes are malformed (bad tag, length past the end), or a value is not encodable."""


def decode(data: bytes, *, flatten: bool = False) -> dict[str, Any]:
    """Decode BER-TLV bytes into ``{tag: bytes | dict}``; raises :class:`TlvError`."""
    try:
        return _tlv.decode(bytes(data), flatten=flatten)
    except (_tlv.DecodeError, ValueError, IndexError, TypeError) as exc:
        raise TlvError(f"malformed TLV: {exc}") from None


def encode(objects: Mapping[str, Any]) -> bytes:
    """Encode ``{tag: bytes | hex str | dict}`` as BER-TLV; raises :class:`TlvError`."""
    try:
        return _tlv.encode(objects)
    except (_tlv.EncodeError, ValueError, TypeError) as exc:
        raise TlvError(f"cannot encode TLV: {exc}") from None
