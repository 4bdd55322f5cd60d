"""Card faults: parsing (with clear errors), every effect, every trigger, and card-set faults."""

from __future__ import annotations

import tomllib

import pytest

from sim.core.cards import luhn_valid
from sim.emv import tlv
from sim.emv.apdu import build
from sim.emv.card import ATR, VirtualCard
from sim.emv.card_perso import PSE_NAME
from sim.emv.card_state import State
from sim.emv.errors import CardMuteError, CardRemovedError, MagstripeError
from sim.emv.faults import (
    BAD_ATR,
    Effect,
    Fault,
    FaultSpecError,
    Trigger,
    card_set_faults,
    corrupt_tlv,
    drop_tag,
    parse_fault,
    parse_faults,
)
from tests.test_card_support import (
    P1_ARQC,
    P1_TC,
    ac_fields,
    data,
    first_ac,
    get_data,
    read_record,
    second_ac,
    select,
    start,
    sw,
    verify,
)

H = bytes.fromhex


def card_with(*faults, label: str = "healthy", seed: int = 0) -> VirtualCard:
    return VirtualCard.from_label(label, faults=faults, seed=seed)


# Parsing -----------------------------------------------------------------------------------------


def test_fault_from_text_normalises_names():
    fault = Fault("read_record", "drop_tag(5a)", "every_n(2)")
    assert fault.target == "READ RECORD"
    assert fault.effect == Effect("drop_tag", "5A")
    assert fault.trigger == Trigger("every_n", n=2)
    assert str(fault) == "READ RECORD: drop_tag(5A) @ every_n(2)"
    assert Fault("gpo", "delay(40)").target == "GET PROCESSING OPTIONS"


def test_fault_from_toml_tables_inline_and_separate_arguments():
    text = """
    [[faults]]
    target = "GENERATE AC 2"
    effect = "status_word(6F00)"
    trigger = "once"

    [[faults]]
    target = "READ RECORD"
    effect = "drop_tag"
    tag = "5A"
    trigger = "probability"
    p = 0.5

    [[faults]]
    target = "*"
    effect = "delay"
    ms = 120
    trigger = "every_n"
    n = 3
    """
    faults = parse_faults(tomllib.loads(text)["faults"])
    assert [str(f) for f in faults] == [
        "GENERATE AC 2: status_word(6F00) @ once",
        "READ RECORD: drop_tag(5A) @ probability(0.5)",
        "*: delay(120) @ every_n(3)",
    ]
    assert parse_fault(faults[0]) is faults[0]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"target": "READ RECORD"}, "key 'effect' is missing"),
        ({"effect": "mute"}, "key 'target' is missing"),
        ({"target": "READ RECORDS", "effect": "mute"}, "key 'target': value 'READ RECORDS' is not a target; allowed: SELECT"),
        ({"target": "ATR", "effect": "melt"}, "key 'effect': value 'melt' is not an effect; allowed: mute, bad_atr"),
        ({"target": "ATR", "effect": "mute", "trigger": "sometimes"}, "key 'trigger': value 'sometimes' is not a trigger; allowed: always, once"),
        ({"target": "ATR", "effect": "mute", "colour": "red"}, "key 'colour': value 'red' is under an unknown key; allowed keys: target"),
        ({"target": "SELECT", "effect": "status_word"}, "key 'sw': value None is missing"),
        ({"target": "SELECT", "effect": "status_word(6A8)"}, "key 'sw': value '6A8' is not a status word"),
        ({"target": "SELECT", "effect": "status_word(6A82)", "sw": "6A82"}, "gives its argument twice"),
        ({"target": "SELECT", "effect": "drop_tag(XYZ)"}, "key 'tag': value 'XYZ' is not a tag"),
        ({"target": "SELECT", "effect": "delay(-5)"}, "key 'ms': value '-5' is not a whole number"),
        ({"target": "SELECT", "effect": "mute(3)"}, "takes no argument"),
        ({"target": "SELECT", "effect": "mute", "tag": "5A"}, "key 'tag': value '5A' does not belong to effect mute"),
        ({"target": "SELECT", "effect": "mute", "trigger": "every_n(0)"}, "key 'n': value '0' must be a whole number >= 1"),
        ({"target": "SELECT", "effect": "mute", "trigger": "every_n"}, "key 'n': value None is missing"),
        ({"target": "SELECT", "effect": "mute", "trigger": "probability(1.5)"}, "key 'p': value '1.5' must be a probability"),
        ({"target": "SELECT", "effect": "mute", "trigger": "once", "n": 2}, "key 'n': value 2 does not belong to trigger once"),
        ({"target": "READ RECORD", "effect": "bad_atr"}, "key 'target': value 'READ RECORD' cannot have effect bad_atr; that effect applies to: ATR"),
        ({"target": "ATR", "effect": "track_corrupt"}, "that effect applies to: SWIPE"),
        ({"target": "SWIPE", "effect": "status_word(6A82)"}, "cannot have effect status_word"),
    ],
)
def test_fault_spec_errors_name_key_and_allowed_values(spec, message):
    with pytest.raises(FaultSpecError) as caught:
        parse_faults([{"target": "ATR", "effect": "mute"}, spec])
    assert str(caught.value).startswith("fault #2: ")
    assert message in str(caught.value)


def test_fault_spec_must_be_a_table():
    with pytest.raises(FaultSpecError, match="must be a table"):
        parse_fault(["ATR", "mute"])  # type: ignore[arg-type]


def test_virtual_card_accepts_dict_faults():
    card = VirtualCard.from_label("healthy", faults=[{"target": "ATR", "effect": "bad_atr"}])
    assert card.power_on() == BAD_ATR


# Effects ---------------------------------------------------------------------------------------------


def test_mute_at_power_on_and_recovery_on_the_next_reset():
    card = card_with(Fault("ATR", "mute", "once"))
    with pytest.raises(CardMuteError):
        card.power_on()
    with pytest.raises(CardMuteError):
        card.execute(build(0x00, 0xA4, 0x04, 0x00, PSE_NAME, le=0))
    assert card.power_on() == ATR


def test_mute_mid_transaction_stays_mute_until_reset():
    card = start(card_with(Fault("GENERATE AC", "mute")))
    with pytest.raises(CardMuteError):
        first_ac(card, P1_TC)
    assert card.state is State.MUTE and card.atc == 1  # counted at GPO; mute before GENERATE AC ran
    with pytest.raises(CardMuteError):
        get_data(card, 0x9F36)
    card.power_on()
    assert sw(select(card, PSE_NAME)) == 0x9000


def test_bad_atr_has_an_invalid_ts_byte():
    assert card_with(Fault("ATR", "bad_atr")).power_on()[0] not in (0x3B, 0x3F)


def test_status_word_replaces_the_answer_and_skips_the_command():
    card = start(card_with(Fault("GENERATE AC 1", "status_word(6F00)", "once")))
    assert sw(first_ac(card, P1_TC)) == 0x6F00
    assert card.atc == 1 and card.state is State.INITIATED  # the GENERATE AC never ran
    assert ac_fields(first_ac(card, P1_TC))["9F27"] == b"\x40"


def test_corrupt_tlv_makes_the_record_undecodable():
    card = start(card_with(Fault("READ RECORD", "corrupt_tlv")))
    answer = read_record(card, 2, 2)
    assert sw(answer) == 0x9000
    with pytest.raises(tlv.TlvError):
        tlv.decode(answer[:-2])


def test_corrupt_tlv_helper_on_primitive_and_garbage():
    with pytest.raises(tlv.TlvError):
        tlv.decode(corrupt_tlv(tlv.encode({"9F36": H("0001")})))
    with pytest.raises(tlv.TlvError):
        tlv.decode(corrupt_tlv(H("9F")))


def test_truncate_cuts_the_response_short():
    whole = read_record(start(VirtualCard.from_label("healthy")), 2, 2)
    cut = read_record(start(card_with(Fault("READ RECORD", "truncate"))), 2, 2)
    assert sw(cut) == 0x9000 and 0 < len(cut) < len(whole)
    assert whole[: len(cut) - 2] == cut[:-2]


def test_drop_tag_removes_a_mandatory_tag():
    card = start(card_with(Fault("READ RECORD", "drop_tag(5A)")))
    record = data(read_record(card, 2, 2))["70"]
    assert "5A" not in record and "5F24" in record
    assert drop_tag(H("9F"), "5A") == H("9F")  # undecodable data is left alone


def test_delay_is_reported_not_slept_and_reset_by_the_next_call():
    card = card_with(Fault("SELECT", "delay(250)"), Fault("ATR", "delay(40)"), Fault("SWIPE", "delay(7)"))
    card.power_on()
    assert card.last_delay_ms == 40
    answer = card.execute(build(0x00, 0xA4, 0x04, 0x00, PSE_NAME, le=0))
    assert sw(answer) == 0x9000 and card.last_delay_ms == 250
    card.execute(build(0x00, 0xB2, 0x01, 0x0C, le=0))
    assert card.last_delay_ms == 0
    card.swipe()
    assert card.last_delay_ms == 7


def test_remove_during_generate_ac_after_the_card_counted_it():
    card = start(card_with(Fault("GENERATE AC 2", "remove")))
    arqc = ac_fields(first_ac(card, P1_ARQC))
    with pytest.raises(CardRemovedError):
        second_ac(card, P1_TC, b"00")
    assert card.state is State.REMOVED and card.atc == 1
    with pytest.raises(CardRemovedError):
        get_data(card, 0x9F36)
    assert arqc["9F27"] == b"\x80"


def test_remove_at_power_on():
    card = card_with(Fault("ATR", "remove", "once"))
    with pytest.raises(CardRemovedError):
        card.power_on()
    assert card.power_on() == ATR


def test_pin_blocked_sets_the_try_counter_to_zero():
    card = start(card_with(Fault("VERIFY", "pin_blocked", "once"), label="pin-1234"))
    assert sw(verify(card, "1234")) == 0x6983
    assert card.pin_tries_left == 0
    assert data(get_data(card, 0x9F17)) == {"9F17": H("00")}


def test_track_unreadable_and_track_corrupt():
    with pytest.raises(MagstripeError):
        card_with(Fault("SWIPE", "track_unreadable")).swipe()
    for seed in range(20):
        track = card_with(Fault("SWIPE", "track_corrupt"), seed=seed).swipe()
        pan, sep, rest = track.partition("D")
        assert sep == "D" and len(pan) == 16 and rest == "28122010000000000"
        assert not luhn_valid(pan)


# Triggers ------------------------------------------------------------------------------------------------


def _pattern(card: VirtualCard, count: int) -> list[int]:
    card.power_on()
    return [sw(card.execute(build(0x00, 0xA4, 0x04, 0x00, PSE_NAME, le=0))) for _ in range(count)]


def test_trigger_always_once_every_n():
    assert _pattern(card_with(Fault("SELECT", "status_word(6A81)")), 3) == [0x6A81] * 3
    assert _pattern(card_with(Fault("SELECT", "status_word(6A81)", "once")), 3) == [0x6A81, 0x9000, 0x9000]
    assert _pattern(card_with(Fault("SELECT", "status_word(6A81)", "every_n(3)")), 6) == [
        0x9000, 0x9000, 0x6A81, 0x9000, 0x9000, 0x6A81]


def test_trigger_probability_is_seeded():
    fault = Fault("SELECT", "status_word(6A81)", "probability(0.3)")
    first = _pattern(card_with(fault, seed=7), 200)
    assert first == _pattern(card_with(fault, seed=7), 200)
    assert first != _pattern(card_with(fault, seed=8), 200)
    assert 30 <= first.count(0x6A81) <= 90
    assert _pattern(card_with(Fault("SELECT", "status_word(6A81)", "probability(1)")), 5) == [0x6A81] * 5


def test_star_targets_every_command_but_not_atr_or_swipe():
    card = card_with(Fault("*", "status_word(6F00)"))
    assert card.power_on() == ATR
    assert card.swipe()
    assert sw(card.execute(build(0x00, 0xA4, 0x04, 0x00, PSE_NAME, le=0))) == 0x6F00
    assert sw(card.execute(build(0x80, 0xCA, 0x9F, 0x36, le=0))) == 0x6F00


def test_generate_ac_target_matches_both_numbered_ones_each():
    card = start(card_with(Fault("GENERATE AC 2", "status_word(6985)")))
    assert ac_fields(first_ac(card, P1_ARQC))["9F27"] == b"\x80"
    assert sw(second_ac(card, P1_TC, b"00")) == 0x6985
    both = start(card_with(Fault("GENERATE AC", "delay(5)")))
    first_ac(both, P1_ARQC)
    assert both.last_delay_ms == 5
    second_ac(both, P1_TC, b"00")
    assert both.last_delay_ms == 5


def test_faults_apply_before_t0_chunking():
    card = start(card_with(Fault("READ RECORD", "drop_tag(5A)")))
    answer = card.execute(build(0x00, 0xB2, 0x02, 0x14))  # no Le: 61xx
    assert answer[0] == 0x61
    record = card.execute(build(0x00, 0xC0, 0x00, 0x00, le=answer[1]))
    assert "5A" not in tlv.decode(record[:-2])["70"]


# Card-set faults ---------------------------------------------------------------------------------------------


def test_card_set_fault_field_implies_card_faults():
    assert [str(f) for f in VirtualCard.from_label("chip-mute").faults] == ["ATR: mute @ always"]
    assert [str(f) for f in VirtualCard.from_label("chip-bad-tlv").faults] == ["READ RECORD: corrupt_tlv @ always"]
    assert [str(f) for f in VirtualCard.from_label("magstripe-damaged").faults] == ["SWIPE: track_unreadable @ always"]
    assert card_set_faults(VirtualCard.from_label("chip-swiped-first").card) == ()


def test_chip_mute_card_falls_back_to_a_good_stripe():
    card = VirtualCard.from_label("chip-mute")
    with pytest.raises(CardMuteError):
        card.power_on()
    assert luhn_valid(card.swipe().partition("D")[0])


def test_chip_bad_tlv_card_answers_malformed_records():
    card = VirtualCard.from_label("chip-bad-tlv")
    card.power_on()
    select(card, PSE_NAME)
    with pytest.raises(tlv.TlvError):
        tlv.decode(read_record(card, 1, 1)[:-2])


def test_magstripe_damaged_card_chip_still_works():
    card = VirtualCard.from_label("magstripe-damaged")
    with pytest.raises(MagstripeError):
        card.swipe()
    start(card)
    assert ac_fields(first_ac(card, P1_TC))["9F27"] == b"\x40"


def test_given_faults_add_to_card_set_faults():
    card = VirtualCard.from_label("chip-bad-tlv", faults=[Fault("ATR", "delay(3)")])
    assert [f.effect.kind for f in card.faults] == ["corrupt_tlv", "delay"]


def test_truncation_point_is_seeded():
    cuts = {seed: len(read_record(start(card_with(Fault("READ RECORD", "truncate"), seed=seed)), 2, 2))
            for seed in range(6)}
    assert cuts == {seed: len(read_record(start(card_with(Fault("READ RECORD", "truncate"), seed=seed)), 2, 2))
                    for seed in range(6)}
    assert len(set(cuts.values())) > 1
