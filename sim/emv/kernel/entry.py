"""How the card was read: POS entry modes (DE22), track 2 and service codes.

DE22 is three digits: the PAN entry mode (positions 1-2) and the terminal's PIN
entry capability (position 3: ``1`` can accept PINs, ``2`` cannot). The PAN entry
modes possim uses:

=====  ==========================================================================
05     chip (contact)
07     chip (contactless)
90     magnetic stripe, full track read
80     magnetic stripe after the chip could not be read (technical fallback, FB-01)
01     keyed
79     keyed after the chip and the stripe could not be read (FB-02)
03     bar code: a wallet's consumer-presented QR code (OFF-09)
=====  ==========================================================================

The service code (track 2, three digits) says, in its first digit, whether the
card has a chip: ``2`` or ``6`` means "use the chip if the terminal can" (FB-03).

Examples
--------
>>> entry_mode("contact", pin_digit="1")
'051'
>>> entry_mode("magstripe", pin_digit="1", chip_failed=True)
'801'
>>> track = parse_track2("4761739001010010D28122010000000000")
>>> track.expiry, track.service_code, track.chip_card
('2812', '201', True)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...iso8583.pretty import mask_pan

__all__ = ["Track2", "TrackError", "entry_mode", "parse_track2", "track2_from_tag57"]

_PAN_MODES = {"contact": "05", "contactless": "07", "magstripe": "90", "manual": "01", "qr": "03"}
_FALLBACK_MODES = {"magstripe": "80", "manual": "79"}


def entry_mode(interface: str, *, pin_digit: str, chip_failed: bool = False) -> str:
    """DE22 for a card read on ``interface``; ``chip_failed`` marks technical fallback."""
    if chip_failed and interface in _FALLBACK_MODES:
        return _FALLBACK_MODES[interface] + pin_digit
    return _PAN_MODES[interface] + pin_digit


class TrackError(ValueError):
    """Track 2 data that does not have a PAN, a separator, an expiry and a service code."""


@dataclass(frozen=True, slots=True)
class Track2:
    """Track 2 split into its parts; the ``repr`` masks the PAN and hides the rest."""

    pan: str = field(repr=False)
    expiry: str = field(repr=False)
    service_code: str = field(repr=False)
    raw: str = field(repr=False)

    @property
    def chip_card(self) -> bool:
        """True when the service code says the card has a chip (first digit 2 or 6)."""
        return self.service_code[0] in "26"

    @property
    def pin_required(self) -> bool:
        """True when the service code's last digit asks for a PIN (0, 3, 5)."""
        return self.service_code[2] in "035"

    def __repr__(self) -> str:
        return f"Track2({mask_pan(self.pan)})"


def parse_track2(text: str) -> Track2:
    """Split track 2 (``PAN D YYMM SVC discretionary``; ``=`` separator too, ``F`` padding ignored).

    Raises
    ------
    TrackError
        No separator, a PAN that is not 12-19 digits, or fewer than 7 digits after it.
    """
    raw = text.strip().upper().rstrip("F")
    for sep in ("D", "="):
        if sep in raw:
            pan, _, rest = raw.partition(sep)
            break
    else:
        raise TrackError("track 2 has no separator (D or =)")
    if not (pan.isdigit() and 12 <= len(pan) <= 19):
        raise TrackError("track 2 PAN is not 12 to 19 digits")
    if len(rest) < 7 or not rest[:7].isdigit():
        raise TrackError("track 2 has no expiry date and service code after the separator")
    return Track2(pan, rest[:4], rest[4:7], f"{pan}D{rest}")


def track2_from_tag57(value: bytes) -> str:
    """Tag 57 (track 2 equivalent, hex nibbles with ``D`` separator, ``F`` padded) as DE35 text."""
    return bytes(value).hex().upper().rstrip("F")
