"""A Scapy layer for ISO 8583 over TCP: a length header, then one message.

Importing this module binds :class:`ISO8583` to TCP port 8583 (both directions),
so ``rdpcap`` on a capture of possim traffic gives packets whose TCP payload is
one or more ``ISO8583`` layers, one per message. Several messages in one TCP
segment dissect as consecutive ``ISO8583`` layers.

The layer splits bytes only; it never raises while dissecting. Decoding the
message is a separate step through a :class:`~sim.iso8583.dialect.Dialect`
(:meth:`ISO8583.decode`, :meth:`ISO8583.message`), so a garbled message stays
visible as raw bytes in ``data``. A message split across TCP segments cannot be
seen whole by a per-packet layer: :func:`sim.iso8583.pcap.read_messages`
reassembles streams for that.

Examples
--------
>>> from sim.iso8583.samples import sample_exchange
>>> echo = sample_exchange()[0]
>>> pkt = ISO8583.from_message(echo)
>>> pkt.length, pkt.mti
(63, '0800')
>>> pkt.decode()["70"]
'301'
>>> two = ISO8583(bytes(pkt) + bytes(ISO8583.from_message(sample_exchange()[1])))
>>> [layer.mti for layer in two.iso8583_layers()]
['0800', '0810']
>>> ISO8583(b"\\x00\\x05hello").mysummary()
'ISO8583 undecodable (5 bytes)'
"""

from __future__ import annotations

from typing import Any

from scapy.fields import FieldLenField, StrLenField
from scapy.layers.inet import TCP
from scapy.packet import Packet, bind_layers, split_layers

from .catalogue import MESSAGE_TYPES, match_key
from .dialect import DEFAULT, Dialect
from .errors import WireError
from .message import Message
from .pretty import mask_pan

DEFAULT_PORT = 8583
"""The TCP port ISO 8583 is bound to on import (the port Wireshark users decode as iso8583)."""

_HEADER_LEN = 2


class ISO8583(Packet):
    """One ISO 8583 message behind a 2-byte big-endian length header (framing ``be2``).

    Fields
    ------
    length : int
        Bytes of ``data``; computed when building if left unset.
    data : bytes
        The message as the dialect encodes it (MTI, bitmaps, fields).

    The class attribute ``dialect`` decides how :meth:`decode`, :attr:`mti` and
    :meth:`mysummary` read ``data``; set it on a subclass (or pass a dialect to
    :meth:`decode`) for hosts that speak another spec.
    """

    name = "ISO 8583"
    fields_desc = [
        FieldLenField("length", None, length_of="data", fmt="!H"),
        StrLenField("data", b"", length_from=lambda pkt: pkt.length),
    ]
    dialect: Dialect = DEFAULT

    # Dissection ---------------------------------------------------------------------------

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        """The bytes after this message are the next message when a header's worth remains."""
        if len(payload) >= _HEADER_LEN:
            return type(self)
        return super().guess_payload_class(payload)

    @property
    def complete(self) -> bool:
        """False when ``data`` holds fewer than ``length`` bytes (a message cut by the segment end)."""
        return self.length is None or len(self.data) == self.length

    def iso8583_layers(self) -> list["ISO8583"]:
        """This layer and the ISO 8583 layers stacked after it, in wire order."""
        layers: list[ISO8583] = []
        layer: Any = self
        while isinstance(layer, ISO8583):
            layers.append(layer)
            layer = layer.payload
        return layers

    # Decoding -----------------------------------------------------------------------------

    def decode(self, dialect: Dialect | None = None) -> dict[str, str]:
        """The message's fields, decoded with ``dialect`` (default: the class's).

        Raises
        ------
        DecodeError
            When ``data`` does not decode (the field at fault is named).
        """
        return (dialect or self.dialect).decode(bytes(self.data))

    def message(self, dialect: Dialect | None = None) -> Message:
        """The decoded :class:`~sim.iso8583.message.Message` (not validated against the catalogue).

        Raises
        ------
        DecodeError
            When ``data`` does not decode.
        """
        return Message(self.decode(dialect))

    def try_decode(self, dialect: Dialect | None = None) -> dict[str, str] | None:
        """Like :meth:`decode`, but None instead of an error for undecodable data."""
        try:
            return self.decode(dialect)
        except WireError:
            return None

    @property
    def mti(self) -> str | None:
        """The message type, or None when the data does not decode."""
        fields = self.try_decode()
        return fields.get("t") if fields else None

    def mysummary(self) -> str:
        """``ISO8583 <MTI> <name> <masked PAN>``, or ``ISO8583 undecodable (<n> bytes)``."""
        fields = self.try_decode()
        if fields is None:
            return f"ISO8583 undecodable ({len(self.data)} bytes)"
        mti = fields.get("t", "????")
        parts = ["ISO8583", mti]
        mtype = MESSAGE_TYPES.get(mti)
        if mtype is not None:
            parts.append(mtype.name)
        pan = Message(fields).pan
        if pan:
            parts.append(mask_pan(pan))
        return " ".join(parts)

    # Request/response matching (used by Scapy's sr and PacketList.sr) ---------------------

    def hashret(self) -> bytes:
        """Same value for a request and its response: MTI class + DE41 + DE11."""
        fields = self.try_decode()
        if fields is None:
            return b""
        return "|".join(match_key(fields)).encode()

    def answers(self, other: Packet) -> int:
        """1 when this message is the catalogue's response to ``other`` with the same match key."""
        if not isinstance(other, ISO8583):
            return 0
        mine, theirs = self.try_decode(), other.try_decode()
        if mine is None or theirs is None:
            return 0
        request = MESSAGE_TYPES.get(theirs.get("t", ""))
        if request is None or request.response != mine.get("t"):
            return 0
        return int(match_key(mine) == match_key(theirs))

    # Building -----------------------------------------------------------------------------

    @classmethod
    def from_message(cls, message: Message | dict[str, str], dialect: Dialect | None = None) -> "ISO8583":
        """A layer holding ``message`` encoded with ``dialect`` (default: the class's).

        Raises
        ------
        MessageError
            When the dialect cannot encode the message.
        """
        fields = message.fields if isinstance(message, Message) else message
        data = (dialect or cls.dialect).encode(dict(fields))
        return cls(length=len(data), data=data)


class ISO8583LE(ISO8583):
    """ISO 8583 behind a 2-byte little-endian length header (framing ``le2``).

    Not bound to any port on import: use :func:`bind_port` with ``layer=ISO8583LE``.
    """

    name = "ISO 8583 (LE length)"
    fields_desc = [
        FieldLenField("length", None, length_of="data", fmt="<H"),
        StrLenField("data", b"", length_from=lambda pkt: pkt.length),
    ]


def bind_port(port: int, layer: type[ISO8583] = ISO8583) -> None:
    """Dissect TCP traffic to or from ``port`` as ``layer``.

    Parameters
    ----------
    port : int
        The host's TCP port (1..65535).
    layer : type
        :class:`ISO8583` (big-endian length) or :class:`ISO8583LE`.

    Examples
    --------
    >>> bind_port(9000)
    >>> unbind_port(9000)
    """
    _check_port(port)
    bind_layers(TCP, layer, sport=port)
    bind_layers(TCP, layer, dport=port)


def unbind_port(port: int, layer: type[ISO8583] = ISO8583) -> None:
    """Undo :func:`bind_port`."""
    _check_port(port)
    split_layers(TCP, layer, sport=port)
    split_layers(TCP, layer, dport=port)


def _check_port(port: int) -> None:
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 0xFFFF:
        raise ValueError(f"TCP port {port!r} out of range; allowed: 1..65535")


bind_port(DEFAULT_PORT)
