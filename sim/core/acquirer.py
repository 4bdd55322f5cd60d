"""The acquirer host: route by BIN, stand in for issuers that are down, keep the terminals' batches.

:class:`Acquirer` is the host a terminal talks to. It is sans-IO: :meth:`Acquirer.handle`
takes a request and the current time and returns the answer; nothing here opens a
socket, sleeps or reads a clock. Issuers are in-process objects behind the small
:class:`IssuerPort` protocol, so the same acquirer runs with possim's issuer, with a
test double, or with a driver's proxy to a remote host.

What it does with each request (every outcome also goes into a :class:`Decision` record):

* catalogue check first: a message that breaks it is answered 30 (format error), never
  raised (ONL-13); the same for a DE55 that is not TLV and anything an issuer refuses as
  malformed;
* 0800: 301 echo, 001 sign-on and 002 sign-off of the terminal in DE41, answered 0810 00
  (ONL-12); sign-on and sign-off without DE41 are format errors;
* 0100/0200: routed to the issuer whose BIN range matches the PAN with the longest
  prefix; no issuer → 15 (ONL-08). When the issuer is down (caller or fault schedule),
  times out (raises :class:`IssuerTimeout`) or answers 91, stand-in decides (STIP-01);
* 0120/0220 advices and 0400/0420 reversals: forwarded; while the issuer is down, its
  answer is lost, it answers 91/96, or earlier advices to it still wait (they are never
  overtaken: a reversal must not reach an issuer before the advice it reverses), the
  acquirer acknowledges them to the terminal itself and queues them for the issuer (a
  0400 is owed as a 0420): money the terminal has handed over is the host's to deliver;
* 0500: reconciliation by :class:`~sim.core.settlement.Settlement` (SET-01);
* 0320/0321 batch upload after a 0510 95: the uploaded transaction goes to settlement,
  keyed by its original (DE90), and is answered 0330 ``00`` whether it was added or
  already known (the upload is idempotent); a format error is answered 30. An uploaded
  advice the host was missing is also forwarded to its issuer (queued while it is down),
  which books it once. The closing 0500 ``960000`` then settles the batch as uploaded.

Every approved transaction, approved offline advice and acknowledged reversal is given
to :class:`~sim.core.settlement.Settlement`, which keeps each terminal's batch.

Signed-off terminals: after an 0800 002 sign-off, 0100/0200 requests from that terminal
are refused with ``signed_off_code`` (default ``"91"``, "issuer or switch inoperative":
to the terminal the host is logically unreachable, so it follows its own
unable-to-go-online rules) until it signs on again. Advices, reversals, reconciliation and
network messages are always accepted, because refusing them only delays money already
moved. With ``require_sign_on`` a terminal never seen signing on is refused the same way.

Reversals without a PAN are routed to the issuer that handled their original (by DE41 +
DE90 STAN + DE7); a reversal whose original no issuer ever saw is answered 00 with
nothing to release, so the terminal stops retrying.

Pending advices are pushed to an issuer before the next request routed to it, when
:meth:`Acquirer.set_available` brings it up, and on :meth:`Acquirer.deliver_advices`
(a driver calls it on a timer), so they reach it soon after an outage window of the fault
schedule ends even when no terminal traffic comes.
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Protocol, runtime_checkable

from ..iso8583.catalogue import response_mti
from ..iso8583.errors import MessageError
from ..iso8583.message import Message, response, uploaded_transaction
from ..iso8583.pretty import mask_pan
from .settlement import Settlement, UploadResult
from .standin import RETRY_CODES, StandIn
from .windows import cap, forget_before, keep_latest


class IssuerTimeout(Exception):
    """Raised by an :class:`IssuerPort` whose answer never came (timeout, link lost).

    The issuer may or may not have processed the message: the acquirer treats the
    outcome as unknown (stand-in for requests, queue-and-repeat for advices).
    """


@runtime_checkable
class IssuerPort(Protocol):
    """What the acquirer needs from an issuer.

    Attributes
    ----------
    name : str
        Unique name, used in routing, availability and decision records.
    """

    name: str

    def bin_match(self, pan: str) -> int:
        """0 when no BIN range of this issuer holds ``pan``; else the matching range's
        specificity (the length of its prefix), so the acquirer can prefer the longest."""
        ...

    def handle(self, msg: Message, now: datetime) -> Message:
        """Answer one message; raise :class:`IssuerTimeout` for "no answer came"."""
        ...


class _Handler(Protocol):
    def handle(self, msg: Message, now: datetime) -> Message: ...


def bin_match(pan: str, ranges: Iterable[str]) -> int:
    """Specificity of the best of ``ranges`` that holds ``pan`` (0 for none).

    A range is a prefix (``"476173"``, specificity 6) or ``"LOW-HIGH"`` with equal-length
    bounds compared on the PAN's leading digits (``"47617300-47617399"``, specificity 6:
    the digits the bounds share).

    >>> bin_match("4761739001010010", ["4", "476173", "5413"])
    6
    >>> bin_match("4761739001010010", ["47617300-47617399"])
    6
    >>> bin_match("5413330089010012", ["4"])
    0
    """
    best = 0
    for spec in ranges:
        low, sep, high = spec.partition("-")
        if not (low.isdigit() and (not sep or (high.isdigit() and len(low) == len(high) and low <= high))):
            raise ValueError(f"BIN range {spec!r}; allowed: a digit prefix or LOW-HIGH with equal-length digit bounds")
        if not sep:
            if pan.startswith(low):
                best = max(best, len(low))
            continue
        if low <= pan[: len(low)] <= high and len(pan) >= len(low):
            shared = next((i for i, (a, b) in enumerate(zip(low, high, strict=True)) if a != b), len(low))
            best = max(best, shared)
    return best


class RoutedIssuer:
    """Adapter: any object with ``handle(msg, now)`` plus a list of BIN ranges makes an :class:`IssuerPort`.

    Use it when an issuer knows its BIN ranges only as data (``cards.toml``) or offers a
    plain membership test: ``RoutedIssuer(issuer, config.bins, name=config.id)``.
    ``name`` defaults to the issuer's own ``name`` attribute.
    """

    def __init__(self, issuer: _Handler, bins: Iterable[str], name: str | None = None) -> None:
        self.issuer = issuer
        self.bins = tuple(bins)
        if not self.bins:
            raise ValueError(f"RoutedIssuer for {issuer!r}: bins is empty; give at least one BIN prefix or range")
        for spec in self.bins:
            bin_match("", [spec])  # a malformed range fails here, not at the first transaction
        found = name if name is not None else getattr(issuer, "name", None)
        if not isinstance(found, str) or not found:
            raise ValueError(f"RoutedIssuer for {issuer!r}: pass name=... (the issuer has no 'name' attribute)")
        self.name = found

    def bin_match(self, pan: str) -> int:
        """See :func:`bin_match`."""
        return bin_match(pan, self.bins)

    def handle(self, msg: Message, now: datetime) -> Message:
        """Delegate to the wrapped issuer."""
        return self.issuer.handle(msg, now)

    def __repr__(self) -> str:
        return f"<RoutedIssuer {self.name} bins={list(self.bins)}>"


@dataclass(frozen=True, slots=True)
class Outage:
    """An issuer unavailable from ``start`` (included) to ``end`` (excluded): one fault-schedule entry."""

    issuer: str
    start: datetime
    end: datetime

    def covers(self, now: datetime) -> bool:
        """True while the outage lasts."""
        return self.start <= now < self.end


class Decision(NamedTuple):
    """How the host answered one message (PAN masked): the audit trail of routing and stand-in.

    ``route`` is ``"issuer"`` (issuer answered), ``"standin"`` (stand-in answered),
    ``"queued"`` (acquirer acknowledged and owes it to the issuer) or ``"acquirer"``
    (answered by the acquirer itself: network, reconciliation, refusals, format errors).

    A named tuple rather than a frozen dataclass: one is built for every message, and a frozen
    dataclass sets each field through ``object.__setattr__`` (three times the cost).
    """

    at: datetime
    mti: str
    terminal_id: str | None
    stan: str | None
    pan: str | None
    amount: int | None
    currency: str | None
    issuer: str | None
    route: str
    code: str
    auth_code: str | None
    stand_in: bool
    reason: str


@dataclass(frozen=True, slots=True)
class AdviceDelivery:
    """One transmission of a queued advice: ``acknowledged``, ``no answer`` or ``refused``."""

    at: datetime
    issuer: str
    mti: str
    terminal_id: str
    stan: str
    outcome: str
    code: str | None


_STANDIN_CODES = frozenset({"91"})
"""Issuer answers to a 0100/0200 that hand the decision to stand-in."""

_PAN_RUN = re.compile(r"(?<!\d)\d{13,19}(?!\d)")

_DEFAULTS: dict[str, Any] = {
    "require_sign_on": False,
    "signed_off_code": "91",
    "outages": (),
    "keep_records": 10_000,
    "duplicate_window_s": 900,
    "keep_answers": None,
    "retain_s": None,
    "standin": {},
    "settlement": {},
}


def _txn_key(msg: Message) -> tuple[str, str, str]:
    return (msg.terminal_id or "", msg.stan or "", msg.transmitted or "")


_ROUTES_KEPT = 4096
"""PANs whose issuer :meth:`Acquirer.route` remembers."""

_NOT_KEPT = frozenset({"p", "1", "35", "45", "52", "64", "128"})
"""Left out of what the duplicate check remembers: bitmaps, track 2, track 1, PIN block, and the
MAC (it covers the track and PIN fields left out, so a repeat differing only in those differs in it too)."""
_TRACK_TAGS = frozenset({"56", "57", "9F1F", "9F20", "9F6B"})
"""DE55 tags holding track data."""


def _content(msg: Message) -> int:
    """What the duplicate check remembers of a request for the window (REV-03): a hash.

    Of every field but track data and the PIN block (SEC-03: not kept after the
    authorization that used them); track 2 counts by its PAN only, DE55 without its
    track tags. A repeat that differs from the original in nothing but those gets the
    original answer, which REV-03 allows. A hash of the fields rather than the fields:
    a window of answers at thousands per second stays small. Python's string hash is
    keyed afresh in every process (SipHash), so a terminal cannot build a request that
    passes for another; the window lives in one process, and a replay computes it again.
    Two contents differ yet hash alike once in 2**64 pairs of repeats of one key.
    """
    fields = msg.fields
    kept = [(k, v) for k, v in fields.items() if k not in _NOT_KEPT]
    if "35" in fields:
        kept.append(("35", msg.pan))
    if "55" in fields and not _TRACK_TAGS.isdisjoint(msg.icc):
        kept = [(k, v) for k, v in kept if k != "55"]
        kept.append(("55", repr(sorted((t, v) for t, v in msg.icc.items() if t not in _TRACK_TAGS))))
    return hash(frozenset(kept))  # a set: the same fields in another order are the same content


def _scrub(text: str) -> str:
    """Mask anything that looks like a PAN in free text (error messages quote field values)."""
    return _PAN_RUN.sub(lambda m: mask_pan(m.group()), text)


def _when(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"acquirer config {where} is {value!r}; allowed: a datetime or ISO 8601 text") from None


def _outages(raw: Any) -> list[Outage]:
    out = []
    for i, item in enumerate(raw or ()):
        if isinstance(item, Outage):
            out.append(item)
            continue
        if not isinstance(item, Mapping) or {"issuer", "start", "end"} - item.keys():
            raise ValueError(f"acquirer config 'outages'[{i}] is {item!r}; allowed: {{'issuer', 'start', 'end'}}")
        start, end = _when(item["start"], f"'outages'[{i}].start"), _when(item["end"], f"'outages'[{i}].end")
        if end <= start:
            raise ValueError(f"acquirer config 'outages'[{i}]: end {end} is not after start {start}")
        out.append(Outage(str(item["issuer"]), start, end))
    return out


def _fallback_response(msg: Message, code: str) -> Message:
    """An answer built without the catalogue, for requests too broken for :func:`response`."""
    src = msg.fields
    mti = src.get("t", "")
    try:
        rsp_mti = response_mti(mti)
    except MessageError:
        digit = mti[2:3]
        rsp_mti = f"{mti[:2]}{int(digit) + 1}{mti[3:]}" if digit.isdigit() and int(digit) % 2 == 0 and len(mti) == 4 else mti
    fields = {"t": rsp_mti}
    for key in ("7", "11", "41", "70"):
        if key in src:
            fields[key] = src[key]
    fields["39"] = code
    return Message(fields)


class Acquirer:
    """Routes terminal traffic to issuers, stands in for them, keeps batches; see the module notes.

    Parameters
    ----------
    issuers : iterable of IssuerPort
        The issuers, each with a unique ``name``; on equal BIN specificity the first wins.
    config : mapping, optional
        ``require_sign_on`` (bool, default false), ``signed_off_code`` (DE39 for refused
        requests, default ``"91"``), ``outages`` (fault schedule: ``{"issuer", "start",
        "end"}`` dicts or :class:`Outage`), ``keep_records`` (how many decisions and
        deliveries to keep in memory, default 10 000), ``duplicate_window_s`` (how long an
        answer is replayed to a duplicate request, default 900), ``keep_answers`` (at most
        this many of those answers, the oldest forgotten first: default ``None``, the whole
        window; a repeat of a forgotten one goes to its issuer again, whose own duplicate
        check answers it), ``retain_s`` (how long
        :meth:`prune` keeps which issuer an authorization went to, default ``None``: keep
        all), ``standin`` and ``settlement`` (configs for the components built when none
        is passed).
    standin, settlement : optional
        Ready components (to share or inspect them); built from ``config`` otherwise.
    on_decision : callable, optional
        Called with every :class:`Decision` (a driver's journal or metrics).
    """

    def __init__(
        self,
        issuers: Iterable[IssuerPort],
        config: Mapping[str, Any] | None = None,
        *,
        standin: StandIn | None = None,
        settlement: Settlement | None = None,
        on_decision: Callable[[Decision], None] | None = None,
    ) -> None:
        cfg = dict(_DEFAULTS)
        for name, value in (config or {}).items():
            if name not in _DEFAULTS:
                raise ValueError(f"acquirer config has unknown key {name!r}; known: {', '.join(_DEFAULTS)}")
            cfg[name] = value
        self.issuers: dict[str, IssuerPort] = {}
        self._routes: dict[str, IssuerPort | None] = {}
        """PAN -> its issuer, as :meth:`route` found it (a bounded memo; emptied when an issuer is added)."""
        for issuer in issuers:
            self.add_issuer(issuer)
        self.require_sign_on = bool(cfg["require_sign_on"])
        self.signed_off_code = str(cfg["signed_off_code"])
        self.outages: list[Outage] = _outages(cfg["outages"])
        for outage in self.outages:
            self._issuer(outage.issuer)
        self.standin = standin if standin is not None else StandIn(cfg["standin"])
        self.settlement = settlement if settlement is not None else Settlement(cfg["settlement"])
        self.decisions: deque[Decision] = deque(maxlen=int(cfg["keep_records"]))
        """The latest decisions, oldest first."""
        self.deliveries: deque[AdviceDelivery] = deque(maxlen=int(cfg["keep_records"]))
        """The latest advice transmissions, oldest first."""
        self.on_decision = on_decision
        self._down: set[str] = set()
        self._terminals: dict[str, str] = {}
        self._routed: OrderedDict[tuple[str, str, str], tuple[str, datetime]] = OrderedDict()
        """Authorization key -> the issuer it went to and when (oldest first): routes reversals without a PAN."""
        retain = cfg["retain_s"]
        self.retain = None if retain is None else timedelta(seconds=float(retain))
        self.duplicate_window = timedelta(seconds=int(cfg["duplicate_window_s"]))
        self.keep_answers = cap("acquirer config 'keep_answers'", cfg["keep_answers"])
        self._answers: OrderedDict[tuple[str, str, str], tuple[int, Message, Decision, datetime]] = OrderedDict()
        """Request key -> hash of its content, the answer, its decision and when (oldest first)."""
        self._last: Decision | None = None

    # Issuers and availability -------------------------------------------------------------

    def add_issuer(self, issuer: IssuerPort) -> None:
        """Register an issuer; its name must be new."""
        if not isinstance(issuer, IssuerPort):
            missing = [a for a in ("name", "bin_match", "handle") if not hasattr(issuer, a)]
            raise TypeError(f"issuer {issuer!r} lacks {', '.join(missing)}; wrap it in RoutedIssuer(issuer, bins)")
        if issuer.name in self.issuers:
            raise ValueError(f"issuer name {issuer.name!r} is already registered")
        self.issuers[issuer.name] = issuer
        self._routes.clear()

    def _issuer(self, name: str) -> IssuerPort:
        try:
            return self.issuers[name]
        except KeyError:
            raise ValueError(f"no issuer named {name!r}; known: {', '.join(self.issuers)}") from None

    def route(self, pan: str) -> IssuerPort | None:
        """The issuer with the most specific BIN range holding ``pan`` (first registered on a tie).

        Remembered per PAN (up to :data:`_ROUTES_KEPT` PANs, then forgotten all at once):
        an issuer's BIN ranges do not change, and every authorization asks again.
        """
        routes = self._routes
        if pan in routes:
            return routes[pan]
        best, found = 0, None
        for issuer in self.issuers.values():
            score = issuer.bin_match(pan)
            if score > best:
                best, found = score, issuer
        if len(routes) >= _ROUTES_KEPT:
            routes.clear()
        routes[pan] = found
        return found

    def available(self, name: str, now: datetime) -> bool:
        """True when the caller has not set ``name`` down and no scheduled outage covers ``now``."""
        if name not in self.issuers:
            self._issuer(name)  # raises, naming the known issuers
        if name in self._down:
            return False
        for outage in self.outages:
            if outage.issuer == name and outage.covers(now):
                return False
        return True

    def set_available(self, name: str, up: bool, now: datetime) -> list[AdviceDelivery]:
        """Bring an issuer up or down; coming up, it gets its pending advices at once."""
        issuer = self._issuer(name)
        if not up:
            self._down.add(name)
            return []
        self._down.discard(name)
        return self._flush(issuer, now) if self.available(name, now) else []

    def schedule_outage(self, issuer: str, start: datetime, end: datetime) -> Outage:
        """Add a fault-schedule window during which ``issuer`` is down."""
        self._issuer(issuer)
        outage = _outages([{"issuer": issuer, "start": start, "end": end}])[0]
        self.outages.append(outage)
        return outage

    def deliver_advices(self, now: datetime, issuer: str | None = None) -> list[AdviceDelivery]:
        """Push pending advices to every available issuer (or only ``issuer``); a driver calls this on a timer."""
        names = [issuer] if issuer is not None else list(self.issuers)
        out: list[AdviceDelivery] = []
        for name in names:
            if self.available(name, now):
                out.extend(self._flush(self.issuers[name], now))
        return out

    def _ready(self, issuer: IssuerPort, now: datetime, *, in_order: bool) -> str | None:
        """Why a message cannot be forwarded to ``issuer`` now, or ``None`` when it can.

        Pending advices go first. Advices and reversals (``in_order``) never overtake
        advices still owed: a reversal reaching the issuer before the advice it reverses
        would leave the advice to be booked afterwards.
        """
        if not self.available(issuer.name, now):
            return "issuer unavailable"
        self._flush(issuer, now)
        if in_order and self.standin.outbox(issuer.name):
            return "earlier advices to the issuer still undelivered"
        return None

    def _flush(self, issuer: IssuerPort, now: datetime) -> list[AdviceDelivery]:
        """Send ``issuer`` what it is owed, in order, stopping at the first unanswered or refused one."""
        out = []
        for advice in self.standin.outbox(issuer.name):
            self.standin.mark_sent(advice)
            try:
                answer = issuer.handle(advice, now)
            except IssuerTimeout:
                out.append(self._delivery(now, issuer.name, advice, "no answer", None))
                break
            except MessageError as exc:
                out.append(self._delivery(now, issuer.name, advice, f"refused: {_scrub(str(exc))}", "30"))
                break
            if self.standin.acknowledge(answer, now):
                out.append(self._delivery(now, issuer.name, advice, "acknowledged", answer.response_code))
            else:
                out.append(self._delivery(now, issuer.name, advice, "refused", answer.response_code))
                break
        return out

    def _delivery(self, now: datetime, name: str, advice: Message, outcome: str, code: str | None) -> AdviceDelivery:
        record = AdviceDelivery(now, name, advice.mti, advice.terminal_id or "", advice.stan or "", outcome, code)
        self.deliveries.append(record)
        return record

    # Memory ---------------------------------------------------------------------------------

    def prune(self, now: datetime, *, before: datetime | None = None, unsettled: bool = False) -> int:
        """Forget what only a window needs; ``before`` defaults to ``now - retain``.

        What is kept, for how long, and why:

        * answers replayed to duplicate requests: ``duplicate_window`` (REV-03);
        * which issuer each authorization went to: until ``before``. A reversal without a
          PAN is routed by it; one naming an authorization forgotten sooner is answered
          00 with nothing released, so ``retain_s`` must exceed the longest a terminal
          may take to reverse (its store-and-forward horizon);
        * settlement entries: see :meth:`Settlement.prune` (``unsettled`` is passed on);
        * stand-in approvals and advice deliveries: until ``before`` (:meth:`StandIn.prune`);
        * decisions and advice deliveries: the latest ``keep_records``; queued advices
          until their issuer acknowledges them (never pruned: money owed).

        Returns the routes forgotten.
        """
        self._forget_answers(now)
        if before is None:
            if self.retain is None:
                self.settlement.prune(now)
                return 0
            before = now - self.retain
        self.settlement.prune(now, before=before, unsettled=unsettled)
        self.standin.prune(before)
        return forget_before(self._routed, before, lambda route: route[1])

    # Terminals ------------------------------------------------------------------------------

    def terminal_state(self, terminal_id: str) -> str:
        """``"signed-on"``, ``"signed-off"`` or ``"unknown"`` (never sent 001/002)."""
        return self._terminals.get(terminal_id, "unknown")

    def _refused(self, terminal_id: str | None) -> str | None:
        state = self.terminal_state(terminal_id or "")
        if state == "signed-off":
            return "terminal signed off"
        if state == "unknown" and self.require_sign_on:
            return "terminal not signed on"
        return None

    # Requests ---------------------------------------------------------------------------------

    def handle(self, msg: Message, now: datetime) -> Message:
        """Answer one terminal message. Never raises on bad input: format errors are answered 30.

        An issuer raising anything but :class:`IssuerTimeout` or
        :class:`~sim.iso8583.errors.MessageError` is a bug in that issuer, not traffic,
        and the exception propagates.
        """
        try:
            msg.checked()
            _ = msg.icc  # DE55 must be TLV before anyone acts on it
            mti = msg.original_mti
            if mti == "0800":
                return self._network(msg, now)
            if mti == "0500":
                answer = self.settlement.reconcile(msg, now)
                reason = "totals match" if answer.response_code == "00" else "totals differ; batch upload expected"
                return self._decide(msg, answer, now, route="acquirer", reason=reason)
            if mti in ("0100", "0200"):
                return self._authorize(msg, now)
            if mti in ("0120", "0220"):
                return self._advice(msg, now)
            if mti in ("0400", "0420"):
                return self._reverse(msg, now)
            if mti == "0320":
                return self._upload(msg, now)
            raise MessageError(f"MTI {msg.mti} is not a request the acquirer accepts", field="t")
        except MessageError as exc:
            try:
                answer = response(msg, "30")
            except (MessageError, KeyError):
                answer = _fallback_response(msg, "30")
            where = f"DE{exc.field}: " if exc.field and exc.field != "t" else ""
            return self._decide(msg, answer, now, route="acquirer", reason=f"format error: {where}{_scrub(str(exc))}")

    def refuse(self, msg: Message, now: datetime, code: str, reason: str) -> Message:
        """Answer ``msg`` with ``code`` without routing it: nothing is held, booked or batched.

        The host calls this for what must never reach an issuer, such as a message whose
        MAC does not verify (63, SEC-01); the refusal goes into the decision log with ``reason``.
        """
        try:
            answer = response(msg, code)
        except (MessageError, KeyError):
            answer = _fallback_response(msg, code)
        return self._decide(msg, answer, now, route="acquirer", reason=reason)

    def _decide(
        self,
        msg: Message,
        answer: Message,
        now: datetime,
        *,
        route: str,
        reason: str,
        issuer: str | None = None,
        stand_in: bool = False,
    ) -> Message:
        pan = msg.fields.get("2") or (msg.fields.get("35") or "").replace("=", "D").split("D", 1)[0] or None
        amount = msg.fields.get("4")
        record = Decision(
            at=now, mti=msg.fields.get("t", ""), terminal_id=msg.fields.get("41"), stan=msg.fields.get("11"),
            pan=mask_pan(pan) if pan else None, amount=int(amount) if amount and amount.isdigit() else None,
            currency=msg.fields.get("49"), issuer=issuer, route=route, code=answer.response_code or "",
            auth_code=answer.auth_code, stand_in=stand_in, reason=reason,
        )
        self.decisions.append(record)
        self._last = record
        if self.on_decision is not None:
            self.on_decision(record)
        return answer

    def _network(self, msg: Message, now: datetime) -> Message:
        code, tid = msg.network_code, msg.terminal_id
        if code in ("001", "002"):
            if not tid:
                raise MessageError("0800 sign-on/sign-off needs DE41 (the terminal signing)", field="41")
            self._terminals[tid] = "signed-on" if code == "001" else "signed-off"
        reason = {"001": "sign-on", "002": "sign-off", "301": "echo"}.get(code or "", "network management")
        return self._decide(msg, response(msg, "00"), now, route="acquirer", reason=reason)

    def _pan(self, msg: Message) -> str | None:
        pan = msg.pan
        if pan is not None and not (pan.isdigit() and pan.isascii()):
            field = "2" if "2" in msg.fields else "35"
            raise MessageError(f"{msg.mti}: PAN in DE{field} is not digits ({mask_pan(pan)})", field=field)
        return pan

    def _forward(
        self, issuer: IssuerPort, msg: Message, now: datetime, *, in_order: bool, retry: frozenset[str]
    ) -> tuple[Message | None, str, bool]:
        """Try the issuer: its answer, or ``None`` with the reason and whether it may have seen ``msg``."""
        why = self._ready(issuer, now, in_order=in_order)
        if why is not None:
            return None, why, False
        try:
            answer = issuer.handle(msg, now)
        except IssuerTimeout:
            return None, "issuer timed out", True
        if answer.response_code in retry:
            return None, f"issuer answered {answer.response_code}", True
        return answer, "issuer answered", True

    def _replay(self, msg: Message, now: datetime) -> Message | None:
        """The answer already given to this request's key inside the duplicate window (REV-03).

        Same DE41 + DE11 + DE7 and same content: the original answer again, whoever gave it
        (issuer or stand-in), so a terminal repeating a request never gets a second,
        different approval. Same key, other content: 94 duplicate transmission.
        """
        self._forget_answers(now)
        found = self._answers.get(_txn_key(msg))
        if found is None:
            return None
        content, answer, first, _ = found
        if content == _content(msg):
            return self._decide(
                msg, answer, now, route=first.route, reason=f"duplicate request: original answer replayed ({first.reason})",
                issuer=first.issuer, stand_in=first.stand_in,
            )
        return self._decide(msg, response(msg, "94"), now, route="acquirer", reason="same key, other content: duplicate transmission")

    def _remember(self, msg: Message, answer: Message, now: datetime) -> Message:
        key = _txn_key(msg)
        answers = self._answers
        if key not in answers and self._last is not None:
            answers[key] = (_content(msg), answer, self._last, now)
            keep_latest(answers, self.keep_answers)
        return answer

    def _forget_answers(self, now: datetime) -> None:
        """Drop the answers remembered for repeats once they are older than the duplicate window."""
        forget_before(self._answers, now - self.duplicate_window, lambda found: found[3])

    def _authorize(self, msg: Message, now: datetime) -> Message:
        refusal = self._refused(msg.terminal_id)
        if refusal is not None:
            return self._decide(msg, response(msg, self.signed_off_code), now, route="acquirer", reason=refusal)
        replayed = self._replay(msg, now)
        if replayed is not None:
            return replayed
        return self._remember(msg, self._decide_authorization(msg, now), now)

    def _decide_authorization(self, msg: Message, now: datetime) -> Message:
        previous = self.standin.answered(msg)
        if previous is not None:
            answer, sd = previous
            routed = self._routed.get((msg.terminal_id or "", msg.stan or "", msg.transmitted or ""))
            issuer_name = routed[0] if routed is not None else None
            return self._decide(msg, answer, now, route="standin", reason=sd.reason, issuer=issuer_name, stand_in=True)
        pan = self._pan(msg)
        issuer = self.route(pan or "")
        if issuer is None:
            return self._decide(msg, response(msg, "15"), now, route="acquirer", reason="no issuer serves this BIN")
        key = (msg.terminal_id or "", msg.stan or "", msg.transmitted or "")
        self._routed.pop(key, None)  # re-inserted: the map stays in time order
        self._routed[key] = (issuer.name, now)
        forwarded, why, _ = self._forward(issuer, msg, now, in_order=False, retry=_STANDIN_CODES)
        if forwarded is not None:
            self.settlement.record(msg, forwarded.response_code, now, source="online")
            return self._decide(msg, forwarded, now, route="issuer", reason=why, issuer=issuer.name)
        answer, sd = self.standin.decide(msg, issuer.name, now)
        if sd.approved:
            self.settlement.record(msg, "00", now, source="standin")
        reason = f"{why}; {sd.reason}"
        return self._decide(msg, answer, now, route="standin", reason=reason, issuer=issuer.name, stand_in=True)

    def _advice(self, msg: Message, now: datetime) -> Message:
        pan = self._pan(msg)
        issuer = self.route(pan or "")
        if issuer is None:
            return self._decide(msg, response(msg, "15"), now, route="acquirer", reason="no issuer serves this BIN")
        answer, why, seen = self._forward(issuer, msg, now, in_order=True, retry=RETRY_CODES)
        self.settlement.record(msg, msg.response_code, now, source="offline")
        if answer is not None:
            return self._decide(msg, answer, now, route="issuer", reason=why, issuer=issuer.name)
        self.standin.enqueue(msg, issuer.name, sent=seen)
        reason = f"{why}; queued for the issuer"
        return self._decide(msg, response(msg, "00"), now, route="queued", reason=reason, issuer=issuer.name)

    def _reverse(self, msg: Message, now: datetime) -> Message:
        original = msg.original
        pan = self._pan(msg)
        issuer = self.route(pan) if pan else None
        if issuer is None and original is not None:
            routed = self._routed.get((msg.terminal_id or "", original.stan, original.transmitted))
            issuer = self.issuers.get(routed[0]) if routed else None
        if issuer is None:
            reason = "original not found; nothing to release"
            return self._decide(msg, response(msg, "00"), now, route="acquirer", reason=reason)
        answer, why, seen = self._forward(issuer, msg, now, in_order=True, retry=RETRY_CODES)
        if answer is not None:
            if answer.response_code == "00":
                self.settlement.reverse(msg, now)
            return self._decide(msg, answer, now, route="issuer", reason=why, issuer=issuer.name)
        owed = msg.replace(t="0420") if msg.original_mti == "0400" else msg
        self.standin.enqueue(owed, issuer.name, sent=seen)
        self.settlement.reverse(msg, now)
        reason = f"{why}; reversal queued for the issuer"
        return self._decide(msg, response(msg, "00"), now, route="queued", reason=reason, issuer=issuer.name)

    # Batch upload -------------------------------------------------------------------------------

    def _upload(self, msg: Message, now: datetime) -> Message:
        """A 0320/0321: one transaction of a batch upload (SET-01); 0330 00 once taken, added or known."""
        self._pan(uploaded_transaction(msg))
        done = self.settlement.add_upload(msg, now)
        txn = done.transaction
        self._forward_uploaded([txn], {(txn.terminal_id, txn.stan, txn.transmitted)} if done.entry else set(), now)
        orig = f"{txn.mti} {txn.stan} {txn.transmitted} ({txn.response_code or '00'})"
        reason = {"added": "added to the batch", "known": "already counted", "skipped": "not counted"}[done.outcome]
        return self._decide(msg, response(msg, "00"), now, route="acquirer", reason=f"batch upload of {orig}: {reason}")

    def batch_upload(self, terminal_id: str, messages: list[Message], now: datetime) -> UploadResult:
        """A whole batch upload in process (0320s or the original messages): see :meth:`Settlement.upload`.

        Like the 0320 path, the advices among the transactions added are forwarded to their issuers.
        """
        result = self.settlement.upload(terminal_id, messages, now)
        added = {e.key for e in result.added}
        self._forward_uploaded([uploaded_transaction(m) if m.original_mti == "0320" else m for m in messages], added, now)
        return result

    def _forward_uploaded(self, transactions: list[Message], added: set[tuple[str, str, str]], now: datetime) -> None:
        """Forward the uploaded advices settlement just added (the issuer never saw them), once each."""
        for txn in transactions:
            if txn.original_mti in ("0120", "0220") and _txn_key(txn) in added:
                added.discard(_txn_key(txn))
                try:
                    self._advice(txn, now)
                except MessageError as exc:  # counted in the batch already; the issuer refuses it as malformed
                    reason = f"uploaded advice not forwarded: {_scrub(str(exc))}"
                    self._decide(txn, _fallback_response(txn, "30"), now, route="acquirer", reason=reason)


__all__ = [
    "Acquirer", "AdviceDelivery", "Decision", "IssuerPort", "IssuerTimeout", "Outage",
    "RoutedIssuer", "bin_match",
]
