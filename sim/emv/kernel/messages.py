"""The ISO 8583 messages a transaction sends or leaves owed: requests, advices, reversals.

Built with the catalogue constructors of :mod:`sim.iso8583.message` (no field is
formatted here that they can format). What goes where:

* DE55 of a chip request: :data:`ONLINE_TAGS`, with the CDOL1 values exactly as the
  card received them (the ARQC covers them; the issuer recomputes it from DE55),
  handed to the constructors as TLV bytes (:func:`sim.emv.tlv.encode_each`: the
  objects that recur from one transaction to the next are encoded once);
* DE2 PAN (from 5A or track 2), DE14 expiry (YYMM), DE23 PAN sequence number,
  DE35 track 2 (from tag 57 or the stripe; never kept in an advice or reversal),
  DE52 online PIN block (never kept either);
* an offline approval is owed to the host as a 0220 advice with DE39 ``Y1``/``Y3``;
* in dual-message mode (0100) an online approval is owed a 0220 completion naming
  the 0100 in DE90, which captures the hold;
* an approval the terminal cannot honour (card declined it, card pulled, no answer
  in time) is owed a 0400 reversal pointing at the request in DE90.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping

from ...iso8583.message import Message, OriginalData, advice, reversal, transaction_request
from .. import tlv

__all__ = ["ADVICE_TAGS", "CardFields", "ONLINE_TAGS", "build_advice", "build_completion", "build_request",
           "build_reversal", "icc_data", "next_stan"]

ONLINE_TAGS: tuple[str, ...] = (
    "9F26", "9F27", "9F10", "9F37", "9F36", "95", "9A", "9C", "9F02", "5F2A", "82", "9F1A",
    "9F03", "9F34", "9F33", "9F35", "84", "5F34", "9F09", "9B",
)
"""DE55 contents of a chip request (ONL-01 lists the first twelve), in this order."""

ADVICE_TAGS = ONLINE_TAGS + ("8A",)
"""DE55 of an advice: the same, the final cryptogram, and the ARC the terminal used."""


def next_stan(stan: int) -> int:
    """The STAN after ``stan`` (1..999999, wrapping past 999999 to 1)."""
    return stan % 999_999 + 1


@dataclass(frozen=True, slots=True)
class CardFields:
    """Card data for the message fields; the ``repr`` hides all of it."""

    pan: str = field(repr=False)
    expiry: str | None = field(default=None, repr=False)  # YYMM
    psn: str | None = field(default=None, repr=False)  # 2 digits
    track2: str | None = field(default=None, repr=False)


def icc_data(values: Mapping[str, bytes], tags: tuple[str, ...] = ONLINE_TAGS) -> dict[str, bytes]:
    """The DE55 objects among ``values`` in ``tags`` order (absent ones left out)."""
    return {tag: bytes(values[tag]) for tag in tags if values.get(tag) is not None}


def _common(card: CardFields, *, amount: int, currency: str, stan: int, when: datetime, terminal_id: str,
            merchant_id: str, entry_mode: str, processing_code: str) -> dict:
    return dict(
        amount=amount,
        currency=currency,
        stan=stan,
        transmitted=when,
        terminal_id=terminal_id,
        merchant_id=merchant_id,
        entry_mode=entry_mode,
        processing_code=processing_code,
        pan=card.pan,
        expiry=card.expiry,
        pan_sequence=f"0{card.psn}" if card.psn else None,
        local_time=f"{when.hour:02d}{when.minute:02d}{when.second:02d}",  # %H%M%S, without strftime's cost
        local_date=f"{when.month:02d}{when.day:02d}",  # %m%d
    )


def build_request(
    mti: str,
    card: CardFields,
    *,
    amount: int,
    currency: str,
    stan: int,
    when: datetime,
    terminal_id: str,
    merchant_id: str,
    entry_mode: str,
    processing_code: str = "000000",
    icc: Mapping[str, bytes] | None = None,
    pin_block: str | None = None,
) -> Message:
    """A 0100/0200 for this card read (DE35 only when track data was read)."""
    return transaction_request(
        mti,
        track2=card.track2,
        icc=tlv.encode_each(icc) if icc else None,
        pin_block=pin_block,
        **_common(card, amount=amount, currency=currency, stan=stan, when=when, terminal_id=terminal_id,
                  merchant_id=merchant_id, entry_mode=entry_mode, processing_code=processing_code),
    )


def build_advice(
    card: CardFields,
    *,
    response_code: str,
    amount: int,
    currency: str,
    stan: int,
    when: datetime,
    terminal_id: str,
    merchant_id: str,
    entry_mode: str,
    processing_code: str = "000000",
    icc: Mapping[str, bytes] | None = None,
    auth_code: str | None = None,
    original: Message | None = None,
) -> Message:
    """A 0220 for a completed transaction: no track data, no PIN block (SEC-03)."""
    extra = {"90": OriginalData(original.mti, original.stan or "", original.transmitted or "").encode()} if original else None
    return advice(
        response_code=response_code,
        auth_code=auth_code,
        icc=tlv.encode_each(icc) if icc else None,
        extra=extra,
        **_common(card, amount=amount, currency=currency, stan=stan, when=when, terminal_id=terminal_id,
                  merchant_id=merchant_id, entry_mode=entry_mode, processing_code=processing_code),
    )


def build_completion(request: Message, response: Message, card: CardFields, *, stan: int, when: datetime,
                     icc: Mapping[str, bytes] | None = None) -> Message:
    """The 0220 that captures an approved 0100 (dual message), DE90 naming it."""
    fields = request.fields
    return build_advice(
        card,
        response_code="00",
        amount=request.amount or 0,
        currency=fields["49"],
        stan=stan,
        when=when,
        terminal_id=fields["41"],
        merchant_id=fields.get("42", ""),
        entry_mode=fields["22"],
        processing_code=fields["3"],
        icc=icc,
        auth_code=response.auth_code,
        original=request,
    )


def build_reversal(request: Message, *, stan: int, when: datetime, reason: str | None = None,
                   auth_code: str | None = None) -> Message:
    """A 0400 of ``request`` for its full amount (PAN, DE22, DE23 carried; DE35/DE52 not)."""
    extra = {"38": auth_code} if auth_code else None
    return reversal(request, stan=stan, transmitted=when, reason=reason, extra=extra)
