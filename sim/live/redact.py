"""What the replay log may keep of a request: everything the core decides on, no track or PIN data.

The replay log (:mod:`.store`) rebuilds the host's state by running every stored
request through a fresh core, so it must keep what the core decides on. SEC-03 says
track data, CVV and PIN blocks are not kept after the authorization. The two meet
because the core uses only part of those fields:

* **DE35** (track 2): the core reads the PAN, the expiry (YYMM after the separator)
  and checks the shape. Kept: PAN, separator, expiry, service code -- what a stand-in
  advice carries too (PCI DSS allows storing those). The discretionary data (CVV,
  PVV) goes. A value without a separator is not a track: it is kept when it is
  nothing but up to 19 digits (a PAN), else replaced by ``REDACTED``.
* **DE45** (track 1): the core does not read it; dropped.
* **DE52** (PIN block): the core checks its shape and then whether it holds the
  card's PIN. Stored instead of it: the outcome of that check (``correct``,
  ``wrong``, ``unreadable``, ``malformed``, ``no-card``), computed here with the same
  test key and the card set. Replay turns the outcome back into a PIN block that
  gives the same outcome (:func:`restore_request`), in memory only.
* **DE55** tags 56, 57, 9F1F, 9F20, 9F6B (track data inside chip data): removed.

PANs stay in clear in the replay log: the core needs them to find the accounts.
The state directory therefore holds test card numbers (see :mod:`.store`).

Replay checks that every replayed answer equals the stored one, so a core that one
day starts reading a field this module drops is caught at the next start, not
silently mis-rebuilt.

Examples
--------
>>> strip_track2("4761739001010010D28122011234567899")
'4761739001010010D2812201'
>>> strip_track2("%B4761^ME/YOU^2812")
'REDACTED'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from ..core.cards import CardSet
from ..core.crypto import CryptoError, PinResult, encrypt_pin_block, verify_pin_block
from ..emv import tlv
from ..iso8583.message import Message

TRACK_SEPARATORS = ("D", "=", "d")
SECRET_ICC_TAGS = ("56", "57", "9F1F", "9F20", "9F6B")
"""DE55 tags carrying track data (track 1/2 equivalents, discretionary data)."""

PIN_OUTCOMES = ("correct", "wrong", "unreadable", "malformed", "no-card")
"""What the replay log keeps of a DE52 PIN block."""

_HEX = frozenset("0123456789ABCDEFabcdef")


def strip_track2(track: str) -> str:
    """Track 2 without its discretionary data: PAN, separator, YYMM, service code."""
    for sep in TRACK_SEPARATORS:
        if sep in track:
            pan, _, rest = track.partition(sep)
            return f"{pan}{sep}{rest[:7]}"
    if track.isascii() and track.isdigit() and len(track) <= 19:
        return track
    return "REDACTED"


def _pin_outcome(block: str, pan: str | None, cards: CardSet) -> str:
    if not (len(block) == 16 and all(c in _HEX for c in block)):
        return "malformed"
    card = cards.by_pan(pan) if pan else None
    if card is None:
        return "no-card"
    result = verify_pin_block(block, card.pan, card.pin)
    return {PinResult.CORRECT: "correct", PinResult.WRONG: "wrong"}.get(result, "unreadable")


def _other_pin(pin: str) -> str:
    """A PIN of the same length that differs in every digit."""
    return "".join(str((int(d) + 1) % 10) for d in pin)


def _unreadable_block(pan: str, pin: str) -> str:
    """The first of a fixed sequence of blocks that does not decode for ``pan`` (deterministic)."""
    for n in range(0xFFFFFFFFFFFFFFFF, 0, -1):
        block = f"{n:016X}"
        if verify_pin_block(block, pan, pin) is PinResult.UNREADABLE:
            return block
    raise CryptoError("no unreadable PIN block found")  # pragma: no cover - the first candidates do


def pin_block_for(outcome: str, pan: str | None, cards: CardSet) -> str:
    """A DE52 value that the core's PIN check turns into ``outcome`` (built for replay, never stored)."""
    if outcome == "malformed":
        return "X" * 16
    card = cards.by_pan(pan) if pan else None
    if outcome == "no-card" or card is None:
        return "0" * 16
    if outcome == "correct":
        return encrypt_pin_block(card.pin, card.pan)
    if outcome == "wrong":
        return encrypt_pin_block(_other_pin(card.pin), card.pan)
    if outcome == "unreadable":
        return _unreadable_block(card.pan, card.pin)
    raise ValueError(f"PIN outcome {outcome!r}; allowed: {', '.join(PIN_OUTCOMES)}")


def _strip_icc(value: str) -> str:
    try:
        objects = tlv.decode(bytes.fromhex(value))
    except (ValueError, tlv.TlvError):
        return value  # malformed DE55: the core answers 30 on it, the value is kept as received
    if not any(tag in objects for tag in SECRET_ICC_TAGS):
        return value
    kept = {tag: data for tag, data in objects.items() if tag not in SECRET_ICC_TAGS}
    return tlv.encode(kept).hex().upper()


@dataclass(frozen=True, slots=True)
class Redacted:
    """A request as the replay log keeps it.

    Attributes
    ----------
    fields : dict
        The fields to store (bitmaps left out; the dialect recomputes them).
    pin : str or None
        The PIN check outcome standing in for DE52, or ``None`` when there was no DE52.
    changed : bool
        False when nothing was removed: the received bytes can be stored as they are.
    """

    fields: Mapping[str, str]
    pin: str | None
    changed: bool


def redact_request(fields: Mapping[str, str], cards: CardSet) -> Redacted:
    """Strip track and PIN data from a request's fields; see the module notes."""
    if not ("35" in fields or "45" in fields or "52" in fields or "55" in fields):
        return Redacted(fields, None, False)
    out = {k: v for k, v in fields.items() if k not in ("p", "1", "45", "52")}
    changed = "45" in fields or "52" in fields
    pin = None
    if "52" in fields:
        pin = _pin_outcome(fields["52"], Message(dict(fields)).pan, cards)
    if "35" in fields:
        out["35"] = strip_track2(fields["35"])
        changed = changed or out["35"] != fields["35"]
    if "55" in fields:
        out["55"] = _strip_icc(fields["55"])
        changed = changed or out["55"] != fields["55"]
    return Redacted(out, pin, changed)


def restore_request(fields: dict[str, str], pin: str | None, cards: CardSet) -> dict[str, str]:
    """The fields to replay: the stored ones plus a PIN block giving the recorded outcome."""
    if pin is not None:
        fields["52"] = pin_block_for(pin, Message(dict(fields)).pan, cards)
    return fields
