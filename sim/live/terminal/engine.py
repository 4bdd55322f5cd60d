"""The live terminal: the sans-IO kernel driven on the wall clock, a durable store, a host over TCP.

One :class:`Terminal` is one POS terminal: one card reader (so one transaction at a
time), one host connection (:mod:`.link`), one state directory (:mod:`.store`). It runs
the real kernel (:class:`sim.emv.kernel.Transaction`) event by event; card events go
to a virtual card from the test set (kept between transactions, like a cardholder's
card: its counters move on) or to a PC/SC reader; :class:`~sim.emv.kernel.NeedOnline`
goes to the host.

The order of writes is what makes it safe to pull the plug anywhere:

1. before an online request leaves, the in-flight marker (with the reversal that would
   undo it) is committed;
2. the outcome, every advice or reversal the kernel says is owed, the batch entry and
   the history events are committed in one SQLite transaction, which also drops the
   marker -- and only then is the outcome reported to the cash register;
3. at start, a marker left behind becomes an owed reversal (REV-01 across restarts).

A forwarding task sends what is owed, oldest first, as soon as the link is up, with
backoff while it is not; a message leaves the store only when the host answered it
(a repeat -- 0221, 0401 -- after the first send). A keep-alive task sends an 0800
echo when the link has been quiet, so a dead connection is found and redialled
before a customer waits on it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from ...core.cards import CardSet
from ...core.money import Currency
from ...emv.card import VirtualCard
from ...emv.kernel import Done, HostTimeout, HostUnreachable, NeedOnline, PanLog, TerminalConfig, Transaction
from ...emv.kernel.driver import _answer as card_answer
from ...emv.kernel.messages import build_reversal
from ...emv.kernel.result import TransactionResult
from ...iso8583.message import Message, network_request, reconciliation_request
from ...profiles import HardwareProfile
from .link import HostLink
from .outcome import history_events, record_of
from .store import TerminalStore

__all__ = ["Terminal", "TerminalSettings", "TYPES"]

log = logging.getLogger("possim.terminal")

TYPES = {"sale": "00", "cash": "01", "cashback": "09", "refund": "20"}
"""ECR transaction types and their 9C / DE3 codes."""

STAN_BLOCK = 8
"""STANs reserved per transaction: the kernel's (request, reversal, completion) and the crash reversal's (last)."""

RETRY_CODES = frozenset({"91", "96"})
"""Answers to an advice or reversal that mean "not taken, send again later"."""

ACCEPTED_CODES = frozenset({"00", "94"})
"""Answers that acknowledge an advice or reversal (94: the host already has it). Any other
answer is a refusal: the message leaves the queue into the store's ``rejected`` table."""


@dataclass(frozen=True)
class TerminalSettings:
    """How a live terminal is set up (from the command line)."""

    terminal_id: str = "TERM0001"
    merchant_id: str = "POSSIM000000001"
    response_timeout: float | None = None  # None: the profile's host_response_s
    connect_timeout: float | None = None  # None: the profile's connect_s
    echo_interval: float = 30.0
    backoff: float = 0.2
    backoff_max: float = 5.0
    seed: int | None = None
    reader: str | None = None


def _now() -> datetime:
    """The terminal clock: UTC, naive (DE7 is GMT by ISO 8583)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class TerminalError(ValueError):
    """A cash-register request the terminal refuses (the message says why and what is allowed)."""


class Terminal:
    """One live terminal; see the module notes. Use :meth:`start` and :meth:`stop` inside a running loop."""

    def __init__(self, settings: TerminalSettings, profile: HardwareProfile, store: TerminalStore, cards: CardSet,
                 link: HostLink) -> None:
        self.settings, self.profile, self.store, self.cards, self.link = settings, profile, store, cards, link
        self.config = TerminalConfig.from_profile(profile, terminal_id=settings.terminal_id,
                                                  merchant_id=settings.merchant_id)
        self.capacity = profile.offline_store.capacity
        self.rng = random.Random(settings.seed)
        self.wallet: dict[str, VirtualCard] = {}
        self.pan_log = PanLog()
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.recovered: list[int] = []
        self.started = time.monotonic()
        self.transactions = 0

    # Life cycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover what a crash left (markers → reversals), then start forwarding and keep-alive."""
        self.recovered = self.store.recover()
        self._tasks = [asyncio.create_task(self._forward_loop()), asyncio.create_task(self._keepalive_loop())]

    async def shutdown(self) -> None:
        """Let a transaction in progress finish (and be stored), then :meth:`stop`."""
        async with self._lock:
            await self.stop()

    async def stop(self) -> None:
        """Stop the background tasks and close the link (everything owed stays in the store)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
        await self.link.close()

    # Transactions -----------------------------------------------------------------------------

    def _card(self, label: str | None) -> tuple[Any, str | None, Currency | None]:
        """The card object, its PIN and currency: the reader's card, or a test card by label."""
        if self.settings.reader is not None:
            from ...pcsc.transport import PcscTransport

            chosen = self.cards.card(label) if label else None
            return (PcscTransport(self.settings.reader), chosen.pin if chosen else None,
                    chosen.currency_info if chosen else None)
        if not label:
            raise TerminalError("card: give a card label from the test card set (see `possim cards`)")
        try:
            chosen = self.cards.card(label)
        except KeyError:
            raise TerminalError(f"card: no card {label!r}; labels: {', '.join(self.cards.labels)}") from None
        if label not in self.wallet:
            self.wallet[label] = VirtualCard.from_label(label, self.cards)
        return self.wallet[label], chosen.pin, chosen.currency_info

    def card_currency(self, label: str | None) -> Currency | None:
        """The currency of a test card (the default currency of a transaction with it)."""
        if not label:
            return None
        try:
            return self.cards.card(label).currency_info
        except KeyError:
            raise TerminalError(f"card: no card {label!r}; labels: {', '.join(self.cards.labels)}") from None

    async def transact(self, kind: str, *, card: str | None, amount: int, cur: Currency,
                       pin: str | None = None) -> dict[str, Any]:
        """Run one transaction to its end; the result is durable before this returns.

        Returns the ``possim terminal --json`` keys plus ``terminal_id``, ``stan``,
        ``transmitted`` (the key the host books it under), ``attempt`` and ``stored``
        (MTIs now owed to the host for it).
        """
        if kind not in TYPES:
            raise TerminalError(f"type {kind!r}; allowed: {', '.join(TYPES)}")
        the_card, card_pin, _ = self._card(card)
        pins = [pin] if pin is not None else [card_pin] * 3
        async with self._lock:
            return await self._run(kind, the_card, amount, cur, pins)

    async def _run(self, kind: str, the_card: Any, amount: int, cur: Currency, pins: list[str | None]) -> dict[str, Any]:
        when = _now()
        stan = self.store.take_stans(STAN_BLOCK)
        attempt = self.store.begin(terminal_id=self.config.terminal_id, stan=stan, transmitted=when.strftime("%m%d%H%M%S"),
                                   kind="credit" if TYPES[kind] == "20" else "debit", amount=amount, currency=cur.numeric)
        free = max(self.capacity - self.store.owed_count(), 0)
        config = replace(self.config, pan_log=self.pan_log, offline_store_free=free)
        txn = Transaction(config, amount=amount, currency=cur, when=when, unpredictable_number=self.rng.randbytes(4),
                          stan=stan, transaction_type=TYPES[kind], rng=self.rng)
        crash_stan = (stan + STAN_BLOCK - 2) % 999_999 + 1
        pc_sc = self.settings.reader is not None
        typed = iter(pins)
        request: Message | None = None
        answered = False
        try:
            event = txn.next_event()
            while not isinstance(event, Done):
                if isinstance(event, NeedOnline):
                    request = event.request
                    self.store.arm(attempt, request, build_reversal(request, stan=crash_stan, when=when, reason="68"))
                    try:
                        answer: object = await self.link.request(request)
                        answered = True
                    except HostUnreachable as exc:
                        self.store.disarm(attempt)  # nothing left the terminal
                        request = None
                        answer = exc
                    except HostTimeout as exc:
                        answer = exc  # the marker stays until the kernel's own reversal is stored
                elif pc_sc:
                    answer = await asyncio.to_thread(card_answer, event, the_card, None, [], typed, 0, None)
                else:
                    answer = card_answer(event, the_card, None, [], typed, 0, None)
                event = txn.send(answer)
        except BaseException as exc:
            # the transaction cannot finish (a driver fault, a cancelled task): whatever left is reversed now
            self.store.recover(attempt, why=f"transaction failed ({type(exc).__name__})")
            self._wake.set()
            raise
        finally:
            if pc_sc:
                the_card.close()
        result: TransactionResult = event.result
        record = record_of(result, request, answered)
        self.store.finish(attempt, state=record.state, key=record.key, arc=result.arc, reason=result.reason,
                          owed=result.pending, masked_pan=result.masked_pan, amount=result.amount_minor,
                          carrier=record.carrier, events=history_events(result, request, answered))
        if result.approved and result.log_key:
            self.pan_log = self.pan_log.record_digest(result.log_key, result.currency, result.amount_minor)
        self.transactions += 1
        if result.pending:
            self._wake.set()
        return self._answer(result, record.key, attempt)

    def _answer(self, result: TransactionResult, key: Message | None, attempt: int) -> dict[str, Any]:
        from ...terminal.cli import result_dict

        out = result_dict(result, [])
        out.update(terminal_id=self.config.terminal_id, stan=key.stan if key is not None else None,
                   transmitted=key.transmitted if key is not None else None, attempt=attempt,
                   stored=[m.mti for m in result.pending])
        return out

    async def void(self, stan: str) -> dict[str, Any]:
        """Reverse an approved transaction of the open batch by its DE11: an 0400 owed, sent at once."""
        async with self._lock:
            target = self.store.attempt_by_stan(stan)
            if target is None or target.state not in ("approved-online", "approved-offline"):
                raise TerminalError(f"void: no approved transaction with stan {stan!r} in this terminal")
            if self.store.is_settled(target.id):
                raise TerminalError(f"void: stan {stan!r} is in a settled batch ({target.batch}, {target.currency}); "
                                    "refund it instead")
            if target.reversed >= target.amount:
                raise TerminalError(f"void: stan {stan!r} is already reversed")
            original = self.store.carrier(target.id)
            if original is None:
                raise TerminalError(f"void: the message of stan {stan!r} is no longer held")
            rev_stan = self.store.take_stans(1)
            reversal = build_reversal(original, stan=rev_stan, when=_now(), reason="17")
            self.store.void(target.id, reversal)
        self._wake.set()
        return {"outcome": "voided", "terminal_id": target.terminal_id, "stan": target.stan,
                "transmitted": target.transmitted, "amount_minor": target.amount, "currency": target.currency,
                "masked_pan": target.masked_pan, "stored": [reversal.mti], "reversal_stan": reversal.stan}

    # Forwarding -------------------------------------------------------------------------------

    def _wire(self, message: Message) -> Message:
        """A reversal in the dialect's MTI (0420/0421 for hosts that want them)."""
        if self.link.dialect.reversal_mti == "0420" and message.original_mti == "0400":
            return message.replace(t="0420" if message.mti == "0400" else "0421")
        return message

    async def _forward_loop(self) -> None:
        while True:
            try:
                await self._forward()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - forwarding must outlive any one failure (a full disk...)
                log.exception("forwarding failed; trying again")
                await self._pause(self.settings.backoff_max)

    async def _forward(self) -> None:
        delay = self.settings.backoff
        while True:
            owed = self.store.owed()
            if not owed:
                self._drained.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            self._drained.clear()
            item = owed[0]
            try:
                await self.link.connect()
                self.store.sending(item.id)
                answer = await self.link.request(self._wire(item.wire_form))
            except (HostUnreachable, HostTimeout) as exc:
                self.store.failed(item.id, str(exc))
                await self._pause(delay)
                delay = min(delay * 2, self.settings.backoff_max)
                continue
            if answer.response_code in RETRY_CODES:
                self.store.failed(item.id, f"host answered {answer.mti} {answer.response_code}")
                await self._pause(delay)
                delay = min(delay * 2, self.settings.backoff_max)
                continue
            if answer.response_code in ACCEPTED_CODES:
                self.store.acknowledged(item.id)
            else:
                self.store.rejected(item.id, answer.mti, answer.response_code)
            delay = self.settings.backoff

    async def _pause(self, seconds: float) -> None:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def drain(self, timeout: float) -> bool:
        """Wait until nothing is owed (True) or ``timeout`` s pass (False)."""
        if self.store.owed_count() == 0:
            return True
        self._drained.clear()
        self._wake.set()
        deadline = time.monotonic() + timeout
        while self.store.owed_count():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self._drained.wait(), min(left, 0.5))
            except asyncio.TimeoutError:
                self._wake.set()
        return True

    async def _keepalive_loop(self) -> None:
        interval = self.settings.echo_interval
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            quiet = self.link.last_answer_at is None or time.monotonic() - self.link.last_answer_at >= interval
            if quiet and self.link.ready_now():
                try:
                    await self.echo()
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - the keep-alive must outlive any one failure
                    log.exception("keep-alive echo failed")

    async def echo(self) -> dict[str, Any]:
        """An 0800 echo test (DE70 301): the host's DE39, or the error."""
        msg = network_request("301", stan=self.store.take_stans(1), transmitted=_now(), terminal_id=self.config.terminal_id)
        started = time.monotonic()
        try:
            answer = await self.link.request(msg)
        except (HostUnreachable, HostTimeout) as exc:
            await self.link.drop()
            return {"outcome": "unreachable", "error": str(exc)}
        self._wake.set()  # the host is there: whatever is owed can go
        return {"outcome": "answered", "code": answer.response_code, "ms": round((time.monotonic() - started) * 1000, 3)}

    # Settlement -------------------------------------------------------------------------------

    async def settle(self, drain_timeout: float = 30.0) -> dict[str, Any]:
        """End of day: deliver what is owed, then one 0500 per currency of the open batch (SET-01).

        On 0510 00 for a currency it is settled. On 95 the terminal uploads that
        currency's transactions (0320s, see :mod:`.upload`) and sends the 0500 again with
        DE3 960000; the host's 00 settles it. The batch closes when every currency is
        settled; otherwise it stays open, the settled currencies' transactions leave its
        totals, and a later ``settle`` resumes with the rest (the upload where it stopped).
        """
        from .upload import upload_batch

        async with self._lock:
            if not await self.drain(drain_timeout):
                raise TerminalError(f"settle: {self.store.owed_count()} advices/reversals still owed to the host "
                                    f"after {drain_timeout:g} s; settle again once the host is reachable")
            currencies: list[dict[str, Any]] = []
            for t in self.store.totals():
                entry = await self._reconcile(t, "920000")
                if entry["code"] == "95":
                    upload = await upload_batch(self, t.currency, _now().strftime("%m%d%H%M%S"))
                    entry["upload"] = upload
                    if upload["complete"]:
                        again = await self._reconcile(t, "960000")
                        upload.update(code=again["code"], stan=again["stan"], host=again["host"])
                entry["settled"] = entry["code"] == "00" or entry.get("upload", {}).get("code") == "00"
                if entry["settled"]:
                    self.store.settle_currency(t.currency)  # a later settle leaves it out
                currencies.append(entry)
            settled = all(c["settled"] for c in currencies)
            new_batch = None
            if settled:
                new_batch = self.store.close_batch(json.dumps(currencies))
            return {"outcome": "settled" if settled else "not settled", "batch": (new_batch or self.store.batch + 1) - 1,
                    "currencies": currencies}

    async def _reconcile(self, t: Any, processing_code: str) -> dict[str, Any]:
        """One 0500 with the open batch's totals ``t`` in one currency; its answer as the settle report shows it."""
        msg = reconciliation_request(
            terminal_id=self.config.terminal_id, stan=self.store.take_stans(1), transmitted=_now(),
            currency=t.currency, credits_count=t.credits_count, credits_amount=t.credits_amount,
            debits_count=t.debits_count, debits_amount=t.debits_amount, batch=f"{self.store.batch:06d}",
            processing_code=processing_code,
        )
        try:
            answer = await self.link.request(msg)
        except (HostUnreachable, HostTimeout) as exc:
            raise TerminalError(f"settle: 0500 {processing_code} for currency {t.currency} not answered: {exc}") from None
        return {
            "currency": t.currency, "code": answer.response_code, "stan": msg.stan,
            "terminal": {"debits_count": t.debits_count, "debits_amount": t.debits_amount,
                         "credits_count": t.credits_count, "credits_amount": t.credits_amount},
            "host": {name: int(answer.get(field) or 0) for field, name in (
                ("76", "debits_count"), ("88", "debits_amount"), ("74", "credits_count"), ("86", "credits_amount"))},
        }

    async def close_batch(self) -> dict[str, Any]:
        """Close the open batch without a 0500 (a host that settles some other way, by hand)."""
        async with self._lock:
            closed = self.store.batch
            self.store.close_batch(json.dumps({"closed_by": "close_batch"}))
            return {"outcome": "closed", "batch": closed}

    # Status -------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What a cash register or a tester wants to know about the terminal now."""
        return {
            "terminal_id": self.config.terminal_id,
            "profile": self.profile.name,
            "host": f"{self.link.host}:{self.link.port}",
            "link": "up" if self.link.up else "down",
            "link_error": self.link.last_error,
            "late_answers_ignored": self.link.late,
            "offline_capacity": self.capacity,
            "recovered_reversals": len(self.recovered),
            "transactions": self.transactions,
            "busy": self._lock.locked(),
            **self.store.summary(),
        }
