"""The shipped test card set and its loader: content, rules, error messages."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sim.core.cards import Card, CardSetError, IssuerConfig, default_path, load_cards, luhn_valid
from sim.core.money import currency

REQUIRED_LABELS = [
    "healthy", "insufficient-funds", "expired", "lost", "stolen", "pin-1234", "chip-mute", "chip-bad-tlv",
    "magstripe-damaged", "magstripe-only", "chip-swiped-first", "jpy-healthy", "kwd-healthy",
    "offline-only-iac", "online-only-iac",
]

ISSUER = """
[issuers.test-bank]
name = "Test Bank"
scheme = "visa"
bins = ["476173"]
currency = "EUR"
country = "250"
imk_ac_name = "TEST ONLY key"
imk_ac = "0123456789ABCDEFFEDCBA9876543210"
"""

CARD = """
[[cards]]
label = "one"
issuer = "test-bank"
pan = "4761739001010010"
psn = "01"
expiry = "2812"
effective = "240101"
service_code = "201"
status = "active"
balance = 1000
amount_limit = 500
velocity_count = 5
velocity_window_seconds = 60
pin = "1234"
"""


@pytest.fixture(scope="module")
def cards():
    return load_cards()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cards.toml"
    path.write_text(text, encoding="utf-8")
    return path


# The packaged set -------------------------------------------------------------------------------


def test_packaged_set_has_every_required_label(cards) -> None:
    assert set(REQUIRED_LABELS) <= set(cards.labels)
    assert cards.source == str(default_path())


def test_every_pan_is_luhn_valid_unique_and_in_its_issuers_bin(cards) -> None:
    pans = [c.pan for c in cards.cards]
    assert len(pans) == len(set(pans))
    for card in cards.cards:
        assert luhn_valid(card.pan), card.label
        assert cards.issuer(card.issuer).owns(card.pan)
        assert cards.issuer_for_pan(card.pan).id == card.issuer
        assert cards.by_pan(card.pan) is card


def test_two_issuers_with_distinct_bins_keys_and_currencies(cards) -> None:
    assert len(cards.issuers) >= 2
    bins = [b for i in cards.issuers for b in i.bins]
    assert len(bins) == len(set(bins))
    assert len({i.imk_ac for i in cards.issuers}) == len(cards.issuers)
    assert len({i.currency for i in cards.issuers}) == len(cards.issuers)
    for issuer in cards.issuers:
        assert "TEST ONLY" in issuer.imk_ac_name
        assert len(issuer.imk) == 16
        assert issuer.imk_ac not in repr(issuer)
    assert {i.scheme for i in cards.issuers} == {"visa", "mastercard"}


@pytest.mark.parametrize(
    ("label", "alpha", "exponent"),
    [("healthy", "EUR", 2), ("mc-healthy", "USD", 2), ("jpy-healthy", "JPY", 0), ("kwd-healthy", "KWD", 3)],
)
def test_account_currencies_and_exponents(cards, label: str, alpha: str, exponent: int) -> None:
    card = cards.card(label)
    assert card.currency == alpha
    assert card.currency_info == currency(alpha)
    assert card.currency_info.exponent == exponent
    assert type(card.balance) is int and type(card.amount_limit) is int


def test_statuses(cards) -> None:
    assert cards.card("lost").status == "lost"
    assert cards.card("stolen").status == "stolen"
    assert cards.card("blocked").status == "blocked"
    assert cards.card("healthy").status == "active"


def test_interfaces_and_faults(cards) -> None:
    stripe_only = cards.card("magstripe-only")
    assert not stripe_only.chip and stripe_only.service_code.startswith("1")
    assert cards.card("chip-swiped-first").service_code.startswith("2")
    assert "swipe_first" in cards.card("chip-swiped-first").faults
    assert cards.card("chip-mute").faults == ("chip_mute",)
    assert cards.card("chip-bad-tlv").faults == ("chip_bad_tlv",)
    assert cards.card("magstripe-damaged").faults == ("magstripe_unreadable",)
    assert cards.card("healthy").faults == ()
    for card in cards.cards:
        if card.chip:
            assert card.service_code[0] in "26", card.label


def test_emv_parameters(cards) -> None:
    healthy = cards.card("healthy")
    assert healthy.emv.cvn == 10 and cards.card("mc-healthy").emv.cvn == 16
    assert len(bytes.fromhex(healthy.emv.iac_online)) == 5
    offline = cards.card("offline-only-iac").emv
    assert offline.iac_online == offline.iac_denial == offline.iac_default == "0000000000"
    online = cards.card("online-only-iac").emv
    assert online.iac_online == online.iac_default == "FFFFFFFFFF"
    assert online.lcol == online.ucol == 0


def test_pin_1234_and_masking(cards) -> None:
    card = cards.card("pin-1234")
    assert card.pin == "1234"
    shown = repr(card) + str(card) + repr(cards)
    assert card.pan not in shown
    assert "pin=" not in shown and "'1234'" not in shown
    assert card.masked_pan == "476173******0051"


def test_expiry_is_the_end_of_the_month(cards) -> None:
    card = cards.card("expired")  # 2312
    assert not card.expired(datetime(2023, 12, 31, 23, 59))
    assert card.expired(date(2024, 1, 1))
    assert card.expiry_month == (2023, 12)


def test_track2(cards) -> None:
    card = cards.card("healthy")
    assert card.track2() == "4761739001010010D28122010000000000"
    assert card.track2("=").startswith("4761739001010010=2812201")


def test_models_are_frozen(cards) -> None:
    with pytest.raises(ValidationError):
        cards.card("healthy").balance = 0  # type: ignore[misc]


def test_lookups_name_what_exists(cards) -> None:
    with pytest.raises(KeyError, match="healthy"):
        cards.card("nope")
    with pytest.raises(KeyError, match="possim-visa-test"):
        cards.issuer("nope")
    assert cards.issuer_for_pan("4000000000000002") is None
    assert len(cards.cards_of("possim-mc-test")) >= 5


# Luhn -------------------------------------------------------------------------------------------


def test_luhn_known_values() -> None:
    assert luhn_valid("4761739001010010")
    assert luhn_valid("5413330089010012")
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
    assert not luhn_valid("")
    assert not luhn_valid("4761 7390")
    assert not luhn_valid("٤٧٦١")  # non-ASCII digits


def _check_digit(body: str) -> str:
    return next(d for d in "0123456789" if luhn_valid(body + d))


@settings(max_examples=200)
@given(body=st.text("0123456789", min_size=11, max_size=18), position=st.integers(0, 18), delta=st.integers(1, 9))
def test_luhn_detects_every_single_digit_error(body: str, position: int, delta: int) -> None:
    pan = body + _check_digit(body)
    assert luhn_valid(pan)
    i = position % len(pan)
    wrong = pan[:i] + str((int(pan[i]) + delta) % 10) + pan[i + 1 :]
    assert not luhn_valid(wrong)


# Errors ---------------------------------------------------------------------------------------


def test_a_minimal_file_loads(tmp_path: Path) -> None:
    loaded = load_cards(write(tmp_path, ISSUER + CARD))
    card = loaded.card("one")
    assert card.currency == "EUR"  # inherited from the issuer
    assert isinstance(card, Card) and isinstance(loaded.issuers[0], IssuerConfig)
    assert card.emv is None


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        (('pan = "4761739001010010"', 'pan = "4761739001010011"'), "pan", "'476173******0011': fails the Luhn check"),
        (("balance = 1000", "balance = 10.5"), "balance", "value 10.5"),
        (("balance = 1000", 'balance = "1000"'), "balance", "value '1000'"),
        (("balance = 1000", "balance = -1"), "balance", "value -1"),
        (('expiry = "2812"', 'expiry = "2813"'), "expiry", "must be YYMM"),
        (('status = "active"', 'status = "misplaced"'), "status", "'misplaced'"),
        (('psn = "01"', 'psn = "1"'), "psn", "must be 2 digits"),
        (('label = "one"', 'label = "One Card"'), "label", "'One Card'"),
        (('pin = "1234"', 'pin = "12"'), "pin", "<hidden>"),
        (("velocity_count = 5\n", ""), "velocity_count", "is missing"),
        (('status = "active"', 'status = "active"\nfaults = ["on_fire"]'), "faults.0", "'on_fire'"),
        (('status = "active"', 'status = "active"\ncolour = "red"'), "colour", "'red'"),
        (('status = "active"', 'status = "active"\ncurrency = "XXY"'), "currency", "not in ISO 4217"),
    ],
)
def test_card_errors_name_file_card_field_value(tmp_path: Path, change: tuple[str, str], field: str, fragment: str) -> None:
    path = write(tmp_path, ISSUER + CARD.replace(*change))
    with pytest.raises(CardSetError) as info:
        load_cards(path)
    message = str(info.value)
    label = "One Card" if field == "label" else "one"
    assert str(path) in message and f"card '{label}'" in message and f"field '{field}'" in message
    assert fragment in message
    assert info.value.card == label and info.value.field == field and info.value.path == str(path)
    assert "4761739001010011" not in message and "= \"12\"" not in message


def test_emv_errors(tmp_path: Path) -> None:
    emv = """[cards.emv]
cvn = 10
aip = "18"
auc = "FF00"
iac_denial = "0010000000"
iac_online = "DC4004F800"
iac_default = "DC4000A800"
lcol = 5
ucol = 10
cvm_list = "000000000000000042031E031F03"
"""
    with pytest.raises(CardSetError, match=r"field 'emv.aip': value '18': must be 2 bytes of hex"):
        load_cards(write(tmp_path, ISSUER + CARD + emv))
    with pytest.raises(CardSetError, match=r"field 'emv.cvn'"):
        load_cards(write(tmp_path, ISSUER + CARD + emv.replace('aip = "18"', 'aip = "1800"').replace("cvn = 10", "cvn = 18")))
    with pytest.raises(CardSetError, match=r"field 'emv.ucol'.*below"):
        load_cards(write(tmp_path, ISSUER + CARD + emv.replace('aip = "18"', 'aip = "1800"').replace("ucol = 10", "ucol = 1")))
    with pytest.raises(CardSetError, match=r"field 'emv.cvm_list'"):
        load_cards(write(tmp_path, ISSUER + CARD + emv.replace('aip = "18"', 'aip = "1800"').replace("1F03\"", "1F\"")))


def test_set_level_errors(tmp_path: Path) -> None:
    with pytest.raises(CardSetError, match=r"card 'one' field 'issuer': value 'other-bank' is not an issuer"):
        load_cards(write(tmp_path, ISSUER + CARD.replace('issuer = "test-bank"', 'issuer = "other-bank"')))
    with pytest.raises(CardSetError, match=r"field 'pan': value '541333\*+0012' is outside issuer 'test-bank'"):
        load_cards(write(tmp_path, ISSUER + CARD.replace("4761739001010010", "5413330089010012")))
    with pytest.raises(CardSetError, match=r"field 'label': value 'one' is used twice"):
        load_cards(write(tmp_path, ISSUER + CARD + CARD.replace("4761739001010010", "4761739001010028")))
    with pytest.raises(CardSetError, match=r"field 'pan'.*is already card 'one'"):
        load_cards(write(tmp_path, ISSUER + CARD + CARD.replace('label = "one"', 'label = "two"')))
    other = ISSUER.replace("test-bank", "other-bank").replace('"476173"', '"4761"')
    with pytest.raises(CardSetError, match=r"field 'bins': value '4761' overlaps issuer 'test-bank'"):
        load_cards(write(tmp_path, ISSUER + other + CARD))


def test_issuer_errors(tmp_path: Path) -> None:
    with pytest.raises(CardSetError, match=r"issuer 'test-bank' field 'imk_ac_name'.*TEST ONLY"):
        load_cards(write(tmp_path, ISSUER.replace("TEST ONLY key", "production key") + CARD))
    with pytest.raises(CardSetError, match=r"issuer 'test-bank' field 'imk_ac': value <hidden>"):
        load_cards(write(tmp_path, ISSUER.replace("0123456789ABCDEFFEDCBA9876543210", "0123") + CARD))
    with pytest.raises(CardSetError, match=r"issuer 'test-bank' field 'currency'"):
        load_cards(write(tmp_path, ISSUER.replace('currency = "EUR"', 'currency = "EURO"') + CARD))


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(CardSetError, match="cannot read"):
        load_cards(tmp_path / "missing.toml")
    with pytest.raises(CardSetError, match="not valid TOML"):
        load_cards(write(tmp_path, "[[cards]\n"))
    with pytest.raises(CardSetError, match="no \\[\\[cards\\]\\]"):
        load_cards(write(tmp_path, ISSUER))
    with pytest.raises(CardSetError, match="no \\[issuers"):
        load_cards(write(tmp_path, CARD))
    with pytest.raises(CardSetError, match="unexpected top-level"):
        load_cards(write(tmp_path, "version = 2\n" + ISSUER + CARD))
