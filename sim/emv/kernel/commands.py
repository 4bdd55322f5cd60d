"""The C-APDUs the kernel sends and what it reads back (EMV Book 3 section 6.5).

Builders return bytes (through :func:`sim.emv.apdu.build`, the one APDU encoder);
:func:`split` turns an R-APDU into data and status word. Every command that
expects data carries ``Le = 00``; under T=0 a card may still answer ``61xx`` or
``6Cxx``, which the transaction handles (GET RESPONSE, resend with Le).

Examples
--------
>>> select(b"1PAY.SYS.DDF01").hex().upper()
'00A404000E315041592E5359532E444446303100'
>>> read_record(1, 2).hex().upper()
'00B2020C00'
>>> generate_ac(CryptogramType.ARQC, bytes(2)).hex().upper()
'80AE800002000000'
>>> plaintext_pin_block("1234").hex().upper()
'241234FFFFFFFFFF'
>>> split(bytes.fromhex("6F009000"))
Response(data=b'o\\x00', sw=36864)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from functools import lru_cache

from ..apdu import build
from .. import tlv

__all__ = [
    "CryptogramType",
    "PSE",
    "Response",
    "external_authenticate",
    "generate_ac",
    "get_data",
    "get_processing_options",
    "get_response",
    "GenerateAcAnswer",
    "parse_generate_ac",
    "internal_authenticate",
    "plaintext_pin_block",
    "read_record",
    "select",
    "split",
    "verify_plaintext_pin",
]

PSE = b"1PAY.SYS.DDF01"
"""The Payment System Environment directory name (contact)."""


class CryptogramType(IntEnum):
    """GENERATE AC reference control (P1 bits 8-7) and CID (9F27) bits 8-7."""

    AAC = 0x00
    TC = 0x40
    ARQC = 0x80

    @classmethod
    def of_cid(cls, cid: int) -> "CryptogramType | None":
        """The cryptogram type a CID names, or ``None`` for the RFU value (``C0``)."""
        return _BY_CID.get(cid & 0xC0)


_BY_CID: dict[int, CryptogramType] = {kind.value: kind for kind in CryptogramType}
"""CID bits 8-7 to :class:`CryptogramType` (a dict lookup; calling the enum searches)."""


@dataclass(frozen=True, slots=True)
class Response:
    """An R-APDU: response data and the status word."""

    data: bytes
    sw: int

    @property
    def ok(self) -> bool:
        """True for ``9000``."""
        return self.sw == 0x9000

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    @property
    def sw_hex(self) -> str:
        """The status word as four hex digits, as logs write it."""
        return f"{self.sw:04X}"


def split(rapdu: bytes) -> Response:
    """Data and SW of an R-APDU; raises ``ValueError`` when it has fewer than 2 bytes."""
    raw = bytes(rapdu)
    if len(raw) < 2:
        raise ValueError(f"an R-APDU has at least 2 bytes (SW1 SW2), got {len(raw)}")
    return Response(raw[:-2], int.from_bytes(raw[-2:], "big"))


@lru_cache(maxsize=256)
def select(name: bytes, *, next_occurrence: bool = False) -> bytes:
    """SELECT by DF name (P1 04); P2 02 asks for the next application matching a partial name.

    This builder and the other ones of commands without variable data (READ RECORD,
    GET DATA, GET RESPONSE) remember their bytes: a terminal sends the same few of
    them in every transaction.
    """
    return build(0x00, 0xA4, 0x04, 0x02 if next_occurrence else 0x00, name, le=0)


@lru_cache(maxsize=256)
def read_record(sfi: int, record: int) -> bytes:
    """READ RECORD ``record`` of short file ``sfi`` (P2 = SFI << 3 | 4)."""
    return build(0x00, 0xB2, record, (sfi << 3) | 0x04, le=0)


def get_processing_options(pdol_data: bytes) -> bytes:
    """GET PROCESSING OPTIONS with the PDOL data in a command template ``83``."""
    return build(0x80, 0xA8, 0x00, 0x00, b"\x83" + bytes([len(pdol_data)]) + pdol_data, le=0)


@lru_cache(maxsize=256)
def get_data(tag: str) -> bytes:
    """GET DATA for a two-byte tag (``9F36`` ATC, ``9F13`` last online ATC, ``9F17`` PIN try counter)."""
    value = bytes.fromhex(tag)
    return build(0x80, 0xCA, value[0], value[1], le=0)


def plaintext_pin_block(pin: str) -> bytes:
    """The plaintext offline PIN block: ``2N`` then the PIN digits, ``F``-padded to 8 bytes (Book 3 6.5.12)."""
    if not (pin.isascii() and pin.isdigit() and 4 <= len(pin) <= 12):
        raise ValueError("a PIN is 4 to 12 digits")
    return bytes.fromhex(f"2{len(pin):X}{pin}".ljust(16, "F"))


def verify_plaintext_pin(pin: str) -> bytes:
    """VERIFY with a plaintext PIN (P2 80)."""
    return build(0x00, 0x20, 0x00, 0x80, plaintext_pin_block(pin))


def internal_authenticate(ddol_data: bytes) -> bytes:
    """INTERNAL AUTHENTICATE with the DDOL data (dynamic data authentication)."""
    return build(0x00, 0x88, 0x00, 0x00, ddol_data, le=0)


def generate_ac(kind: CryptogramType, cdol_data: bytes) -> bytes:
    """GENERATE AC asking for ``kind`` over the CDOL data (no CDA)."""
    return build(0x80, 0xAE, int(kind), 0x00, cdol_data, le=0)


def external_authenticate(issuer_authentication_data: bytes) -> bytes:
    """EXTERNAL AUTHENTICATE with tag 91's value (cards whose AIP says issuer authentication is supported)."""
    return build(0x00, 0x82, 0x00, 0x00, issuer_authentication_data)


@lru_cache(maxsize=256)
def get_response(length: int) -> bytes:
    """GET RESPONSE for ``length`` bytes (T=0 after ``61xx``); 0 means 256."""
    return build(0x00, 0xC0, 0x00, 0x00, le=length)


@dataclass(frozen=True, slots=True)
class GenerateAcAnswer:
    """A GENERATE AC answer: the cryptogram type and the objects (9F27, 9F36, 9F26, 9F10)."""

    type: CryptogramType
    objects: dict[str, bytes] = field(default_factory=dict)


def parse_generate_ac(data: bytes) -> GenerateAcAnswer | None:
    """CID, ATC, cryptogram and IAD of a GENERATE AC answer (format 1 ``80`` or 2 ``77``).

    ``None`` when the answer is malformed: not TLV, no 9F27/9F36/9F26, wrong lengths,
    or a CID naming the RFU cryptogram type.
    """
    try:
        decoded = tlv.decode_view(data)
    except tlv.TlvError:
        return None
    if isinstance(decoded.get("80"), bytes):
        body = decoded["80"]
        if len(body) < 11:
            return None
        objects_ = {"9F27": body[0:1], "9F36": body[1:3], "9F26": body[3:11]}
        if len(body) > 11:
            objects_["9F10"] = body[11:]
    elif isinstance(decoded.get("77"), dict):
        template = decoded["77"]
        objects_ = {t: template[t] for t in ("9F27", "9F36", "9F26", "9F10", "9F4B") if isinstance(template.get(t), bytes)}
        if not all(t in objects_ for t in ("9F27", "9F36", "9F26")):
            return None
    else:
        return None
    if len(objects_["9F27"]) != 1 or len(objects_["9F26"]) != 8 or len(objects_["9F36"]) != 2:
        return None
    kind = CryptogramType.of_cid(objects_["9F27"][0])
    if kind is None:
        return None
    return GenerateAcAnswer(kind, objects_)
