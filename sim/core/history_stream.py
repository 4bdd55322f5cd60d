"""The history checker, streaming: the same verdict as :func:`sim.core.history.check`, in bounded memory.

A long run cannot keep every attempt and every booking until the end. This checker
takes them as they happen and judges them *slot by slot*: a slot is one terminal id +
STAN, the most the batch checker ever matches across (a booking belongs to an attempt
of its own terminal id and STAN, by DE7 or, when one side lacks DE7, by STAN alone).
Once the caller knows nothing more can name a slot, :meth:`StreamingCheck.retire`
judges it with the batch checker's rules, adds its money to the running sums per
currency, keeps its findings (lost, duplicated, unexpected, mismatched, resolved) and
forgets the rest. What stays in memory is the open slots, the sums and the findings,
which are few when things are right.

The verdict is exactly the batch checker's on the same events and bookings, provided
the caller keeps the one promise retirement rests on: **a slot is retired only when no
later event or booking names its terminal id and STAN** (with or without DE7). The
SimPy world keeps it with a low watermark: a slot whose last activity is older than
everything still owed anywhere (terminal stores, messages in flight, the acquirer's
queue for issuers) can no longer change (see :meth:`StreamingCheck.retire_before`).
Slots never retired are judged by :meth:`StreamingCheck.verdict` as they stand.

Examples
--------
>>> from sim.core.history import BookedEffect, HistoryEvent
>>> stream = StreamingCheck()
>>> stream.event(HistoryEvent("invoked", "T1", "1", "4761739001010010", 1250, "EUR", "1122103000"), at=10.0)
>>> stream.booked(BookedEffect("T1", "1", "1122103000", "4761739001010010", 1250, "978"), at=10.5)
>>> stream.event(HistoryEvent("approved-online", "T1", "1", "4761739001010010", 1250, "EUR", "1122103000"), at=11.0)
>>> stream.retire_before(60.0), stream.open
(1, 0)
>>> v = stream.verdict()
>>> v.ok, v.attempts, v.effects, v.balances[0].booked
(True, 1, 1, 1250)
"""

from __future__ import annotations

from typing import Container

from .history import BookedEffect, HistoryEvent, Key, Verdict, _Attempt, _Tally

__all__ = ["Slot", "StreamingCheck"]

Slot = tuple[str, str]
"""Terminal id and STAN: the unit the streaming checker retires."""


class _Open:
    """One slot still open: its attempts by key, its bookings, its first and last activity."""

    __slots__ = ("attempts", "effects", "first", "last")

    def __init__(self, at: float) -> None:
        self.attempts: dict[Key, _Attempt] = {}
        self.effects: list[BookedEffect] = []
        self.first = at
        self.last = at


class StreamingCheck:
    """The history checker fed one event or booking at a time (see the module docstring).

    ``at`` arguments are the caller's clock (simulated seconds in the SimPy world), used
    only to tell which slots have been quiet long enough to retire.
    """

    def __init__(self) -> None:
        self._open: dict[Slot, _Open] = {}
        self._tally = _Tally()
        self.retired = 0
        """Slots judged and forgotten so far."""

    @property
    def open(self) -> int:
        """Slots still held in memory."""
        return len(self._open)

    def _slot(self, slot: Slot, at: float) -> _Open:
        found = self._open.get(slot)
        if found is None:
            found = self._open[slot] = _Open(at)
        elif at > found.last:
            found.last = at
        return found

    def event(self, event: HistoryEvent, at: float = 0.0) -> None:
        """One thing a terminal recorded about an attempt.

        Raises
        ------
        ValueError
            Events of one attempt disagree on currency or direction (as the batch checker).
        """
        key = event.key
        attempts = self._slot((key[0], key[1]), at).attempts
        attempt = attempts.get(key)
        if attempt is None:
            attempt = attempts[key] = _Attempt(key, event.pan, event.currency, event.kind, event.amount)
        attempt.add(event)

    def booked(self, effect: BookedEffect, at: float = 0.0) -> None:
        """One posting the host ledger made to a card account."""
        self._slot((effect.terminal_id, effect.stan), at).effects.append(effect)

    def touch(self, slot: Slot, at: float) -> None:
        """Host activity about ``slot`` that moved no money (a reversal of an unseen original):
        keeps the slot open as long as any other activity would."""
        self._slot(slot, at)

    def first_seen(self, slot: Slot) -> float | None:
        """When ``slot`` was first named, or ``None`` when it is not open."""
        found = self._open.get(slot)
        return found.first if found is not None else None

    def retire(self, slot: Slot) -> bool:
        """Judge ``slot`` now and forget it; the caller promises nothing more will name it."""
        found = self._open.pop(slot, None)
        if found is None:
            return False
        self._tally.judge(found.attempts, found.effects)
        self.retired += 1
        return True

    def retire_before(self, watermark: float, keep: Container[Slot] = ()) -> int:
        """Retire every open slot whose last activity is before ``watermark`` and that is not in ``keep``.

        The caller chooses ``watermark`` at or before the first activity of every slot that
        something still owed could name, so a slot quiet since before it can no longer
        change. Returns how many slots were retired.
        """
        done = [slot for slot, found in self._open.items() if found.last < watermark and slot not in keep]
        for slot in done:
            self.retire(slot)
        return len(done)

    def verdict(self) -> Verdict:
        """The verdict on everything fed so far: retired slots as judged, open ones as they stand.

        Open slots stay open: the stream can go on and be judged again.
        """
        tally = self._tally.copy()
        for found in self._open.values():
            tally.judge(found.attempts, found.effects)
        return tally.verdict()
