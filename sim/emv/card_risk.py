"""Card risk management: what cryptogram the card gives, and the CVR that says why.

The terminal *asks* for a cryptogram type in GENERATE AC; the card decides. The card
may only go down the ladder TC -> ARQC -> AAC, never up (EMV Book 3 section 9.2.2).
Its reasons, and the facts behind them, go into the Card Verification Results inside
9F10 so the issuer can see them; the CVR is also covered by the cryptogram.

Counters that outlive a transaction (:class:`CardCounters`) are separate from what
one transaction learned (:class:`TxnFacts`); both are frozen and replaced, never
mutated, so a snapshot can be kept, compared and restored.

CVR layouts
-----------
Visa-style (CVN 10, 4 bytes, after VIS 1.4): ``03 | b2 | b3 | b4``

* b2: 2nd AC type (bits 8-7: 00 AAC, 01 TC, 10 not requested), 1st AC type (bits
  6-5: 00 AAC, 01 TC, 10 ARQC), 08 issuer authentication failed, 04 offline PIN
  performed, 02 offline PIN failed, 01 unable to go online;
* b3: 80 last online transaction not completed, 40 PIN try limit exceeded, 20
  offline counters exceeded, 10 new card, 08 issuer authentication failed on the last
  online transaction, 04 issuer authentication not performed after online authorisation;
* b4: 02 DDA performed.

Mastercard-style (CVN 16, 6 bytes, after M/Chip):

* b1: AC types as above, 04 offline PIN performed, 01 offline PIN successful;
* b2: 80 DDA returned, 10 issuer authentication performed;
* b3: low nibble = PIN try counter;
* b4: 80 last online transaction not completed, 40 unable to go online, 10 offline
  PIN failed, 08 PIN try limit exceeded;
* b5: 80 lower consecutive offline limit exceeded, 40 upper exceeded, 04 issuer
  authentication failed;
* b6: 00.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum

__all__ = [
    "APPROVAL_CODES",
    "AcType",
    "CardCounters",
    "TxnFacts",
    "UNABLE_ONLINE_CODES",
    "cvr",
    "first_ac_decision",
    "requested_ac",
    "second_ac_decision",
]

APPROVAL_CODES = frozenset({b"00", b"08", b"10", b"11", b"Y1", b"Y3"})
"""Authorisation response codes (8A / ARPC-RC, ASCII) that mean "approved"."""
UNABLE_ONLINE_CODES = frozenset({b"Y3", b"Z3"})
"""8A values a terminal sends in the second GENERATE AC when it could not go online."""


class AcType(IntEnum):
    """Cryptogram types as coded in GENERATE AC P1 bits 8-7 and in CID (9F27) bits 8-7."""

    AAC = 0x00
    TC = 0x40
    ARQC = 0x80


_BY_BITS: dict[int, AcType] = {ac.value: ac for ac in AcType}
"""P1 / CID bits 8-7 to :class:`AcType` (a dict lookup; calling the enum searches)."""


def requested_ac(p1: int) -> AcType | None:
    """The cryptogram type a GENERATE AC P1 asks for; ``None`` for the RFU value (bits 8-7 = 11)."""
    return _BY_BITS.get(p1 & 0xC0)


@dataclass(frozen=True, slots=True)
class CardCounters:
    """What the card remembers between transactions (non-volatile memory).

    Attributes
    ----------
    atc : int
        Application transaction counter (9F36), incremented by each first GENERATE AC.
    last_online_atc : int
        ATC of the last transaction completed online (9F13).
    offline_count : int
        Consecutive offline approvals since the last online one (compared with 9F14/9F23).
    pin_tries_left : int
        PIN try counter (9F17).
    issuer_auth_failed : bool
        The last online transaction's ARPC did not verify.
    online_incomplete : bool
        The last ARQC was never followed by a second GENERATE AC (card pulled, reset).
    new_card : bool
        The card has not yet completed an online transaction; it then refuses to
        approve offline. Off by default: the test cards are issued as used cards.
    """

    atc: int = 0
    last_online_atc: int = 0
    offline_count: int = 0
    pin_tries_left: int = 3
    issuer_auth_failed: bool = False
    online_incomplete: bool = False
    new_card: bool = False

    def after_online(self) -> "CardCounters":
        """Counters after an online transaction the card accepts (issuer authenticated or not required)."""
        return replace(self, last_online_atc=self.atc, offline_count=0, issuer_auth_failed=False,
                       online_incomplete=False, new_card=False)


@dataclass(frozen=True, slots=True)
class TxnFacts:
    """What the card learned during one transaction (volatile: reset by SELECT)."""

    offline_pin_performed: bool = False
    offline_pin_failed: bool = False
    dda_performed: bool = False
    first_ac: AcType | None = None
    second_ac: AcType | None = None
    unable_to_go_online: bool = False
    issuer_auth_performed: bool = False
    issuer_auth_failed: bool = False
    issuer_auth_not_performed: bool = False
    lcol_exceeded: bool = False
    ucol_exceeded: bool = False


def first_ac_decision(requested: AcType, counters: CardCounters, lcol: int, ucol: int) -> tuple[AcType, TxnFacts]:
    """The card's answer to a first GENERATE AC asking for ``requested``, and the facts it noted.

    A TC request becomes ARQC when the consecutive offline count has reached the lower
    limit (9F14), the card is new, the last online transaction failed issuer
    authentication or was never completed. AAC and ARQC requests are granted as asked.
    """
    lcol_hit = counters.offline_count >= lcol
    ucol_hit = counters.offline_count >= ucol
    facts = TxnFacts(lcol_exceeded=lcol_hit, ucol_exceeded=ucol_hit)
    if requested is AcType.TC and (
        lcol_hit or counters.new_card or counters.issuer_auth_failed or counters.online_incomplete
    ):
        return AcType.ARQC, facts
    return requested, facts


def _type_bits(ac: AcType | None, *, second: bool) -> int:
    if ac is None:
        return 0x80 if second else 0x00
    value = {AcType.AAC: 0b00, AcType.TC: 0b01, AcType.ARQC: 0b10}[ac]
    return value << 6 if second else value << 4


def cvr(cvn: int, counters: CardCounters, facts: TxnFacts) -> bytes:
    """The Card Verification Results for ``cvn`` (10 or 16) from the counters and the transaction's facts."""
    types = _type_bits(facts.first_ac, second=False) | _type_bits(facts.second_ac, second=True)
    pin_exhausted = counters.pin_tries_left == 0
    if cvn == 10:
        b2 = (types
              | (0x08 if facts.issuer_auth_failed else 0)
              | (0x04 if facts.offline_pin_performed else 0)
              | (0x02 if facts.offline_pin_failed else 0)
              | (0x01 if facts.unable_to_go_online else 0))
        b3 = ((0x80 if counters.online_incomplete else 0)
              | (0x40 if pin_exhausted else 0)
              | (0x20 if facts.lcol_exceeded or facts.ucol_exceeded else 0)
              | (0x10 if counters.new_card else 0)
              | (0x08 if counters.issuer_auth_failed else 0)
              | (0x04 if facts.issuer_auth_not_performed else 0))
        b4 = 0x02 if facts.dda_performed else 0
        return bytes((0x03, b2, b3, b4))
    if cvn == 16:
        b1 = (types
              | (0x04 if facts.offline_pin_performed else 0)
              | (0x01 if facts.offline_pin_performed and not facts.offline_pin_failed else 0))
        b2 = (0x80 if facts.dda_performed else 0) | (0x10 if facts.issuer_auth_performed else 0)
        b3 = counters.pin_tries_left & 0x0F
        b4 = ((0x80 if counters.online_incomplete else 0)
              | (0x40 if facts.unable_to_go_online else 0)
              | (0x10 if facts.offline_pin_failed else 0)
              | (0x08 if pin_exhausted else 0))
        b5 = ((0x80 if facts.lcol_exceeded else 0)
              | (0x40 if facts.ucol_exceeded else 0)
              | (0x04 if facts.issuer_auth_failed or counters.issuer_auth_failed else 0))
        return bytes((b1, b2, b3, b4, b5, 0x00))
    raise ValueError(f"no CVR layout for cryptogram version {cvn}")


def second_ac_decision(
    requested: AcType,
    arc: bytes,
    arpc_ok: bool | None,
    arpc_rc: bytes | None,
    counters: CardCounters,
    ucol: int,
    facts: TxnFacts,
) -> tuple[AcType, TxnFacts, CardCounters]:
    """The card's answer to the second GENERATE AC, the updated facts and counters.

    Parameters
    ----------
    requested : AcType
        TC or AAC (the terminal's decision after the host answer, or after failing to reach it).
    arc : bytes
        Authorisation response code (8A, two ASCII characters). ``Y3``/``Z3`` mean the
        terminal could not go online.
    arpc_ok : bool or None
        Whether the ARPC in tag 91 verified; ``None`` when the terminal sent no issuer
        authentication data (91 all zeros).
    arpc_rc : bytes or None
        The ARPC response code from tag 91 (its last two bytes).

    Notes
    -----
    * Unable to go online: TC only while the consecutive offline count is below the
      upper limit (9F23); a TC counts as one more offline approval.
    * Issuer authentication failed: always AAC, and the failure is remembered for the
      next transaction (CVR, and the next TC request becomes ARQC).
    * Otherwise the transaction completed online: counters reset; TC only when asked
      for and, when there is an ARPC, its response code is an approval.
    """
    if arc in UNABLE_ONLINE_CODES:
        ucol_hit = counters.offline_count >= ucol
        facts = replace(facts, unable_to_go_online=True, ucol_exceeded=facts.ucol_exceeded or ucol_hit)
        if requested is AcType.TC and not ucol_hit:
            return AcType.TC, replace(facts, second_ac=AcType.TC), replace(
                counters, offline_count=counters.offline_count + 1, online_incomplete=False)
        return AcType.AAC, replace(facts, second_ac=AcType.AAC), replace(counters, online_incomplete=False)
    if arpc_ok is None:
        facts = replace(facts, issuer_auth_not_performed=True, second_ac=requested)
        return requested, facts, counters.after_online()
    if not arpc_ok:
        facts = replace(facts, issuer_auth_performed=True, issuer_auth_failed=True, second_ac=AcType.AAC)
        return AcType.AAC, facts, replace(counters, issuer_auth_failed=True, online_incomplete=False)
    result = AcType.TC if requested is AcType.TC and arpc_rc in APPROVAL_CODES else AcType.AAC
    facts = replace(facts, issuer_auth_performed=True, second_ac=result)
    return result, facts, counters.after_online()
