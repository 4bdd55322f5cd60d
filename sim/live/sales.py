"""Chip sale requests with valid ARQCs, built from the card set, for tests and ``possim bench host``.

The host only approves what a real terminal would send: a 0200 whose DE55 carries an
ARQC that the issuer's key verifies. These builders make such requests with the
card set's keys (:func:`sim.core.crypto.chip_data`), varying the unpredictable number
and ATC with the STAN so every request is distinct. They build what the terminal
kernel would send for ONL-01; they do not run the kernel (the live terminal does).

Examples
--------
>>> from datetime import datetime
>>> sale = chip_sale("healthy", 1250, stan=42, when=datetime(2026, 11, 22, 10, 30))
>>> sale.mti, sale.stan, sale.amount, "9F26" in sale.icc
('0200', '000042', 1250, True)
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from ..core import crypto
from ..core.cards import CardSet, load_cards
from ..iso8583.message import Message, network_request, transaction_request

_CARDS: CardSet | None = None


def cards() -> CardSet:
    """The shipped card set (loaded once)."""
    global _CARDS
    if _CARDS is None:
        _CARDS = load_cards()
    return _CARDS


def chip_sale(
    label: str,
    amount: int,
    *,
    stan: int,
    when: datetime,
    terminal_id: str = "TERM0001",
    mti: str = "0200",
    card_set: CardSet | None = None,
    processing_code: str = "000000",
) -> Message:
    """A chip sale (or 0100 authorization) of ``amount`` minor units on the card ``label``."""
    card_set = card_set or cards()
    card = card_set.card(label)
    issuer = card_set.issuer(card.issuer)
    icc: dict[str, Any] = crypto.chip_data(
        issuer, card, amount=amount, currency=card.currency_info.numeric, country="250", date=when,
        un=(0x1A2B0000 + stan % 0xFFFF).to_bytes(4, "big"), atc=1 + stan % 0xFFFE,
        transaction_type=processing_code[:2],
    )
    return transaction_request(
        mti, pan=card.pan, amount=amount, currency=card.currency_info.numeric, stan=stan,
        transmitted=when.strftime("%m%d%H%M%S"), terminal_id=terminal_id, entry_mode="051",
        expiry=card.expiry, pan_sequence=card.psn, icc=icc, processing_code=processing_code,
    )


def write_load_cards(path: str | Path, *, velocity_count: int = 100_000_000, balance: int = 10**15) -> Path:
    """Write a copy of the shipped card set fit for load: the same cards and keys, velocity
    limits and balances raised so that a long run is not declined 65 or 51 after a while.

    A benchmark or soak test measures the issuer's work, not the 21st sale of the day.
    """
    from ..core.cards import default_path
    from .traffic import LIFTED_WINDOW_S, lift_card_toml

    def lift(label: str, field: str, value: int) -> int | None:
        if field == "velocity_count":
            return velocity_count
        if field == "velocity_window_seconds":
            return LIFTED_WINDOW_S  # the issuer keeps each approval the window counts: a second's worth
        # raise the balances of funded cards only: "insufficient-funds" must still decline 51
        return balance if value >= 100_000 else None

    out = Path(path)
    out.write_text(lift_card_toml(Path(default_path()).read_text(encoding="utf-8"), lift), encoding="utf-8")
    return out


def echo(stan: int, when: datetime, terminal_id: str = "TERM0001") -> Message:
    """An 0800 echo test (DE70 301)."""
    return network_request("301", stan=stan, transmitted=when.strftime("%m%d%H%M%S"), terminal_id=terminal_id)
