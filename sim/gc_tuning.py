"""Process tuning of a long-running server or load generator: the cyclic garbage collector off the hot path.

A load generator (and, the same way, the live host answering it) allocates a few dozen short-lived containers per request (the
decoded answer's dict, the request, its waiter), nearly all freed by reference
counting. CPython's cyclic collector still walks its youngest generation every
700 net container allocations, and the older ones in proportion -- including,
in a Locust process, the large heap of Locust, Flask and the request pools, none
of it ever garbage. :func:`settle_heap` moves everything alive now out of the
collector's sight (``gc.freeze``) and lets the youngest generation grow larger
before a pass. Cycles are still collected, only less often; memory stays bounded.
In ``possim bench load`` this took about 5-10% off the client CPU per request.
Call it once, after the pools are built and before measuring.

A server's heap keeps growing after that: the host remembers every answer, posting
and original for its duplicate and reversal windows, about ten tracked objects per
request, kept for minutes to an hour. The collector walks each of them again in
every pass over the middle generation (every ten young passes; 80 ms each at
40,000 requests) and over the whole heap whenever a quarter of it is new (0.7 s
at 100,000 requests' worth, a million objects), so a busy host pauses longer and
longer, more and more often. None of it is ever garbage: answering requests,
format errors, framing errors and closed connections makes no reference cycle (a
test holds the host to that). :class:`HeapKeeper` therefore freezes what survived,
once a second, after one pass over the young generation, so every later pass
walks only the last second's objects; what is frozen is still freed by reference
counting when a window lets it go. A cycle that becomes garbage only after a
freeze (none on the paths above; the stdlib event loop's transports make them) is
found by a full collection once an hour (:data:`FULL_EVERY_S`).

>>> import gc
>>> before = gc.get_threshold()
>>> settle_heap(young=5_000)
>>> gc.get_threshold()[0]
5000
>>> gc.unfreeze(); gc.set_threshold(*before)
"""

from __future__ import annotations

import gc

__all__ = ["FULL_EVERY_S", "HeapKeeper", "settle_heap"]

FULL_EVERY_S = 3_600.0
"""Seconds between the :class:`HeapKeeper`'s full collections (a pause that grows with the heap)."""


def settle_heap(young: int = 20_000) -> None:
    """Collect once, freeze what survives, and collect the young generation every ``young`` allocations."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young, older, oldest)


class HeapKeeper:
    """Freezes a server's survivors once a second; a full collection every ``full_every_s``.

    The owner calls :meth:`tick` from a timer it already has, with a monotonic clock
    reading; the keeper never reads the clock itself.

    Parameters
    ----------
    now : float
        The clock reading at start (the first full collection is ``full_every_s`` later).
    full_every_s : float, optional
        Seconds between full collections; ``0`` never runs one.

    Examples
    --------
    >>> import gc
    >>> keeper = HeapKeeper(0.0, full_every_s=10.0)
    >>> keeper.tick(1.0)
    'freeze'
    >>> keeper.tick(11.0)
    'full'
    >>> gc.unfreeze()
    """

    def __init__(self, now: float, *, full_every_s: float = FULL_EVERY_S) -> None:
        if full_every_s < 0:
            raise ValueError(f"full_every_s {full_every_s!r} must be >= 0 (0: never)")
        self.full_every_s = full_every_s
        self._next_full = now + full_every_s
        self.freezes = 0
        self.full_collections = 0

    def tick(self, now: float) -> str:
        """Freeze the survivors (``'freeze'``), or run the full collection when it is due (``'full'``)."""
        if self.full_every_s and now >= self._next_full:
            self._next_full = now + self.full_every_s
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            self.full_collections += 1
            return "full"
        gc.collect(0)
        gc.freeze()
        self.freezes += 1
        return "freeze"
