"""Application selection data (EMV Book 1 section 12): FCIs, PSE directories, the candidate list.

The kernel asks the card for its Payment System Environment directory first and
falls back to trying every AID it supports; either way it ends up with a list of
candidates (applications both sides support) ordered by the card's priority.
This module reads the card's answers and applies the ordering and confirmation
rules; sending the commands is the transaction's job.

A directory record may hold several ``61`` entries, which a dict-based TLV decode
would merge, so :func:`objects` walks one level of BER-TLV keeping repeats and
hands each value to :mod:`sim.emv.tlv` (pyemv) for anything nested.

Examples
--------
>>> fci = parse_fci(bytes.fromhex("6F1A8407A0000000031010A50F500456495341870101"
...                                "9F38039F3704"))
>>> fci.df_name.hex().upper(), fci.label, fci.priority, fci.pdol.hex().upper()
('A0000000031010', 'VISA', 1, '9F3704')
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Callable, Generator, Iterator, Mapping

from .. import tlv
from . import commands
from .commands import Response
from .config import Application, TerminalConfig

__all__ = [
    "CardBlocked",
    "Candidate",
    "PPSE",
    "DirectoryEntry",
    "Fci",
    "SelectionError",
    "build_candidates",
    "objects",
    "order_candidates",
    "parse_directory_record",
    "parse_fci",
    "ppse_entries",
]


PPSE = b"2PAY.SYS.DDF01"
"""The Proximity Payment System Environment (contactless directory)."""


class SelectionError(ValueError):
    """An FCI or directory record that cannot be read (malformed TLV, missing template)."""


class CardBlocked(SelectionError):
    """SELECT PSE answered 6A81: the card is blocked; the transaction ends (no fallback)."""


def _tag_end(data: bytes, offset: int) -> int:
    first = data[offset]
    end = offset + 1
    if first & 0x1F == 0x1F:
        while end < len(data) and data[end] & 0x80:
            end += 1
        end += 1
    if end > len(data):
        raise SelectionError(f"tag at byte {offset} runs past the end")
    return end


def objects(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Top-level BER-TLV objects of ``data`` in order, repeats kept: ``(tag, value)``.

    Padding bytes ``00`` and ``FF`` between objects are skipped (ISO 7816-4 allows them).

    Raises
    ------
    SelectionError
        A tag or length runs past the end of ``data``.
    """
    raw = bytes(data)
    offset = 0
    while offset < len(raw):
        if raw[offset] in (0x00, 0xFF):
            offset += 1
            continue
        start = offset
        offset = _tag_end(raw, offset)
        tag = raw[start:offset].hex().upper()
        if offset >= len(raw):
            raise SelectionError(f"object {tag} has no length")
        first = raw[offset]
        offset += 1
        if first & 0x80:
            count = first & 0x7F
            if count == 0 or count > 3 or offset + count > len(raw):
                raise SelectionError(f"object {tag} has an unusable length")
            length = int.from_bytes(raw[offset : offset + count], "big")
            offset += count
        else:
            length = first
        if offset + length > len(raw):
            raise SelectionError(f"object {tag} says {length} bytes, {len(raw) - offset} remain")
        yield tag, raw[offset : offset + length]
        offset += length


def _decode(value: bytes) -> dict:
    try:
        return tlv.decode(value)
    except tlv.TlvError as exc:
        raise SelectionError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class Fci:
    """What a SELECT answered (a DDF or an ADF): the fields the kernel uses."""

    df_name: bytes
    label: str = ""
    priority: int | None = None
    confirmation_required: bool = False
    pdol: bytes | None = None
    sfi: int | None = None
    language: str = ""
    preferred_name: str = ""
    proprietary: Mapping[str, Any] | None = None
    """The ``A5`` template as decoded, read-only: one parse of an FCI serves every transaction."""


def _text(value: bytes | None) -> str:
    if not value:
        return ""
    return value.decode("ascii", "replace")


def _priority(value: bytes | None) -> tuple[int | None, bool]:
    if not value:
        return None, False
    byte = value[0]
    return (byte & 0x0F) or None, bool(byte & 0x80)


def parse_fci(data: bytes) -> Fci:
    """Read an FCI template (``6F``: ``84`` DF name, ``A5`` proprietary template).

    Raises
    ------
    SelectionError
        Not a ``6F`` template, malformed TLV, or no DF name.
    """
    return _parsed_fci(bytes(data))


@lru_cache(maxsize=256)
def _parsed_fci(data: bytes) -> Fci:
    """:func:`parse_fci`, remembered: a card answers every SELECT of a transaction with the
    same FCI bytes, and an :class:`Fci` is immutable (its ``A5`` template behind a read-only view)."""
    decoded = _decode(data)
    fci = decoded.get("6F")
    if not isinstance(fci, dict):
        raise SelectionError("SELECT answer is not an FCI template (6F)")
    name = fci.get("84")
    if not isinstance(name, bytes) or not name:
        raise SelectionError("FCI has no DF name (84)")
    prop = fci.get("A5") if isinstance(fci.get("A5"), dict) else {}
    priority, confirm = _priority(prop.get("87"))
    sfi = prop.get("88")
    return Fci(
        df_name=name,
        label=_text(prop.get("50")),
        priority=priority,
        confirmation_required=confirm,
        pdol=prop.get("9F38") if isinstance(prop.get("9F38"), bytes) else None,
        sfi=sfi[0] if isinstance(sfi, bytes) and sfi else None,
        language=_text(prop.get("5F2D")),
        preferred_name=_text(prop.get("9F12")),
        proprietary=MappingProxyType(prop),
    )


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """One ``61`` entry of a PSE directory record."""

    aid: bytes
    label: str = ""
    priority: int | None = None
    confirmation_required: bool = False
    preferred_name: str = ""


def parse_directory_record(data: bytes) -> list[DirectoryEntry]:
    """The application entries of one PSE directory record (``70`` holding ``61`` entries).

    Entries without an ADF name (``4F``) are skipped; other templates (DDF entries) too.

    Raises
    ------
    SelectionError
        Not a ``70`` template, or malformed TLV.
    """
    return list(_parsed_directory_record(bytes(data)))


@lru_cache(maxsize=256)
def _parsed_directory_record(data: bytes) -> tuple[DirectoryEntry, ...]:
    """:func:`parse_directory_record`, remembered: the PSE directory of a card is read in every
    transaction, and its entries are immutable."""
    top = list(objects(data))
    if not top or top[0][0] != "70":
        raise SelectionError("directory record is not a '70' template")
    entries = []
    for tag, value in objects(top[0][1]):
        if tag != "61":
            continue
        fields = _decode(value)
        aid = fields.get("4F")
        if not isinstance(aid, bytes) or not aid:
            continue
        priority, confirm = _priority(fields.get("87"))
        entries.append(
            DirectoryEntry(aid, _text(fields.get("50")), priority, confirm, _text(fields.get("9F12")))
        )
    return tuple(entries)


@dataclass(frozen=True, slots=True)
class Candidate:
    """An application both card and terminal support."""

    aid: bytes
    label: str
    priority: int | None
    confirmation_required: bool
    app: Application

    @property
    def display(self) -> str:
        """What the cardholder sees when choosing."""
        return self.label or self.app.label or self.aid.hex().upper()


def order_candidates(candidates: list[Candidate], config: TerminalConfig) -> list[Candidate]:
    """Order by priority (1 highest, none last, then as found) and drop what the terminal cannot confirm.

    A terminal that cannot ask the cardholder (no display, unattended) must not
    select an application whose priority indicator requires confirmation (Book 1 12.4).
    """
    usable = [c for c in candidates if config.cardholder_confirmation or not c.confirmation_required]
    indexed = list(enumerate(usable))
    indexed.sort(key=lambda item: (item[1].priority is None, item[1].priority or 0, item[0]))
    return [c for _, c in indexed]


def ppse_entries(data: bytes) -> list[tuple[bytes, str, int | None, bool]]:
    """Application entries of a PPSE FCI (``6F`` > ``A5`` > ``BF0C`` > ``61`` ...): ``(aid, label, priority, confirm)``.

    Returns ``[]`` for anything that does not read as a PPSE FCI (the kernel then
    tries its AID list).
    """
    try:
        for tag, fci in objects(data):
            if tag != "6F":
                continue
            for inner_tag, inner in objects(fci):
                if inner_tag != "A5":
                    continue
                for prop_tag, prop in objects(inner):
                    if prop_tag != "BF0C":
                        continue
                    wrapped = b"\x70" + bytes([len(prop)]) + prop if len(prop) < 0x80 else None
                    if wrapped is None:
                        return []
                    return [(e.aid, e.label, e.priority, e.confirmation_required)
                            for e in parse_directory_record(wrapped)]
    except SelectionError:
        return []
    return []


Exchange = Callable[[bytes, str], Generator[Any, Any, Response]]
"""The transaction's APDU helper: ``yield from exchange(apdu, purpose)`` gives the R-APDU."""


def _match(entries: list[tuple[bytes, str, int | None, bool]], config: TerminalConfig) -> list[Candidate]:
    out = []
    for aid, label, priority, confirm in entries:
        app = config.application(aid)
        if app is not None:
            out.append(Candidate(aid, label, priority, confirm, app))
    return out


def build_candidates(interface: str, config: TerminalConfig, exchange: Exchange) -> Generator[Any, Any, list[Candidate]]:
    """The candidate list (Book 1 12.3): the PSE (PPSE contactless) directory, else the AID list.

    Raises
    ------
    CardBlocked
        SELECT PSE answered 6A81.
    """
    found: list[Candidate] = []
    if interface == "contactless":
        response = yield from exchange(commands.select(PPSE), "SELECT PPSE")
        if response.ok:
            found = _match(ppse_entries(response.data), config)
    else:
        response = yield from exchange(commands.select(commands.PSE), "SELECT PSE")
        if response.sw == 0x6A81:
            raise CardBlocked("card blocked (SELECT PSE answered 6A81)")
        if response.ok:
            found = yield from _read_directory(response.data, config, exchange)
    if found:
        return found
    return (yield from _aid_list(config, exchange))


def _read_directory(fci_data: bytes, config: TerminalConfig, exchange: Exchange) -> Generator[Any, Any, list[Candidate]]:
    """Candidates from the PSE directory records (READ RECORD until 6A83)."""
    try:
        fci = parse_fci(fci_data)
    except SelectionError:
        return []
    if fci.sfi is None or not 1 <= fci.sfi <= 30:
        return []
    entries: list[DirectoryEntry] = []
    for record in range(1, 32):
        response = yield from exchange(commands.read_record(fci.sfi, record), "READ RECORD (directory)")
        if not response.ok:
            break
        try:
            entries.extend(parse_directory_record(response.data))
        except SelectionError:
            return []
    return _match([(e.aid, e.label, e.priority, e.confirmation_required) for e in entries], config)


def _aid_list(config: TerminalConfig, exchange: Exchange) -> Generator[Any, Any, list[Candidate]]:
    """Candidates by SELECTing each terminal AID (with partial selection and "next occurrence").

    A blocked application (6283) is not a candidate; partial selection then asks for
    the next occurrence.
    """
    found: list[Candidate] = []
    for app in config.applications:
        next_occurrence = False
        for _ in range(8):
            response = yield from exchange(commands.select(app.aid, next_occurrence=next_occurrence), "SELECT AID")
            if response.sw == 0x6283:
                if not app.partial_selection:
                    break
                next_occurrence = True
                continue
            if not response.ok:
                break
            try:
                fci = parse_fci(response.data)
            except SelectionError:
                break
            if app.matches(fci.df_name) and all(c.aid != fci.df_name for c in found):
                found.append(Candidate(fci.df_name, fci.label, fci.priority, fci.confirmation_required, app))
            if fci.df_name == app.aid or not app.partial_selection:
                break
            next_occurrence = True
    return found
