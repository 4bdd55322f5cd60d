"""Printing: names for fields and tags, and no card data in clear."""

from __future__ import annotations

from sim.iso8583 import mask_pan, parse, pretty, summary
from sim.iso8583.pretty import masked
from sim.iso8583.samples import SAMPLE_PAN, sample_exchange, sample_sale


def test_mask_pan_keeps_first_six_last_four() -> None:
    assert mask_pan("4761739001010010") == "476173******0010"
    assert mask_pan("5413330089010012345") == "541333*********2345"
    assert mask_pan("12345") == "*2345"


def test_pretty_names_fields_and_tags_and_hides_card_data() -> None:
    sale = parse(sample_sale().encode())
    text = pretty(sale)
    assert "Primary Account Number" in text
    assert "Application Cryptogram" in text and "8E19ED4BCF3D5E93" in text
    assert "Terminal Verification Results" in text
    assert SAMPLE_PAN not in text
    assert "D28122011234567899" not in text
    for message in sample_exchange():
        assert SAMPLE_PAN not in summary(message)
        assert SAMPLE_PAN not in repr(message)


def test_pin_block_and_track_are_hidden() -> None:
    out = masked({"t": "0200", "52": "0123456789ABCDEF", "35": SAMPLE_PAN + "=2812201"})
    assert out["52"] == "<16 chars hidden>"
    assert out["35"] == "476173******0010=*******"


def test_response_code_is_described() -> None:
    text = pretty(sample_exchange()[3])
    assert "00 (approved)" in text
