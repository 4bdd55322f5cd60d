"""Consumer-presented QR codes of a wallet (EMVCo QR Code Specification for Payment Systems, CPM).

A wallet app shows a QR code; the terminal scans it and sends the card data it
carries to the host. The QR code text is the Base64 encoding of BER-TLV data: a
Payload Format Indicator (tag ``85``, ``"CPV01"``) followed by one Application
Template (``61``) per application, holding the ADF name (``4F``), the label
(``50``) and either the track 2 equivalent data (``57``) or the PAN (``5A``) with
its expiry (``5F24``, YYMMDD) and sequence number (``5F34``). Nothing in it lets the
terminal decide offline: a QR wallet payment is approved by the host or not at all
(OFF-09).

The TLV coding is pyemv's (:mod:`sim.emv.tlv`); Base64 is the standard library's.

Examples
--------
>>> text = wallet_qr(pan="4761739001010010", expiry="2812", psn="01", aid="A0000000031010", label="VISA")
>>> payment = parse_wallet_qr(text)
>>> payment.expiry, payment.psn, payment.aid, payment.label
('2812', '01', 'A0000000031010', 'VISA')
>>> payment
WalletPayment(476173******0010)
>>> parse_wallet_qr("not base64!")
Traceback (most recent call last):
...
sim.emv.qr.QrError: QR code is not Base64 text
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from ..iso8583.pretty import mask_pan
from . import tlv

__all__ = ["PAYLOAD_FORMAT", "QrError", "WalletPayment", "parse_wallet_qr", "wallet_qr"]

PAYLOAD_FORMAT = b"CPV01"
"""Tag 85 of a consumer-presented mode QR code, version 01."""


class QrError(ValueError):
    """A scanned QR code is not a consumer-presented payment code the terminal can use; says why."""


@dataclass(frozen=True, slots=True)
class WalletPayment:
    """The card data a wallet QR code carries; the ``repr`` masks the PAN and hides the rest."""

    pan: str = field(repr=False)
    expiry: str = field(repr=False)  # YYMM
    psn: str | None = field(default=None, repr=False)
    aid: str = ""
    label: str = ""

    def __repr__(self) -> str:
        return f"WalletPayment({mask_pan(self.pan)})"


def wallet_qr(*, pan: str, expiry: str, psn: str | None = None, aid: str, label: str = "") -> str:
    """The QR code text a wallet shows for one card (PAN, expiry YYMM, PSN, AID, label)."""
    digits = pan + ("F" if len(pan) % 2 else "")
    app: dict[str, bytes] = {"4F": bytes.fromhex(aid)}
    if label:
        app["50"] = label.encode("ascii")
    app["5A"] = bytes.fromhex(digits)
    app["5F24"] = bytes.fromhex(expiry + "31")
    if psn:
        app["5F34"] = bytes.fromhex(psn)
    return base64.b64encode(tlv.encode({"85": PAYLOAD_FORMAT, "61": app})).decode("ascii")


def parse_wallet_qr(text: str) -> WalletPayment:
    """The payment data of a scanned QR code (the first application template).

    Raises
    ------
    QrError
        Not Base64, not TLV, not payload format ``CPV01``, no application template,
        or no usable PAN and expiry in it.
    """
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise QrError("QR code is not Base64 text") from None
    try:
        objects = tlv.decode(raw)
    except tlv.TlvError as exc:
        raise QrError(f"QR code data is not BER-TLV ({exc})") from None
    if objects.get("85") != PAYLOAD_FORMAT:
        raise QrError(f"QR code payload format (85) is {objects.get('85')!r}; a wallet code says {PAYLOAD_FORMAT!r}")
    app = objects.get("61")
    if not isinstance(app, dict):
        raise QrError("QR code has no application template (61)")
    pan, expiry = _pan_and_expiry(app)
    if not (pan.isdigit() and 12 <= len(pan) <= 19) or not (expiry.isdigit() and len(expiry) == 4):
        raise QrError("QR code application template has no valid PAN and expiry (5A/5F24 or 57)")
    psn = app.get("5F34")
    aid = app.get("4F")
    label = app.get("50")
    return WalletPayment(
        pan, expiry, psn.hex()[-2:] if isinstance(psn, bytes) and psn else None,
        aid.hex().upper() if isinstance(aid, bytes) else "",
        label.decode("ascii", "replace") if isinstance(label, bytes) else "",
    )


def _pan_and_expiry(app: dict) -> tuple[str, str]:
    track = app.get("57")
    if isinstance(track, bytes) and track:
        text = track.hex().upper().rstrip("F")
        pan, _, rest = text.partition("D")
        return pan, rest[:4]
    pan_tag, expiry_tag = app.get("5A"), app.get("5F24")
    if isinstance(pan_tag, bytes) and isinstance(expiry_tag, bytes):
        return pan_tag.hex().upper().rstrip("F"), expiry_tag.hex()[:4]
    return "", ""
