"""Initiate application processing and read application data (EMV Book 3 sections 10.1-10.2).

GET PROCESSING OPTIONS answers with the AIP (82) and the AFL (94), either in a
format 1 template (``80``: AIP then AFL) or format 2 (``77`` with tagged objects).
The AFL lists the records to read and which of them are signed for offline data
authentication. Records of SFI 1 to 10 must be ``70`` templates; a data object
found twice, a record that does not decode, or a missing mandatory object ends the
transaction (FB-05): the card's data cannot be trusted.

Examples
--------
>>> aip, afl, extra = parse_gpo_response(bytes.fromhex("800A18000801010010010201"))
>>> aip.hex(), [(e.sfi, e.first, e.last, e.oda_count) for e in afl]
('1800', [(1, 1, 1, 0), (2, 1, 2, 1)])
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .. import tlv

__all__ = [
    "AflEntry",
    "CardDataError",
    "MANDATORY_TAGS",
    "merge_record",
    "missing_mandatory",
    "parse_afl",
    "parse_gpo_response",
]

MANDATORY_TAGS: tuple[str, ...] = ("5A", "5F24", "8C", "8D")
"""Data objects a card must supply in its records (Book 3 7.2): PAN, expiry, CDOL1, CDOL2."""


class CardDataError(ValueError):
    """The card's data is unusable: the transaction is terminated (not fallen back)."""


@dataclass(frozen=True, slots=True)
class AflEntry:
    """One AFL entry: short file, first and last record, how many from the first are signed."""

    sfi: int
    first: int
    last: int
    oda_count: int

    def records(self) -> range:
        """Record numbers to read."""
        return range(self.first, self.last + 1)

    def signed(self, record: int) -> bool:
        """True when ``record`` is part of the static data to be authenticated."""
        return record < self.first + self.oda_count


def parse_afl(afl: bytes) -> tuple[AflEntry, ...]:
    """Split and check the AFL (four bytes per entry).

    Raises
    ------
    CardDataError
        Not a multiple of 4 bytes, SFI 0 or above 30, first record 0, last before
        first, or more signed records than records.
    """
    raw = bytes(afl)
    if len(raw) % 4:
        raise CardDataError(f"AFL is {len(raw)} bytes; entries are 4 bytes each")
    entries = []
    for offset in range(0, len(raw), 4):
        sfi_byte, first, last, count = raw[offset : offset + 4]
        sfi = sfi_byte >> 3
        if not 1 <= sfi <= 30 or sfi_byte & 0x07:
            raise CardDataError(f"AFL entry {offset // 4 + 1}: SFI byte {sfi_byte:02X} is not a valid SFI")
        if first == 0 or last < first or count > last - first + 1:
            raise CardDataError(f"AFL entry {offset // 4 + 1}: records {first}-{last} with {count} signed is invalid")
        entries.append(AflEntry(sfi, first, last, count))
    return tuple(entries)


def parse_gpo_response(data: bytes) -> tuple[bytes, tuple[AflEntry, ...], dict[str, Any]]:
    """AIP, AFL and any other objects of a GPO answer (format 1 ``80`` or format 2 ``77``).

    Raises
    ------
    CardDataError
        Malformed TLV, an unknown template, or AIP/AFL missing or malformed.
    """
    aip, afl, extra = _parsed_gpo_response(bytes(data))
    return aip, afl, tlv.copy_objects(extra)


@lru_cache(maxsize=1024)
def _parsed_gpo_response(data: bytes) -> tuple[bytes, tuple[AflEntry, ...], dict[str, Any]]:
    """:func:`parse_gpo_response`, remembered: a card answers GPO with the same AIP and AFL in
    every transaction. Never handed out as is: the caller gets its own ``extra``."""
    try:
        decoded = tlv.decode(data)
    except tlv.TlvError as exc:
        raise CardDataError(f"GPO answer: {exc}") from None
    extra: dict[str, Any] = {}
    if "80" in decoded and isinstance(decoded["80"], bytes):
        body = decoded["80"]
        if len(body) < 2:
            raise CardDataError("GPO format 1 answer shorter than the AIP")
        aip, afl = body[:2], body[2:]
    elif "77" in decoded and isinstance(decoded["77"], dict):
        template = decoded["77"]
        aip, afl = template.get("82"), template.get("94")
        if not isinstance(aip, bytes) or len(aip) != 2:
            raise CardDataError("GPO format 2 answer has no 2-byte AIP (82)")
        if not isinstance(afl, bytes):
            raise CardDataError("GPO format 2 answer has no AFL (94)")
        extra = {k: v for k, v in template.items() if k not in ("82", "94")}
    else:
        raise CardDataError("GPO answer is neither a format 1 (80) nor a format 2 (77) template")
    return bytes(aip), parse_afl(afl), extra


def merge_record(card_data: dict[str, Any], sfi: int, record: int, data: bytes) -> None:
    """Add one READ RECORD answer's objects to ``card_data``.

    Raises
    ------
    CardDataError
        The record does not decode, is not a ``70`` template (SFI 1-10), or repeats
        an object already read.
    """
    try:
        decoded = tlv.decode_view(data)
    except tlv.TlvError as exc:
        raise CardDataError(f"SFI {sfi} record {record}: {exc}") from None
    template = decoded.get("70")
    if sfi <= 10 and (len(decoded) != 1 or not isinstance(template, dict)):
        raise CardDataError(f"SFI {sfi} record {record} is not a '70' template")
    objects = template if isinstance(template, dict) else decoded
    for tag, value in objects.items():
        if tag in card_data:
            raise CardDataError(f"SFI {sfi} record {record}: data object {tag} appears twice")
        card_data[tag] = tlv.copy_objects(value) if type(value) is dict else value  # card_data is the caller's own


def missing_mandatory(card_data: dict[str, Any]) -> list[str]:
    """Mandatory tags absent from what was read."""
    return [tag for tag in MANDATORY_TAGS if not isinstance(card_data.get(tag), bytes) or not card_data[tag]]
