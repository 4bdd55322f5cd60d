"""Batch upload after a 0510 95 (SET-01): one 0320 per transaction, then a 0500 960000.

When the totals of a 0500 differ from the host's, the terminal sends the host its
batch the way POS hosts commonly take it:

1. one 0320 per approved, not fully reversed transaction of the open batch in that
   currency: the message that carried it (the redacted request, or the advice of an
   offline approval; never track data or a PIN block), DE39 its decision (``00``,
   ``Y1``, ``Y3``), DE4 what the terminal counts of it (the amount less any partial
   reversal), DE90 naming the original (MTI, STAN, DE7), its own DE11 and DE7. The
   host answers each 0330 ``00`` -- whether it was missing the transaction (and adds
   it, once) or already had it;
2. when every 0320 is answered 00, the same totals again in a 0500 with DE3
   ``960000`` ("settlement after upload"; the first 0500 carries ``920000``). The host
   answers ``00`` when its totals now match, and the batch closes; ``95`` otherwise,
   and the batch stays open.

The 0320s are durable (:meth:`~.store.TerminalStore.plan_upload`): each is planned
once with its STAN and DE7, its send counted before it leaves, and marked done on
0330 00. A settle cut by a lost link or a ``kill -9`` resumes, at the next ``settle``
that meets a 95, with what is not done, repeated as 0321 when it may have left; what
the host acknowledged is not sent again. The host is idempotent per original key too,
so even a 0320 sent twice counts once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...emv.kernel import HostTimeout, HostUnreachable
from ...iso8583.message import Message, batch_upload

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Terminal

__all__ = ["TAKEN_CODES", "batch_messages", "upload_batch"]

TAKEN_CODES = frozenset({"00", "94"})
"""0330 answers that mean the host has the transaction (94: a duplicate it already took)."""

MAX_STAN = 999_999


def batch_messages(terminal: "Terminal", currency: str) -> list[tuple[int, Message]]:
    """The open batch's approved, not fully reversed transactions in ``currency``: (attempt id, carrier).

    Each carrier has DE39 (its decision) and DE4 (what the terminal counts of it).
    """
    out: list[tuple[int, Message]] = []
    for a in terminal.store.batch_attempts():
        if a.currency != currency or a.reversed >= a.amount:
            continue
        carrier = terminal.store.carrier(a.id)
        if carrier is None:
            continue
        changes = {"DE4": f"{a.amount - a.reversed:012d}"}
        if not carrier.response_code:
            changes["DE39"] = a.arc or "00"
        out.append((a.id, carrier.replace(**changes)))
    return out


def plan(terminal: "Terminal", currency: str, transmitted: str) -> list[int]:
    """Store a 0320 for every transaction of the batch not planned yet; returns the attempts to upload."""
    store = terminal.store
    items = batch_messages(terminal, currency)
    planned = store.planned_uploads(store.batch)
    new = [(attempt, carrier) for attempt, carrier in items if attempt not in planned]
    if new:
        first = store.take_stans(len(new))
        store.plan_upload(store.batch, currency, [
            (attempt, batch_upload(carrier, stan=(first - 1 + i) % MAX_STAN + 1, transmitted=transmitted))
            for i, (attempt, carrier) in enumerate(new)])
    return [attempt for attempt, _ in items]


async def upload_batch(terminal: "Terminal", currency: str, transmitted: str) -> dict[str, Any]:
    """Send what is not yet uploaded of ``currency``; what the settle answer reports.

    ``complete`` is true when the host has taken every transaction of the batch in
    that currency (now or at an earlier, interrupted settle).
    """
    store = terminal.store
    current = set(plan(terminal, currency, transmitted))
    rows = [u for u in store.uploads(store.batch, currency) if u.attempt in current]
    report: dict[str, Any] = {"transactions": len(rows), "sent": 0, "already_taken": sum(u.done for u in rows),
                              "complete": False}
    for row in rows:
        if row.done:
            continue
        store.upload_sending(row.id)
        try:
            answer = await terminal.link.request(row.wire_form)
        except (HostUnreachable, HostTimeout) as exc:
            report["error"] = f"0320 stan {row.message.stan} not answered: {exc}; settle again to resume the upload"
            return report
        report["sent"] += 1
        taken = answer.response_code in TAKEN_CODES
        store.upload_answered(row.id, answer.response_code, taken=taken)
        if not taken:
            report["error"] = (f"host answered {answer.mti} {answer.response_code} to the 0320 of stan "
                               f"{row.message.original.stan if row.message.original else '?'}; batch left open")
            return report
    report["complete"] = True
    return report
