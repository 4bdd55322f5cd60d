"""What a finished transaction means for the store: its state, its key, its history events.

Pure functions of the kernel's :class:`~sim.emv.kernel.TransactionResult` and the
online request (if one left), so the rules sit in one place and are tested without a
terminal:

* the **key** of a transaction is the message that carries it to the host: the
  request when the host answered it, else the 0220 advice of an offline approval;
* the **history events** are what the history checker (:mod:`sim.core.history`)
  reads: ``invoked`` for a request that left, its answer (``approved-online`` /
  ``declined``) or ``unknown`` when none came, ``approved-offline`` for an advice,
  ``reversed`` for every reversal owed (under the key of what it reverses).

Examples
--------
>>> kind_of("200000"), kind_of("000000")
('credit', 'debit')
"""

from __future__ import annotations

from dataclasses import dataclass

from ...emv import tlv
from ...emv.kernel.result import TransactionResult
from ...iso8583.message import Message
from ...iso8583.pretty import mask_pan
from ..redact import SECRET_ICC_TAGS

__all__ = ["Event", "Record", "event_of", "history_events", "kind_of", "record_of", "redacted"]

CREDIT_CODES = ("20", "21", "22", "28")

Event = tuple[str, str, str, str | None, str, int, str, str]
"""(type, terminal id, stan, DE7, masked PAN, amount, currency, kind): one history row."""


@dataclass(frozen=True, slots=True)
class Record:
    """The stored state of a finished attempt and the message that keys it."""

    state: str
    key: Message | None
    carrier: Message | None


def kind_of(processing_code: str | None) -> str:
    """``credit`` for refunds and other credits (DE3 20, 21, 22, 28), else ``debit``."""
    return "credit" if (processing_code or "00")[:2] in CREDIT_CODES else "debit"


def redacted(message: Message) -> Message:
    """A request without track data, PIN block or track-equivalent chip tags (SEC-03): what a void
    or a batch upload needs of it (a chip 0200 must keep its DE55)."""
    changes: dict[str, str | None] = {"DE35": None, "DE45": None, "DE52": None}
    icc = message.icc
    if any(tag in icc for tag in SECRET_ICC_TAGS):
        changes["DE55"] = tlv.encode({t: v for t, v in icc.items() if t not in SECRET_ICC_TAGS}).hex().upper()
    return message.replace(**changes)


def _advice(result: TransactionResult) -> Message | None:
    return next((m for m in result.pending if m.original_mti in ("0220", "0120")), None)


def record_of(result: TransactionResult, request: Message | None, answered: bool) -> Record:
    """The state to store and the key message (see the module notes)."""
    advice = _advice(result)
    if result.approved:
        if answered and request is not None and result.online:
            return Record("approved-online", request, redacted(request))
        return Record("approved-offline", advice, advice)
    state = "declined" if result.declined else "terminated"
    if request is not None:
        return Record(state if answered else "unknown" if state == "terminated" else state, request, None)
    return Record(state, None, None)


def event_of(kind: str, message: Message, *, amount: int | None = None) -> Event:
    """One history row for ``message`` (its DE41, DE11, DE7, masked DE2, DE4, DE49, direction)."""
    return (kind, message.terminal_id or "", message.stan or "", message.transmitted, mask_pan(message.pan or ""),
            message.amount or 0 if amount is None else amount, message.currency or "", kind_of(message.processing_code))


def history_events(result: TransactionResult, request: Message | None, answered: bool) -> list[Event]:
    """The history rows a finished transaction adds (the ``invoked`` row was written when the request left)."""
    events: list[Event] = []
    if request is not None:
        if answered:
            events.append(event_of("approved-online" if result.approved and result.online else "declined", request))
        else:
            events.append(event_of("unknown", request))
    advice = _advice(result)
    if advice is not None and result.approved and not (answered and result.online):
        events.append(event_of("invoked", advice))
        events.append(event_of("approved-offline", advice))
    for owed in result.pending:
        original = owed.original
        if owed.original_mti in ("0400", "0420") and original is not None:
            row = event_of("reversed", owed)
            events.append((row[0], row[1], original.stan, original.transmitted, *row[4:]))
    return events
