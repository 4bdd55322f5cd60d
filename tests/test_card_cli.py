"""``possim cards``: the card set listing, as a table and as JSON, with masked PANs only."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from sim.core.cards import load_cards
from sim.emv.cards_cli import card_rows, cards_command


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("cards")(cards_command)
    app.command("other")(lambda: None)  # two commands, so "cards" is a subcommand as in possim
    return app


def test_json_listing_masks_pans_and_formats_balances():
    result = CliRunner().invoke(_app(), ["cards", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["label"]: row for row in json.loads(result.output)}
    assert set(rows) == set(load_cards().labels)
    assert rows["healthy"]["pan"] == "476173******0010"
    assert rows["healthy"]["balance"] == "10000.00 EUR"
    assert rows["jpy-healthy"]["balance"] == "1000000 JPY"
    assert rows["kwd-healthy"]["balance"] == "5000.000 KWD"
    assert rows["chip-mute"]["faults"] == ["chip_mute"] and rows["chip-mute"]["card_faults"] == ["ATR: mute @ always"]
    assert rows["magstripe-only"]["interface"] == "stripe"
    assert rows["lost"]["status"] == "lost"


def test_table_listing_never_shows_a_full_pan(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(_app(), ["cards"])
    assert result.exit_code == 0, result.output
    assert "476173******0010" in result.output and "chip_bad_tlv" in result.output
    for card in load_cards().cards:
        assert card.pan not in result.output


def test_rows_are_plain_data():
    rows = card_rows(load_cards())
    assert all(isinstance(row["balance_minor"], int) for row in rows)
    assert not any({"pin", "imk_ac", "emv"} & set(row) for row in rows)
    json.dumps(rows)
