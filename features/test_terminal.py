"""Step definitions for the terminal-side conformance features (features/terminal/*.feature).

Every scenario runs the real terminal kernel (:class:`sim.emv.kernel.Transaction`,
driven by :func:`sim.emv.kernel.run_transaction`) on a hardware profile from
``hardware_profiles/``, with a virtual card of the shipped test card set
(``sim/data/cards.toml``) and the in-process host core (:class:`sim.core.host.Host`),
or a host that cannot be reached or never answers. Expected values in the feature
files come from CONFORMANCE.md, the EMV books and the card data; nothing here
computes them.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

import pytest
from pytest_bdd import given, parsers, scenarios, then, when

from sim.core import crypto
from sim.core.host import Host
from sim.core.money import currency, parse_amount
from sim.emv import tlv
from sim.emv.card import VirtualCard
from sim.emv.card_risk import CardCounters
from sim.emv.faults import Fault
from sim.emv.kernel import (
    ExceptionFile,
    HostTimeout,
    HostUnreachable,
    NeedCard,
    NeedPin,
    RandomSelectionParams,
    ScanQr,
    TerminalConfig,
    Transaction,
    TransactionResult,
    run_transaction,
)
from sim.emv.tvr import Tsi, Tvr
from sim.iso8583.message import Message
from sim.profiles import load_profile

scenarios("terminal")


class FixedDraw(random.Random):
    """The terminal's random number for random transaction selection, fixed by the scenario."""

    def __init__(self, draw: int) -> None:
        super().__init__(0)
        self.draw = draw

    def randint(self, a: int, b: int) -> int:  # noqa: D102 - the kernel's one draw
        assert (a, b) == (1, 99), "random selection draws 1..99 (EMV Book 3 10.6.2)"
        return self.draw


@dataclass
class World:
    """One terminal, one card, one host, and what the transactions did."""

    now: datetime = datetime(2026, 3, 15, 10, 30)
    profile: str = "countertop-ethernet"
    changes: dict[str, Any] = field(default_factory=dict)
    host: Host = field(default_factory=Host)
    link: str = "up"
    tamper_arpc: bool = False
    label: str | None = None
    faults: list[Fault] = field(default_factory=list)
    counters: CardCounters | None = None
    card: VirtualCard | None = None
    draw: int | None = None
    stan: int = 0
    requests: list[Message] = field(default_factory=list)
    answers: list[Message] = field(default_factory=list)
    results: list[TransactionResult] = field(default_factory=list)
    traces: list[list] = field(default_factory=list)
    delivered: list[Message] = field(default_factory=list)
    balances: dict[str, int] = field(default_factory=dict)

    @property
    def result(self) -> TransactionResult:
        assert self.results, "no transaction has run"
        return self.results[-1]

    @property
    def trace(self) -> list:
        return self.traces[-1]

    @property
    def request(self) -> Message:
        assert self.requests, "the terminal sent no request"
        return self.requests[-1]

    def config(self) -> TerminalConfig:
        return dataclasses.replace(TerminalConfig.from_profile(self.profile), **self.changes)

    def virtual_card(self) -> VirtualCard:
        if self.card is None:
            assert self.label is not None, "no card given"
            self.card = VirtualCard.from_label(self.label, self.host.cards, faults=self.faults, counters=self.counters)
        return self.card

    def pan(self, label: str) -> str:
        return self.host.cards.card(label).pan

    def remember_balances(self) -> None:
        for card in self.host.cards.cards:
            self.balances.setdefault(card.label, self.host.balance(card.pan))

    def send(self, message: Message) -> Message:
        """The link to the host, as the scenario set it up."""
        if self.link == "down":
            raise HostUnreachable("no connection to the host")
        self.requests.append(message)
        if self.link == "timeout":
            raise HostTimeout("no answer within the profile's host_response_s")
        answer = self.host.handle(message, self.now)
        if self.link == "answer lost":
            self.answers.append(answer)
            raise HostTimeout("the answer was lost on the way back")
        if self.tamper_arpc and "91" in answer.icc:
            icc = dict(answer.icc)
            icc["91"] = bytes([icc["91"][0] ^ 0xFF]) + icc["91"][1:]
            answer = answer.replace(DE55=tlv.encode(icc).hex().upper())
        self.answers.append(answer)
        return answer


@pytest.fixture
def world() -> World:
    return World()


def _minor(amount: str, cur: str) -> int:
    return parse_amount(amount, currency(cur))


# Given ------------------------------------------------------------------------------------------


@given(parsers.parse("the time is {stamp}"))
def _time(world: World, stamp: str) -> None:
    world.now = datetime.fromisoformat(stamp)


@given("the host is up")
def _host_up(world: World) -> None:
    world.link = "up"


@given("the host is unreachable")
def _host_down(world: World) -> None:
    world.link = "down"


@given("the host never answers")
def _host_silent(world: World) -> None:
    world.link = "timeout"


@given("the host's answers are lost on the way back")
def _answers_lost(world: World) -> None:
    world.link = "answer lost"


@given("the link corrupts the ARPC in the host's answer")
def _tamper(world: World) -> None:
    world.tamper_arpc = True


@given(parsers.parse('a "{profile}" terminal'))
def _terminal(world: World, profile: str) -> None:
    load_profile(profile)  # a missing or bad profile fails here, named
    world.profile = profile


@given("random transaction selection is off")
def _no_random(world: World) -> None:
    world.changes["random_selection"] = RandomSelectionParams(enabled=False)


@given(parsers.parse("the terminal's random selection draw is {draw:d}"))
def _draw(world: World, draw: int) -> None:
    world.draw = draw


@given(parsers.parse('the terminal\'s exception file lists card "{label}"'))
def _exception_file(world: World, label: str) -> None:
    world.changes["exception_file"] = ExceptionFile.of(world.pan(label))


@given(parsers.parse("the terminal's TAC-Denial is {value}"))
def _tac_denial(world: World, value: str) -> None:
    world.changes["tac_denial"] = bytes.fromhex(value)
    world.changes["applications"] = tuple(
        dataclasses.replace(app, tac_denial=None) for app in world.config().applications
    )


@given(parsers.parse("the terminal supports only the application {aid}"))
def _only_app(world: World, aid: str) -> None:
    apps = tuple(app for app in world.config().applications if app.aid == bytes.fromhex(aid))
    assert apps, f"the profile does not list {aid}"
    world.changes["applications"] = apps


@given(parsers.parse("the offline store holds {used:d} of its {capacity:d} places"))
def _store(world: World, used: int, capacity: int) -> None:
    assert load_profile(world.profile).offline_store.capacity == capacity, "the profile's offline_store.capacity"
    world.changes["offline_store_free"] = capacity - used


@given(parsers.parse("the {reader} reader is broken"))
def _reader_broken(world: World, reader: str) -> None:
    readers = set(world.config().readers)
    assert reader in readers, f"the profile has no {reader} reader"
    world.changes["readers"] = frozenset(readers - {reader})


@given("every card reader is broken")
def _readers_broken(world: World) -> None:
    world.changes["readers"] = frozenset()


@given("the printer is out of paper")
def _no_paper(world: World) -> None:
    assert load_profile(world.profile).printer.present, "the profile has no printer"
    world.changes["paper_left"] = 0


@given(parsers.parse("the printer has paper for {count:d} receipts"))
def _paper(world: World, count: int) -> None:
    world.changes["paper_left"] = count


@given(parsers.parse('card "{label}"'))
def _card(world: World, label: str) -> None:
    world.host.cards.card(label)
    world.label = label
    world.remember_balances()


@given(parsers.parse("its {target} fails with {effect}"))
def _fault(world: World, target: str, effect: str) -> None:
    world.faults.append(Fault(target, effect))


@given(parsers.parse("it has made {count:d} offline transactions since its last online one at ATC {last:d}"))
def _offline_run(world: World, count: int, last: int) -> None:
    world.counters = CardCounters(atc=last + count, last_online_atc=last, offline_count=count)


@given(parsers.parse("its PIN try counter (9F17) is {tries:d}"))
def _pin_tries(world: World, tries: int) -> None:
    world.counters = CardCounters(pin_tries_left=tries)


# When -------------------------------------------------------------------------------------------

_HOW = {
    "inserting the card": ["contact"],
    "tapping the card": ["contactless"],
    "swiping the card": ["magstripe"],
    "swiping, then inserting the card": ["magstripe", "contact"],
    "tapping, then inserting the card": ["contactless", "contact"],
}


def _pay(world: World, amount: str, cur: str, how: str, pins: list[str] | None = None, method: str = "card") -> None:
    world.remember_balances()
    world.stan += 1
    txn = Transaction(
        world.config(), amount=_minor(amount, cur), currency=cur, when=world.now,
        unpredictable_number=(0x1A2B3C00 + world.stan).to_bytes(4, "big"), stan=world.stan * 10,
        rng=FixedDraw(world.draw) if world.draw is not None else None, payment_method=method,
    )
    trace: list = []
    card = world.virtual_card() if world.label is not None else None
    result = run_transaction(txn, card, world.send, present=_HOW.get(how, ()), pins=pins or (), trace=trace)
    world.results.append(result)
    world.traces.append(trace)


@when(parsers.re(r"the cardholder pays (?P<amount>[\d.]+) (?P<cur>[A-Z]{3}) by (?P<how>[a-z, ]+)$"))
def _pays(world: World, amount: str, cur: str, how: str) -> None:
    _pay(world, amount, cur, how)


@when(parsers.re(r"the cardholder pays (?P<amount>[\d.]+) (?P<cur>[A-Z]{3}) by (?P<how>[a-z, ]+) with PIN (?P<pin>\d+)$"))
def _pays_pin(world: World, amount: str, cur: str, how: str, pin: str) -> None:
    _pay(world, amount, cur, how, [pin])


@when(parsers.re(r"the cardholder pays (?P<amount>[\d.]+) (?P<cur>[A-Z]{3}) by (?P<how>[a-z, ]+) "
                 r"typing the PINs (?P<pins>[\d, ]+)$"))
def _pays_pins(world: World, amount: str, cur: str, how: str, pins: str) -> None:
    _pay(world, amount, cur, how, [p.strip() for p in pins.split(",")])


@when(parsers.parse("the cardholder pays {amount} {cur} with the QR code of a wallet holding the card"))
def _pays_qr(world: World, amount: str, cur: str) -> None:
    _pay(world, amount, cur, "qr", method="qr")


@when("the terminal delivers what it owes")
def _deliver(world: World) -> None:
    world.remember_balances()
    for message in world.result.pending:
        world.delivered.append(world.host.handle(message, world.now))


# Then: the decision -----------------------------------------------------------------------------


@then(parsers.parse("the transaction is {outcome}"))
def _outcome(world: World, outcome: str) -> None:
    assert world.result.outcome.value == outcome, world.result.summary()


@then(parsers.parse('8A is "{arc}"'))
def _arc(world: World, arc: str) -> None:
    assert world.result.arc == arc, world.result.summary()


@then("there is no authorisation response code")
def _no_arc(world: World) -> None:
    assert world.result.arc is None, world.result.summary()


@then(parsers.re(r"the card gave an? (?P<kind>TC|AAC|ARQC)$"))
def _cryptogram(world: World, kind: str) -> None:
    assert world.result.cryptogram == kind, world.result.summary()


@then("the card gave no cryptogram")
def _no_cryptogram(world: World) -> None:
    assert world.result.cryptogram is None, world.result.summary()


@then(parsers.parse('DE22 is "{mode}"'))
def _entry_mode(world: World, mode: str) -> None:
    assert world.result.entry_mode == mode, world.result.summary()


@then(parsers.re(r"TVR (?P<address>\d:[0-9A-F]{2}) (?P<name>[a-z_]+) is (?P<state>set|not set)$"))
def _tvr_bit(world: World, address: str, name: str, state: str) -> None:
    assert Tvr.bit(address).name == name, f"TVR {address} is {Tvr.bit(address).name}, not {name}"
    byte, mask = int(address[0]), int(address[2:], 16)
    raw = bytes.fromhex(world.result.tvr)
    is_set = bool(raw[byte - 1] & mask)
    assert is_set == (state == "set"), f"TVR {world.result.tvr} {world.result.tvr_bits}"
    assert (name in world.result.tvr_bits) == is_set


@then(parsers.re(r"TSI (?P<address>\d:[0-9A-F]{2}) (?P<name>[a-z_]+) is (?P<state>set|not set)$"))
def _tsi_bit(world: World, address: str, name: str, state: str) -> None:
    assert Tsi.bit(address).name == name, f"TSI {address} is {Tsi.bit(address).name}, not {name}"
    assert Tsi.from_hex(world.result.tsi).test(address) == (state == "set"), world.result.tsi


@then(parsers.parse('the CVM results are "{cvm}"'))
def _cvm(world: World, cvm: str) -> None:
    assert world.result.cvm == cvm, (world.result.cvm, world.result.cvm_label)


@then("a signature is required")
def _signature(world: World) -> None:
    assert world.result.signature_required


@then(parsers.parse('the reason says "{words}"'))
def _reason(world: World, words: str) -> None:
    assert words in world.result.reason, world.result.reason


@then(parsers.parse('the issuer authentication {state}'))
def _issuer_auth(world: World, state: str) -> None:
    assert world.result.issuer_authentication == state, world.result.summary()


# Then: what went over the wire ------------------------------------------------------------------


def _mtis(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.replace(" then ", ",").split(",") if part.strip())


@then(parsers.re(r"the terminal sent (?P<mtis>nothing to the host|\d{4}(?:(?:, | then )\d{4})*)$"))
def _sent(world: World, mtis: str) -> None:
    if mtis == "nothing to the host":
        assert world.result.messages == () and world.requests == [], world.result.messages
        return
    assert world.result.messages == _mtis(mtis), world.result.messages
    assert tuple(m.mti for m in world.requests[-len(world.result.messages):]) == _mtis(mtis)


@then(parsers.re(r"the terminal owes (?P<mtis>nothing|\d{4}(?:(?:, | then )\d{4})*)$"))
def _owes(world: World, mtis: str) -> None:
    expected = () if mtis == "nothing" else _mtis(mtis)
    assert world.result.pending_mtis == expected, world.result.pending_mtis


@then(parsers.parse("the request's DE55 holds {tags}"))
def _de55_tags(world: World, tags: str) -> None:
    icc = world.request.icc
    missing = [tag for tag in tags.split() if tag not in icc]
    assert not missing, f"DE55 lacks {missing}; has {list(icc)}"


@then(parsers.parse("the request's {tag} is {value}"))
def _de55_value(world: World, tag: str, value: str) -> None:
    if tag.startswith("DE"):
        assert world.request.get(tag[2:]) == value, world.request.get(tag[2:])
        return
    assert world.request.icc[tag].hex().upper() == value, world.request.icc[tag].hex().upper()


@then(parsers.parse("the request carries {what}"))
def _request_carries(world: World, what: str) -> None:
    fields = world.request.fields
    checks: dict[str, Callable[[], bool]] = {
        "a PIN block in DE52": lambda: "52" in fields,
        "no PIN block": lambda: "52" not in fields,
        "track 2 in DE35 and no chip data": lambda: "35" in fields and "55" not in fields,
        "the keyed PAN and expiry and no track data": lambda: "2" in fields and "14" in fields and "35" not in fields,
        "the wallet's PAN and expiry and no chip or track data":
            lambda: "2" in fields and "14" in fields and "35" not in fields and "55" not in fields,
    }
    assert checks[what](), sorted(fields)


@then("the request's ARQC verifies with the card's key")
def _arqc_verifies(world: World) -> None:
    # The host found it valid: it answered with an ARPC computed over this very ARQC.
    card = world.virtual_card()
    icc_mk = crypto.icc_master_key(world.host.cards.issuer(card.card.issuer), card.card)
    assert crypto.verify_arpc(icc_mk, world.request.icc["9F26"], world.answers[-1].icc["91"])


@then(parsers.parse("the TVR sent in the request (95) has {address} set"))
def _sent_tvr(world: World, address: str) -> None:
    assert Tvr(world.request.icc["95"]).test(address), world.request.icc["95"].hex()


@then("the host's answer carries an ARPC in tag 91")
def _arpc(world: World) -> None:
    assert world.answers and "91" in world.answers[-1].icc


@then(parsers.parse("the host answered {codes}"))
def _host_codes(world: World, codes: str) -> None:
    assert [a.response_code for a in world.answers] == codes.split(", ")


@then(parsers.parse("the terminal owes a reversal of the {mti} for {amount} {cur}"))
def _reversal(world: World, mti: str, amount: str, cur: str) -> None:
    reversal = next(m for m in world.result.pending if m.mti in ("0400", "0420"))
    assert reversal.amount == _minor(amount, cur) and reversal.original is not None
    assert reversal.original.mti == mti and reversal.original.stan == world.request.stan


@then(parsers.parse('the advice it owes says 8A "{arc}" and carries a TC'))
def _advice(world: World, arc: str) -> None:
    advice = next(m for m in world.result.pending if m.mti == "0220")
    assert advice.response_code == arc and advice.icc["8A"] == arc.encode() and advice.icc["9F27"] == b"\x40"
    assert "35" not in advice.fields and "52" not in advice.fields


@then(parsers.parse("the host acknowledged {what}"))
def _acked(world: World, what: str) -> None:
    answer_mti = {"reversal": "0410", "advice": "0230", "completion": "0230"}
    expected = [(answer_mti[word.removeprefix("the ")], "00") for word in what.split(" and ")]
    assert [(a.mti, a.response_code) for a in world.delivered] == expected


# Then: money ------------------------------------------------------------------------------------


@then(parsers.parse('the account of card "{label}" is debited {amount} {cur}'))
def _debited(world: World, label: str, amount: str, cur: str) -> None:
    assert world.host.balance(world.pan(label)) == world.balances[label] - _minor(amount, cur)


@then(parsers.parse('the account of card "{label}" has {amount} {cur} held and an unchanged balance'))
def _held(world: World, label: str, amount: str, cur: str) -> None:
    pan = world.pan(label)
    assert world.host.balance(pan) == world.balances[label]
    assert world.host.balance(pan) - world.host.available(pan) == _minor(amount, cur)


@then(parsers.parse('the account of card "{label}" is unchanged'))
def _unchanged(world: World, label: str) -> None:
    pan = world.pan(label)
    assert world.host.balance(pan) == world.balances[label] == world.host.available(pan)


# Then: the terminal's prompts -------------------------------------------------------------------


def _prompts(world: World) -> list[NeedCard]:
    return [event for event, _ in world.trace if isinstance(event, NeedCard)]


@then(parsers.parse('the terminal first asked to "{prompt}"'))
def _first_prompt(world: World, prompt: str) -> None:
    assert _prompts(world)[0].prompt == prompt, _prompts(world)[0]


@then(parsers.parse('the terminal then asked for the {interface} only, saying "{words}"'))
def _then_prompt(world: World, interface: str, words: str) -> None:
    later = _prompts(world)[1]
    assert later.accept == (interface,) and words in later.prompt, later


@then(parsers.parse('the terminal then said "{words}"'))
def _then_said(world: World, words: str) -> None:
    later = _prompts(world)[1]
    assert later.prompt == words, later


@then("no card was read")
def _no_card(world: World) -> None:
    assert world.result.entry_mode == "" and world.result.interface is None and not world.result.masked_pan


@then(parsers.parse('the receipt is "{status}"'))
def _receipt(world: World, status: str) -> None:
    assert world.result.receipt == status, world.result.receipt
    assert world.result.receipt_printed == (status == "printed")


@then("the terminal asked to scan the wallet's QR code and no card")
def _scanned(world: World) -> None:
    assert [type(e).__name__ for e, _ in world.trace if isinstance(e, (NeedCard, ScanQr))] == ["ScanQr"]


@then(parsers.parse("the PIN pad asked for {kinds}"))
def _pin_prompts(world: World, kinds: str) -> None:
    asked = [f"{e.kind} PIN ({e.tries_left} tries left)" if e.tries_left is not None else f"{e.kind} PIN"
             for e, _ in world.trace if isinstance(e, NeedPin)]
    assert asked == ([] if kinds == "nothing" else [k.strip() for k in kinds.split(", ")]), asked


@then(parsers.parse("the card's PIN try counter is {tries:d}"))
def _card_tries(world: World, tries: int) -> None:
    assert world.virtual_card().pin_tries_left == tries
