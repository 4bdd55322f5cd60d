"""Terminal action analysis (EMV Book 3 section 10.7): which cryptogram to ask the card for.

The TVR is compared with the issuer's action codes (IAC, from the card) and the
acquirer's (TAC, from the profile), denial first, then online, then default.
Absent IACs count as all zeros (denial) and all ones (online, default), as the
book says, so a card without them goes online whenever anything at all is flagged.

The same default comparison decides the second GENERATE AC when the terminal could
not reach the host: TC with 8A ``Y3``, or AAC with ``Z3`` (OFF-02).

Examples
--------
>>> from sim.emv.tvr import Tvr
>>> tvr = Tvr.from_hex("0000008000")
>>> codes = ActionCodes.of({"9F0E": bytes(5), "9F0F": bytes.fromhex("0000008000"), "9F0D": bytes(5)},
...                        bytes(5), bytes(5), bytes(5))
>>> decide(tvr, codes, online_capable=True, offline_allowed=True).cryptogram
<CryptogramType.ARQC: 128>
>>> unable_online(tvr, codes).cryptogram
<CryptogramType.TC: 64>
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

from ..tvr import Tvr
from .commands import CryptogramType

__all__ = ["ActionCodes", "ActionDecision", "decide", "unable_online"]

_ZEROS = bytes(5)
_ONES = b"\xff" * 5


def _or(a: bytes, b: bytes) -> bytes:
    return _or_remembered(bytes(a), bytes(b))


@lru_cache(maxsize=256)
def _or_remembered(a: bytes, b: bytes) -> bytes:
    """IAC | TAC, remembered: a terminal's TACs and a card's IACs are the same in every transaction."""
    return bytes(x | y for x, y in zip(a, b))


@dataclass(frozen=True, slots=True)
class ActionCodes:
    """The issuer's and the terminal's action codes for one transaction."""

    iac_denial: bytes
    iac_online: bytes
    iac_default: bytes
    tac_denial: bytes
    tac_online: bytes
    tac_default: bytes

    @classmethod
    def of(cls, card: Mapping[str, Any], tac_denial: bytes, tac_online: bytes, tac_default: bytes) -> "ActionCodes":
        """IACs from the card's data (9F0E, 9F0F, 9F0D; defaults when absent or malformed) and the TACs."""

        def iac(tag: str, default: bytes) -> bytes:
            value = card.get(tag)
            return value if isinstance(value, bytes) and len(value) == 5 else default

        return cls(iac("9F0E", _ZEROS), iac("9F0F", _ONES), iac("9F0D", _ONES), tac_denial, tac_online, tac_default)

    @property
    def denial(self) -> bytes:
        return _or(self.iac_denial, self.tac_denial)

    @property
    def online(self) -> bytes:
        return _or(self.iac_online, self.tac_online)

    @property
    def default(self) -> bytes:
        return _or(self.iac_default, self.tac_default)


@dataclass(frozen=True, slots=True)
class ActionDecision:
    """The cryptogram to request and why (the TVR bits that matched, or the rule that applied)."""

    cryptogram: CryptogramType
    reason: str
    matched: tuple[str, ...] = ()


def decide(
    tvr: Tvr, codes: ActionCodes, *, online_capable: bool, offline_allowed: bool, force_online: bool = False
) -> ActionDecision:
    """First GENERATE AC request (Book 3 10.7).

    Parameters
    ----------
    online_capable : bool
        The terminal can go online (terminal type x1, x2, x4, x5).
    offline_allowed : bool
        The terminal may approve offline (offline-capable type and room in the
        offline store, OFF-07); when False an approval can only come from the host.
    force_online : bool
        The transaction must go online whatever the TVR (a refund, a merchant's choice).
    """
    denial = tvr.matching(codes.denial)
    if denial:
        return ActionDecision(CryptogramType.AAC, "TAC/IAC denial", tuple(denial))
    if online_capable:
        if force_online:
            return ActionDecision(CryptogramType.ARQC, "online required")
        if not offline_allowed:
            return ActionDecision(CryptogramType.ARQC, "online only terminal")
        online = tvr.matching(codes.online)
        if online:
            return ActionDecision(CryptogramType.ARQC, "TAC/IAC online", tuple(online))
        return ActionDecision(CryptogramType.TC, "no online action code matched")
    if not offline_allowed:
        return ActionDecision(CryptogramType.AAC, "offline approval not possible")
    default = tvr.matching(codes.default)
    if default:
        return ActionDecision(CryptogramType.AAC, "TAC/IAC default (offline only terminal)", tuple(default))
    return ActionDecision(CryptogramType.TC, "no default action code matched (offline only terminal)")


def unable_online(tvr: Tvr, codes: ActionCodes, *, offline_allowed: bool = True) -> ActionDecision:
    """Second GENERATE AC request when the host could not be reached: TC (Y3) or AAC (Z3)."""
    if not offline_allowed:
        return ActionDecision(CryptogramType.AAC, "unable to go online and offline approval not possible")
    default = tvr.matching(codes.default)
    if default:
        return ActionDecision(CryptogramType.AAC, "unable to go online; TAC/IAC default", tuple(default))
    return ActionDecision(CryptogramType.TC, "unable to go online; no default action code matched")
