"""The wire layer's error types.

Every failure of the wire layer (framing, dialect, codec, validation) raises a
subclass of :class:`WireError`, so a server can catch exactly one type, answer 30
or drop the connection, and go on. No other exception escapes the layer on bad
input: that is a tested property.
"""

from __future__ import annotations


class WireError(ValueError):
    """Base class of every error the wire layer raises on bad input."""


class FramingError(WireError):
    """A length header is garbage, oversize, or a TPDU is malformed."""


class DialectError(WireError):
    """A dialect (pyiso8583 spec) is malformed; the message names file, field and property."""


class DecodeError(WireError):
    """Bytes do not decode under the dialect.

    Attributes
    ----------
    field : str or None
        The ISO 8583 field where decoding failed (``"t"`` MTI, ``"p"`` bitmap, ``"2"``..``"128"``).
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class MessageError(WireError):
    """A message breaks the catalogue's rules (unknown MTI, missing mandatory field, bad content).

    Attributes
    ----------
    field : str or None
        The field at fault, as a data element number (``"4"``) or ``"t"`` for the MTI.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
