"""Data Object Lists (PDOL, CDOL1, CDOL2, DDOL, TDOL): parsing and building the data they ask for.

A card tells the terminal which terminal data it wants, and in what order and
size, with a DOL: a list of tag + length pairs and no values (EMV 4.4 Book 3
section 5.4). The terminal answers with the values concatenated, each resized to
the length asked for:

* numeric (``n``) values are padded with leading zeros or lose their leftmost bytes;
* compressed numeric (``cn``) values are padded with trailing ``FF`` or cut on the right;
* everything else is padded with trailing zeros or cut on the right;
* a tag the terminal does not know, has no value for, or that names a constructed
  object is sent as zeros of the length asked for.

Formats come from :mod:`sim.emv.tags`; a DOL is not TLV, so it has its own small parser.

Examples
--------
>>> dol = parse_dol(bytes.fromhex("9F02065F2A029A039F3704"))
>>> [(e.tag, e.length) for e in dol]
[('9F02', 6), ('5F2A', 2), ('9A', 3), ('9F37', 4)]
>>> build_dol_data(dol, {"9F02": bytes.fromhex("1000"), "5F2A": bytes.fromhex("0978")}).hex().upper()
'000000001000097800000000000000'
>>> encode_dol(dol).hex().upper()
'9F02065F2A029A039F3704'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Mapping

from .tags import TAGS

__all__ = ["DolEntry", "DolError", "build_dol_data", "build_dol_values", "encode_dol", "fit", "parse_dol",
           "split_dol_data"]


class DolError(ValueError):
    """A DOL is malformed (truncated tag or length, invalid tag byte) or data does not fit it.

    Attributes
    ----------
    offset : int
        Where in the DOL (or the data) the problem starts.
    """

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True, slots=True)
class DolEntry:
    """One DOL item: the tag (upper-case hex) and the number of bytes asked for."""

    tag: str
    length: int
    fmt: str = field(init=False, repr=False, compare=False)
    """How a value is resized (``n``, ``cn``, ``b``), or ``constructed`` (always sent as zeros):
    worked out once per entry, not once per value sent."""

    def __post_init__(self) -> None:
        if int(self.tag[:2], 16) & 0x20:
            fmt = "constructed"
        else:
            fmt = TAGS[self.tag].fmt if self.tag in TAGS else "b"
        object.__setattr__(self, "fmt", fmt)

    @property
    def constructed(self) -> bool:
        """True when the tag names a constructed object (bit 6 of its first byte)."""
        return self.fmt == "constructed"

    def encode(self) -> bytes:
        """Tag bytes followed by the one-byte length."""
        return bytes.fromhex(self.tag) + bytes([self.length])


def _read_tag(raw: bytes, offset: int) -> tuple[str, int]:
    first = raw[offset]
    if first in (0x00, 0xFF):
        raise DolError(f"DOL byte {offset}: {first:02X} cannot start a tag", offset)
    end = offset + 1
    if first & 0x1F == 0x1F:
        while True:
            if end >= len(raw):
                raise DolError(f"DOL byte {offset}: tag {raw[offset:end].hex().upper()} is truncated", offset)
            if end - offset >= 3:
                raise DolError(f"DOL byte {offset}: tag longer than 3 bytes", offset)
            more = raw[end] & 0x80
            end += 1
            if not more:
                break
    return raw[offset:end].hex().upper(), end


def parse_dol(raw: bytes) -> tuple[DolEntry, ...]:
    """Split a DOL into entries.

    Raises
    ------
    DolError
        A tag or its length runs past the end, or a byte cannot start a tag.
    """
    return _parsed(bytes(raw))


@lru_cache(maxsize=1024)
def _parsed(data: bytes) -> tuple[DolEntry, ...]:
    """:func:`parse_dol`, remembered: a card sends the same PDOL, CDOL1 and CDOL2 bytes to
    every transaction, and the entries are immutable, so all of them can share one parse."""
    entries = []
    offset = 0
    while offset < len(data):
        tag, offset = _read_tag(data, offset)
        if offset >= len(data):
            raise DolError(f"DOL entry {tag} has no length byte", offset)
        entries.append(DolEntry(tag, data[offset]))
        offset += 1
    return tuple(entries)


def encode_dol(entries: tuple[DolEntry, ...] | list[DolEntry]) -> bytes:
    """The DOL bytes for ``entries`` (the inverse of :func:`parse_dol`)."""
    return b"".join(entry.encode() for entry in entries)


def fit(tag: str, value: bytes, length: int) -> bytes:
    """Resize ``value`` to ``length`` bytes by the rule for the tag's format (module docstring)."""
    if len(value) == length:
        return bytes(value)
    return _resize(TAGS[tag].fmt if tag in TAGS else "b", value, length)


def _resize(fmt: str, value: bytes, length: int) -> bytes:
    if fmt == "n":
        return bytes(length - len(value)) + value if len(value) < length else value[len(value) - length :]
    if fmt == "cn":
        return value + b"\xff" * (length - len(value)) if len(value) < length else value[:length]
    return value + bytes(length - len(value)) if len(value) < length else value[:length]


def build_dol_data(entries: tuple[DolEntry, ...] | list[DolEntry], values: Mapping[str, bytes]) -> bytes:
    """The data a card asked for with ``entries``, from the terminal's ``values`` (tag -> bytes).

    Missing tags and constructed tags are sent as zeros, as EMV requires, so this
    never fails for a parsed DOL.
    """
    return build_dol_values(entries, values)[0]


def build_dol_values(
    entries: tuple[DolEntry, ...] | list[DolEntry], values: Mapping[str, bytes]
) -> tuple[bytes, dict[str, bytes]]:
    """:func:`build_dol_data` and, beside it, what :func:`split_dol_data` would cut back out of it.

    The kernel needs both for a GENERATE AC (the data to send, and the very values
    sent for DE55); the value of each entry is already at hand while building, so the
    data need not be cut up again.
    """
    parts = []
    sent: dict[str, bytes] = {}
    for entry in entries:
        length = entry.length
        value = values.get(entry.tag)
        if value is None or entry.fmt == "constructed":
            part = bytes(length)
        elif len(value) == length:
            part = bytes(value)
        else:
            part = _resize(entry.fmt, bytes(value), length)
        parts.append(part)
        if entry.tag not in sent:
            sent[entry.tag] = part
    return b"".join(parts), sent


def split_dol_data(entries: tuple[DolEntry, ...] | list[DolEntry], data: bytes) -> dict[str, bytes]:
    """Cut DOL data back into ``{tag: value}`` (the values exactly as sent).

    The kernel uses it to put in DE55 the very bytes a cryptogram was computed over.
    A tag listed twice keeps its first value.

    Raises
    ------
    DolError
        ``data`` is not exactly as long as the DOL asks for.
    """
    total = sum(entry.length for entry in entries)
    if len(data) != total:
        raise DolError(f"DOL data is {len(data)} bytes; the DOL asks for {total}", min(len(data), total))
    out: dict[str, bytes] = {}
    offset = 0
    for entry in entries:
        out.setdefault(entry.tag, bytes(data[offset : offset + entry.length]))
        offset += entry.length
    return out
