"""Processing restrictions (EMV Book 3 section 10.4): may this card be used here, today, for this?

Three checks, each setting a TVR bit and never stopping the transaction by itself
(what a bit leads to is the action analysis's business):

* application version: card 9F08 differs from the terminal's 9F09 -> 2:80;
* application usage control (9F07) against the transaction type, domestic or
  international (issuer country 5F28 vs terminal country 9F1A) and ATM or not -> 2:10;
* dates: effective date (5F25) in the future -> 2:20, expiry date (5F24) past -> 2:40.

EMV dates are YYMMDD with YY 00-49 meaning 20YY and 50-99 meaning 19YY.

Examples
--------
>>> from datetime import date
>>> card = {"5F24": bytes.fromhex("231231"), "5F25": bytes.fromhex("201201"), "9F07": bytes.fromhex("FF00")}
>>> check(card, terminal_version=None, country="250", transaction_type="00", terminal_type="22", today=date(2026, 3, 15))
['expired_application']
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from typing import Any, Mapping

__all__ = ["check", "emv_date", "usage_allowed"]

_ATM_TYPES = {"14", "15", "16"}
"""Terminal types of unattended financial-institution terminals: ATMs."""


def emv_date(value: bytes) -> date | None:
    """An ``n6`` YYMMDD date (5F24, 5F25, 9A) as a :class:`date`; ``None`` when it is not a real date."""
    return _emv_date(bytes(value))


@lru_cache(maxsize=4096)
def _emv_date(value: bytes) -> date | None:
    """:func:`emv_date`, remembered: a card's expiry and effective dates come back in every transaction."""
    text = value.hex()
    if len(text) != 6 or not text.isdigit():
        return None
    year = int(text[:2])
    try:
        return date((2000 if year < 50 else 1900) + year, int(text[2:4]), int(text[4:6]))
    except ValueError:
        return None


def usage_allowed(
    auc: bytes, *, domestic: bool | None, transaction_type: str, atm: bool
) -> bool:
    """True when the Application Usage Control allows this use (Book 3 10.4.2).

    ``domestic`` is ``None`` when the card gives no issuer country: only the ATM
    check applies then.
    """
    if len(auc) != 2:
        return False
    first, second = auc[0], auc[1]
    if atm and not first & 0x02:
        return False
    if not atm and not first & 0x01:
        return False
    if domestic is None:
        return True
    if transaction_type == "01":  # cash
        return bool(first & (0x80 if domestic else 0x40))
    if transaction_type in ("00", "09"):  # goods or services
        if not first & ((0x20 | 0x08) if domestic else (0x10 | 0x04)):
            return False
        if transaction_type == "09" and not second & (0x80 if domestic else 0x40):
            return False
    return True


def check(
    card: Mapping[str, Any],
    *,
    terminal_version: bytes | None,
    country: str,
    transaction_type: str,
    terminal_type: str,
    today: date,
) -> list[str]:
    """TVR bit names the processing restrictions set, in TVR order."""
    bits: list[str] = []
    card_version = card.get("9F08")
    if isinstance(card_version, bytes) and terminal_version is not None and card_version != terminal_version:
        bits.append("application_versions_differ")
    auc = card.get("9F07")
    if isinstance(auc, bytes):
        issuer_country = card.get("5F28")
        domestic = None
        if isinstance(issuer_country, bytes) and issuer_country:
            domestic = issuer_country.hex()[-3:] == country
        if not usage_allowed(auc, domestic=domestic, transaction_type=transaction_type, atm=terminal_type in _ATM_TYPES):
            bits.append("service_not_allowed")
    effective = card.get("5F25")
    if isinstance(effective, bytes):
        start = emv_date(effective)
        if start is None or today < start:
            bits.append("application_not_yet_effective")
    expiry = card.get("5F24")
    end = emv_date(expiry) if isinstance(expiry, bytes) else None
    if end is None or today > end:
        bits.append("expired_application")
    order = ["application_versions_differ", "expired_application", "application_not_yet_effective", "service_not_allowed"]
    return sorted(bits, key=order.index)
