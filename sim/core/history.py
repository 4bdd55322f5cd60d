"""A Jepsen-style checker: did the host book exactly what the terminals' history says happened?

Input is two lists built independently of each other:

* the **terminal-side history**: every attempt as :class:`HistoryEvent` records
  (invoked, approved online, approved offline, declined, outcome unknown, reversed),
  keyed by terminal id + STAN (+ DE7 when the terminal knows it);
* the **host ledger's booked effects**: :class:`BookedEffect` records, one per posting to
  a card account, keyed the same way. A reversal is booked under the key of the
  transaction it reverses (DE41 + DE90's STAN and DE7), as the opposite kind.

The checker groups both by key and compares what each attempt should have done to the
card account with what the ledger says it did (net, in the attempt's direction):

* the last outcome event of an attempt wins (approved then declined by the card, ONL-07,
  is declined); ``reversed`` events subtract their amount whatever the outcome;
* approved → its amount less reversals must be booked, exactly once: nothing booked is
  **lost**, a whole multiple is **duplicated**;
* declined, or reversed in full → nothing may stay booked: anything is **unexpected**,
  as is any booking whose key no attempt has;
* unknown (timed out, or only invoked) → booked once or not at all are both correct; the
  checker says which (**resolved**); twice or more is duplicated;
* anything else (a different amount, another currency or card) is **mismatched**;
* per currency, the money the ledger moved must equal the money the history accounts for
  (**balances**, unknown outcomes counted as they resolved).

Zero-amount attempts (account verification) move no money and are checked only for
bookings that do.

Examples
--------
>>> h = [HistoryEvent("invoked", "T1", "1", "4761739001010010", 1250, "EUR"),
...      HistoryEvent("approved-online", "T1", "1", "4761739001010010", 1250, "EUR")]
>>> check(h, []).lost[0].pan
'476173******0010'
>>> check(h, [BookedEffect("T1", "1", None, "4761739001010010", 1250, "978")]).ok
True
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Iterable, Mapping

from ..iso8583.pretty import mask_pan
from .money import CurrencyError, currency, format_amount

Key = tuple[str, str, "str | None"]
"""Terminal id, STAN (6 digits), DE7 or ``None`` when unknown."""


class EventType(str, Enum):
    """What the terminal recorded about an attempt."""

    INVOKED = "invoked"
    APPROVED_ONLINE = "approved-online"
    APPROVED_OFFLINE = "approved-offline"
    DECLINED = "declined"
    UNKNOWN = "unknown"
    REVERSED = "reversed"


_OUTCOMES = {EventType.APPROVED_ONLINE, EventType.APPROVED_OFFLINE, EventType.DECLINED, EventType.UNKNOWN}
_DECIDED = {EventType.APPROVED_ONLINE, EventType.APPROVED_OFFLINE, EventType.DECLINED}
_KINDS = ("debit", "credit")


def _stan(value: Any, where: str) -> str:
    text = str(value)
    if not (text.isdigit() and len(text) <= 6):
        raise ValueError(f"{where}: stan is {value!r}; allowed: up to 6 digits")
    return text.zfill(6)


def _currency(value: Any, where: str) -> str:
    try:
        return currency(value).numeric
    except CurrencyError as exc:
        raise ValueError(f"{where}: currency {value!r}: {exc}") from None


def _amount(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{where}: amount is {value!r}; allowed: an int of minor units >= 0")
    return value


def _kind(value: Any, where: str) -> str:
    if value not in _KINDS:
        raise ValueError(f"{where}: kind is {value!r}; allowed: 'debit' or 'credit'")
    return str(value)


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One thing a terminal recorded about one attempt.

    ``kind`` is the attempt's direction for the cardholder: ``"debit"`` (sale) or
    ``"credit"`` (refund). For ``reversed`` events ``amount`` is the amount reversed.
    """

    type: EventType
    terminal_id: str
    stan: str
    pan: str
    amount: int
    currency: str
    transmitted: str | None = None
    kind: str = "debit"

    def __post_init__(self) -> None:
        where = "history event"
        try:
            kind = EventType(self.type)
        except ValueError:
            raise ValueError(f"{where}: type is {self.type!r}; allowed: {', '.join(e.value for e in EventType)}") from None
        object.__setattr__(self, "type", kind)
        object.__setattr__(self, "stan", _stan(self.stan, where))
        object.__setattr__(self, "currency", _currency(self.currency, where))
        _amount(self.amount, where)
        _kind(self.kind, where)

    @property
    def key(self) -> Key:
        """Terminal id, STAN, DE7."""
        return (self.terminal_id, self.stan, self.transmitted)

    def __repr__(self) -> str:
        return (
            f"HistoryEvent({self.type.value} {self.terminal_id}/{self.stan}/{self.transmitted} "
            f"{mask_pan(self.pan)} {self.kind} {self.amount} {self.currency})"
        )


@dataclass(frozen=True, slots=True)
class BookedEffect:
    """One posting the host ledger made to a card account.

    ``amount`` is positive minor units; ``kind`` says which way: ``"debit"`` takes money
    from the cardholder (a sale, a reversal of a refund), ``"credit"`` gives it back
    (a refund, a reversal of a sale). ``account`` is informational.
    """

    terminal_id: str
    stan: str
    transmitted: str | None
    pan: str
    amount: int
    currency: str
    kind: str = "debit"
    account: str | None = None

    def __post_init__(self) -> None:
        where = "booked effect"
        object.__setattr__(self, "stan", _stan(self.stan, where))
        object.__setattr__(self, "currency", _currency(self.currency, where))
        _amount(self.amount, where)
        _kind(self.kind, where)

    @property
    def key(self) -> Key:
        """Terminal id, STAN, DE7 of the transaction this posting belongs to."""
        return (self.terminal_id, self.stan, self.transmitted)

    @property
    def signed(self) -> int:
        """``+amount`` for a debit, ``-amount`` for a credit."""
        return self.amount if self.kind == "debit" else -self.amount

    @classmethod
    def from_signed(
        cls, terminal_id: str, stan: str, transmitted: str | None, pan: str, amount: int, currency: str,
        account: str | None = None,
    ) -> "BookedEffect":
        """Build from a signed amount: positive debits the cardholder, negative credits."""
        kind = "debit" if amount >= 0 else "credit"
        return cls(terminal_id, stan, transmitted, pan, abs(amount), currency, kind, account)

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> "BookedEffect":
        """Build from a dict with the field names; ``kind`` absent means ``amount`` is signed."""
        missing = {"terminal_id", "stan", "pan", "amount", "currency"} - row.keys()
        if missing:
            raise ValueError(f"booked effect row lacks {', '.join(sorted(missing))}")
        if "kind" in row:
            return cls(
                row["terminal_id"], row["stan"], row.get("transmitted"), row["pan"], row["amount"],
                row["currency"], row["kind"], row.get("account"),
            )
        return cls.from_signed(
            row["terminal_id"], row["stan"], row.get("transmitted"), row["pan"], row["amount"], row["currency"],
            row.get("account"),
        )

    def __repr__(self) -> str:
        return (
            f"BookedEffect({self.terminal_id}/{self.stan}/{self.transmitted} {mask_pan(self.pan)} "
            f"{self.kind} {self.amount} {self.currency})"
        )


EffectAdapter = Callable[[Any], "BookedEffect | None"]
"""Turns one ledger record (any shape) into a :class:`BookedEffect`, or ``None`` to skip it."""


def posting_effect(posting: Any) -> BookedEffect | None:
    """Adapter for ledger postings with signed ``balance_effect`` and ``hold_effect``.

    Reads ``terminal_id``, ``stan``, ``transmitted`` (of the *original* transaction),
    ``pan``, ``currency``, ``booked`` and the two effects. What the posting took from the
    cardholder's available funds is ``hold_effect - balance_effect`` (a debit lowers the
    balance, a hold raises the held amount, a capture does both and so takes nothing
    more); postings not booked or with no net effect are skipped.
    """
    if not getattr(posting, "booked", True):
        return None
    taken = int(posting.hold_effect) - int(posting.balance_effect)
    if taken == 0:
        return None
    return BookedEffect.from_signed(
        posting.terminal_id, posting.stan, posting.transmitted, posting.pan, taken, posting.currency,
        getattr(posting, "account", None),
    )


def effects_from(rows: Iterable[Any], adapter: EffectAdapter | None = None) -> list[BookedEffect]:
    """The hook between a ledger and the checker: adapt each row, drop those the adapter skips.

    Without ``adapter``, rows are :class:`BookedEffect` already or mappings for
    :meth:`BookedEffect.from_mapping`. For a ledger's postings pass :func:`posting_effect`.
    """
    out = []
    for row in rows:
        if adapter is not None:
            effect = adapter(row)
        elif isinstance(row, BookedEffect):
            effect = row
        else:
            effect = BookedEffect.from_mapping(row)
        if effect is not None:
            out.append(effect)
    return out


@dataclass(frozen=True, slots=True)
class Finding:
    """One attempt (or orphan booking) the ledger got wrong; amounts in the attempt's direction."""

    terminal_id: str
    stan: str
    transmitted: str | None
    pan: str
    currency: str
    expected: int
    booked: int
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON reports."""
        return {
            "terminal_id": self.terminal_id, "stan": self.stan, "transmitted": self.transmitted, "pan": self.pan,
            "currency": self.currency, "expected": self.expected, "booked": self.booked, "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Resolution:
    """An attempt whose outcome the terminal never learnt, and what the ledger says happened."""

    terminal_id: str
    stan: str
    transmitted: str | None
    pan: str
    currency: str
    amount: int
    booked: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON reports."""
        return {
            "terminal_id": self.terminal_id, "stan": self.stan, "transmitted": self.transmitted, "pan": self.pan,
            "currency": self.currency, "amount": self.amount, "booked": self.booked,
        }


@dataclass(frozen=True, slots=True)
class Balance:
    """Money in one currency (signed: debits positive): what the history accounts for and what was booked."""

    currency: str
    expected: int
    booked: int

    @property
    def difference(self) -> int:
        """Booked minus expected; 0 when money is conserved."""
        return self.booked - self.expected


@dataclass(frozen=True, slots=True)
class Verdict:
    """The checker's answer; ``ok`` only when nothing is lost, duplicated, unexpected or mismatched."""

    ok: bool
    lost: tuple[Finding, ...] = ()
    duplicated: tuple[Finding, ...] = ()
    unexpected: tuple[Finding, ...] = ()
    mismatched: tuple[Finding, ...] = ()
    resolved: tuple[Resolution, ...] = ()
    balances: tuple[Balance, ...] = ()
    attempts: int = 0
    effects: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON reports (PANs masked)."""
        return {
            "ok": self.ok,
            "attempts": self.attempts,
            "effects": self.effects,
            "lost": [f.to_dict() for f in self.lost],
            "duplicated": [f.to_dict() for f in self.duplicated],
            "unexpected": [f.to_dict() for f in self.unexpected],
            "mismatched": [f.to_dict() for f in self.mismatched],
            "resolved": [r.to_dict() for r in self.resolved],
            "balances": [
                {"currency": b.currency, "expected": b.expected, "booked": b.booked, "difference": b.difference}
                for b in self.balances
            ],
        }

    def pretty(self) -> str:
        """A text report: the summary line, each finding, each resolution, money per currency."""
        head = "OK" if self.ok else "FAILED"
        counts = ", ".join(
            f"{len(items)} {name}"
            for name, items in (("lost", self.lost), ("duplicated", self.duplicated),
                                ("unexpected", self.unexpected), ("mismatched", self.mismatched))
        )
        lines = [
            f"history check: {head} ({counts}; {len(self.resolved)} unknown outcomes resolved)",
            f"attempts {self.attempts}, booked effects {self.effects}",
        ]
        for name, items in (("lost", self.lost), ("duplicated", self.duplicated),
                            ("unexpected", self.unexpected), ("mismatched", self.mismatched)):
            if items:
                lines.append(f"{name}:")
                lines.extend(
                    f"  {_where(f.terminal_id, f.stan, f.transmitted)} {f.pan}  expected {_money(f.expected, f.currency)},"
                    f" booked {_money(f.booked, f.currency)}  {f.detail}"
                    for f in items
                )
        if self.resolved:
            lines.append("resolved:")
            lines.extend(
                f"  {_where(r.terminal_id, r.stan, r.transmitted)} {r.pan}  {_money(r.amount, r.currency)}"
                f"  {'booked' if r.booked else 'not booked'}"
                for r in self.resolved
            )
        lines.append("money by currency:")
        lines.extend(
            f"  {_alpha(b.currency)}  expected {_money(b.expected, b.currency)}  booked {_money(b.booked, b.currency)}"
            f"  difference {_money(b.difference, b.currency)}"
            for b in self.balances
        )
        return "\n".join(lines)


def _where(terminal_id: str, stan: str, transmitted: str | None) -> str:
    return f"{terminal_id} stan {stan} DE7 {transmitted or '-'}"


def _alpha(code: str) -> str:
    try:
        return currency(code).alpha
    except CurrencyError:
        return code


def _money(minor: int, code: str) -> str:
    try:
        return format_amount(minor, currency(code))
    except CurrencyError:
        return f"{minor} ({code})"


@dataclass(slots=True)
class _Attempt:
    """Everything the history says about one key (mutable while the history is read)."""

    key: Key
    pan: str
    currency: str
    kind: str
    amount: int
    outcome: EventType | None = None
    reversed: int = 0

    def add(self, event: HistoryEvent) -> None:
        if event.currency != self.currency or event.kind != self.kind:
            raise ValueError(
                f"history for {_where(*self.key)}: events disagree on currency/kind "
                f"({self.currency}/{self.kind} then {event.currency}/{event.kind})"
            )
        if event.type is EventType.REVERSED:
            self.reversed += event.amount
        elif event.type in _OUTCOMES:
            self.outcome = event.type
            if event.type in (EventType.APPROVED_ONLINE, EventType.APPROVED_OFFLINE):
                self.amount = event.amount

    @property
    def direction(self) -> int:
        return 1 if self.kind == "debit" else -1

    @property
    def target(self) -> int:
        """What must stay booked when the outcome is (or turns out) approved."""
        if self.outcome is EventType.DECLINED:
            return 0
        return self.amount - min(self.reversed, self.amount)

    @property
    def determinate(self) -> bool:
        return self.outcome in _DECIDED or self.target == 0


def _read_history(history: Iterable[HistoryEvent]) -> dict[Key, _Attempt]:
    attempts: dict[Key, _Attempt] = {}
    for event in history:
        attempt = attempts.get(event.key)
        if attempt is None:
            attempt = attempts[event.key] = _Attempt(event.key, event.pan, event.currency, event.kind, event.amount)
        attempt.add(event)
    return attempts


def _match(
    effect: BookedEffect, attempts: Mapping[Key, _Attempt], by_stan: Mapping[tuple[str, str], list[Key]]
) -> Key | None:
    """The attempt a booking belongs to: same DE7, or the attempt whose DE7 the terminal did not record."""
    if effect.key in attempts:
        return effect.key
    loose = (effect.terminal_id, effect.stan, None)
    if loose in attempts:
        return loose
    if effect.transmitted is None:
        candidates = by_stan.get((effect.terminal_id, effect.stan), [])
        if len(candidates) == 1:
            return candidates[0]
    return None


def _finding(a: _Attempt, expected: int, booked: int, detail: str) -> Finding:
    tid, stan, de7 = a.key
    return Finding(tid, stan, de7, mask_pan(a.pan), a.currency, expected, booked, detail)


class _Tally:
    """What judging attempts adds up: money per currency and the findings (shared by both checkers)."""

    __slots__ = ("money", "lost", "duplicated", "unexpected", "mismatched", "resolved", "attempts", "effects")

    def __init__(self) -> None:
        self.money: dict[str, list[int]] = {}
        self.lost: list[Finding] = []
        self.duplicated: list[Finding] = []
        self.unexpected: list[Finding] = []
        self.mismatched: list[Finding] = []
        self.resolved: list[Resolution] = []
        self.attempts = 0
        self.effects = 0

    def copy(self) -> "_Tally":
        out = _Tally()
        out.money = {cur: list(pair) for cur, pair in self.money.items()}
        for name in ("lost", "duplicated", "unexpected", "mismatched", "resolved"):
            setattr(out, name, list(getattr(self, name)))
        out.attempts, out.effects = self.attempts, self.effects
        return out

    def judge(self, attempts: Mapping[Key, _Attempt], effects: Iterable[BookedEffect]) -> None:
        """Match ``effects`` to ``attempts`` and judge every attempt and orphan booking among them.

        ``attempts`` and ``effects`` must be closed under matching: every effect whose
        terminal id and STAN equal an attempt's is in ``effects`` and every such attempt in
        ``attempts`` (the whole history, or one terminal id + STAN of it).
        """
        by_stan: dict[tuple[str, str], list[Key]] = {}
        for key in attempts:
            by_stan.setdefault((key[0], key[1]), []).append(key)
        owned: dict[Key, list[BookedEffect]] = {}
        orphans: dict[Key, list[BookedEffect]] = {}
        money = self.money
        for effect in effects:
            self.effects += 1
            money.setdefault(effect.currency, [0, 0])[1] += effect.signed
            owner = _match(effect, attempts, by_stan)
            if owner is None:
                orphans.setdefault(effect.key, []).append(effect)
            else:
                owned.setdefault(owner, []).append(effect)
        self.attempts += len(attempts)
        for key, a in attempts.items():
            self._attempt(a, owned.get(key, ()))
        for key, group in orphans.items():
            first = group[0]
            net = sum(e.signed for e in group)
            tid, stan, de7 = key
            self.unexpected.append(
                Finding(tid, stan, de7, mask_pan(first.pan), first.currency, 0, net, "booked without an attempt")
            )

    def _attempt(self, a: _Attempt, effects: Iterable[BookedEffect]) -> None:
        d, target = a.direction, a.target
        effects = list(effects)
        same = [e for e in effects if e.currency == a.currency]
        got = d * sum(e.signed for e in same)
        for e in effects:
            if e.currency != a.currency:
                detail = f"booked in currency {_alpha(e.currency)}, attempted in {_alpha(a.currency)}"
                self.mismatched.append(_finding(a, 0, d * e.signed, detail))
            elif e.pan != a.pan:
                self.mismatched.append(_finding(a, target, got, f"booked on card {mask_pan(e.pan)}"))
        counted = target if (a.determinate or got >= target) else 0
        self.money.setdefault(a.currency, [0, 0])[0] += d * counted
        if got == target and a.determinate:
            return
        if not a.determinate and got in (0, target):
            tid, stan, de7 = a.key
            self.resolved.append(Resolution(tid, stan, de7, mask_pan(a.pan), a.currency, target, got == target))
        elif target == 0:
            why = "declined" if a.outcome is EventType.DECLINED else "reversed" if a.reversed else "of zero amount"
            self.unexpected.append(_finding(a, 0, got, f"booked though {why}"))
        elif got == 0:
            how = "offline" if a.outcome is EventType.APPROVED_OFFLINE else "online"
            self.lost.append(_finding(a, target, 0, f"approved {how} but not booked"))
        elif got > target and got % target == 0:
            self.duplicated.append(_finding(a, target, got, f"booked {got // target} times"))
        else:
            self.mismatched.append(_finding(a, target, got, "booked amount differs"))

    def verdict(self) -> Verdict:
        def order(f: Finding | Resolution) -> tuple[str, str, str]:
            return (f.terminal_id, f.stan, f.transmitted or "")

        balances = tuple(Balance(cur, exp, got) for cur, (exp, got) in sorted(self.money.items()))
        bad = self.lost or self.duplicated or self.unexpected or self.mismatched
        ok = not bad and all(b.difference == 0 for b in balances)
        return Verdict(
            ok=ok,
            lost=tuple(sorted(self.lost, key=order)),
            duplicated=tuple(sorted(self.duplicated, key=order)),
            unexpected=tuple(sorted(self.unexpected, key=order)),
            mismatched=tuple(sorted(self.mismatched, key=order)),
            resolved=tuple(sorted(self.resolved, key=order)),
            balances=balances,
            attempts=self.attempts,
            effects=self.effects,
        )


def check(history: Iterable[HistoryEvent], booked: Iterable[BookedEffect]) -> Verdict:
    """Compare a terminal-side history with the ledger's booked effects; see the module notes.

    Everything is read before anything is judged; :class:`sim.core.history_stream.StreamingCheck`
    gives the same verdict from a stream, in memory bounded by what is still open.

    Raises
    ------
    ValueError
        Events of one attempt disagree on currency or direction (the history is corrupt).
    """
    tally = _Tally()
    tally.judge(_read_history(history), booked)
    return tally.verdict()
