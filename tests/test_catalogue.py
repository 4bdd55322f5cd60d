"""The message catalogue: round trips, field matrix rules, the pyiso8583 oracle."""

from __future__ import annotations

import copy

import iso8583
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from iso8583.specs import default_ascii

from sim.iso8583 import (
    DEFAULT,
    MESSAGE_TYPES,
    MessageError,
    advice,
    financial_request,
    match_key,
    network_request,
    parse,
    reconciliation_request,
    repeat,
    response,
    response_mti,
    reversal,
    validate,
)
from sim.iso8583.samples import SAMPLE_ICC, sample_sale
from tests.strategies import message_fields

ORACLE_SPEC = copy.deepcopy(default_ascii)


@pytest.mark.parametrize("mti", sorted(MESSAGE_TYPES))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_mti_round_trips(mti: str, data: st.DataObject) -> None:
    fields = data.draw(message_fields(mti))
    raw = DEFAULT.encode(dict(fields))
    msg = parse(raw)
    assert msg.mti == mti
    assert {k: v for k, v in msg.fields.items() if k not in ("p", "1")} == fields


@settings(max_examples=150, deadline=None)
@given(fields=message_fields())
def test_pyiso8583_decodes_what_the_catalogue_builds(fields: dict[str, str]) -> None:
    raw = DEFAULT.encode(dict(fields))
    decoded, _ = iso8583.decode(raw, ORACLE_SPEC)
    for key, value in fields.items():
        assert decoded[key] == value


def test_response_mti_mapping() -> None:
    pairs = {
        "0100": "0110", "0120": "0130", "0121": "0130", "0200": "0210", "0220": "0230", "0221": "0230",
        "0400": "0410", "0401": "0410", "0420": "0430", "0421": "0430", "0500": "0510", "0800": "0810",
    }
    for request, answer in pairs.items():
        assert response_mti(request) == answer
    with pytest.raises(MessageError, match="not a request"):
        response_mti("0210")


def test_mandatory_field_missing_is_named() -> None:
    fields = dict(sample_sale().fields)
    del fields["41"]
    with pytest.raises(MessageError) as err:
        validate(fields)
    assert err.value.field == "41"
    assert "DE41" in str(err.value) and "0200" in str(err.value)


def test_chip_entry_needs_de55_and_swipe_needs_track2() -> None:
    chip = dict(sample_sale().fields)
    del chip["55"]
    with pytest.raises(MessageError, match="DE55") as err:
        validate(chip)
    assert err.value.field == "55"
    swipe = dict(sample_sale().fields, **{"22": "901"})
    del swipe["55"], swipe["35"]
    with pytest.raises(MessageError, match="DE35"):
        validate(swipe)


def test_pan_needed_unless_track2() -> None:
    fields = dict(sample_sale().fields)
    del fields["2"]
    validate(fields)  # DE35 present: PAN comes from track 2
    assert parse(DEFAULT.encode(dict(fields))).pan == "4761739001010010"
    del fields["35"]
    with pytest.raises(MessageError, match="DE2 "):
        validate(fields)


@pytest.mark.parametrize(
    ("key", "value"),
    [("4", "00000000A000"), ("11", "00001X"), ("7", "1399103000"), ("70", "999"), ("49", "EU")],
)
def test_bad_content_is_refused(key: str, value: str) -> None:
    fields = dict(sample_sale().fields) if key != "70" else dict(network_request("301", stan=1, transmitted="1122103000").fields)
    fields[key] = value
    with pytest.raises(MessageError) as err:
        validate(fields)
    assert err.value.field == key


@pytest.mark.parametrize("value", ["00000000000012345", "+0000000000001234", "C000000000000123A", "c0000000000001234"])
def test_net_settlement_amount_needs_a_credit_or_debit_sign(value: str) -> None:
    fields = {"t": "0500", "7": "1122103000", "11": "000001", "41": "TERM0001", "50": "978",
              "74": "0000000001", "76": "0000000000", "86": "0000000000001000", "88": "0000000000000000"}
    assert validate({**fields, "97": "D0000000000001000"}).mti == "0500"
    with pytest.raises(MessageError, match="allowed: C or D, then digits") as err:
        validate({**fields, "97": value})
    assert err.value.field == "97"


def test_unknown_mti_and_strict_mode() -> None:
    with pytest.raises(MessageError, match="not in the catalogue"):
        validate({"t": "0999"})
    fields = dict(network_request("301", stan=1, transmitted="1122103000").fields, **{"4": "000000000100"})
    validate(fields)
    with pytest.raises(MessageError, match="DE4 .* not expected"):
        validate(fields, strict=True)


def test_mac_dialect_requires_mac() -> None:
    fields = dict(sample_sale().fields)
    with pytest.raises(MessageError, match="MAC field DE64"):
        validate(fields, mac_field="64")


def test_match_key_pairs_request_and_response() -> None:
    sale = sample_sale(stan=42)
    answer = response(sale, "00", auth_code="123456")
    assert sale.match_key == answer.match_key == ("02", "TERM0001", "000042")
    rev = reversal(sale, stan=43, transmitted="1122103100")
    assert rev.match_key != sale.match_key
    assert match_key(response(rev, "00").fields) == rev.match_key


def test_response_echoes_and_sets_code() -> None:
    sale = sample_sale()
    answer = response(sale, "51")
    assert answer.mti == "0210"
    assert answer.response_code == "51"
    for key in ("2", "3", "4", "11", "41", "49", "7"):
        assert answer.get(key) == sale.get(key)
    with pytest.raises(MessageError, match="DE38"):
        response(sale, "00")  # approvals carry an approval code


def test_reversal_points_at_original_and_partial_amount() -> None:
    sale = sample_sale(stan=7)
    rev = reversal(sale, stan=8, transmitted="1122103200", amount=1000)
    original = rev.original
    assert original is not None
    assert (original.mti, original.stan, original.transmitted) == ("0200", "000007", sale.transmitted)
    assert rev.amount == 1000
    assert rev.get("95", "").startswith("000000001500")  # 25.00 sale, 10.00 reversed: finally 15.00
    assert repeat(rev).mti == "0401"
    assert repeat(reversal(sale, stan=9, transmitted="1122103300", mti="0420")).mti == "0421"


def test_advice_repeat_and_icc_accessor() -> None:
    adv = advice(
        response_code="Y1", pan="4761739001010010", amount=500, currency="978", stan=5,
        transmitted="1122110000", terminal_id="TERM0001", entry_mode="051", icc=SAMPLE_ICC,
    )
    again = repeat(adv)
    assert (adv.mti, again.mti) == ("0220", "0221")
    assert again.is_repeat and again.original_mti == "0220"
    assert parse(again.encode()).icc["9F26"] == SAMPLE_ICC["9F26"]
    with pytest.raises(MessageError, match="no repeat form"):
        repeat(sample_sale())


@pytest.mark.parametrize(("currency", "amount"), [("392", 1000), ("978", 2500), ("414", 123456)])
def test_amounts_are_integers_of_minor_units(currency: str, amount: int) -> None:
    sale = financial_request(
        pan="4761739001010010", amount=amount, currency=currency, stan=1, transmitted="1122103000",
        terminal_id="TERM0001", entry_mode="012", expiry="2812",
    )
    back = parse(sale.encode())
    assert back.amount == amount and isinstance(back.amount, int)
    assert back.currency == currency
    for bad in (12.5, -1, 10**12, True):
        with pytest.raises(MessageError, match="DE4"):
            financial_request(
                pan="4761739001010010", amount=bad, currency=currency, stan=1, transmitted="1122103000",
                terminal_id="TERM0001", entry_mode="012",
            )


def test_reconciliation_request_carries_totals() -> None:
    msg = reconciliation_request(
        terminal_id="TERM0001", stan=99, transmitted="1122235900", currency="978",
        credits_count=1, credits_amount=500, debits_count=3, debits_amount=7500,
    )
    back = parse(msg.encode())
    assert (back.get("50"), back.get("74"), back.get("86"), back.get("76"), back.get("88")) == (
        "978", "0000000001", "0000000000000500", "0000000003", "0000000000007500",
    )


def test_malformed_de55_is_a_message_error() -> None:
    msg = sample_sale().replace(DE55="9F2608AABB")
    with pytest.raises(MessageError) as err:
        msg.icc
    assert err.value.field == "55"
