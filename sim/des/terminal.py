"""One terminal as one long-lived SimPy process: customers, the real kernel, the link, the store.

The process loops for the whole run. Between customers it forwards what its durable
store owes (0220/0221 advices, 0400/0401 reversals, 0220 completions) whenever the
link lets it, and settles (0500 per currency) at each cut-off. A customer is one
:class:`~sim.emv.kernel.Transaction` of the real kernel, driven event by event
against the cardholder's real :class:`~sim.emv.card.VirtualCard`; every
:class:`~sim.emv.kernel.NeedOnline` goes over the terminal's :class:`~.link.Link` to
the real :class:`~sim.core.host.Host`, queued for the host's capacity (a SimPy
``Resource``) and bounded by the profile's host timeout. Nothing in here decides a
transaction: the kernel, the card and the host do.

Time passes in four places only: the cardholder at the till (``traffic.card_time_s``,
70% before the kernel starts, 30% while the card computes its first cryptogram), the
network and the host, the wait for the next customer, and a reboot after a power cut.

Durability (DESIGN.md "Data that must never be lost", OFF-06, DEV-04): the store is
the only state a power cut spares. Before an online request leaves, an *in-flight*
marker holding the request goes into the store; a reboot turns any marker left into
a reversal. The kernel's ``pending`` messages go into the store in the same
simulation step as the result, so there is no instant at which an approval has been
given and its advice is not yet stored.

History (what the checker reads) goes to the world's streaming checker as it is
written (:meth:`World.note`); the store's records are also what the world's sweep
reads to know which transactions may still change (and so what the checker keeps open).
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Generator

import simpy

from ..emv.errors import CardError, CardMuteError
from ..emv.kernel import (
    Done,
    HostTimeout,
    HostUnreachable,
    ManualEntry,
    NeedApdu,
    NeedCard,
    NeedManualEntry,
    NeedOnline,
    NeedPin,
    NeedSelection,
    PanLog,
    PinEntered,
    PowerOn,
    Presented,
    ReadStripe,
    TerminalConfig,
    Transaction,
    TransactionResult,
)
from ..emv.kernel.messages import build_reversal, next_stan
from ..iso8583.message import Message, reconciliation_request
from ..profiles import HardwareProfile
from .link import Link
from .population import Holder
from .store import Record, Store

if TYPE_CHECKING:  # pragma: no cover
    from .world import World

__all__ = ["Terminal"]

_GAC = 0xAE
"""INS of GENERATE AC: where the card's own processing time is spent."""


def _key(msg: Message) -> tuple[str, str, str | None]:
    return (msg.terminal_id or "", msg.stan or "", msg.transmitted)


class Terminal:
    """A terminal of the estate (see the module docstring).

    Attributes
    ----------
    acquirer_refused, acquirer_silent, reader_failed, printer_out : int
        Faults in force on this terminal (counters: windows may overlap).
    store : Store
        The durable store-and-forward queue.
    """

    def __init__(self, world: "World", index: int, profile: HardwareProfile, config: TerminalConfig,
                 amount: tuple[int, int], rng: random.Random) -> None:
        self.world = world
        self.env = world.env
        self.id = f"T{index:07d}"
        self.config = replace(config, terminal_id=self.id)
        self.rng = rng
        primary = profile.comms.primary_link
        self.links = [Link(primary, random.Random(rng.getrandbits(64)))] + [
            Link(other, random.Random(f"possim des link|{world.seed}|{self.id}|{other.kind}"))
            for other in profile.comms.links if other is not primary
        ]
        """Fitted links, most preferred first (the profile's primary, then the others in its order)."""
        self.active = 0
        """Index in :attr:`links` of the link in use."""
        self.failover_penalty_s = 0.0
        self.store = Store(profile.offline_store.capacity)
        self.timeout_s = float(profile.timeouts.host_response_s)
        self.connect_timeout_s = float(profile.timeouts.connect_s)
        self.log_amount = (math.log(amount[0]), math.log(amount[1]))
        self.stan = 1
        self.pan_log = PanLog()
        self.totals: dict[str, list[int]] = {}
        self.eod: dict[str, tuple[Message, int, int]] = {}
        """Per currency, the 0500 sent and not yet answered, with the count and amount it carries."""
        self.acquirer_refused = 0
        self.acquirer_silent = 0
        self.reader_failed = 0
        self.printer_out = 0
        self.powered = True
        self.current: Transaction | None = None
        self.next_arrival: float | None = None
        self.retry_at = 0.0
        self.cut_index = 0
        self.process = self.env.process(self._run())

    # Faults ----------------------------------------------------------------------------------

    def cut_power(self) -> None:
        """Power cut (or battery exhausted): everything but the store is lost, then a reboot."""
        if self.powered and self.process.is_alive:
            self.process.interrupt("power lost")

    def _lose_power(self) -> None:
        w = self.world
        self.powered = False
        w.metrics.power_losses += 1
        if self.current is not None:
            w.metrics.outcome(self.env.now, "power-lost")
            self.current = None
        self.next_arrival = None
        for record in self.store.records:
            if record.kind == "inflight":  # the request may have reached the host: outcome unknown
                w.note("invoked", record.message)
                w.note("unknown", record.message)

    def _reboot(self) -> None:
        """Back up: every in-flight marker left in the store becomes a reversal owed (REV-01)."""
        self.powered = True
        for i, record in enumerate(self.store.records):
            if record.kind == "inflight":
                owed = build_reversal(record.message, stan=self._take_stan(), when=self.world.clock(), reason="68")
                self.store.records[i] = Record("reversal", owed, record.key, record.amount)
                self.world.metrics.reversals_owed += 1
        self.retry_at = self.env.now

    def _take_stan(self) -> int:
        stan = self.stan
        self.stan = next_stan(stan)
        return stan

    # The process -----------------------------------------------------------------------------

    def _run(self) -> Generator[Any, Any, None]:
        while True:
            try:
                if not self.powered:
                    yield self.env.timeout(self.world.scenario.reboot_s)
                    self._reboot()
                yield from self._trade()
                return
            except simpy.Interrupt:
                self._lose_power()

    def _trade(self) -> Generator[Any, Any, None]:
        w, env = self.world, self.env
        cutoffs = w.cutoffs
        while True:
            now = env.now
            if self.next_arrival is None and now < w.arrivals_end:
                self.next_arrival = w.traffic.next_arrival(now, self.rng)
            owed = self.store.backlog > 0
            if owed and now >= self.retry_at:
                yield from self._forward()
                continue
            if self.cut_index < len(cutoffs) and now >= cutoffs[self.cut_index] and now >= self.retry_at:
                yield from self._settle()
                continue
            wake = w.end_s
            if self.next_arrival is not None and self.next_arrival < w.arrivals_end:
                wake = self.next_arrival
            if self.cut_index < len(cutoffs):
                wake = min(wake, max(cutoffs[self.cut_index], self.retry_at))
            if owed:
                wake = min(wake, self.retry_at)
            if wake >= w.end_s:
                return
            if wake > now:
                yield env.timeout(wake - now)
            if self.next_arrival is not None and env.now >= self.next_arrival:
                self.next_arrival = None
                if env.now < w.arrivals_end:
                    yield from self._customer()

    # One customer ------------------------------------------------------------------------------

    def _customer(self) -> Generator[Any, Any, None]:
        w, env, rng = self.world, self.env, self.rng
        holder = w.population.draw(rng)
        card = holder.card
        w.metrics.started += 1
        dwell = rng.uniform(*w.scenario.traffic.card_time_s)
        amount = int(math.exp(rng.uniform(*self.log_amount)))
        txn = Transaction(
            replace(self.config, offline_store_free=self.store.free, pan_log=self.pan_log,
                    paper_left=0 if self.printer_out else self.config.paper_left),
            amount=amount, currency=card.card.currency_info, when=w.clock(),
            unpredictable_number=rng.randbytes(4), stan=self.stan, rng=rng,
        )
        self.current = txn
        yield env.timeout(dwell * 0.7)
        present = self._presentations(holder)
        tap = rng.random() < w.scenario.cards.contactless_share
        gac_wait = dwell * 0.3
        request: Message | None = None
        reply: object = None
        event = txn.next_event()
        while not isinstance(event, Done):
            kind = type(event)
            answer: object
            if kind is NeedApdu:
                try:
                    answer = card.execute(event.apdu)
                except CardError as exc:
                    answer = exc
                if gac_wait and event.apdu[1] == _GAC:
                    yield env.timeout(gac_wait)
                    gac_wait = 0.0
            elif kind is NeedOnline:
                request = event.request
                self.stan = next_stan(int(request.stan or 0))
                reply = yield from self._online(request, txn.amount)
                answer = reply
            elif kind is PowerOn:
                if self.reader_failed:
                    answer = CardMuteError("chip reader failure")
                else:
                    try:
                        answer = card.power_on()
                    except CardError as exc:
                        answer = exc
            elif kind is NeedCard:
                answer = self._present(event, present, tap)
            elif kind is NeedPin:
                answer = PinEntered(holder.pin)
            elif kind is ReadStripe:
                try:
                    answer = card.swipe()
                except CardError as exc:
                    answer = exc
            elif kind is NeedSelection:
                answer = 0
            elif kind is NeedManualEntry:
                answer = ManualEntry(card.card.pan, card.card.expiry)
            else:  # pragma: no cover - the kernel's event set is closed
                raise TypeError(f"unknown kernel event {event!r}")
            event = txn.send(answer)
        self._finish(event.result, request, reply)

    @staticmethod
    def _presentations(holder: Holder) -> list[str]:
        if holder.swipe_first or holder.card.card.emv is None:
            return ["magstripe"]
        return []

    @staticmethod
    def _present(event: NeedCard, present: list[str], tap: bool) -> Presented:
        accept = event.accept
        while present:
            choice = present.pop(0)
            if choice in accept:
                return Presented(choice)  # type: ignore[arg-type]
        if tap and "contactless" in accept:
            return Presented("contactless")
        return Presented("contact" if "contact" in accept else accept[0])

    def _online(self, request: Message, amount: int) -> Generator[Any, Any, object]:
        """One authorization over the link, with the in-flight marker written first."""
        m = self.world.metrics
        if not self._reachable():
            yield self.env.timeout(self._refusal_delay())
            m.unreachable += 1
            return HostUnreachable
        marker = Record("inflight", request, _key(request), amount)
        self.store.add(marker)
        start = self.env.now
        answer = yield from self._send(request)
        self.store.remove(marker)
        if answer is HostTimeout:
            m.timeouts += 1
        else:
            m.round_trip(self.env.now - start)
        return answer

    def _finish(self, result: TransactionResult, request: Message | None, reply: object) -> None:
        """Store what is owed, write the history, count the outcome: one simulation step, nothing in between."""
        w, m = self.world, self.world.metrics
        now = self.env.now
        self.current = None
        if result.stans:
            self.stan = next_stan(result.stans[-1])
        for owed in result.pending:
            mti = owed.mti
            if mti == "0400":
                original = request if request is not None else owed
                self.store.add(Record("reversal", owed, _key(original), original.amount or 0))
                m.reversals_owed += 1
            elif owed.response_code in ("Y1", "Y3"):
                self.store.add(Record("advice", owed, _key(owed), owed.amount or 0))
                w.note("invoked", owed)
                w.note("approved-offline", owed)
                m.offline_approved += 1
            else:
                self.store.add(Record("completion", owed, _key(owed), owed.amount or 0))
        if request is not None and reply is not HostUnreachable:
            w.note("invoked", request)
            if isinstance(reply, Message):
                approved_online = result.approved and result.online
                w.note("approved-online" if approved_online else "declined", request)
            else:
                w.note("unknown", request)
        if result.approved:
            if result.log_key:
                self.pan_log = self.pan_log.record_digest(w.population.digest(result.log_key), result.currency,
                                                          result.amount_minor)
            totals = self.totals.setdefault(result.currency, [0, 0])
            totals[0] += 1
            totals[1] += result.amount_minor
        if result.entry_mode[:2] in ("80", "79"):
            m.fallbacks += 1
        m.receipts[result.receipt] += 1
        if result.auth_code and result.auth_code.startswith("ST"):
            m.stand_in += 1
        m.outcome(now, result.arc or result.outcome.value)

    # The network -----------------------------------------------------------------------------

    @property
    def link(self) -> Link:
        """The link in use."""
        return self.links[self.active]

    def links_of(self, kind: str | None) -> list[Link]:
        """The fitted links of ``kind`` (every link for ``None``): what a link fault hits."""
        return [link for link in self.links if kind is None or link.kind == kind]

    def _pick_link(self) -> bool:
        """Use the most preferred link that is up; ``False`` when none is.

        Leaving a link that went down costs the next message the dead link's connect
        timeout (how long the terminal takes to give up on it); going back to a preferred
        link once it is up again costs nothing.
        """
        for index, link in enumerate(self.links):
            if link.down == 0:
                if index != self.active:
                    m = self.world.metrics
                    if index > self.active:
                        m.link_failovers += 1
                        self.failover_penalty_s = self.connect_timeout_s
                    else:
                        m.link_failbacks += 1
                    self.active = index
                return True
        return False

    def _reachable(self) -> bool:
        return self._pick_link() and self.acquirer_refused == 0

    def _refusal_delay(self) -> float:
        """How long finding out takes: a refused connection at once, a dead local network at the connect timeout."""
        return self.connect_timeout_s if self.link.down else self.link.connect_s

    def _send(self, msg: Message) -> Generator[Any, Any, object]:
        """Send ``msg`` and wait for its answer or the host timeout; the answer, or ``HostTimeout``."""
        env = self.env
        reply = env.event()
        out = self.link.transit()
        if out is not None:
            delay = self.link.connect_s + out + self.failover_penalty_s
            self.failover_penalty_s = 0.0
            env.process(self.world.serve(msg, delay, self, reply))
        timer = env.timeout(self.timeout_s)
        yield reply | timer
        if reply.triggered:
            return reply.value
        reply.gave_up = True  # type: ignore[attr-defined]  # a late answer finds nobody waiting (REV-02)
        return HostTimeout

    # Store and forward ---------------------------------------------------------------------------

    def _forward(self) -> Generator[Any, Any, None]:
        """Send what the store owes, oldest first, until it is empty or the host cannot be had."""
        m = self.world.metrics
        for record in self.store.owed():
            if not self._reachable():
                yield self.env.timeout(self._refusal_delay())
                self.retry_at = self.env.now + self.world.scenario.retry_s
                return
            wire = record.wire()
            if record.sent:
                if record.kind == "reversal":
                    m.reversal_repeats += 1
                else:
                    m.advice_repeats += 1
            elif record.kind == "reversal":
                m.reversals_sent += 1
            record.sent = True  # durable before it leaves: a repeat after a power cut goes as 0221/0401
            answer = yield from self._send(wire)
            if not isinstance(answer, Message):
                self.retry_at = self.env.now + self.world.scenario.retry_s
                return
            self.store.remove(record)
            if record.kind == "reversal":
                m.reversals_acknowledged += 1
                self.world.note_reversed(record)
            elif record.kind == "advice":
                m.offline_forwarded += 1
        self.retry_at = self.env.now

    # Settlement ----------------------------------------------------------------------------------

    def _settle(self) -> Generator[Any, Any, None]:
        """End of day (SET-01): flush the store, then one 0500 per currency with this terminal's totals."""
        w, m = self.world, self.world.metrics
        if self.store.backlog:
            yield from self._forward()
            if self.store.backlog:
                return
        for cur in sorted(self.totals):
            if not self._reachable():
                yield self.env.timeout(self._refusal_delay())
                self.retry_at = self.env.now + w.scenario.retry_s
                return
            # An unanswered 0500 goes again as it was, so the host answers it as it did the first
            # time; sales made since wait for the next one.
            if cur not in self.eod:
                count, amount = self.totals[cur]
                self.eod[cur] = (reconciliation_request(terminal_id=self.id, stan=self._take_stan(),
                                                        transmitted=w.clock(), currency=cur, credits_count=0,
                                                        credits_amount=0, debits_count=count, debits_amount=amount),
                                 count, amount)
            msg, count, amount = self.eod[cur]
            answer = yield from self._send(msg)
            if not isinstance(answer, Message):
                self.retry_at = self.env.now + w.scenario.retry_s
                return
            code = answer.response_code or "??"
            m.settlements[code] += 1
            del self.eod[cur]
            if code == "95":  # SET-01: upload; the host closes every unsettled batch of this terminal
                w.host.batch_upload(self.id, [r.message for r in self.store.owed()], w.clock())
                self.totals.clear()
                self.eod.clear()
                break
            left = self.totals[cur]
            left[0] -= count
            left[1] -= amount
            if left == [0, 0]:
                del self.totals[cur]
        self.cut_index += 1
