"""Step definitions for the host-side conformance features (features/host/*.feature).

Every step drives the real host core (acquirer, stand-in, settlement, issuers of the
shipped card set); requests carry real ARQCs and PIN blocks built with the test keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from pytest_bdd import given, parsers, scenarios, then, when

from sim.core import crypto
from sim.core.host import Host
from sim.core.money import currency, parse_amount
from sim.core.settlement import BatchState
from sim.iso8583 import advice, financial_request, network_request, reconciliation_request, repeat, reversal
from sim.iso8583.message import Message, batch_upload, transaction_request
from sim.iso8583.samples import sample_sale

scenarios("host")


@dataclass
class World:
    host: Host
    now: datetime = datetime(2026, 11, 22, 10, 30)
    stan: int = 0
    request: Message | None = None
    answer: Message | None = None
    dropped: bool = False
    sales: list[Message] = field(default_factory=list)
    last_reversal: Message | None = None
    last_advice: Message | None = None
    withheld: list[Message] = field(default_factory=list)
    balances: dict[str, int] = field(default_factory=dict)
    upload: object = None
    uploaded: list[Message] = field(default_factory=list)
    upload_answers: list[Message] = field(default_factory=list)

    def next_stan(self) -> int:
        self.stan += 1
        return self.stan

    @property
    def transmitted(self) -> str:
        return self.now.strftime("%m%d%H%M%S")

    def card(self, label: str):
        return self.host.cards.card(label)

    def minor(self, label: str, amount: str) -> int:
        return parse_amount(amount, self.card(label).currency_info)

    def send(self, msg: Message) -> Message:
        for card in self.host.cards.cards:
            self.balances.setdefault(card.label, self.host.balance(card.pan))
        self.request = msg
        self.answer = self.host.handle(msg, self.now)
        return self.answer


@pytest.fixture
def world() -> World:
    return World(Host())


def _icc(world: World, label: str, value: int, stan: int, *, tvr: bytes = bytes.fromhex("0000008000")) -> dict[str, bytes]:
    """DE55 for ``label`` with a valid ARQC (the card's own key, the shipped test IMK)."""
    card = world.card(label)
    return crypto.chip_data(
        world.host.cards.issuer(card.issuer), card, amount=value, currency=card.currency_info.numeric,
        country="250", date=world.now, un=stan.to_bytes(4, "big"), atc=stan, tvr=tvr,
    )


def _chip(world: World, tid: str, mti: str, label: str, amount: str, *, pin: str | None = None, tamper: bool = False) -> Message:
    card = world.card(label)
    value = world.minor(label, amount)
    stan = world.next_stan()
    icc = _icc(world, label, value, stan)
    if tamper:
        icc["9F26"] = bytes(b ^ 0x01 for b in icc["9F26"])
    return transaction_request(
        mti, pan=card.pan, amount=value, currency=card.currency_info.numeric, stan=stan, transmitted=world.transmitted,
        terminal_id=tid, entry_mode="051", expiry=card.expiry, pan_sequence=card.psn, icc=icc,
        pin_block=crypto.encrypt_pin_block(pin, card.pan) if pin else None,
    )


# Given ------------------------------------------------------------------------------------


@given("the host with the shipped test card set")
def _host(world: World) -> None:
    assert world.host.cards.labels


@given(parsers.parse("the time is {stamp}"))
@when(parsers.parse("the time is {stamp}"))
def _time(world: World, stamp: str) -> None:
    world.now = datetime.fromisoformat(stamp)


@given(parsers.parse("the host's cut-off is {cutoff}"))
def _cutoff(world: World, cutoff: str) -> None:
    world.host = Host({"settlement": {"cutoff": cutoff}})


@given(parsers.parse('the issuer of card "{label}" is down'))
def _issuer_down(world: World, label: str) -> None:
    world.host.set_issuer_available(world.card(label).issuer, False, world.now)


# When -------------------------------------------------------------------------------------


@when(parsers.parse('terminal {tid} sends a chip {mti:d} for {amount} with card "{label}" and online PIN {pin}'))
def _chip_pin(world: World, tid: str, mti: int, amount: str, label: str, pin: str) -> None:
    world.send(_chip(world, tid, f"{mti:04d}", label, amount, pin=pin))


@when(parsers.parse('terminal {tid} sends a chip {mti:d} for {amount} with card "{label}" and a tampered ARQC'))
def _chip_tampered(world: World, tid: str, mti: int, amount: str, label: str) -> None:
    world.send(_chip(world, tid, f"{mti:04d}", label, amount, tamper=True))


@when(parsers.parse('terminal {tid} sends a chip {mti:d} for {amount} with card "{label}"'))
def _chip_sale(world: World, tid: str, mti: int, amount: str, label: str) -> None:
    world.send(_chip(world, tid, f"{mti:04d}", label, amount))
    world.sales.append(world.request)


@when(parsers.parse("terminal {tid} sends a keyed 0200 for {amount} EUR with PAN {pan}"))
def _keyed_pan(world: World, tid: str, amount: str, pan: str) -> None:
    world.send(financial_request(
        pan=pan, amount=parse_amount(amount, currency("EUR")), currency="978", stan=world.next_stan(),
        transmitted=world.transmitted, terminal_id=tid, entry_mode="012", expiry="2812",
    ))


@when(parsers.parse('terminal {tid} sends a keyed refund for {amount} with card "{label}"'))
def _refund(world: World, tid: str, amount: str, label: str) -> None:
    card = world.card(label)
    world.send(financial_request(
        pan=card.pan, amount=world.minor(label, amount), currency=card.currency_info.numeric, stan=world.next_stan(),
        transmitted=world.transmitted, terminal_id=tid, entry_mode="012", expiry=card.expiry, processing_code="200000",
    ))


@when(parsers.parse("terminal {tid} reverses that sale"))
def _reverse(world: World, tid: str) -> None:
    world.last_reversal = reversal(world.sales[-1], stan=world.next_stan(), transmitted=world.transmitted, reason="68")
    world.send(world.last_reversal)


@when(parsers.parse("terminal {tid} repeats that reversal as 0401"))
def _repeat_reversal(world: World, tid: str) -> None:
    assert world.last_reversal is not None
    world.send(repeat(world.last_reversal))


@when(parsers.parse('terminal {tid} reverses a sale of {amount} with card "{label}" the host never saw'))
def _reverse_unseen(world: World, tid: str, amount: str, label: str) -> None:
    lost = _chip(world, tid, "0200", label, amount)
    world.sales.append(lost)
    world.send(reversal(lost, stan=world.next_stan(), transmitted=world.transmitted, reason="68"))


@when("the lost sale finally reaches the host")
def _late_original(world: World) -> None:
    world.send(world.sales[-1])


@when(parsers.parse("terminal {tid} sends the same request again"))
def _same_again(world: World, tid: str) -> None:
    world.first_answer = world.answer  # type: ignore[attr-defined]
    world.send(world.request)  # type: ignore[arg-type]


@when(parsers.parse("terminal {tid} sends the same key again for {amount}"))
def _same_key(world: World, tid: str, amount: str) -> None:
    assert world.request is not None
    changed = world.request.replace(DE4=f"{parse_amount(amount, currency('EUR')):012d}", DE55=None, DE22="012")
    world.send(changed)


def _offline_advice(world: World, tid: str, code: str, amount: str, label: str) -> Message:
    card = world.card(label)
    value = world.minor(label, amount)
    stan = world.next_stan()
    icc = _icc(world, label, value, stan, tvr=bytes(5))
    icc["9F27"] = b"\x40"  # TC
    return advice(
        response_code=code, pan=card.pan, amount=value, currency=card.currency_info.numeric, stan=stan,
        transmitted=world.transmitted, terminal_id=tid, entry_mode="051", expiry=card.expiry, icc=icc,
    )


@when(parsers.parse('terminal {tid} sends an offline advice {code} for {amount} with card "{label}" that the host never receives'))
def _withheld_advice(world: World, tid: str, code: str, amount: str, label: str) -> None:
    world.withheld.append(_offline_advice(world, tid, code, amount, label))


@when(parsers.parse('terminal {tid} sends an offline advice {code} for {amount} with card "{label}"'))
def _send_advice(world: World, tid: str, code: str, amount: str, label: str) -> None:
    world.last_advice = _offline_advice(world, tid, code, amount, label)
    world.send(world.last_advice)


@when(parsers.parse("terminal {tid} repeats that advice as 0221"))
def _repeat_advice(world: World, tid: str) -> None:
    assert world.last_advice is not None
    world.send(repeat(world.last_advice))


@when(parsers.parse("terminal {tid} sends the completion advice of that authorization"))
def _completion(world: World, tid: str) -> None:
    auth = world.sales[-1]
    assert world.answer is not None
    world.send(advice(
        response_code="00", auth_code=world.answer.auth_code, pan=auth.pan, amount=auth.amount, currency=auth.currency,
        stan=world.next_stan(), transmitted=world.transmitted, terminal_id=tid, entry_mode="051",
        icc=auth.icc, extra={"90": f"0100{auth.stan}{auth.transmitted}".ljust(42, "0")},
    ))


@when(parsers.parse("terminal {tid} sends an 0800 with code {code}"))
def _network(world: World, tid: str, code: str) -> None:
    world.send(network_request(code, stan=world.next_stan(), transmitted=world.transmitted, terminal_id=tid))


@when(parsers.parse('terminal {tid} sends a 0200 whose amount is "{value}"'))
def _bad_amount(world: World, tid: str, value: str) -> None:
    world.send(sample_sale(stan=world.next_stan(), terminal_id=tid).replace(DE4=value))


@when(parsers.parse('terminal {tid} sends the bytes "{text}"'))
def _garbage(world: World, tid: str, text: str) -> None:
    world.dropped = world.host.receive(text.encode(), world.now) is None


def _send_totals(world: World, tid: str, cur: str, cc: int, ca: str, dc: int, da: str,
                 processing_code: str | None = None) -> None:
    info = currency(cur)
    world.send(reconciliation_request(
        terminal_id=tid, stan=world.next_stan(), transmitted=world.transmitted, currency=info.numeric,
        credits_count=cc, credits_amount=parse_amount(ca, info), debits_count=dc, debits_amount=parse_amount(da, info),
        processing_code=processing_code,
    ))


@when(parsers.parse("terminal {tid} reconciles {cur} with {cc:d} credits for {ca} and {dc:d} debits for {da}"))
def _reconcile(world: World, tid: str, cur: str, cc: int, ca: str, dc: int, da: str) -> None:
    _send_totals(world, tid, cur, cc, ca, dc, da)


@when(parsers.parse("terminal {tid} uploads its batch"))
def _upload(world: World, tid: str) -> None:
    world.upload = world.host.batch_upload(tid, [*world.sales, *world.withheld], world.now)


@when(parsers.parse("terminal {tid} uploads its batch as 0320 messages"))
def _upload_0320(world: World, tid: str) -> None:
    world.uploaded = [batch_upload(m, stan=world.next_stan(), transmitted=world.transmitted)
                      for m in [*world.sales, *world.withheld]]
    world.upload_answers = [world.send(m) for m in world.uploaded]


@when(parsers.parse("terminal {tid} repeats its upload as 0321 messages"))
def _upload_0321(world: World, tid: str) -> None:
    world.upload_answers = [world.send(repeat(m)) for m in world.uploaded]


@when(parsers.parse("terminal {tid} settles {cur} after the upload with {cc:d} credits for {ca} and {dc:d} debits for {da}"))
def _reconcile_after_upload(world: World, tid: str, cur: str, cc: int, ca: str, dc: int, da: str) -> None:
    _send_totals(world, tid, cur, cc, ca, dc, da, processing_code="960000")


@when(parsers.parse("{minutes:d} minutes pass"))
def _wait(world: World, minutes: int) -> None:
    world.now += timedelta(minutes=minutes)


@when(parsers.parse('the issuer of card "{label}" comes back'))
def _issuer_up(world: World, label: str) -> None:
    world.host.set_issuer_available(world.card(label).issuer, True, world.now)


@when(parsers.parse('the issuer of card "{label}" goes down and comes back again'))
def _issuer_bounce(world: World, label: str) -> None:
    issuer = world.card(label).issuer
    world.host.set_issuer_available(issuer, False, world.now)
    world.now += timedelta(minutes=1)
    world.host.set_issuer_available(issuer, True, world.now)


# Then -------------------------------------------------------------------------------------


@then(parsers.parse("the host answers {code:l}"))
@then(parsers.re(r"the host answers (?P<code>\d\d|[A-Z]\d)$"))
def _answers(world: World, code: str) -> None:
    assert world.answer is not None
    assert world.answer.response_code == code, world.host.acquirer.decisions[-1] if world.host.acquirer.decisions else None


@then(parsers.re(r"the host answers (?P<mti>\d{4}) with (?P<code>\d\d)$"))
def _answers_mti(world: World, mti: str, code: str) -> None:
    assert world.answer is not None
    assert (world.answer.mti, world.answer.response_code) == (mti, code)


@then(parsers.parse("the host answers 00 with the same approval code"))
def _same_code(world: World) -> None:
    first = world.first_answer  # type: ignore[attr-defined]
    assert world.answer is not None and world.answer.response_code == "00"
    assert world.answer.auth_code == first.auth_code


@then("the host drops the frame")
def _dropped(world: World) -> None:
    assert world.dropped


@then("the host does not approve it")
def _not_approved(world: World) -> None:
    assert world.answer is not None and world.answer.response_code != "00"


@then("the answer carries an approval code")
def _auth_code(world: World) -> None:
    assert world.answer is not None and world.answer.auth_code and len(world.answer.auth_code) == 6


@then(parsers.parse('the answer carries an ARPC in tag 91 that verifies for card "{label}"'))
def _arpc(world: World, label: str) -> None:
    card = world.card(label)
    issuer = world.host.cards.issuer(card.issuer)
    assert world.answer is not None and world.request is not None
    tag91 = world.answer.icc["91"]
    icc_mk = crypto.icc_master_key(issuer, card)
    assert crypto.verify_arpc(icc_mk, world.request.icc["9F26"], tag91)
    assert not crypto.verify_arpc(icc_mk, bytes(8), tag91)


@then("the answer carries no ARPC")
def _no_arpc(world: World) -> None:
    assert world.answer is not None and "91" not in world.answer.icc


@then("the issuer recorded a cryptogram failure")
def _crypto_failure(world: World) -> None:
    decisions = [d for i in world.host.issuers.values() for d in i.decisions]
    assert decisions[-1].cryptogram is not None and not decisions[-1].cryptogram.ok


@then(parsers.parse("the request carried DE4 {de4} and DE49 {de49}"))
def _request_fields(world: World, de4: str, de49: str) -> None:
    assert world.request is not None
    assert (world.request.get("4"), world.request.get("49")) == (de4, de49)


@then(parsers.parse('the account of card "{label}" is debited {amount}'))
def _debited(world: World, label: str, amount: str) -> None:
    card = world.card(label)
    assert world.host.balance(card.pan) == world.balances[label] - world.minor(label, amount)


@then(parsers.parse('the account of card "{label}" is credited {amount}'))
def _credited(world: World, label: str, amount: str) -> None:
    card = world.card(label)
    assert world.host.balance(card.pan) == world.balances[label] + world.minor(label, amount)


@then(parsers.parse('the account of card "{label}" is unchanged'))
def _unchanged(world: World, label: str) -> None:
    card = world.card(label)
    assert world.host.balance(card.pan) == world.balances.get(label, card.balance)
    assert world.host.available(card.pan) == world.host.balance(card.pan)


@then(parsers.parse('card "{label}" has {amount} held and an unchanged balance'))
def _held(world: World, label: str, amount: str) -> None:
    card = world.card(label)
    issuer = world.host.issuer_for(card.pan)
    assert issuer.held(card.pan) == world.minor(label, amount)
    assert issuer.balance(card.pan) == world.balances[label]


@then(parsers.parse('card "{label}" has nothing held'))
def _nothing_held(world: World, label: str) -> None:
    card = world.card(label)
    assert world.host.issuer_for(card.pan).held(card.pan) == 0


@then("the approval is flagged as stand-in")
def _standin(world: World) -> None:
    assert world.answer is not None and world.host.standin.is_standin_code(world.answer.auth_code)
    assert world.host.acquirer.decisions[-1].stand_in


@then(parsers.parse("the host answers each of them {mti} with {code}"))
def _upload_answers(world: World, mti: str, code: str) -> None:
    assert world.upload_answers
    assert [(a.mti, a.response_code, a.stan) for a in world.upload_answers] == [
        (mti, code, m.stan) for m in world.uploaded]


@then(parsers.parse("the batches of {tid} in {cur} are settled as uploaded"))
def _settled_uploaded(world: World, tid: str, cur: str) -> None:
    batches = world.host.settlement.batches(tid, currency(cur).numeric)
    assert batches and all(b.state is BatchState.UPLOADED for b in batches), batches


@then(parsers.parse("the upload adds {count:d} transaction and closes the batch"))
def _upload_result(world: World, count: int) -> None:
    result = world.upload
    assert len(result.added) == count  # type: ignore[attr-defined]
    assert result.closed  # type: ignore[attr-defined]


@then(parsers.parse("the batch of {day} for {tid} holds {count:d} debits for {amount} {cur}"))
def _batch(world: World, day: str, tid: str, count: int, amount: str, cur: str) -> None:
    info = currency(cur)
    batches = [b for b in world.host.settlement.batches(tid, info.numeric) if b.business_day.isoformat() == day]
    assert len(batches) == 1, batches
    totals = batches[0].totals
    assert (totals.debits_count, totals.debits_amount) == (count, parse_amount(amount, info))
