"""Conformance scenarios end to end: the kernel, the virtual card and the real issuer/host.

Each test names the catalogue entry (CONFORMANCE.md) it covers.
"""

from __future__ import annotations

import pytest

from sim.core.issuer import Issuer
from sim.emv.card_risk import CardCounters
from sim.emv.faults import Fault
from sim.emv.kernel import (
    ExceptionFile,
    NeedCard,
    NeedOnline,
    NeedPin,
    Outcome,
    PIN_BYPASS,
    RandomSelectionParams,
)
from sim.emv.kernel.messages import ONLINE_TAGS
from sim.emv.tvr import Tvr
from sim.iso8583.message import Message

from tests.test_kernel_helpers import (
    CARDS,
    WHEN,
    Recorder,
    config,
    run,
    seeded,
    timeout,
    unreachable,
    variant,
    virtual,
)

HEALTHY_PAN = CARDS.card("healthy").pan


def visa_issuer() -> Issuer:
    return Issuer.from_card_set(CARDS, "possim-visa-test")


def deliver(issuer: Issuer, messages: tuple[Message, ...]) -> list[Message]:
    return [issuer.handle(message, WHEN) for message in messages]


def online_requests(trace: list) -> list[Message]:
    return [event.request for event, _ in trace if isinstance(event, NeedOnline)]


# ONL --------------------------------------------------------------------------------------------


def test_onl_01_online_approval_with_arpc() -> None:
    issuer = visa_issuer()
    host = Recorder(issuer)
    trace: list = []
    result = run(config(), virtual("healthy"), host, 7500, trace=trace)
    assert result.outcome is Outcome.APPROVED and result.arc == "00" and result.cryptogram == "TC"
    assert result.messages == ("0200",) and result.pending == ()
    assert result.entry_mode == "051" and result.issuer_authentication == "passed"
    assert result.has_bit("4:80") and result.cvm == "420300"
    request = host.requests[0]
    for tag in ("9F26", "9F27", "9F10", "9F37", "9F36", "95", "9A", "9C", "9F02", "5F2A", "82", "9F1A"):
        assert tag in request.icc, tag
    assert request.icc["9F27"] == b"\x80" and request.icc["9F37"] == bytes.fromhex("1A2B3C4D")
    assert request.fields["35"].startswith(HEALTHY_PAN + "D") and "52" in request.fields
    assert "91" in host.answers[0].icc
    assert issuer.balance(HEALTHY_PAN) == CARDS.card("healthy").balance - 7500  # debited once
    assert result.tsi == "7800"  # no ODA (AIP 1800): CVM, card risk, issuer auth, terminal risk
    assert result.masked_pan == "476173******0010" and HEALTHY_PAN not in repr(result)


def test_onl_01_dual_message_sends_0100_and_owes_the_completion() -> None:
    issuer = visa_issuer()
    result = run(config("legacy-dialup"), virtual("healthy"), Recorder(issuer), 20000)
    assert result.approved and result.messages == ("0100",) and result.pending_mtis == ("0220",)
    completion = result.pending[0]
    assert completion.response_code == "00" and completion.original is not None and completion.original.mti == "0100"
    assert "35" not in completion.fields and "52" not in completion.fields
    held = CARDS.card("healthy").balance
    assert issuer.balance(HEALTHY_PAN) == held and issuer.available(HEALTHY_PAN) == held - 20000
    assert deliver(issuer, result.pending)[0].response_code == "00"
    assert issuer.balance(HEALTHY_PAN) == held - 20000


def test_onl_02_insufficient_funds() -> None:
    issuer = visa_issuer()
    pan = CARDS.card("insufficient-funds").pan
    result = run(config(), virtual("insufficient-funds"), Recorder(issuer), 7500)
    assert result.outcome is Outcome.DECLINED and result.arc == "51" and result.cryptogram == "AAC"
    assert result.pending == () and issuer.balance(pan) == CARDS.card("insufficient-funds").balance


def test_onl_03_expired_card_sets_2_40_and_the_host_says_54() -> None:
    result = run(config(), virtual("expired"), Recorder(), 7500)
    assert result.has_bit("2:40") and "expired_application" in result.tvr_bits
    assert result.declined and result.arc == "54" and result.cryptogram == "AAC"


def test_onl_04_exception_file_declines_without_going_online() -> None:
    cfg = config(exception_file=ExceptionFile.of(HEALTHY_PAN))
    host = Recorder()
    result = run(cfg, virtual("healthy"), host, 7500)
    assert result.has_bit("1:10") and result.declined and result.arc == "Z1"
    assert result.messages == () and host.requests == [] and result.cryptogram == "AAC"


def test_onl_04_exception_file_goes_online_when_the_tac_denial_does_not_say_so() -> None:
    cfg = config(exception_file=ExceptionFile.of((HEALTHY_PAN, "01")), tac_denial="0010000000")
    result = run(cfg, virtual("healthy"), Recorder(), 7500)
    assert result.has_bit("1:10") and result.messages == ("0200",) and result.approved


def test_onl_05_wrong_online_pin_is_answered_55() -> None:
    result = run(config(), virtual("healthy"), Recorder(), 7500, pins=["0000"])
    assert result.declined and result.arc == "55" and result.has_bit("3:04")


def test_onl_07_arpc_failure_sets_5_40_and_reverses_the_approval() -> None:
    def tamper(answer: Message) -> Message:
        icc = dict(answer.icc)
        arpc = bytearray(icc["91"])
        arpc[0] ^= 0xFF
        icc["91"] = bytes(arpc)
        from sim.emv import tlv

        return answer.replace(DE55=tlv.encode(icc).hex().upper())

    issuer = visa_issuer()
    result = run(config(), virtual("healthy"), Recorder(issuer, tamper), 7500)
    assert result.has_bit("5:40") and result.issuer_authentication == "failed"
    assert result.declined and result.arc == "00" and result.cryptogram == "AAC"
    assert result.pending_mtis == ("0400",)
    reversal = result.pending[0]
    assert reversal.amount == 7500 and reversal.original is not None and reversal.original.mti == "0200"
    assert issuer.balance(HEALTHY_PAN) == CARDS.card("healthy").balance - 7500
    assert deliver(issuer, result.pending)[0].response_code == "00"
    assert issuer.balance(HEALTHY_PAN) == CARDS.card("healthy").balance


def test_onl_10_amounts_in_jpy_and_kwd_travel_as_minor_units() -> None:
    jpy = run(config(), virtual("jpy-healthy"), Recorder(), 12000, "JPY")
    kwd_host = Recorder()
    kwd = run(config(), virtual("kwd-healthy"), kwd_host, 7500, "KWD")
    assert jpy.approved and jpy.currency == "392"
    assert kwd.approved and kwd_host.requests[0].amount == 7500 and kwd_host.requests[0].currency == "414"
    assert kwd_host.requests[0].icc["9F02"] == bytes.fromhex("000000007500")


def test_refunds_always_go_online() -> None:
    host = Recorder()
    result = run(config(), virtual("offline-only-iac"), host, 500, transaction_type="20")
    assert result.messages == ("0200",) and host.requests[0].processing_code == "200000"


# OFF --------------------------------------------------------------------------------------------


def offline_friendly_pin_card():
    """offline-only-iac (all IACs zero) with offline PIN first, so nothing forces it online."""
    return variant("offline-only-iac", cvm_list="0000000000000000410342031E031F03")


def test_off_01_below_floor_is_approved_offline_y1_and_owes_an_advice() -> None:
    issuer = visa_issuer()
    host = Recorder(issuer)
    result = run(config("mobile-3g"), virtual(offline_friendly_pin_card()), host, 1000)
    assert result.approved and result.arc == "Y1" and result.cryptogram == "TC"
    assert host.requests == [] and result.messages == ()
    assert result.cvm == "410302" and not result.has_bit("4:80")
    assert result.pending_mtis == ("0220",)
    advice = result.pending[0]
    assert advice.response_code == "Y1" and advice.icc["9F27"] == b"\x40" and advice.icc["8A"] == b"Y1"
    assert "35" not in advice.fields and "52" not in advice.fields
    pan = CARDS.card("offline-only-iac").pan
    assert deliver(issuer, result.pending)[0].response_code == "00"
    assert issuer.balance(pan) == CARDS.card("offline-only-iac").balance - 1000


def test_off_01_contactless_below_the_cvm_limit_needs_no_cvm() -> None:
    result = run(config("mobile-3g"), virtual("offline-only-iac"), Recorder(), 1000, present=["contactless"])
    assert result.approved and result.arc == "Y1" and result.entry_mode == "071" and result.cvm == "1F0002"


def test_off_01_same_pan_log_splits_are_caught() -> None:
    cfg = config("mobile-3g")
    card = CARDS.card("offline-only-iac")
    logged = cfg.pan_log.record(card.pan, "978", 2500)
    result = run(config("mobile-3g", pan_log=logged), virtual(offline_friendly_pin_card()), Recorder(), 1000)
    assert result.has_bit("4:80") and result.messages == ("0200",)


def test_off_02_host_unreachable_default_codes_decide_y3_or_z3() -> None:
    cfg = config("mobile-3g")
    approved = run(cfg, virtual("offline-only-iac"), unreachable, 7500)
    assert approved.has_bit("4:80") and approved.approved and approved.arc == "Y3" and approved.cryptogram == "TC"
    assert approved.messages == () and approved.pending_mtis == ("0220",)
    assert approved.pending[0].response_code == "Y3"
    declined = run(cfg, virtual("healthy"), unreachable, 7500)
    assert declined.declined and declined.arc == "Z3" and declined.cryptogram == "AAC"
    assert declined.pending == ()


def test_off_02_timeout_owes_a_reversal_of_the_unanswered_request() -> None:
    result = run(config("mobile-3g"), virtual("offline-only-iac"), timeout, 7500)
    assert result.messages == ("0200",) and result.arc == "Y3"
    assert result.pending_mtis == ("0400", "0220")
    assert result.pending[0].response_code == "68"
    assert len(set(result.stans)) == len(result.stans) == 3


def test_off_03_lcol_exceeded_forces_online() -> None:
    counters = CardCounters(atc=12, last_online_atc=5, offline_count=0)
    result = run(config(), virtual("healthy", counters=counters), Recorder(), 1000)
    assert result.has_bit("4:40") and not result.has_bit("4:20") and result.messages == ("0200",)


def test_off_03_ucol_exceeded_with_host_down_is_z3() -> None:
    counters = CardCounters(atc=20, last_online_atc=5, offline_count=0)
    result = run(config("mobile-3g"), virtual("healthy", counters=counters), unreachable, 1000)
    assert result.has_bit("4:40") and result.has_bit("4:20") and result.arc == "Z3"


def test_off_03_new_card_bit_on_a_card_never_online() -> None:
    result = run(config(), virtual("healthy"), Recorder(), 7500)
    assert result.has_bit("2:08")


def test_off_04_random_selection_sends_a_below_floor_transaction_online() -> None:
    params = RandomSelectionParams(True, 10, 50, {"978": 2000})
    cfg = config("mobile-3g", random_selection=params)
    picked = run(cfg, virtual(offline_friendly_pin_card()), Recorder(), 1000, rng=seeded(10))
    assert picked.has_bit("4:10") and picked.messages == ("0200",) and picked.approved
    skipped = run(cfg, virtual(offline_friendly_pin_card()), Recorder(), 1000, rng=seeded(11))
    assert not skipped.has_bit("4:10") and skipped.arc == "Y1"


def test_off_07_full_offline_store_allows_no_offline_approval() -> None:
    cfg = config("mobile-3g", offline_store_free=0)
    online = run(cfg, virtual(offline_friendly_pin_card()), Recorder(), 1000)
    assert online.messages == ("0200",) and online.approved
    down = run(cfg, virtual("offline-only-iac"), unreachable, 7500)
    assert down.declined and down.arc == "Z3" and down.pending == ()


def test_off_08_exception_file_while_offline_is_z1() -> None:
    cfg = config("mobile-3g", exception_file=ExceptionFile.of(CARDS.card("offline-only-iac").pan))
    result = run(cfg, virtual("offline-only-iac"), unreachable, 1000)
    assert result.arc == "Z1" and result.declined and result.has_bit("1:10")


# ODA --------------------------------------------------------------------------------------------


def test_dda_performed_when_the_card_and_terminal_support_it() -> None:
    result = run(config(), virtual(variant("healthy", aip="7800")), Recorder(), 7500)
    assert result.approved and not result.has_bit("1:80") and not result.has_bit("1:08")
    assert Tvr.from_hex(result.tvr).test("1:80") is False and result.tsi.startswith("F")


def test_sda_performed_when_only_sda_is_offered() -> None:
    result = run(config(), virtual(variant("mc-healthy", aip="5800")), Recorder(), 7500, "USD")
    assert result.has_bit("sda_selected") and not result.has_bit("1:40") and not result.has_bit("1:80")


def test_dda_failure_sets_1_08() -> None:
    card = virtual(variant("healthy", aip="7800"), faults=[Fault("INTERNAL AUTHENTICATE", "status_word(6985)")])
    result = run(config(), card, Recorder(), 7500)
    assert result.has_bit("1:08") and result.approved


def test_sda_without_ca_key_fails_1_40() -> None:
    result = run(config(ca_keys=()), virtual(variant("healthy", aip="5800")), Recorder(), 7500)
    assert result.has_bit("1:40") and result.has_bit("sda_selected")


def test_sda_with_signed_data_missing_sets_1_20_and_1_40() -> None:
    card = virtual(variant("healthy", aip="5800"), faults=[Fault("READ RECORD", "drop_tag(93)")])
    result = run(config(), card, Recorder(), 7500)
    assert result.has_bit("1:20") and result.has_bit("1:40")


# FB ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "card",
    [
        lambda: virtual("chip-mute"),
        lambda: virtual("healthy", faults=[Fault("ATR", "bad_atr")]),
    ],
    ids=["mute", "bad-atr"],
)
def test_fb_01_chip_failure_falls_back_to_the_stripe(card) -> None:
    trace: list = []
    result = run(config(), card(), Recorder(), 7500, trace=trace)
    prompts = [event for event, _ in trace if isinstance(event, NeedCard)]
    assert prompts[-1].accept == ("magstripe",) and "chip read failed" in prompts[-1].prompt
    assert result.entry_mode == "801" and result.approved and result.interface == "magstripe"


def test_fb_01_no_common_application_falls_back() -> None:
    cfg = config(applications=(config().applications[1],))  # Mastercard only, Visa card
    result = run(cfg, virtual("healthy"), Recorder(), 7500)
    assert result.entry_mode == "801" and result.approved and result.cryptogram is None


def test_fb_02_stripe_unreadable_after_chip_failure_goes_to_manual_entry() -> None:
    card = virtual("magstripe-damaged", faults=[Fault("ATR", "mute")])
    host = Recorder()
    result = run(config(), card, host, 7500)
    assert result.entry_mode == "791" and result.approved
    request = host.requests[0]
    assert "35" not in request.fields and request.fields["14"] == "2812"


def test_fb_02_without_manual_entry_it_is_declined() -> None:
    card = virtual("magstripe-damaged", faults=[Fault("ATR", "mute")])
    result = run(config("mobile-3g"), card, Recorder(), 7500)
    assert result.declined and "manual entry not allowed" in result.reason and result.messages == ()


def test_fb_03_chip_card_swiped_first_is_sent_to_the_chip() -> None:
    trace: list = []
    result = run(config(), virtual("chip-swiped-first"), Recorder(), 7500, present=["magstripe"], trace=trace)
    prompts = [event for event, _ in trace if isinstance(event, NeedCard)]
    assert prompts[1].accept == ("contact",) and "insert the chip" in prompts[1].prompt
    assert result.entry_mode == "051" and result.approved


def test_stripe_only_card_is_swiped_901() -> None:
    result = run(config(), virtual("magstripe-only"), Recorder(), 7500, "USD",
                 present=["magstripe"])
    assert result.entry_mode == "901" and result.approved and result.tvr == "0000000000"


def test_fb_04_card_removed_during_second_generate_ac_reverses_the_approval() -> None:
    issuer = visa_issuer()
    card = virtual("healthy", faults=[Fault("GENERATE AC 2", "remove")])
    result = run(config(), card, Recorder(issuer), 7500)
    assert result.terminated and "card removed" in result.reason
    assert result.pending_mtis == ("0400",) and result.arc == "00"
    deliver(issuer, result.pending)
    assert issuer.balance(HEALTHY_PAN) == CARDS.card("healthy").balance


def test_fb_04_card_removed_during_first_generate_ac_owes_nothing() -> None:
    card = virtual("healthy", faults=[Fault("GENERATE AC 1", "remove")])
    result = run(config(), card, Recorder(), 7500)
    assert result.terminated and result.pending == () and result.messages == ()


@pytest.mark.parametrize(
    "faults,words",
    [
        ([], "malformed TLV"),
        ([Fault("READ RECORD", "drop_tag(5A)")], "mandatory data missing (5A)"),
        ([Fault("READ RECORD", "drop_tag(8C)")], "mandatory data missing (8C)"),
        ([Fault("READ RECORD", "truncate")], "card error"),
        ([Fault("GENERATE AC", "corrupt_tlv")], "GENERATE AC answer malformed"),
    ],
)
def test_fb_05_bad_card_data_terminates(faults, words: str) -> None:
    card = virtual("chip-bad-tlv") if not faults else virtual("healthy", faults=faults)
    result = run(config(), card, Recorder(), 7500)
    assert result.terminated and words in result.reason and result.pending == ()


def test_fb_06_pin_try_limit_exhausted_on_the_card() -> None:
    card = virtual("pin-1234", faults=[Fault("GET DATA", "pin_blocked", "once")])
    trace: list = []
    result = run(config(), card, Recorder(), 7500, trace=trace)
    assert result.has_bit("3:20")
    kinds = [event.kind for event, _ in trace if isinstance(event, NeedPin)]
    assert kinds == ["online"]  # the offline PIN was never asked for: the card said 0 tries


def test_fb_06_three_wrong_offline_pins_exhaust_the_card() -> None:
    card = virtual("pin-1234")
    trace: list = []
    result = run(config(), card, Recorder(), 7500, pins=["0000", "1111", "2222"], trace=trace)
    offline = [event.tries_left for event, _ in trace if isinstance(event, NeedPin) and event.kind == "offline"]
    assert offline == [3, 2, 1] and result.has_bit("3:20") and card.pin_tries_left == 0
    assert result.cvm == "420300"  # then online PIN, the next rule


def test_offline_pin_bypassed_sets_3_08() -> None:
    result = run(config(), virtual("pin-1234"), Recorder(), 7500, pins=[PIN_BYPASS, PIN_BYPASS])
    assert result.has_bit("3:08") and result.cvm == "1E0300" and result.signature_required


def test_fb_07_contactless_above_the_limit_switches_to_contact() -> None:
    trace: list = []
    result = run(config(), virtual("healthy"), Recorder(), 15000, present=["contactless", "contact"], trace=trace)
    prompts = [event for event, _ in trace if isinstance(event, NeedCard)]
    assert "contactless" not in prompts[0].accept
    assert "contactless limit" in prompts[1].prompt and prompts[1].accept[0] == "contact"
    assert result.entry_mode == "051" and result.approved


def test_fb_07_contactless_only_reader_declines_above_its_limit() -> None:
    result = run(config("unattended-contactless"), virtual("healthy"), Recorder(), 6000)
    assert result.declined and "contactless limit" in result.reason and result.entry_mode == ""


def test_unattended_contactless_reader_approves_online_without_cvm() -> None:
    result = run(config("unattended-contactless"), virtual("healthy"), Recorder(), 3000)
    assert result.approved and result.entry_mode == "072" and result.cvm == "1F0002"


# Selection paths ----------------------------------------------------------------------------------


def test_aid_list_is_used_when_the_pse_is_missing() -> None:
    card = virtual("healthy", faults=[Fault("SELECT", "status_word(6A82)", "once")])
    trace: list = []
    result = run(config(), card, Recorder(), 7500, trace=trace)
    purposes = [event.purpose for event, _ in trace if hasattr(event, "purpose")]
    assert "SELECT AID" in purposes and result.approved


def test_blocked_application_is_not_selected() -> None:
    card = virtual("healthy", faults=[Fault("SELECT", "status_word(6283)", "every_n(2)")])
    result = run(config(), card, Recorder(), 7500)
    assert result.terminated and "could not be selected" in result.reason


def test_card_blocked_at_pse_terminates() -> None:
    card = virtual("healthy", faults=[Fault("SELECT", "status_word(6A81)", "once")])
    result = run(config(), card, Recorder(), 7500)
    assert result.terminated and "blocked" in result.reason


def test_dual_message_offline_approval_is_an_advice() -> None:
    result = run(config("legacy-dialup"), virtual(offline_friendly_pin_card()), Recorder(), 1000, "EUR")
    assert result.arc == "Y1" and result.pending_mtis == ("0220",) and result.messages == ()


def test_every_chip_request_carries_the_online_tags() -> None:
    host = Recorder()
    run(config(), virtual("mc-healthy"), host, 7500, "USD")
    assert list(host.requests[0].icc) == [t for t in ONLINE_TAGS if t in host.requests[0].icc]
    assert {"9F34", "9F33", "9F35", "84", "5F34"} <= set(host.requests[0].icc)


# DEV --------------------------------------------------------------------------------------------


def test_dev_01_broken_contact_reader_takes_the_stripe_of_a_chip_card() -> None:
    cfg = config(readers=frozenset({"magstripe"}))
    trace: list = []
    result = run(cfg, virtual("healthy"), Recorder(), 7500, trace=trace)
    prompts = [event for event, _ in trace if isinstance(event, NeedCard)]
    assert prompts[0].accept == ("magstripe",) and len(prompts) == 1
    assert result.entry_mode == "901" and result.approved


def test_dev_01_no_working_reader_and_no_keypad_ends_cleanly() -> None:
    result = run(config(readers=frozenset(), manual_entry=False), virtual("healthy"), Recorder(), 7500)
    assert result.terminated and "no card reader" in result.reason and result.messages == ()


def test_card_pulled_by_the_driver_hook_after_the_host_approved() -> None:
    issuer = visa_issuer()
    online_done = []

    def hook(event, card) -> None:
        if isinstance(event, NeedOnline):
            online_done.append(True)
        elif online_done and getattr(event, "ins", None) == 0xAE:
            card.remove()

    result = run(config(), virtual("healthy"), Recorder(issuer), 7500, hook=hook)
    assert result.terminated and result.pending_mtis == ("0400",)
    assert "second GENERATE AC" in result.reason
