"""Stand-in (STIP-01): decisions, advice content, the advice queue, and exactly-once delivery under outages."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sim.core.acquirer import Acquirer, IssuerTimeout, bin_match
from sim.core.standin import StandIn
from sim.iso8583.errors import MessageError
from sim.iso8583.message import Message, advice, financial_request, repeat, response, reversal

VISA = "4761739001010010"
MASTERCARD = "5413330089010012"
T0 = datetime(2026, 11, 22, 10, 0, 0)
TRACK2 = VISA + "D28122011234567899"


def request(amount: int = 1000, *, stan: int = 1, currency: str = "978", mti: str = "0200", pin: bool = False,
            chip: bool = False, swipe: bool = False, processing: str = "000000") -> Message:
    return financial_request(
        pan=None if swipe else VISA, track2=TRACK2 if swipe else None, amount=amount, currency=currency,
        stan=stan, transmitted="1122100000", terminal_id="TERM0001",
        entry_mode="051" if chip else "901" if swipe else "012", processing_code=processing,
        icc={"9F26": bytes(8), "9F27": b"\x80"} if chip else None, pin_block="0123456789ABCDEF" if pin else None,
    ).replace(t=mti)


def test_approves_strictly_below_the_limit_and_answers_91_from_it() -> None:
    stip = StandIn({"limits": {"EUR": 5000, "392": 10000}})
    below, decision = stip.decide(request(4999), "visa", T0)
    assert (below.mti, below.response_code, decision.approved, decision.limit) == ("0210", "00", True, 5000)
    at, refused = stip.decide(request(5000, stan=2), "visa", T0)
    assert at.response_code == "91" and at.auth_code is None
    assert refused.reason == "amount 5000 not below stand-in limit 5000"
    assert stip.decide(request(9999, stan=3, currency="392"), "visa", T0)[0].response_code == "00"
    usd, why = stip.decide(request(1, stan=4, currency="840"), "visa", T0)
    assert usd.response_code == "91" and why.reason == "no stand-in limit for currency 840"


def test_what_stand_in_cannot_check_it_does_not_approve() -> None:
    stip = StandIn({"limits": {"EUR": 5000}})
    pin, why = stip.decide(request(pin=True), "visa", T0)
    assert pin.response_code == "91" and why.reason == "online PIN cannot be verified in stand-in"
    cash, why = stip.decide(request(stan=2, processing="010000"), "visa", T0)
    assert cash.response_code == "91" and why.reason == "transaction type 01 not allowed in stand-in"
    chip, why = stip.decide(request(stan=3, chip=True), "visa", T0)
    assert chip.response_code == "00" and why.cryptogram_checked is False and chip.get("55") is None
    refund = stip.decide(request(stan=4, processing="200000"), "visa", T0)[0]
    assert refund.response_code == "00"

    strict = StandIn({"limits": {"EUR": 5000}, "allow_unverified_cryptogram": False, "allow_online_pin": True})
    assert strict.decide(request(stan=5, chip=True), "visa", T0)[1].reason == "cryptogram cannot be verified in stand-in"
    assert strict.decide(request(stan=6, pin=True), "visa", T0)[0].response_code == "00"


def test_stand_in_approval_codes_have_the_prefix_and_are_unique() -> None:
    stip = StandIn({"limits": {"EUR": 5000}, "auth_prefix": "Z9"})
    codes = [stip.decide(request(stan=i), "visa", T0)[0].auth_code for i in range(1, 4)]
    assert codes == ["Z90001", "Z90002", "Z90003"]
    assert all(stip.is_standin_code(c) for c in codes) and not stip.is_standin_code("123456")
    assert not stip.is_standin_code(None)


def test_advice_tells_the_issuer_everything_but_secrets() -> None:
    stip = StandIn({"limits": {"EUR": 5000}, "allow_online_pin": True})
    answer, _ = stip.decide(request(swipe=True, pin=True), "visa", T0)
    [adv] = stip.outbox("visa")
    assert (adv.mti, adv.response_code, adv.auth_code) == ("0220", "00", answer.auth_code)
    assert (adv.amount, adv.stan) == (1000, "000001")
    assert adv.get("52") is None
    assert adv.get("2") == VISA and adv.get("35") == VISA + "D2812201"  # expiry and service code only
    stip.decide(request(stan=2, mti="0100", chip=True), "visa", T0)
    auth_advice = stip.outbox("visa")[1]
    assert auth_advice.mti == "0120" and auth_advice.icc["9F26"] == bytes(8)
    assert VISA not in repr(stip.queued()) and stip.queued()[0].pan == "476173******0010"


def test_a_repeated_request_gets_the_same_answer_and_no_second_advice() -> None:
    stip = StandIn({"limits": {"EUR": 5000}})
    first, _ = stip.decide(request(), "visa", T0)
    again, decision = stip.decide(request(), "visa", T0 + timedelta(seconds=30))
    assert again == first and decision.repeat and decision.reason == "repeat of a stand-in approval"
    assert len(stip) == 1
    assert stip.answered(request(stan=2)) is None


def test_queue_repeats_until_acknowledged_then_forgets() -> None:
    stip = StandIn({"limits": {"EUR": 5000}})
    stip.decide(request(), "visa", T0)
    [first] = stip.outbox("visa")
    assert first.mti == "0220" and stip.outbox("master") == []
    stip.mark_sent(first)
    [again] = stip.outbox("visa")
    assert again.mti == "0221" and stip.queued()[0].attempts == 1
    assert not stip.acknowledge(response(again, "96"))  # not processed: keep it
    assert not stip.acknowledge(response(request(stan=9), "00", auth_code="123456"))  # matches nothing
    assert not stip.acknowledge(response(again, "00").replace(t="0210"))  # wrong answer type
    assert stip.acknowledge(response(again, "00"))
    assert stip.outbox("visa") == [] and len(stip) == 0
    assert not stip.enqueue(first, "visa")  # delivered once: never owed again
    assert not stip.acknowledge(response(again, "00"))



def test_prune_forgets_approvals_and_deliveries_before_the_mark_never_what_is_owed() -> None:
    stip = StandIn({"limits": {"EUR": 5000}})
    stip.decide(request(stan=1), "visa", T0)
    [owed_first] = stip.outbox("visa")
    assert stip.acknowledge(response(owed_first, "00"), T0 + timedelta(seconds=5))
    stip.decide(request(stan=2), "visa", T0 + timedelta(minutes=10))
    assert stip.prune(T0 + timedelta(minutes=1)) == 2  # the first approval and its delivery
    assert stip.answered(request(stan=1)) is None
    assert stip.enqueue(owed_first, "visa")  # its delivery is forgotten: it may be owed again
    assert stip.answered(request(stan=2)) is not None  # after the mark: kept
    assert stip.prune(T0 + timedelta(hours=1)) == 1
    assert len(stip) == 2  # both advices still owed: never pruned

def test_enqueue_keeps_order_and_refuses_doubles() -> None:
    stip = StandIn()
    adv = advice(response_code="Y1", pan=VISA, amount=10, currency="978", stan=5, transmitted="1122100000",
                 terminal_id="TERM0001", entry_mode="012")
    rev = reversal(request(stan=6), stan=7, transmitted="1122100100", mti="0420")
    assert stip.enqueue(adv, "visa") and stip.enqueue(rev, "visa", sent=True)
    assert not stip.enqueue(repeat(adv), "visa")
    assert [m.mti for m in stip.outbox("visa")] == ["0220", "0421"]


def test_config_errors_name_the_key_and_value() -> None:
    with pytest.raises(ValueError, match="'limit'"):
        StandIn({"limit": {}})
    with pytest.raises(ValueError, match=r"'limits'\['EUR'\] is -1"):
        StandIn({"limits": {"EUR": -1}})
    with pytest.raises(ValueError, match="'limits' key 'EURO'"):
        StandIn({"limits": {"EURO": 1}})
    with pytest.raises(ValueError, match="'auth_prefix'"):
        StandIn({"auth_prefix": "STIP"})
    with pytest.raises(MessageError) as err:
        StandIn().decide(advice(response_code="Y1", pan=VISA, amount=1, currency="978", stan=1,
                                transmitted="1122100000", terminal_id="T", entry_mode="012"), "visa", T0)
    assert err.value.field == "t"


# The acquirer and stand-in under random outages: every stand-in approval reaches its issuer once ----

LIMIT = 5000
NAMES = ("visa", "master")
ADVICE_MTIS = ("0120", "0121", "0220", "0221")


class LedgerIssuer:
    """An issuer double that approves everything and books each original key at most once.

    A reversal that arrives before its original marks the key so the original is never
    booked, as a real ledger must. ``receipts`` keeps every MTI received per original key.
    """

    def __init__(self, name: str, bins: list[str]) -> None:
        self.name = name
        self.bins = bins
        self.receipts: dict[tuple[str, str, str], list[str]] = {}
        self.net: dict[tuple[str, str, str], int] = {}
        self.bookings: Counter[tuple[str, str, str]] = Counter()
        self.reversal_keys: set[tuple[str, str, str, str]] = set()
        self.reversed_unseen: set[tuple[str, str, str]] = set()
        self.lose_answers = 0
        self.lose_requests = 0

    def bin_match(self, pan: str) -> int:
        return bin_match(pan, self.bins)

    def _book(self, key: tuple[str, str, str], amount: int) -> None:
        if key in self.net or key in self.reversed_unseen:
            return
        self.net[key] = amount
        self.bookings[key] += 1

    def handle(self, msg: Message, now: datetime) -> Message:
        if self.lose_requests:
            self.lose_requests -= 1
            raise IssuerTimeout()
        key = (msg.terminal_id or "", msg.stan or "", msg.transmitted or "")
        mti = msg.original_mti
        if mti in ("0400", "0420"):
            original = msg.original
            assert original is not None
            okey = (key[0], original.stan, original.transmitted)
            self.receipts.setdefault(okey, []).append(msg.mti)
            if (mti[:2], *key) not in self.reversal_keys:
                self.reversal_keys.add((mti[:2], *key))
                if okey in self.net:
                    self.net[okey] -= min(msg.amount or 0, self.net[okey])
                else:
                    self.reversed_unseen.add(okey)
            answer = response(msg, "00")
        else:
            self.receipts.setdefault(key, []).append(msg.mti)
            if mti in ("0100", "0200") or msg.response_code in ("00", "Y1", "Y3"):
                self._book(key, msg.amount or 0)
            answer = response(msg, "00", auth_code="ISS001" if mti in ("0100", "0200") else None)
        if self.lose_answers:
            self.lose_answers -= 1
            raise IssuerTimeout()
        return answer


class AcquirerWithStandIn(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.issuers = {"visa": LedgerIssuer("visa", ["476173"]), "master": LedgerIssuer("master", ["541333"])}
        self.pans = {"visa": VISA, "master": MASTERCARD}
        self.acq = Acquirer(list(self.issuers.values()), {"standin": {"limits": {"EUR": LIMIT}}})
        self.now = T0
        self.stan = 0
        self.requests: list[tuple[str, Message]] = []
        self.standin_answers: dict[tuple[str, str, str], Message] = {}
        self.approved: dict[tuple[str, str, str], tuple[str, int]] = {}
        self.standin: dict[tuple[str, str, str], str] = {}
        self.originals: dict[tuple[str, str, str], Message] = {}
        self.reversed: set[tuple[str, str, str]] = set()
        self.advices: list[tuple[str, Message]] = []
        self.lossy = False

    def _next(self) -> int:
        self.stan += 1
        self.now += timedelta(seconds=1)
        return self.stan

    def _note(self, issuer: str, msg: Message, answer: Message) -> None:
        key = (msg.terminal_id or "", msg.stan or "", msg.transmitted or "")
        decision = self.acq.decisions[-1]
        if answer.response_code == "00":
            self.approved[key] = (issuer, msg.amount or 0)
            self.originals[key] = msg
            if self.acq.standin.is_standin_code(answer.auth_code):
                assert decision.stand_in and (msg.amount or 0) < LIMIT and msg.get("52") is None
                self.standin[key] = issuer
                self.standin_answers.setdefault(key, answer)
        else:
            assert answer.response_code == "91" and decision.stand_in

    @rule(issuer=st.sampled_from(NAMES), amount=st.integers(1, 2 * LIMIT), pin=st.booleans(), auth=st.booleans())
    def authorize(self, issuer: str, amount: int, pin: bool, auth: bool) -> None:
        msg = financial_request(
            pan=self.pans[issuer], amount=amount, currency="978", stan=self._next(), transmitted="1122100000",
            terminal_id="TERM0001", entry_mode="051", icc={"9F26": bytes(8)},
            pin_block="0123456789ABCDEF" if pin else None,
        ).replace(t="0100" if auth else "0200")
        answer = self.acq.handle(msg, self.now)
        assert answer.mti == ("0110" if auth else "0210")
        self.requests.append((issuer, msg))
        self._note(issuer, msg, answer)

    @precondition(lambda self: self.requests)
    @rule(pick=st.integers(0, 10**6))
    def repeat_request(self, pick: int) -> None:
        issuer, msg = self.requests[pick % len(self.requests)]
        self.now += timedelta(seconds=1)
        answer = self.acq.handle(msg, self.now)
        key = (msg.terminal_id or "", msg.stan or "", msg.transmitted or "")
        if key in self.standin_answers:  # REV-03: the original answer again, never a second decision
            assert answer == self.standin_answers[key]
        self._note(issuer, msg, answer)

    @rule(issuer=st.sampled_from(NAMES), amount=st.integers(1, 2 * LIMIT))
    def offline_advice(self, issuer: str, amount: int) -> None:
        msg = advice(response_code="Y1", pan=self.pans[issuer], amount=amount, currency="978", stan=self._next(),
                     transmitted="1122100000", terminal_id="TERM0001", entry_mode="051", icc={"9F26": bytes(8)})
        assert self.acq.handle(msg, self.now).response_code == "00"
        self.advices.append((issuer, msg))

    @precondition(lambda self: self.advices)
    @rule(pick=st.integers(0, 10**6))
    def repeat_advice(self, pick: int) -> None:
        _, msg = self.advices[pick % len(self.advices)]
        self.now += timedelta(seconds=1)
        assert self.acq.handle(repeat(msg), self.now).response_code == "00"

    @precondition(lambda self: set(self.approved) - self.reversed)
    @rule(pick=st.integers(0, 10**6), again=st.booleans())
    def reverse(self, pick: int, again: bool) -> None:
        keys = sorted(set(self.approved) - self.reversed)
        key = keys[pick % len(keys)]
        rev = reversal(self.originals[key], stan=self._next(), transmitted="1122100100", reason="68")
        assert self.acq.handle(rev, self.now).response_code == "00"
        if again:
            assert self.acq.handle(repeat(rev), self.now).response_code == "00"
        self.reversed.add(key)

    @rule(issuer=st.sampled_from(NAMES), up=st.booleans())
    def availability(self, issuer: str, up: bool) -> None:
        self.acq.set_available(issuer, up, self.now)

    @rule(issuer=st.sampled_from(NAMES), seconds=st.integers(1, 60))
    def scheduled_outage(self, issuer: str, seconds: int) -> None:
        self.acq.schedule_outage(issuer, self.now, self.now + timedelta(seconds=seconds))

    @rule(seconds=st.integers(1, 90))
    def tick(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule()
    def deliver(self) -> None:
        self.acq.deliver_advices(self.now)

    @rule(issuer=st.sampled_from(NAMES), answers=st.integers(0, 2), requests=st.integers(0, 2))
    def lose(self, issuer: str, answers: int, requests: int) -> None:
        self.issuers[issuer].lose_answers += answers
        self.issuers[issuer].lose_requests += requests
        self.lossy = self.lossy or bool(answers or requests)

    @invariant()
    def nothing_booked_twice(self) -> None:
        for fake in self.issuers.values():
            assert all(count == 1 for count in fake.bookings.values())

    def teardown(self) -> None:
        for fake in self.issuers.values():
            fake.lose_answers = fake.lose_requests = 0
        self.now = max([self.now, *(o.end for o in self.acq.outages)]) + timedelta(seconds=1)
        for name in NAMES:
            self.acq.set_available(name, True, self.now)
        assert len(self.acq.standin) == 0, self.acq.standin.queued()
        for key, issuer in self.standin.items():
            received = [m for m in self.issuers[issuer].receipts.get(key, []) if m in ADVICE_MTIS]
            assert received, f"stand-in approval {key} never reached {issuer}"
            assert all(m in ("0121", "0221") for m in received[1:]), received
            if not self.lossy:
                assert len(received) == 1, received
        for key, (issuer, amount) in self.approved.items():
            want = 0 if key in self.reversed else amount
            assert self.issuers[issuer].net.get(key, 0) == want, (key, self.issuers[issuer].net.get(key))
        for issuer, msg in self.advices:
            key = (msg.terminal_id or "", msg.stan or "", msg.transmitted or "")
            assert self.issuers[issuer].net[key] == msg.amount
            received = self.issuers[issuer].receipts[key]
            assert received.count("0220") <= 1 and (self.lossy or received.count("0220") == 1), received


AcquirerWithStandIn.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestAcquirerWithStandIn = AcquirerWithStandIn.TestCase
