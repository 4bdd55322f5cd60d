"""Scheme stand-in processing (STIP): answer for an issuer that cannot, and tell it afterwards.

When an issuer is down, times out or answers 91, the scheme decides in its place
(STIP-01): it approves what is below the stand-in limit for the currency and answers 91
to the rest, then owes the issuer an advice (0120 for a 0100, 0220 for a 0200) of every
approval, delivered once the issuer is back. The same queue carries the advices and
reversals the acquirer accepted for an issuer that was down, so one mechanism delivers
everything owed to an issuer, in the order it was owed.

Delivery is exactly once from this side: a queued advice leaves the queue only when the
issuer acknowledges it (any answer but 91/96, which mean "could not process now"); every
transmission after the first goes as a repeat (0121/0221/0421); an advice already
queued or already acknowledged is never queued twice. Issuers must still treat a repeat
whose key (DE41 + DE11 + DE7) they already booked as already booked: an acknowledgement
can be lost after the issuer booked the advice.

What stand-in will not approve (answered 91, reason in the decision):

* a currency without a configured limit, or an amount at or above the limit;
* a transaction type outside ``processing_codes`` (default purchase 00 and refund 20);
* online PIN (DE52 present): stand-in holds no issuer PIN keys, so cannot verify it,
  unless ``allow_online_pin`` says the scheme accepts that risk;
* a chip cryptogram (9F26 in DE55) when ``allow_unverified_cryptogram`` is false. By
  default stand-in approves chip transactions without verifying the ARQC (it holds no
  issuer keys), returns no ARPC, and says ``cryptogram_checked=False`` in the decision.

Stand-in approvals carry a DE38 approval code that starts with ``auth_prefix``
(default ``"ST"``), so receipts, journals and issuers can tell them from issuer approvals.
Queued advices keep no PIN block, no track 1 and no CVV: track 2 keeps only PAN, expiry
and service code (the catalogue wants DE35 on swiped transactions).

Examples
--------
>>> from datetime import datetime
>>> from sim.iso8583.message import financial_request
>>> stip = StandIn({"limits": {"EUR": 5000}})
>>> sale = financial_request(pan="4761739001010010", amount=1250, currency="978", stan=7,
...     transmitted="1122103000", terminal_id="TERM0001", entry_mode="051", icc={"9F26": bytes(8)})
>>> answer, decision = stip.decide(sale, "bank-a", datetime(2026, 11, 22, 10, 30))
>>> answer.response_code, answer.auth_code, decision.cryptogram_checked
('00', 'ST0001', False)
>>> [m.mti for m in stip.outbox("bank-a")]
['0220']
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from ..iso8583.catalogue import response_mti, validate
from ..iso8583.errors import MessageError
from ..iso8583.message import Message, repeat, response
from ..iso8583.pretty import mask_pan
from .money import CurrencyError, currency
from .windows import forget_before

AdviceKey = tuple[str, str, str, str]
"""MTI class (``"02"``), terminal id, STAN, DE7: one owed advice."""

RETRY_CODES = frozenset({"91", "96"})
"""Answers to an advice that mean "not processed, send again later"; any other acknowledges it."""

ADVICE_MTI = {"0100": "0120", "0200": "0220"}
"""The advice that tells an issuer about a stand-in decision on each request MTI."""

_SECRET_FIELDS = ("45", "52", "53")
"""Track 1, PIN block, security control: never kept in a queued advice."""

_DEFAULTS: dict[str, Any] = {
    "limits": {},
    "auth_prefix": "ST",
    "processing_codes": ("00", "20"),
    "allow_online_pin": False,
    "allow_unverified_cryptogram": True,
}


@dataclass(frozen=True, slots=True)
class StandInDecision:
    """Why stand-in answered as it did; goes into the acquirer's decision record."""

    approved: bool
    code: str
    auth_code: str | None
    reason: str
    limit: int | None
    cryptogram_checked: bool = False
    repeat: bool = False


@dataclass(frozen=True, slots=True)
class QueuedAdvice:
    """A read-only picture of an advice owed to an issuer (PAN masked)."""

    issuer: str
    key: AdviceKey
    mti: str
    attempts: int
    pan: str
    amount: int | None
    currency: str | None


class _Pending:
    __slots__ = ("message", "issuer", "attempts")

    def __init__(self, message: Message, issuer: str) -> None:
        self.message = message
        self.issuer = issuer
        self.attempts = 0

    def form(self) -> Message:
        """What to transmit now: the original the first time, its repeat after that."""
        if self.attempts and not self.message.is_repeat:
            return repeat(self.message)
        return self.message


def advice_key(msg: Message) -> AdviceKey:
    """Queue key of an advice or of its answer (they share MTI class, DE41, DE11, DE7)."""
    return (msg.mti[:2], msg.terminal_id or "", msg.stan or "", msg.transmitted or "")


def _strip_track2(track2: str) -> str:
    """PAN, separator, expiry and service code: the discretionary data (CVV) goes."""
    for sep in ("D", "=", "d"):
        if sep in track2:
            pan, _, rest = track2.partition(sep)
            return f"{pan}{sep}{rest[:7]}"
    return track2


def _limits(raw: Any) -> dict[str, int]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"stand-in config 'limits' is {raw!r}; allowed: a mapping of currency to minor units")
    out = {}
    for code, limit in raw.items():
        try:
            numeric = currency(code).numeric
        except CurrencyError as exc:
            raise ValueError(f"stand-in config 'limits' key {code!r}: {exc}") from None
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise ValueError(f"stand-in config 'limits'[{code!r}] is {limit!r}; allowed: an int of minor units >= 0")
        out[numeric] = limit
    return out


class StandIn:
    """Stand-in decisions and the queue of advices owed to each issuer.

    Parameters
    ----------
    config : mapping, optional
        ``limits``: currency (alpha or numeric) → stand-in limit in minor units; amounts
        strictly below it are approved. ``auth_prefix``: 1-3 letters/digits starting every
        stand-in DE38 (default ``"ST"``). ``processing_codes``: DE3 transaction types
        stand-in may approve (default ``("00", "20")``). ``allow_online_pin`` (default
        false) and ``allow_unverified_cryptogram`` (default true): see the module notes.
    """

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        cfg = dict(_DEFAULTS)
        for name, value in (config or {}).items():
            if name not in _DEFAULTS:
                raise ValueError(f"stand-in config has unknown key {name!r}; known: {', '.join(_DEFAULTS)}")
            cfg[name] = value
        prefix = cfg["auth_prefix"]
        if not (isinstance(prefix, str) and 1 <= len(prefix) <= 3 and prefix.isalnum() and prefix.isascii()):
            raise ValueError(f"stand-in config 'auth_prefix' is {prefix!r}; allowed: 1-3 ASCII letters or digits")
        self.limits = _limits(cfg["limits"])
        self.auth_prefix: str = prefix
        self.processing_codes = frozenset(str(c) for c in cfg["processing_codes"])
        self.allow_online_pin = bool(cfg["allow_online_pin"])
        self.allow_unverified_cryptogram = bool(cfg["allow_unverified_cryptogram"])
        self._serial = 0
        self._answers: OrderedDict[tuple[str, str, str], tuple[Message, StandInDecision, datetime]] = OrderedDict()
        self._queue: dict[AdviceKey, _Pending] = {}
        self._done: OrderedDict[AdviceKey, datetime | None] = OrderedDict()
        """Advices delivered, with when (in delivery order): a late repeat is not owed again."""

    # Decisions --------------------------------------------------------------------------

    def limit(self, cur: str | None) -> int | None:
        """The stand-in limit for a DE49 currency, or ``None`` when stand-in is not allowed in it."""
        return self.limits.get(cur or "")

    def is_standin_code(self, auth_code: str | None) -> bool:
        """True when a DE38 approval code was issued by stand-in."""
        return bool(auth_code) and auth_code.startswith(self.auth_prefix)  # type: ignore[union-attr]

    def answered(self, request: Message) -> tuple[Message, StandInDecision] | None:
        """The stand-in approval already given to this request's key (a duplicate gets it again)."""
        found = self._answers.get((request.terminal_id or "", request.stan or "", request.transmitted or ""))
        if found is None:
            return None
        answer, decision, _ = found
        return answer, StandInDecision(
            decision.approved, decision.code, decision.auth_code, "repeat of a stand-in approval",
            decision.limit, decision.cryptogram_checked, repeat=True,
        )

    def _refusal(self, request: Message) -> str | None:
        code = (request.processing_code or "00")[:2]
        if code not in self.processing_codes:
            return f"transaction type {code} not allowed in stand-in"
        if request.get("52") is not None and not self.allow_online_pin:
            return "online PIN cannot be verified in stand-in"
        if "9F26" in request.icc and not self.allow_unverified_cryptogram:
            return "cryptogram cannot be verified in stand-in"
        limit = self.limit(request.currency)
        if limit is None:
            return f"no stand-in limit for currency {request.currency}"
        if (request.amount or 0) >= limit:
            return f"amount {request.amount} not below stand-in limit {limit}"
        return None

    def decide(self, request: Message, issuer: str, now: datetime) -> tuple[Message, StandInDecision]:
        """Answer a 0100/0200 in the issuer's place; queue the advice of an approval.

        The rules do not depend on ``now``; it dates the approval, which a repeat of the
        request gets again until :meth:`prune` forgets it.

        Raises
        ------
        MessageError
            ``request`` is not a 0100/0200, or its DE55 is not TLV.
        """
        if request.original_mti not in ADVICE_MTI:
            raise MessageError(f"stand-in decides 0100/0200 requests; got MTI {request.mti}", field="t")
        previous = self.answered(request)
        if previous is not None:
            return previous
        limit = self.limit(request.currency)
        refusal = self._refusal(request)
        if refusal is not None:
            return response(request, "91"), StandInDecision(False, "91", None, refusal, limit)
        auth_code = self._next_auth_code()
        answer = response(request, "00", auth_code=auth_code)
        decision = StandInDecision(True, "00", auth_code, f"below stand-in limit {limit}", limit)
        self._answers[(request.terminal_id or "", request.stan or "", request.transmitted or "")] = (answer, decision, now)
        self.enqueue(self.advice_for(request, auth_code), issuer)
        return answer, decision

    def _next_auth_code(self) -> str:
        width = 6 - len(self.auth_prefix)
        self._serial = self._serial % (10**width - 1) + 1
        return f"{self.auth_prefix}{self._serial:0{width}d}"

    def advice_for(self, request: Message, auth_code: str) -> Message:
        """The 0120/0220 advice of a stand-in approval: the request's data, DE39 00, DE38, no secrets."""
        fields = {k: v for k, v in request.fields.items() if k not in ("p", "1", *_SECRET_FIELDS)}
        fields["t"] = ADVICE_MTI[request.original_mti]
        fields["39"] = "00"
        fields["38"] = auth_code
        if "35" in fields:
            track = fields["35"]
            if "2" not in fields:
                fields["2"] = request.pan or ""
            fields["35"] = _strip_track2(track)
        return Message(fields, validate(fields))

    # Queue ------------------------------------------------------------------------------

    def enqueue(self, advice: Message, issuer: str, *, sent: bool = False) -> bool:
        """Owe ``advice`` (0120/0220/0420 or a repeat) to ``issuer``; ``False`` if already owed or delivered.

        ``sent`` says the issuer may already have seen it (a transmission went unanswered),
        so every transmission from here on is a repeat.
        """
        key = advice_key(advice)
        if key in self._queue or key in self._done:
            return False
        pending = _Pending(advice, issuer)
        pending.attempts = int(sent)
        self._queue[key] = pending
        return True

    def outbox(self, issuer: str) -> list[Message]:
        """What to send ``issuer`` now, oldest first, each as original or repeat as its history says."""
        if not self._queue:
            return []
        return [p.form() for p in self._queue.values() if p.issuer == issuer]

    def mark_sent(self, advice: Message) -> None:
        """Note a transmission of ``advice``: the next one goes as a repeat."""
        pending = self._queue.get(advice_key(advice))
        if pending is not None:
            pending.attempts += 1

    def acknowledge(self, answer: Message, now: datetime | None = None) -> bool:
        """Remove the advice ``answer`` acknowledges; ``False`` when it matches none or says retry.

        ``now`` dates the delivery, so that :meth:`prune` can forget it after the window.
        """
        key = advice_key(answer)
        pending = self._queue.get(key)
        if pending is None or answer.mti != response_mti(pending.message.mti):
            return False
        if answer.response_code in RETRY_CODES:
            return False
        del self._queue[key]
        self._done[key] = now
        return True

    def prune(self, before: datetime) -> int:
        """Forget stand-in approvals given, and deliveries made, before ``before``; return how many.

        A repeat of a request approved in stand-in gets the same approval only while it is
        remembered, and an advice delivered is refused a second place in the queue only
        while its delivery is: ``before`` must be older than anything a terminal may still
        repeat (the host's ``retain_s``). Advices still owed are never pruned.
        """
        return (forget_before(self._answers, before, lambda answer: answer[2])
                + forget_before(self._done, before, lambda at: at))

    def queued(self, issuer: str | None = None) -> list[QueuedAdvice]:
        """The advices still owed (to ``issuer``, or to all), PANs masked."""
        return [
            QueuedAdvice(
                p.issuer, key, p.form().mti, p.attempts, mask_pan(p.message.pan or ""),
                p.message.amount, p.message.currency,
            )
            for key, p in self._queue.items()
            if issuer is None or p.issuer == issuer
        ]

    def __len__(self) -> int:
        return len(self._queue)
