"""The whole host under random interleavings, judged by the history checker and an independent model.

Terminals sell, lose answers (timeouts), repeat requests, reverse what they could not
confirm, forward offline approvals (and repeat them when the acknowledgement is lost),
while issuers go down and come back. At any moment nothing may be booked twice or
without a cause; once everything owed is delivered, every account must hold exactly
what a plain model of the terminals' view says, and the history checker must agree.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sim.core import crypto
from sim.core.history import HistoryEvent, check
from sim.core.host import Host
from sim.iso8583 import advice, repeat, reversal
from sim.iso8583.message import Message, transaction_request

CARDS = ("healthy", "insufficient-funds", "low-limits", "mc-healthy")
TERMINALS = ("TERM0001", "TERM0002")


class HostMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.host = Host()
        self.now = datetime(2026, 11, 22, 9, 0)
        self.stan = 0
        self.history: list[HistoryEvent] = []
        self.expected = {label: self.host.cards.card(label).balance for label in CARDS}
        self.owed_reversals: list[tuple[Message, str, int]] = []  # (reversal, label, amount if approved-unknown)
        self.owed_advices: list[tuple[Message, str]] = []
        self.unknown: dict[str, tuple[str, int]] = {}  # stan -> (label, amount): outcome not known yet
        self.last: Message | None = None
        self.last_answer: Message | None = None
        self.last_at = self.now

    # helpers ---------------------------------------------------------------------------------

    def _event(self, kind: str, msg: Message, amount: int | None = None) -> None:
        self.history.append(HistoryEvent(
            kind, msg.terminal_id or "", msg.stan or "", msg.pan or "", msg.amount if amount is None else amount,
            msg.currency or "", msg.transmitted,
        ))

    def _request(self, label: str, amount: int, tid: str, offline: bool) -> Message:
        card = self.host.cards.card(label)
        issuer = self.host.cards.issuer(card.issuer)
        self.stan += 1
        cur = card.currency_info.numeric
        icc = crypto.chip_data(
            issuer, card, amount=amount, currency=cur, country="250", date=self.now,
            un=self.stan.to_bytes(4, "big"), atc=self.stan, tvr=bytes(5) if offline else bytes.fromhex("0000008000"),
        )
        common = dict(
            pan=card.pan, amount=amount, currency=cur, stan=self.stan, transmitted=self.now.strftime("%m%d%H%M%S"),
            terminal_id=tid, entry_mode="051", expiry=card.expiry, icc=icc,
        )
        if offline:
            icc["9F27"] = b"\x40"
            return advice(response_code="Y1", **common)
        return transaction_request("0200", **common)

    # rules -----------------------------------------------------------------------------------

    @rule(label=st.sampled_from(CARDS), amount=st.integers(1, 8000), tid=st.sampled_from(TERMINALS), lose=st.booleans())
    def sale(self, label: str, amount: int, tid: str, lose: bool) -> None:
        msg = self._request(label, amount, tid, offline=False)
        self._event("invoked", msg)
        answer = self.host.handle(msg, self.now)
        self.last, self.last_answer, self.last_at = msg, answer, self.now
        if lose:  # the answer never reaches the terminal: outcome unknown, a reversal is owed
            self._event("unknown", msg)
            self.unknown[msg.stan or ""] = (label, amount)
            self.stan += 1
            rev = reversal(msg, stan=self.stan, transmitted=self.now.strftime("%m%d%H%M%S"), reason="68")
            self.owed_reversals.append((rev, label, amount))
        elif answer.response_code == "00":
            self._event("approved-online", msg)
            self.expected[label] -= amount
        else:
            self._event("declined", msg)

    @precondition(lambda self: self.last is not None and self.now - self.last_at <= self.host.acquirer.duplicate_window)
    @rule()
    def duplicate(self) -> None:
        """A terminal repeats its last request inside the duplicate window: the same answer again."""
        answer = self.host.handle(self.last, self.now)  # type: ignore[arg-type]
        assert self.last_answer is not None
        assert (answer.response_code, answer.auth_code) == (self.last_answer.response_code, self.last_answer.auth_code)

    @rule(label=st.sampled_from(CARDS), amount=st.integers(1, 3000), tid=st.sampled_from(TERMINALS))
    def offline_approval(self, label: str, amount: int, tid: str) -> None:
        msg = self._request(label, amount, tid, offline=True)
        self._event("invoked", msg)
        self._event("approved-offline", msg)
        self.expected[label] -= amount
        self.owed_advices.append((msg, label))

    @precondition(lambda self: self.owed_advices)
    @rule(lose=st.booleans())
    def forward_advice(self, lose: bool) -> None:
        msg, label = self.owed_advices[0]
        answer = self.host.handle(msg, self.now)
        if lose or answer.response_code != "00":
            self.owed_advices[0] = (repeat(msg), label)
        else:
            self.owed_advices.pop(0)

    @precondition(lambda self: self.owed_reversals)
    @rule(lose=st.booleans())
    def send_reversal(self, lose: bool) -> None:
        rev, label, amount = self.owed_reversals[0]
        answer = self.host.handle(rev, self.now)
        if lose or answer.response_code != "00":
            self.owed_reversals[0] = (repeat(rev), label, amount)
            return
        self.owed_reversals.pop(0)
        original = rev.original
        assert original is not None
        self.history.append(HistoryEvent(
            "reversed", rev.terminal_id or "", original.stan, rev.pan or "", amount, rev.currency or "", original.transmitted,
        ))
        self.unknown.pop(original.stan, None)

    @rule(issuer=st.sampled_from(("possim-visa-test", "possim-mc-test")), up=st.booleans())
    def issuer_availability(self, issuer: str, up: bool) -> None:
        self.host.set_issuer_available(issuer, up, self.now)

    @rule(minutes=st.integers(1, 30))
    def time_passes(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)

    # checks ----------------------------------------------------------------------------------

    @invariant()
    def nothing_booked_twice_or_without_cause(self) -> None:
        verdict = check(self.history, self.host.booked_effects())
        assert not verdict.duplicated, verdict.pretty()
        assert not verdict.mismatched, verdict.pretty()
        if not self.host.standin.queued():  # a reversal the acquirer holds for a down issuer is not booked yet
            assert not verdict.unexpected, verdict.pretty()

    def teardown(self) -> None:
        for issuer in ("possim-visa-test", "possim-mc-test"):
            self.host.set_issuer_available(issuer, True, self.now)
        while self.owed_advices:
            self.forward_advice(lose=False)
        while self.owed_reversals:
            self.send_reversal(lose=False)
        self.host.acquirer.deliver_advices(self.now)
        verdict = check(self.history, self.host.booked_effects())
        assert verdict.ok, verdict.pretty()
        for label in CARDS:
            assert self.host.balance(self.host.cards.card(label).pan) == self.expected[label], label


TestHostMachine = HostMachine.TestCase
TestHostMachine.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
