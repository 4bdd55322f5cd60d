"""Short C-APDUs and R-APDUs (ISO/IEC 7816-4, EMV Book 1 and Book 3 section 6).

The virtual card and anything that drives it (kernel, PC/SC bridge, tests) speak in
raw bytes; this module turns those bytes into a :class:`Command` and back, and names
the status words the card uses, so no one compares ``b"\\x6a\\x82"`` by hand.

Only short APDUs exist in EMV contact: Lc and Le are one byte each, ``Le = 00``
means "up to 256 bytes". Extended length is refused as a wrong length.

Examples
--------
>>> cmd = parse(bytes.fromhex("00A404000E315041592E5359532E444446303100"))
>>> cmd.ins == INS_SELECT, cmd.data, cmd.le, cmd.case
(True, b'1PAY.SYS.DDF01', 256, 4)
>>> build(0x80, 0xCA, 0x9F, 0x36, le=0).hex().upper()
'80CA9F3600'
>>> sw_of(bytes.fromhex("6A82"))
27266
>>> SW.NOT_FOUND.hex
'6A82'
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache

__all__ = [
    "ApduError",
    "Command",
    "INS_GENERATE_AC",
    "INS_GET_DATA",
    "INS_GET_PROCESSING_OPTIONS",
    "INS_GET_RESPONSE",
    "INS_INTERNAL_AUTHENTICATE",
    "INS_READ_RECORD",
    "INS_SELECT",
    "INS_VERIFY",
    "RECURRING_INS",
    "SW",
    "build",
    "parse",
    "parse_recurring",
    "response",
    "sw_of",
]

INS_SELECT = 0xA4
INS_READ_RECORD = 0xB2
INS_GET_PROCESSING_OPTIONS = 0xA8
INS_GET_DATA = 0xCA
INS_VERIFY = 0x20
INS_GENERATE_AC = 0xAE
INS_INTERNAL_AUTHENTICATE = 0x88
INS_GET_RESPONSE = 0xC0

RECURRING_INS = frozenset({INS_SELECT, INS_READ_RECORD, INS_GET_DATA, INS_GET_RESPONSE})
"""Instructions whose command bytes recur from one transaction to the next: SELECT an AID or
directory, READ RECORD, GET DATA, GET RESPONSE. They carry no transaction data and no secret
(unlike VERIFY with its PIN block, or GENERATE AC), so what is derived from their bytes alone
may be remembered and shared."""


class SW(IntEnum):
    """Status words the virtual card answers with (EMV Book 3 Annex / ISO 7816-4 5.1.3)."""

    OK = 0x9000
    WRONG_LENGTH = 0x6700
    SECURITY_NOT_SATISFIED = 0x6982
    AUTH_METHOD_BLOCKED = 0x6983
    CONDITIONS_NOT_SATISFIED = 0x6985
    WRONG_DATA = 0x6A80
    FUNCTION_NOT_SUPPORTED = 0x6A81
    NOT_FOUND = 0x6A82
    RECORD_NOT_FOUND = 0x6A83
    WRONG_P1P2 = 0x6A86
    DATA_NOT_FOUND = 0x6A88
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    NO_PRECISE_DIAGNOSIS = 0x6F00

    @property
    def hex(self) -> str:
        """Four upper-case hex digits, as logs and fault specs write status words."""
        return f"{int(self):04X}"


class ApduError(ValueError):
    """Bytes that are not a short C-APDU (too short, Lc disagreeing with the length, extended length)."""


@dataclass(frozen=True, slots=True)
class Command:
    """One parsed short C-APDU.

    Attributes
    ----------
    cla, ins, p1, p2 : int
        The header bytes.
    data : bytes
        Command data (empty for cases 1 and 2).
    le : int or None
        Expected response length, 1..256 (``Le = 00`` is 256), or ``None`` when the
        command carried no Le. Under T=0 a case 4 command travels without Le and the
        card answers ``61xx``; the card keys that behaviour on ``le is None``.
    """

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None

    @property
    def case(self) -> int:
        """ISO 7816-3 case: 1 no data no Le, 2 Le only, 3 data only, 4 data and Le."""
        if self.data:
            return 4 if self.le is not None else 3
        return 2 if self.le is not None else 1

    @property
    def p1p2(self) -> int:
        """P1 and P2 as one 16-bit number (GET DATA puts the tag there)."""
        return (self.p1 << 8) | self.p2

    def encode(self) -> bytes:
        """The command as bytes again (the inverse of :func:`parse`)."""
        return build(self.cla, self.ins, self.p1, self.p2, self.data, self.le)


def parse(apdu: bytes) -> Command:
    """Split a short C-APDU into header, data and Le.

    Raises
    ------
    ApduError
        Fewer than 4 bytes, an Lc that does not match the length, or extended length
        (Lc = 00 followed by more bytes). The card answers those with ``6700``.
    """
    raw = bytes(apdu)
    if len(raw) < 4:
        raise ApduError(f"a C-APDU has at least 4 header bytes, got {len(raw)}")
    cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
    body = raw[4:]
    if not body:
        return Command(cla, ins, p1, p2)
    if len(body) == 1:
        return Command(cla, ins, p1, p2, b"", body[0] or 256)
    lc = body[0]
    if lc == 0:
        raise ApduError("extended-length APDUs are not used in EMV (Lc = 00 followed by data)")
    if len(body) == 1 + lc:
        return Command(cla, ins, p1, p2, body[1:])
    if len(body) == 2 + lc:
        return Command(cla, ins, p1, p2, body[1:-1], body[-1] or 256)
    raise ApduError(f"Lc = {lc} but {len(body) - 1} bytes follow it")


def parse_recurring(apdu: bytes) -> Command:
    """:func:`parse`, remembered for the commands of :data:`RECURRING_INS` (any other is parsed afresh).

    A card answers the same few SELECT and READ RECORD commands in every
    transaction; a :class:`Command` is immutable, so one parse of each serves them all.
    Nothing with transaction data or a PIN block in it is kept.
    """
    if len(apdu) >= 4 and apdu[1] in RECURRING_INS:
        return _parsed(bytes(apdu))
    return parse(apdu)


@lru_cache(maxsize=1024)
def _parsed(apdu: bytes) -> Command:
    return parse(apdu)


def build(cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None) -> bytes:
    """Encode a short C-APDU; ``le=0`` or ``le=256`` both encode as ``Le = 00``.

    Raises
    ------
    ApduError
        A header byte out of 0..255, more than 255 data bytes, or Le out of 0..256.
    """
    for name, value in (("CLA", cla), ("INS", ins), ("P1", p1), ("P2", p2)):
        if not 0 <= value <= 0xFF:
            raise ApduError(f"{name} {value!r} is not a byte")
    if len(data) > 255:
        raise ApduError(f"short APDUs carry at most 255 data bytes, got {len(data)}")
    out = bytes((cla, ins, p1, p2))
    if data:
        out += bytes((len(data),)) + bytes(data)
    if le is not None:
        if not 0 <= le <= 256:
            raise ApduError(f"Le {le!r} is not 0..256")
        out += bytes((le & 0xFF,))
    return out


def response(data: bytes = b"", sw: int = SW.OK) -> bytes:
    """An R-APDU: response data followed by SW1 SW2."""
    return bytes(data) + int(sw).to_bytes(2, "big")


def sw_of(rapdu: bytes) -> int:
    """The status word (last two bytes) of an R-APDU as an int."""
    if len(rapdu) < 2:
        raise ApduError(f"an R-APDU has at least 2 bytes (SW1 SW2), got {len(rapdu)}")
    return int.from_bytes(rapdu[-2:], "big")
