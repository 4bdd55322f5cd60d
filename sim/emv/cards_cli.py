"""``possim cards``: the test card set at a glance (labels, masked PANs, balances, faults).

QA engineers pick cards by label in scenarios; this lists what each label is without
opening the TOML, and never shows a full PAN, a PIN or a key.
"""

from __future__ import annotations

import json as _json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ..core.cards import Card, CardSet, load_cards
from ..core.money import format_amount
from .faults import card_set_faults

__all__ = ["card_rows", "cards_command"]

console = Console()


def _interface(card: Card) -> str:
    if card.emv is None:
        return "stripe"
    return f"chip CVN {card.emv.cvn}"


def card_rows(cards: CardSet) -> list[dict[str, Any]]:
    """One plain dict per card, as ``--json`` prints it: masked PAN, formatted balance, faults."""
    rows = []
    for card in cards.cards:
        rows.append({
            "label": card.label,
            "pan": card.masked_pan,
            "issuer": card.issuer,
            "currency": card.currency,
            "status": card.status,
            "balance": format_amount(card.balance, card.currency_info),
            "balance_minor": card.balance,
            "interface": _interface(card),
            "faults": list(card.faults),
            "card_faults": [str(f) for f in card_set_faults(card)],
        })
    return rows


def cards_command(
    json: Annotated[bool, typer.Option("--json", help="Print the card set as JSON instead of a table.")] = False,
) -> None:
    """List the test cards: label, masked PAN, issuer, currency, status, balance and faults."""
    cards = load_cards()
    rows = card_rows(cards)
    if json:
        console.print_json(_json.dumps(rows))
        return
    table = Table(title=f"possim test cards ({cards.source})", title_justify="left")
    table.add_column("label", no_wrap=True)
    table.add_column("PAN", no_wrap=True, min_width=16)
    table.add_column("issuer")
    table.add_column("currency")
    table.add_column("status")
    table.add_column("balance", justify="right", no_wrap=True)
    table.add_column("interface")
    table.add_column("faults")
    for row in rows:
        table.add_row(
            row["label"], row["pan"], row["issuer"], row["currency"], row["status"],
            row["balance"], row["interface"], ", ".join(row["faults"]) or "-",
        )
    console.print(table)
