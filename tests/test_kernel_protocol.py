"""The kernel's event protocol: answers checked, events driven by hand, T=0, selection, manual entry."""

from __future__ import annotations

from datetime import datetime

import pytest

from sim.core.host import Host
from sim.emv.errors import CardMuteError
from sim.emv.kernel import (
    Cancelled,
    Done,
    HostTimeout,
    HostUnreachable,
    KernelUsageError,
    ManualEntry,
    NeedApdu,
    NeedCard,
    NeedManualEntry,
    NeedOnline,
    NeedPin,
    NeedSelection,
    PIN_PAD_FAILURE,
    PinEntered,
    PowerOn,
    Presented,
    TerminalConfig,
    Transaction,
    run_transaction,
)
from sim.iso8583.message import response

from tests.test_kernel_helpers import CARDS, WHEN, Recorder, config, run, txn, virtual

HEALTHY = CARDS.card("healthy")


# Construction ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw,words",
    [
        ({"amount": 10.5}, "int of minor units"),
        ({"amount": -1}, "int of minor units"),
        ({"amount": True}, "int of minor units"),
        ({"currency": "QQQ"}, "not in ISO 4217"),
        ({"transaction_type": "31"}, "allowed: 00, 01, 09, 20"),
        ({"unpredictable_number": b"\x00"}, "4 bytes"),
        ({"stan": 0}, "1..999999"),
    ],
)
def test_bad_inputs_are_refused(kw: dict, words: str) -> None:
    args = dict(amount=100, currency="EUR", when=WHEN, unpredictable_number=bytes(4), stan=1)
    args.update(kw)
    with pytest.raises(ValueError, match=words):
        Transaction(TerminalConfig(), **args)


# Protocol ---------------------------------------------------------------------------------------


def test_first_event_and_answer_checks() -> None:
    transaction = txn(config(), 2500)
    with pytest.raises(KernelUsageError, match="next_event"):
        transaction.send(Presented("contact"))
    first = transaction.next_event()
    assert first is transaction.next_event()  # asking again does not advance
    assert isinstance(first, NeedCard) and first.accept == ("contact", "contactless", "magstripe")
    with pytest.raises(KernelUsageError, match="NeedCard takes Presented, Cancelled; got bytes"):
        transaction.send(b"\x3b")
    with pytest.raises(KernelUsageError, match="unknown interface"):
        transaction.send(Presented("telepathy"))  # type: ignore[arg-type]
    assert isinstance(transaction.send(Presented("contact")), PowerOn)
    with pytest.raises(KernelUsageError, match="PowerOn takes"):
        transaction.send("3B00")


def test_cancel_at_card_entry_terminates() -> None:
    transaction = txn(config(), 2500)
    transaction.next_event()
    done = transaction.send(Cancelled("timeout waiting for card"))
    assert isinstance(done, Done) and done.result.terminated and "timeout waiting for card" in done.result.reason
    assert transaction.done and transaction.result is done.result and transaction.stage == "done"
    with pytest.raises(KernelUsageError, match="done"):
        transaction.send(Cancelled())


def test_driving_a_chip_transaction_by_hand() -> None:
    card = virtual("healthy")
    host = Host()
    transaction = txn(config(), 7500)
    event = transaction.next_event()
    seen = []
    while not isinstance(event, Done):
        seen.append(type(event).__name__)
        if isinstance(event, NeedCard):
            event = transaction.send(Presented("contact"))
        elif isinstance(event, PowerOn):
            event = transaction.send(card.power_on())
        elif isinstance(event, NeedApdu):
            event = transaction.send(card.execute(event.apdu))
        elif isinstance(event, NeedPin):
            event = transaction.send(PinEntered(HEALTHY.pin))
        elif isinstance(event, NeedOnline):
            event = transaction.send(host.handle(event.request, WHEN))
        else:  # pragma: no cover
            raise AssertionError(event)
    assert event.result.approved
    assert seen[:2] == ["NeedCard", "PowerOn"] and "NeedPin" in seen and seen.count("NeedOnline") == 1


def test_reprs_never_show_card_secrets() -> None:
    assert HEALTHY.pan not in repr(ManualEntry(HEALTHY.pan, "2812"))
    assert "4315" not in repr(PinEntered("4315"))
    from sim.emv.kernel import commands

    verify = NeedApdu(commands.verify_plaintext_pin("4315"), "VERIFY")
    assert "4315" not in repr(verify) and "0020" in repr(verify)
    result = run(config(), virtual("healthy"), Recorder(), 7500)
    assert HEALTHY.pan not in repr(result) and HEALTHY.pan not in result.summary()


@pytest.mark.parametrize("answer", [HostUnreachable, HostUnreachable("down"), HostTimeout, HostTimeout("slow")])
def test_online_answers_may_be_the_class_or_an_instance(answer) -> None:
    transaction = txn(config("mobile-3g"), 7500)
    card = virtual("offline-only-iac")
    event = transaction.next_event()
    while not isinstance(event, NeedOnline):
        if isinstance(event, NeedCard):
            event = transaction.send(Presented("contact"))
        elif isinstance(event, PowerOn):
            event = transaction.send(card.power_on())
        elif isinstance(event, NeedApdu):
            event = transaction.send(card.execute(event.apdu))
        else:
            event = transaction.send(PinEntered(CARDS.card("offline-only-iac").pin))
    with pytest.raises(KernelUsageError):
        transaction.send("00")
    event = transaction.send(answer)
    while not isinstance(event, Done):
        event = transaction.send(card.execute(event.apdu))
    assert event.result.arc == "Y3"


# T=0 ---------------------------------------------------------------------------------------------


class T0Reader:
    """Sends case 4 commands without Le (card answers 61xx) and case 2 with a wrong Le (6Cxx)."""

    def __init__(self, card) -> None:
        self.card = card
        self.card_model = card.card
        self.procedure_bytes: list[int] = []

    def power_on(self) -> bytes:
        return self.card.power_on()

    def swipe(self) -> str:
        return self.card.swipe()

    def execute(self, apdu: bytes) -> bytes:
        if apdu[1] in (0xB2, 0xCA) and len(apdu) == 5 and apdu[4] == 0:
            apdu = apdu[:4] + b"\x01"
        elif len(apdu) > 5 and apdu[4] + 6 == len(apdu):
            apdu = apdu[:-1]
        answer = self.card.execute(apdu)
        self.procedure_bytes.append(answer[-2])
        return answer

    @property
    def card_pin(self) -> str:
        return self.card_model.pin


def test_t0_procedure_bytes_are_followed() -> None:
    reader = T0Reader(virtual("healthy"))
    trace: list = []
    result = run_transaction(txn(config(), 7500), reader, Recorder(), pins=[HEALTHY.pin], trace=trace)
    assert result.approved and result.arc == "00"
    assert 0x61 in reader.procedure_bytes and 0x6C in reader.procedure_bytes
    purposes = [event.purpose for event, _ in trace if isinstance(event, NeedApdu)]
    assert any(p.startswith("GET RESPONSE") for p in purposes)


# Application selection ---------------------------------------------------------------------------


class ConfirmingCard:
    """A virtual card whose PSE directory entry asks for cardholder confirmation (87 = 81)."""

    def __init__(self, card) -> None:
        self.card = card

    def power_on(self) -> bytes:
        return self.card.power_on()

    def execute(self, apdu: bytes) -> bytes:
        answer = self.card.execute(apdu)
        if apdu[1] == 0xB2 and apdu[3] == 0x0C and apdu[2] == 1:  # SFI 1 record 1: the directory
            answer = answer.replace(bytes.fromhex("870101"), bytes.fromhex("870181"))
        return answer


def test_cardholder_confirms_the_application() -> None:
    trace: list = []
    result = run_transaction(txn(config(), 7500), ConfirmingCard(virtual("healthy")), Recorder(),
                             pins=[HEALTHY.pin], trace=trace)
    asked = [event for event, _ in trace if isinstance(event, NeedSelection)]
    assert asked and asked[0].confirm and asked[0].options == ("VISA TEST",)
    assert result.approved and result.application_label == "VISA TEST"


def test_refused_confirmation_terminates() -> None:
    transaction = txn(config(), 7500)
    card = ConfirmingCard(virtual("healthy"))
    event = transaction.next_event()
    while not isinstance(event, (NeedSelection, Done)):
        if isinstance(event, NeedCard):
            event = transaction.send(Presented("contact"))
        elif isinstance(event, PowerOn):
            event = transaction.send(card.power_on())
        else:
            event = transaction.send(card.execute(event.apdu))
    assert isinstance(event, NeedSelection)
    done = transaction.send(Cancelled("cardholder said no"))
    assert isinstance(done, Done) and done.result.terminated


def test_a_terminal_that_cannot_ask_drops_applications_needing_confirmation() -> None:
    result = run_transaction(txn(config(cardholder_confirmation=False), 7500), ConfirmingCard(virtual("healthy")),
                             Recorder())
    assert result.terminated and "confirmation" in result.reason


# Manual entry, PIN pad, mute mid-transaction -------------------------------------------------------


def test_keyed_transaction_without_a_card() -> None:
    cfg = config(readers=frozenset(), manual_entry=True)
    host = Recorder()
    result = run_transaction(txn(cfg, 2500), None, host, keyed=(HEALTHY.pan, HEALTHY.expiry))
    assert result.approved and result.entry_mode == "011" and result.interface == "manual"
    assert host.requests[0].fields["2"] == HEALTHY.pan and "35" not in host.requests[0].fields


def test_invalid_keyed_data_is_asked_again() -> None:
    cfg = config(readers=frozenset(), manual_entry=True)
    transaction = txn(cfg, 2500)
    assert transaction.next_event().accept == ("manual",)
    assert isinstance(transaction.send(Presented("manual")), NeedManualEntry)
    again = transaction.send(ManualEntry("12AB", "2812"))
    assert isinstance(again, NeedCard) and "not valid" in again.prompt


def test_no_reader_and_no_manual_entry_terminates() -> None:
    done = txn(config(readers=frozenset(), manual_entry=False), 2500).next_event()
    assert isinstance(done, Done) and "no card reader" in done.result.reason


def test_pin_pad_failure_sets_3_10_and_moves_to_the_next_method() -> None:
    result = run(config(), virtual("healthy"), Recorder(), 7500, pins=[PIN_PAD_FAILURE])
    assert result.has_bit("3:10") and result.cvm == "1E0300" and result.signature_required


def test_terminal_without_pin_pad_skips_pin_methods() -> None:
    cfg = config(pin_pad=False, capabilities="E02800")
    trace: list = []
    result = run(cfg, virtual("healthy"), Recorder(), 7500, trace=trace)
    assert not [e for e, _ in trace if isinstance(e, NeedPin)]
    assert result.cvm == "1E0300" and result.entry_mode == "052"


def test_chip_going_mute_mid_transaction_terminates() -> None:
    class MuteAfterGpo:
        def __init__(self, card) -> None:
            self.card, self.gpo = card, False

        def power_on(self) -> bytes:
            return self.card.power_on()

        def execute(self, apdu: bytes) -> bytes:
            if self.gpo:
                raise CardMuteError("silent")
            self.gpo = apdu[1] == 0xA8
            return self.card.execute(apdu)

    result = run_transaction(txn(config(), 7500), MuteAfterGpo(virtual("healthy")), Recorder())
    assert result.terminated and "card mute" in result.reason and result.pending == ()


def test_host_decline_for_stripe_and_timeout_reversal() -> None:
    declined = run(config(), virtual("magstripe-only"), lambda m: response(m, "05"), 7500, "USD",
                   present=["magstripe"])
    assert declined.declined and declined.arc == "05" and declined.pending == ()

    def slow(message):
        raise HostTimeout("no answer")

    timed_out = run(config(), virtual("magstripe-only"), slow, 7500, "USD", present=["magstripe"])
    assert timed_out.declined and timed_out.pending_mtis == ("0400",) and timed_out.messages == ("0200",)


def test_stripe_pin_required_by_service_code_asks_online_pin() -> None:
    card = CARDS.card("magstripe-only").model_copy(update={"service_code": "120"})
    from sim.emv.card import VirtualCard

    trace: list = []
    host = Recorder()
    result = run_transaction(txn(config(), 7500, "USD"), VirtualCard(card, CARDS.issuer(card.issuer)), host,
                             present=["magstripe"], trace=trace)
    assert [e.kind for e, _ in trace if isinstance(e, NeedPin)] == ["online"]
    assert "52" in host.requests[0].fields and result.approved


def test_offline_only_terminal_never_goes_online() -> None:
    cfg = config(terminal_type="23")
    host = Recorder()
    result = run(cfg, virtual("offline-only-iac"), host, 7500)
    assert host.requests == [] and result.arc in ("Y1", "Z1", "Y3", "Z3")
    stripe = run(cfg, virtual("magstripe-only"), host, 7500, "USD", present=["magstripe"])
    assert stripe.declined and "cannot go online" in stripe.reason


def test_when_is_used_for_dates() -> None:
    host = Recorder()
    run(config(), virtual("healthy"), host, 7500, when=datetime(2027, 1, 2, 3, 4, 5))
    request = host.requests[0]
    assert request.icc["9A"] == bytes.fromhex("270102") and request.fields["7"] == "0102030405"
    assert request.fields["12"] == "030405" and request.fields["13"] == "0102"
