"""What a virtual card can raise instead of answering.

A card answers almost everything with a status word; these exceptions are for the
few physical situations where there is no answer at all (a dead chip, a card pulled
out of the reader, an unreadable stripe). Drivers catch :class:`CardError` and turn
it into what a reader reports: the kernel falls back to the stripe (FB-01), ends the
transaction (FB-04) or asks for manual entry (FB-02).
"""

from __future__ import annotations

__all__ = [
    "CardError",
    "CardMuteError",
    "CardNotPoweredError",
    "CardRemovedError",
    "MagstripeError",
]


class CardError(Exception):
    """Base of every error a virtual card raises; a driver needs to catch only this."""


class CardMuteError(CardError):
    """The chip does not answer: no ATR at power-on, or it went silent mid-transaction.

    A mute chip stays mute until the next :meth:`~sim.emv.card.VirtualCard.power_on`
    (a reset), exactly as a reader would see it.
    """


class CardRemovedError(CardError):
    """The card left the reader; no response will come until it is inserted (powered) again."""


class CardNotPoweredError(CardError):
    """A command was sent before :meth:`~sim.emv.card.VirtualCard.power_on`.

    A reader cannot send an APDU to an unpowered card; this is a driver bug, reported
    as such rather than answered with an invented status word.
    """


class MagstripeError(CardError):
    """The magnetic stripe could not be read (damaged stripe, bad swipe)."""
