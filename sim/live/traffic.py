"""Realistic authorization traffic for load tests and benchmarks: pure, seeded, no I/O.

A load test is only as good as its requests. The host verifies ARQCs, checks card
status, expiry, limits and funds, books refunds and reversals, so the generator
sends what a fleet of terminals sends: chip sales whose DE55 carries a real ARQC
computed under the test card's key (:func:`sim.core.crypto.chip_data`, the same
code the card and issuer use), contactless taps, swipes, refunds (processing code
20), reversals (0400, DE90) of its own earlier sales, 0800 echoes, and bursts of
0220 advices of offline approvals made during an outage.

Every :class:`Request` carries the DE39 the host must answer, derived here from the
card data and the issuer's documented check order (status 41/43/57, expiry 54,
amount limit 61, funds 51, else 00; reversals and advices are acknowledged 00), so a
load run counts a wrong answer as a failure instead of only timing it.

Why a load card set
-------------------
The shipped cards allow 20 approvals a day (velocity, 65) and 10 000.00 of balance
(51): a load run would turn every sale into a decline within seconds. The host of
a load run therefore uses :func:`load_card_set`: the same shipped cards, PANs, keys,
statuses and expiries, with velocity and balance lifted on the cards the mix
expects to approve (role ``approve``). The declining cards keep their data, and
the generator picks amounts that make them decline deterministically whatever the
order requests arrive in: above the amount limit for ``over-limit`` (61), above the
balance for ``over-balance`` (51, never refunded or advised, so it never grows).
Online PINs are always the right one (a wrong PIN is stateful: 55, then 75 for
everyone). :func:`load_card_set_toml` writes the same set as TOML for a host
process (``possim host --cards FILE``).

Public API (stable)
-------------------
``Traffic(*, seed=0, terminal_id="LOAD0001", cards=None, mix=DEFAULT_MIX,
card_mix=DEFAULT_CARD_MIX, reversal_lag=64, country="250", pool=0, pool_from=None)``
    One terminal's stream (unique DE41; DE11 counts up and wraps at 999999);
    ``pool_from``: another stream whose pooled messages this one restamps.
``traffic.next(now) -> Request``
    The next request, its kind drawn from ``mix``.
``traffic.make(kind, now) -> Request``
    A request of the given kind (one of :data:`KINDS`; ``"reversal"`` falls back to
    a chip sale while no earlier sale is old enough to reverse).
``traffic.prefill(now)``
    With ``pool=N``: build every pool in full now (a load generator does it before
    measuring, so no ARQC is computed on the hot path).
``traffic.templates() -> list[dict]``
    The field dicts pooled requests and echoes restamp (``Request.template``).
``traffic.advice_burst(now, count) -> list[Request]``
    ``count`` 0220 advices (Y1) of offline approvals, as a terminal sends them when
    the link comes back after an outage.
``Request``: ``kind``, ``message`` (:class:`~sim.iso8583.message.Message`, built
    when asked), ``fields``, ``expected`` (DE39), ``card`` (label or ``None``),
    ``reason``; ``mti``, ``key`` (the QMUX match key), ``encode(dialect)``;
    ``template`` and ``stamps`` (the pooled fields and the ones changed for this
    send -- DE11, DE7, DE41, and DE12/DE13 or DE90 where the message has them -- for
    :class:`sim.load.wire.WireEncoder`; ``template`` is None when the request was
    built in full).
``expected_code(card, *, debit, amount, now) -> (code, reason)``
    The issuer's answer to an authorization of ``amount`` on ``card`` at ``now``.
``load_card_set(cards=None, card_mix=DEFAULT_CARD_MIX) -> CardSet``;
``load_card_set_toml(text, card_mix=DEFAULT_CARD_MIX) -> str``;
``lift_card_toml(text, lift) -> str`` (the card set file rewriter both use).
``KINDS``, ``DEFAULT_MIX``, ``DEFAULT_CARD_MIX``, ``CardRole``.

Examples
--------
>>> from datetime import datetime
>>> t = Traffic(seed=1, terminal_id="LOAD0001")
>>> r = t.make("chip sale", datetime(2026, 11, 30, 10, 0))
>>> r.message.mti, r.message.entry_mode, r.message.terminal_id
('0200', '051', 'LOAD0001')
>>> sorted({Traffic(seed=s).make("echo", datetime(2026, 11, 30)).expected for s in range(3)})
['00']
>>> expected_code(t.cards.card("lost"), debit=True, amount=100, now=datetime(2026, 11, 30))
('41', 'card lost')
"""

from __future__ import annotations

import random
import re
from bisect import bisect
from collections import deque
from itertools import accumulate
from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum
from typing import Callable, Mapping, NamedTuple

from ..core import crypto
from ..core.cards import Card, CardSet, load_cards
from ..iso8583.dialect import DEFAULT, Dialect
from ..iso8583.message import Message, OriginalData, advice, network_request, reversal, transaction_request

__all__ = [
    "CardRole",
    "DEFAULT_CARD_MIX",
    "DEFAULT_MIX",
    "KINDS",
    "Request",
    "Traffic",
    "expected_code",
    "load_card_set",
    "lift_card_toml",
    "load_card_set_toml",
]

KINDS: tuple[str, ...] = ("chip sale", "contactless", "swipe sale", "refund", "reversal", "echo", "advice")
"""Transaction kinds (the Locust request name)."""

DEFAULT_MIX: Mapping[str, int] = {
    "chip sale": 60, "contactless": 25, "refund": 3, "reversal": 2, "echo": 5, "advice": 5,
}
"""Share of each kind in :meth:`Traffic.next` (relative weights). A card without a chip
turns a chip sale or tap into a swipe sale."""


class CardRole(str, Enum):
    """What a card of the mix is there for; decides the amounts drawn for it."""

    APPROVE = "approve"  # amounts within every limit: 00 (velocity and balance lifted for load)
    OVER_LIMIT = "over-limit"  # amounts above amount_limit: 61
    OVER_BALANCE = "over-balance"  # amounts above the balance, within the limit: 51
    DECLINE = "decline"  # declined by status or expiry whatever the amount: 41/43/57/54


DEFAULT_CARD_MIX: Mapping[str, tuple[int, CardRole]] = {
    "healthy": (300, CardRole.APPROVE),
    "mc-healthy": (250, CardRole.APPROVE),
    "pin-1234": (80, CardRole.APPROVE),
    "online-only-iac": (60, CardRole.APPROVE),
    "offline-only-iac": (30, CardRole.APPROVE),
    "jpy-healthy": (40, CardRole.APPROVE),
    "kwd-healthy": (20, CardRole.APPROVE),
    "magstripe-only": (40, CardRole.APPROVE),
    "insufficient-funds": (60, CardRole.OVER_BALANCE),
    "low-limits": (30, CardRole.OVER_LIMIT),
    "expired": (40, CardRole.DECLINE),
    "lost": (20, CardRole.DECLINE),
    "stolen": (15, CardRole.DECLINE),
    "blocked": (15, CardRole.DECLINE),
}
"""Card label -> (relative weight, role). About 18% of sales decline: 51 (6%), 54 (4%),
61 (3%), 41 (2%), 43 and 57 (1.5% each) -- in the range card-present retail sees."""

LIFTED_VELOCITY = 10**9
"""Approvals per window a load card set allows on an ``approve`` card."""

LIFTED_WINDOW_S = 1
"""The velocity window of an ``approve`` card in a load card set, seconds. The issuer keeps
the time of every approval a card's window still counts, so a day's window at thousands of
approvals a second would grow by gigabytes over a soak test; one second of them is a
few thousand entries, and 10**9 approvals a second are never reached."""

LIFTED_BALANCE = 10**15
"""Opening balance (minor units) of an ``approve`` card in a load card set."""

_LIFTS = {"velocity_count": LIFTED_VELOCITY, "velocity_window_seconds": LIFTED_WINDOW_S, "balance": LIFTED_BALANCE}
"""What a load card set lifts on an ``approve`` card, field by field."""

_STATUS = {"lost": ("41", "card lost"), "stolen": ("43", "card stolen"), "blocked": ("57", "card blocked")}

# Sale amounts in minor units per currency: (low, high) buckets and their weights.
# Integers only: DE4 is minor units, and no amount here ever passes through a float.
_AMOUNTS: Mapping[str, tuple[tuple[int, int], ...]] = {
    "EUR": ((100, 2_500), (2_500, 10_000), (10_000, 50_000)),
    "USD": ((100, 2_500), (2_500, 10_000), (10_000, 50_000)),
    "JPY": ((100, 3_000), (3_000, 15_000), (15_000, 80_000)),
    "KWD": ((100, 8_000), (8_000, 30_000), (30_000, 150_000)),
}
_BUCKET_WEIGHTS = (60, 30, 10)
_CONTACTLESS_MAX = {"EUR": 5_000, "USD": 5_000, "JPY": 10_000, "KWD": 15_000}
"""Taps stay under a contactless CVM limit (no PIN)."""
_PIN_ABOVE = {"EUR": 5_000, "USD": 5_000, "JPY": 10_000, "KWD": 15_000}
"""Contact chip sales above this carry an online PIN block (DE52), the right PIN."""


def expected_code(card: Card, *, debit: bool, amount: int, now: datetime) -> tuple[str, str]:
    """The DE39 the issuer gives an authorization on ``card``, from the card data alone.

    Follows the issuer's check order (:data:`sim.core.issuer.CHECK_ORDER`) for a
    well-formed request with the right PIN and a valid ARQC in the card's currency:
    status, expiry, then for debits amount limit and funds. Velocity is assumed to
    have headroom (a load card set lifts it); funds are judged on the opening
    balance, which holds for the cards whose balance the generator never changes.

    >>> from datetime import datetime
    >>> cards = load_cards()
    >>> expected_code(cards.card("low-limits"), debit=True, amount=5001, now=datetime(2026, 1, 1))
    ('61', 'amount over the limit')
    >>> expected_code(cards.card("expired"), debit=False, amount=100, now=datetime(2026, 1, 1))
    ('54', 'card expired')
    """
    if card.status in _STATUS:
        return _STATUS[card.status]
    if card.expired(now):
        return "54", "card expired"
    if debit:
        if amount > card.amount_limit:
            return "61", "amount over the limit"
        if amount > card.balance:
            return "51", "insufficient funds"
    return "00", "approved"


class Request:
    """One request and the answer the host owes it.

    A request built in full holds its fields. A pooled one (``Traffic(pool=N)``)
    holds the pooled message's field dict (``template``, shared, read-only) and the
    fields it changes (``stamps``: DE11, DE7, DE41 and, where the message has them,
    DE12, DE13 or DE90), so a load generator can splice those into bytes it encoded
    once (:class:`sim.load.wire.WireEncoder`); ``fields`` and ``message`` are built
    from both only when asked for.
    """

    __slots__ = ("kind", "expected", "card", "reason", "template", "stamps", "mti", "key", "_fields", "_message")

    @classmethod
    def restamped(cls, kind: str, expected: str, card: str | None, reason: str, template: Mapping[str, str],
                  stamps: Mapping[str, str], key: tuple[str, str, str], mti: str) -> "Request":
        """A pooled request, its ``key`` and ``mti`` (``template["t"]``) already known (a load
        generator's hot path: the same request as ``Request(kind, None, ..., template=..., stamps=...)``)."""
        self = object.__new__(cls)
        self.kind, self.expected, self.card, self.reason = kind, expected, card, reason
        self.template, self.stamps, self.key, self.mti = template, stamps, key, mti
        self._fields = self._message = None
        return self

    def __init__(self, kind: str, message: Message | None, expected: str, card: str | None, reason: str, *,
                 template: Mapping[str, str] | None = None, stamps: Mapping[str, str] | None = None) -> None:
        self.kind, self.expected, self.card, self.reason = kind, expected, card, reason
        self.template = template
        self.stamps: Mapping[str, str] = stamps or {}
        self._message = message
        if message is not None:
            self._fields: Mapping[str, str] | None = message.fields
        elif template is not None:
            self._fields = None
        else:
            raise ValueError("a Request needs a message or a template")
        source = template if template is not None else self._fields
        assert source is not None
        self.mti: str = source["t"]
        """The request MTI (the Locust request type)."""
        stamps = self.stamps
        self.key: tuple[str, str, str] = (
            self.mti[:2], stamps.get("41") or source.get("41", ""), stamps.get("11") or source.get("11", ""))
        """MTI class + DE41 + DE11: the key its answer carries (QMUX)."""

    @property
    def fields(self) -> Mapping[str, str]:
        """The request's fields (pyiso8583 field dict); read-only."""
        if self._fields is None:
            assert self.template is not None
            self._fields = {**self.template, **self.stamps}
        return self._fields

    @property
    def message(self) -> Message:
        """The request as a :class:`~sim.iso8583.message.Message`."""
        if self._message is None:
            self._message = Message(dict(self.fields))
        return self._message

    def encode(self, dialect: Dialect = DEFAULT) -> bytes:
        """The message's bytes (unframed) in ``dialect``."""
        return dialect.encode(dict(self.fields))

    def __repr__(self) -> str:
        return f"<Request {self.kind} {self.mti} DE11 {self.key[2]} expects {self.expected} ({self.card})>"


@dataclass(slots=True)
class _Pooled:
    """A pool entry: the message built in full once, its card, and its DE39 per month.

    What a restamped request needs of the message and the card is copied here once, so
    the hot path reads this entry alone, not the message's field dict or the card.
    """

    fields: dict[str, str]
    card: Card
    refund: bool
    kind: str
    amount: int
    month: tuple[int, int] = (0, 0)
    answer: tuple[str, str] = ("", "")
    mti_class: str = ""
    """The first two digits of the MTI: what an answer's MTI shares with its request's."""
    sale: bool = False
    """Its approvals are sales a later reversal may name."""
    mti: str = ""
    label: str = ""
    """The card's label."""
    local: bool = False
    """The message carries the local time and date (DE12, DE13), restamped with the rest."""

    def __post_init__(self) -> None:
        self.mti = self.fields["t"]
        self.mti_class = self.mti[:2]
        self.sale = not self.refund and self.kind != "advice"
        self.label = self.card.label
        self.local = "12" in self.fields


class _Sale(NamedTuple):
    """An approved sale a later reversal may name.

    A sale built in full keeps its request. A pooled one keeps only what its reversal
    needs -- the pool entry's fields, its trace number and the second's stamps, all
    shared with other objects -- not the request and its stamps: a stream keeps up to
    2 x ``reversal_lag`` sales, and a load generator allocates every request anew.
    """

    request: Request | None
    card: Card
    serial: int
    template: Mapping[str, str] | None = None
    stan: str = ""
    stamp: tuple[str, str, str, tuple[int, int]] = ("", "", "", (0, 0))
    """DE7, DE12, DE13 (and the month) of the second it was sent in."""


_new_sale = tuple.__new__


_POOLED_KINDS = frozenset(("chip sale", "contactless", "swipe sale", "refund", "advice"))


def _check_mix(card_set: CardSet, card_mix: Mapping[str, tuple[int, CardRole]]) -> None:
    labels = set(card_set.labels)
    for label, (weight, role) in card_mix.items():
        if label not in labels:
            raise ValueError(f"card mix names card {label!r}, not in the card set {card_set.source}; labels: {', '.join(card_set.labels)}")
        if not isinstance(weight, int) or weight < 0:
            raise ValueError(f"card mix weight of {label!r} is {weight!r}; it must be an int >= 0")
        CardRole(role)


def load_card_set(cards: CardSet | None = None, card_mix: Mapping[str, tuple[int, CardRole]] = DEFAULT_CARD_MIX) -> CardSet:
    """The card set a load run's host uses: ``cards`` with headroom on the ``approve`` cards.

    Velocity and balance of every card with role ``approve`` are lifted to
    :data:`LIFTED_VELOCITY` approvals per :data:`LIFTED_WINDOW_S` and
    :data:`LIFTED_BALANCE`; everything else (PANs, keys,
    status, expiry, limits, the declining cards) is the shipped data.

    >>> s = load_card_set()
    >>> s.card("healthy").velocity_count == LIFTED_VELOCITY, s.card("low-limits").velocity_count
    (True, 3)
    """
    base = cards if cards is not None else load_cards()
    _check_mix(base, card_mix)
    lifted = {label for label, (_, role) in card_mix.items() if CardRole(role) is CardRole.APPROVE}
    new = tuple(
        c.model_copy(update=_LIFTS) if c.label in lifted else c
        for c in base.cards
    )
    return base.model_copy(update={"cards": new})


_LABEL = re.compile(r'^label\s*=\s*"([^"]+)"')
_FIELD = re.compile(r"^(velocity_count|velocity_window_seconds|balance)\s*=\s*(\d+)")

Lift = Callable[[str, str, int], "int | None"]
"""(card label, field ``velocity_count``, ``velocity_window_seconds`` or ``balance``, value
in the file) -> the new value, or None to keep it."""


def lift_card_toml(text: str, lift: Lift) -> str:
    """``text`` (a card set file) with the velocity and ``balance`` lines ``lift`` changes.

    The one place a card set file is rewritten for load: only those lines change
    (each keeps what it said before in a comment), so the comments and every other
    value of the source stay as they were. Used by :func:`load_card_set_toml` and by
    :func:`sim.live.sales.write_load_cards`; the caller validates the result with
    :func:`sim.core.cards.load_cards`.

    >>> src = '[[cards]]\\nlabel = "a"\\nbalance = 500   # 5.00\\nvelocity_count = 20\\n'
    >>> print(lift_card_toml(src, lambda label, field, value: value * 2 if field == "balance" else None))
    [[cards]]
    label = "a"
    balance = 1000   # lifted for load (was 500   # 5.00)
    velocity_count = 20
    <BLANKLINE>
    """
    out: list[str] = []
    label: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("[["):
            label = None
        match = _LABEL.match(stripped)
        if match:
            label = match.group(1)
        field = _FIELD.match(stripped)
        if field and label is not None:
            value = lift(label, field.group(1), int(field.group(2)))
            if value is not None:
                line = f"{field.group(1)} = {value}   # lifted for load (was {stripped.split('=', 1)[1].strip()})"
        out.append(line)
    return "\n".join(out) + "\n"


def load_card_set_toml(text: str, card_mix: Mapping[str, tuple[int, CardRole]] = DEFAULT_CARD_MIX) -> str:
    """:func:`load_card_set` as card-set TOML: ``text`` (a card set file) with the same lifts.

    >>> src = '[[cards]]\\nlabel = "healthy"\\nbalance = 1000000   # 10 000.00\\nvelocity_count = 20\\n'
    >>> print(load_card_set_toml(src, {"healthy": (1, CardRole.APPROVE)}))
    [[cards]]
    label = "healthy"
    balance = 1000000000000000   # lifted for load (was 1000000   # 10 000.00)
    velocity_count = 1000000000   # lifted for load (was 20)
    <BLANKLINE>
    """
    lifted = {label for label, (_, role) in card_mix.items() if CardRole(role) is CardRole.APPROVE}

    def lift(label: str, field: str, value: int) -> int | None:
        if label not in lifted:
            return None
        return _LIFTS[field]

    return lift_card_toml(text, lift)


class Traffic:
    """One terminal's request stream: seeded, pure (the caller passes ``now``).

    Parameters
    ----------
    seed : int
        Same seed, same ``now`` sequence: same requests, byte for byte.
    terminal_id : str
        DE41 (8 characters); give every concurrent stream its own, as the host
        pairs answers and detects duplicates on DE41 + DE11 + DE7.
    cards : CardSet, optional
        Default :func:`load_card_set`. Every ``approve`` card of the mix must have
        velocity and balance headroom (a ValueError says which does not).
    mix : mapping
        Kind -> relative weight for :meth:`next`.
    card_mix : mapping
        Card label -> (weight, :class:`CardRole`).
    reversal_lag : int
        A reversal only targets a sale sent at least this many requests earlier, so
        its answer has arrived before the reversal leaves (keep it above the
        requests a connection has in flight), and one of the last 2 x
        ``reversal_lag`` approved sales not yet reversed: a cancellation soon after
        the sale.
    country : str
        Terminal country code (9F1A), ISO 3166 numeric.
    pool : int
        0 (default): every chip request gets a fresh ARQC (about 50 us of 3DES each).
        N > 0: the first N purchases, refunds and advices of each kind are built in
        full and later ones reuse one of them (drawn by the seed) with a fresh DE11,
        DE7, DE12 and DE13: the ARQC still verifies (it covers amount, currency,
        date, UN and ATC, not the trace number), the card's ATC repeats. This takes
        the cryptography off a load generator's hot path; the host does not check
        ATC replay. The reversal of such a sale is built in full once per pool entry
        and later restamped the same way (DE11, DE7, and DE90 naming the sale).
        Every pooled request also carries this stream's DE41, so streams can share
        one pool (``pool_from``).
    pool_from : Traffic, optional
        A stream (with the same ``pool``) whose pooled messages, and the reversals
        built from them, this stream restamps instead of building its own: the
        terminals of one load generator process share one pool. Each stream still
        draws its own kinds, pool entries, trace numbers and sales to reverse from
        its own seed; its requests depend on the other stream's pool as well.
        Sharing keeps what a process walks through per request small (one
        stream's pool, not one per terminal) and builds the pool once.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        terminal_id: str = "LOAD0001",
        cards: CardSet | None = None,
        mix: Mapping[str, int] = DEFAULT_MIX,
        card_mix: Mapping[str, tuple[int, CardRole]] = DEFAULT_CARD_MIX,
        reversal_lag: int = 64,
        country: str = "250",
        pool: int = 0,
        pool_from: "Traffic | None" = None,
    ) -> None:
        if len(terminal_id) != 8:
            raise ValueError(f"terminal_id {terminal_id!r} must be 8 characters (DE41)")
        unknown = set(mix) - set(KINDS)
        if unknown:
            raise ValueError(f"mix names unknown kinds {sorted(unknown)}; allowed: {', '.join(KINDS)}")
        if not any(w > 0 for w in mix.values()):
            raise ValueError("mix gives every kind weight 0")
        self.cards = cards if cards is not None else load_card_set(card_mix=card_mix)
        _check_mix(self.cards, card_mix)
        self.terminal_id = terminal_id
        self.country = country
        self.reversal_lag = reversal_lag
        self._rng = random.Random(seed)
        self._kinds = [k for k, w in mix.items() if w > 0]
        self._kind_cum = list(accumulate(mix[k] for k in self._kinds))
        self._kind_total = self._kind_cum[-1] + 0.0
        self._random = self._rng.random
        entries = [(self.cards.card(label), CardRole(role), weight) for label, (weight, role) in card_mix.items() if weight > 0]
        for card, role, _ in entries:
            if role is CardRole.APPROVE and (card.velocity_count < 10**6 or card.balance < 10**12):
                raise ValueError(
                    f"card {card.label!r} allows {card.velocity_count} approvals per {card.velocity_window_seconds} s "
                    f"and holds {card.balance}: a load run would see 65/51 instead of 00; use load_card_set() "
                    "(and run the host with it: possim host --cards FILE of load_card_set_toml)"
                )
        self._cards = [(c, r) for c, r, _ in entries]
        self._card_cum = list(accumulate(w for _, _, w in entries))
        self._pool_offsets: dict[str, float] = {}
        self._approving = [c for c, r in self._cards if r is CardRole.APPROVE]
        self._approving_chip = [c for c in self._approving if c.emv is not None]
        if not self._approving_chip:
            raise ValueError("card mix has no chip card with role approve (needed for advices and refunds)")
        self._stan = 0
        self._serial = 0
        self._atc: dict[str, int] = {}
        # The sales a reversal may name: the last 2 x reversal_lag approved ones not yet
        # reversed, so the oldest is old enough once the deque is full. Holding more keeps
        # thousands of requests alive per stream, which a load generator then walks through
        # its caches for nothing.
        self._sales: deque[_Sale] = deque(maxlen=2 * max(reversal_lag, 1))
        if pool < 0:
            raise ValueError(f"pool {pool} must be >= 0")
        self.pool = pool
        self._pooled_kinds = _POOLED_KINDS if pool else frozenset()
        self._pools: dict[str, list[_Pooled]] = {}
        self._echo: dict[str, str] | None = None
        self._reversals: dict[int, tuple[Mapping[str, str], dict[str, str], OriginalData]] = {}
        """id of a pooled sale's fields -> (those fields, the fields of its reversal, their DE90), built once."""
        if pool_from is not None:
            if pool_from.pool != pool:
                raise ValueError(f"pool {pool} differs from the pool of the stream shared ({pool_from.pool})")
            self._pools, self._reversals = pool_from._pools, pool_from._reversals
        self._stamp_now: datetime | None = None
        self._stamp: tuple[str, str, str, tuple[int, int]] = ("", "", "", (0, 0))

    # Counters -------------------------------------------------------------------------------

    def _next_stan(self) -> int:
        self._stan = self._stan % 999_999 + 1
        self._serial += 1
        return self._stan

    def _stamps(self, now: datetime) -> tuple[str, str, str, tuple[int, int]]:
        """DE7, DE12, DE13 and (year, month) of ``now``, formatted once per distinct ``now``."""
        if now != self._stamp_now:
            self._stamp_now = now
            self._stamp = (now.strftime("%m%d%H%M%S"), now.strftime("%H%M%S"), now.strftime("%m%d"), (now.year, now.month))
        return self._stamp

    def _next_atc(self, card: Card) -> int:
        atc = self._atc.get(card.pan, self._rng.randrange(1, 0x4000)) % 0xFFFF + 1
        self._atc[card.pan] = atc
        return atc

    # Draws ----------------------------------------------------------------------------------

    def _amount(self, card: Card, role: CardRole, kind: str) -> int:
        rng = self._rng
        alpha = card.currency_info.alpha
        if role is CardRole.OVER_LIMIT:
            return rng.randint(card.amount_limit + 1, 2 * card.amount_limit)
        if role is CardRole.OVER_BALANCE:
            return rng.randint(card.balance + 1, min(card.amount_limit, max(card.balance * 20, card.balance + 1)))
        if kind == "contactless":
            top = _CONTACTLESS_MAX.get(alpha, 10 ** card.currency_info.exponent * 50)
            return min(rng.randint(10 ** card.currency_info.exponent // 10 or 1, top), card.amount_limit)
        buckets = _AMOUNTS.get(alpha) or tuple((lo * 10 ** card.currency_info.exponent // 100 or 1, hi * 10 ** card.currency_info.exponent // 100) for lo, hi in _AMOUNTS["EUR"])
        low, high = rng.choices(buckets, _BUCKET_WEIGHTS)[0]
        return min(rng.randint(low, high), card.amount_limit)

    def _card(self) -> tuple[Card, CardRole]:
        return self._rng.choices(self._cards, cum_weights=self._card_cum)[0]

    def _pool_card(self, kind: str, index: int) -> tuple[Card, CardRole]:
        """The card of entry ``index`` of the pool of ``kind`` (a sale): the pool holds each
        card of the mix in proportion to its weight, within one entry of its share
        (systematic sampling, the offset drawn once per pool from the seed), so a load run
        declines at the mix's rates whatever the pool's size and seed. Entries are drawn
        from the pool at random, so their order (by card) does not matter.
        """
        offset = self._pool_offsets.get(kind)
        if offset is None:
            offset = self._pool_offsets[kind] = self._rng.random()
        at = (index + offset) * self._card_cum[-1] / self.pool
        return self._cards[min(bisect(self._card_cum, at), len(self._cards) - 1)]

    # Builders -------------------------------------------------------------------------------

    def _chip(self, card: Card, amount: int, now: datetime, *, transaction_type: str = "00", offline: bool = False) -> dict[str, bytes]:
        icc = crypto.chip_data(
            self.cards.issuer(card.issuer), card, amount=amount, currency=card.currency_info.numeric,
            country=self.country, date=now, un=self._rng.getrandbits(32).to_bytes(4, "big"), atc=self._next_atc(card),
            tvr=bytes(5) if offline else bytes.fromhex("0000008000"), transaction_type=transaction_type,
        )
        if offline:
            icc["9F27"] = b"\x40"  # TC: approved offline by the card
        return icc

    def _purchase(self, kind: str, now: datetime, card: Card, role: CardRole, *, refund: bool = False) -> Request:
        amount = self._amount(card, role, "contactless" if kind == "contactless" else "sale")
        stan = self._next_stan()
        common: dict = dict(
            pan=card.pan, amount=amount, currency=card.currency_info.numeric, stan=stan, transmitted=now,
            terminal_id=self.terminal_id, expiry=card.expiry, local_time=now.strftime("%H%M%S"),
            local_date=now.strftime("%m%d"), merchant_id="POSSIMLOAD00001",
        )
        if refund:
            common["processing_code"] = "200000"
        if card.emv is None or "chip_mute" in card.faults:
            # No chip (or a mute one): the stripe, plain or as a fallback from the chip.
            kind = kind if refund else "swipe sale"
            entry = "801" if card.emv is not None else "901"
            msg = transaction_request("0200", entry_mode=entry, track2=card.track2(), **common)
        else:
            tap = kind == "contactless"
            icc = self._chip(card, amount, now, transaction_type="20" if refund else "00")
            pin = None
            if not tap and not refund and amount > _PIN_ABOVE.get(card.currency_info.alpha, 0):
                pin = crypto.encrypt_pin_block(card.pin, card.pan)
            msg = transaction_request(
                "0200", entry_mode="071" if tap else "051", pan_sequence=card.psn, icc=icc, pin_block=pin,
                track2=card.track2(), **common,
            )
        code, reason = expected_code(card, debit=not refund, amount=amount, now=now)
        request = Request(kind, msg, code, card.label, reason)
        if code == "00" and not refund:
            self._sales.append(_Sale(request, card, self._serial))
        return request

    def _pooled(self, kind: str, now: datetime) -> Request | None:
        """A pooled request of ``kind`` restamped for ``now``, or None while the pool fills.

        The hot path of a load generator: no message is built and nothing is
        formatted but the trace number; DE7/DE12/DE13 are formatted once per
        distinct ``now`` and the expected DE39 once per pool entry and month (it
        depends on ``now`` only through the card's expiry month).
        """
        pool = self._pools.get(kind)
        if pool is None or len(pool) < self.pool:
            return None
        entry = pool[int(self._random() * len(pool))]  # uniform, without randrange's Python calls
        # self._stamps(now) and self._next_stan(), inlined (the caller passes one `now` a second)
        stamp = self._stamp if now is self._stamp_now else self._stamps(now)
        transmitted, local_time, local_date, month = stamp
        self._stan = number = self._stan % 999_999 + 1
        self._serial += 1
        stan = f"{number:06d}"
        terminal = self.terminal_id
        if entry.local:
            stamps = {"11": stan, "7": transmitted, "12": local_time, "13": local_date, "41": terminal}
        else:
            stamps = {"11": stan, "7": transmitted, "41": terminal}
        if entry.month != month:
            if entry.kind == "advice":
                entry.answer = ("00", "advice booked")
            else:
                entry.answer = expected_code(entry.card, debit=not entry.refund, amount=entry.amount, now=now)
            entry.month = month
        code, reason = entry.answer
        request = Request.restamped(entry.kind, code, entry.label, reason, entry.fields, stamps,
                                    (entry.mti_class, terminal, stan), entry.mti)
        if entry.sale and code == "00":
            # _Sale(...) without its __new__
            self._sales.append(_new_sale(_Sale, (None, entry.card, self._serial, entry.fields, stan, stamp)))
        return request

    def prefill(self, now: datetime) -> None:
        """Build the pools in full now (every kind of the mix), so no ARQC is computed later.

        A load generator calls this before it starts measuring; without it the pools
        fill during the first requests. Does nothing when ``pool`` is 0.
        """
        stan, serial, sales = self._stan, self._serial, len(self._sales)
        for kind in self._kinds:
            if kind in ("chip sale", "contactless", "swipe sale", "refund", "advice"):
                while len(self._pools.setdefault(kind, [])) < self.pool:
                    before = len(self._pools[kind])
                    self.make(kind, now)
                    if len(self._pools[kind]) == before:  # e.g. swipe sale remembered under its own kind only
                        break
        if "echo" in self._kinds:
            self.make("echo", now)
        # The templates were never sent: no trace numbers used, nothing to reverse.
        self._stan, self._serial = stan, serial
        while len(self._sales) > sales:
            self._sales.pop()

    def templates(self) -> list[Mapping[str, str]]:
        """The field dicts pooled requests restamp (each pool entry, and the echo), for a
        load generator to encode once before it starts measuring."""
        out: list[Mapping[str, str]] = [entry.fields for pool in self._pools.values() for entry in pool]
        return out + ([self._echo] if self._echo is not None else [])

    def _remember(self, kind: str, request: Request, refund: bool = False) -> Request:
        if self.pool:
            pool = self._pools.setdefault(kind, [])
            if len(pool) < self.pool:
                fields = {k: v for k, v in request.fields.items() if k not in ("p", "1")}
                amount = request.message.amount or 0
                pool.append(_Pooled(fields, self.cards.card(request.card or ""), refund, request.kind, amount))
        return request

    def make(self, kind: str, now: datetime) -> Request:
        """A request of ``kind`` (one of :data:`KINDS`) at ``now``."""
        if self.pool and kind in _POOLED_KINDS:
            pooled = self._pooled(kind, now)
            if pooled is not None:
                return pooled
        if kind in ("chip sale", "contactless", "swipe sale"):
            pool = self._pools.setdefault(kind, []) if self.pool else None
            if pool is not None and len(pool) < self.pool:
                card, role = self._pool_card(kind, len(pool))
            else:
                card, role = self._card()
            return self._remember(kind, self._purchase(kind, now, card, role))
        if kind == "refund":
            request = self._purchase("refund", now, self._rng.choice(self._approving), CardRole.APPROVE, refund=True)
            return self._remember(kind, request, refund=True)
        if kind == "reversal":
            return self._reversal(now)
        if kind == "echo":
            return self._echo_request(now)
        if kind == "advice":
            return self._remember(kind, self._advice(now))
        raise ValueError(f"unknown kind {kind!r}; allowed: {', '.join(KINDS)}")

    def _echo_request(self, now: datetime) -> Request:
        """An 0800 echo: built once, then restamped (DE11, DE7) like a pooled request."""
        stan = self._next_stan()
        if self._echo is None:
            self._echo = dict(network_request("301", stan=stan, transmitted=now, terminal_id=self.terminal_id).fields)
        stamps = {"11": f"{stan:06d}", "7": self._stamps(now)[0], "41": self.terminal_id}
        return Request("echo", None, "00", None, "network management", template=self._echo, stamps=stamps)

    def next(self, now: datetime) -> Request:
        """The next request, its kind drawn from the mix.

        The draw is ``random.choices(kinds, cum_weights=...)``'s own, one ``random()``
        and a bisection, without the list it builds for one pick.
        """
        cum = self._kind_cum
        kind = self._kinds[bisect(cum, self._random() * self._kind_total, 0, len(cum) - 1)]
        if kind in self._pooled_kinds:  # make()'s first step, without its call
            pooled = self._pooled(kind, now)
            if pooled is not None:
                return pooled
        return self.make(kind, now)

    def _reversal(self, now: datetime) -> Request:
        sales = self._sales
        if not sales or self._serial - sales[0].serial < self.reversal_lag:
            return self.make("chip sale", now)
        # The oldest eligible sale: reversed once, then forgotten.
        sale = sales.popleft()
        original = sale.request
        if original is None:
            return self._pooled_reversal(sale, now)
        msg = reversal(original.message, stan=self._next_stan(), transmitted=now, reason="17")  # 17: customer cancellation
        return Request("reversal", msg, "00", sale.card.label, "reversal acknowledged")

    def _pooled_reversal(self, sale: _Sale, now: datetime) -> Request:
        """The reversal of a pooled sale, as :func:`reversal` builds it, restamped like a pooled request.

        The reversal of a pool entry is built in full once; every later one differs
        from it only in its own DE11, DE7 and DE41 and in DE90, which names the sale's
        DE11 and DE7 (MTI, acquirer and forwarder stay).
        """
        template, card = sale.template, sale.card
        assert template is not None
        stan = self._next_stan()
        transmitted = self._stamps(now)[0]
        known = self._reversals.get(id(template))
        if known is None:
            sold, local_time, local_date, _ = sale.stamp
            stamps = {"11": sale.stan, "7": sold, "41": self.terminal_id}
            if "12" in template:
                stamps.update({"12": local_time, "13": local_date})
            original = Message({**template, **stamps})  # the sale as it was sent
            msg = reversal(original, stan=stan, transmitted=now, reason="17")  # 17: customer cancellation
            fields = {k: v for k, v in msg.fields.items() if k not in ("p", "1")}
            # holds the template, so its id stays its own
            self._reversals[id(template)] = (template, fields, OriginalData.parse(fields["90"]))
            return Request("reversal", None, "00", card.label, "reversal acknowledged", template=fields,
                           stamps={"11": fields["11"], "7": fields["7"], "90": fields["90"], "41": self.terminal_id})
        _, fields, first = known
        de90 = replace(first, stan=sale.stan, transmitted=sale.stamp[0]).encode()  # a pooled sale's own DE11 and DE7
        return Request("reversal", None, "00", card.label, "reversal acknowledged", template=fields,
                       stamps={"11": f"{stan:06d}", "7": transmitted, "90": de90, "41": self.terminal_id})

    def _advice(self, now: datetime) -> Request:
        card = self._rng.choice(self._approving_chip)
        amount = self._amount(card, CardRole.APPROVE, "sale")
        icc = self._chip(card, amount, now, offline=True)
        msg = advice(
            response_code="Y1", pan=card.pan, amount=amount, currency=card.currency_info.numeric, stan=self._next_stan(),
            transmitted=now, terminal_id=self.terminal_id, entry_mode="051", expiry=card.expiry,
            pan_sequence=card.psn, icc=icc,
        )
        return Request("advice", msg, "00", card.label, "advice booked")

    def advice_burst(self, now: datetime, count: int) -> list[Request]:
        """``count`` 0220 advices (Y1) of offline approvals, sent together when the link returns."""
        if count < 0:
            raise ValueError(f"count {count} must be >= 0")
        return [self.make("advice", now) for _ in range(count)]
