"""DE39 response codes (ISO 8583:1987) and the terminal's own authorization response codes.

Examples
--------
>>> ResponseCode("51").description
'insufficient funds'
>>> ResponseCode.APPROVED.approved
True
>>> TerminalCode.Y3.approved
True
"""

from __future__ import annotations

from enum import Enum


class _DescribedCode(str, Enum):
    """A two-character code that compares equal to its string and carries a description."""

    description: str

    def __new__(cls, code: str, description: str) -> "_DescribedCode":
        obj = str.__new__(cls, code)
        obj._value_ = code
        obj.description = description
        return obj

    def __str__(self) -> str:
        return self.value


class ResponseCode(_DescribedCode):
    """The DE39 codes a possim host answers with (DESIGN.md lists them)."""

    APPROVED = ("00", "approved")
    DO_NOT_HONOUR = ("05", "do not honour")
    INVALID_TRANSACTION = ("12", "invalid transaction")
    INVALID_AMOUNT = ("13", "invalid amount")
    INVALID_CARD_NUMBER = ("14", "invalid card number")
    NO_SUCH_ISSUER = ("15", "no such issuer")
    FORMAT_ERROR = ("30", "format error")
    LOST_CARD = ("41", "lost card")
    STOLEN_CARD = ("43", "stolen card")
    INSUFFICIENT_FUNDS = ("51", "insufficient funds")
    EXPIRED_CARD = ("54", "expired card")
    INCORRECT_PIN = ("55", "incorrect PIN")
    NOT_PERMITTED = ("57", "transaction not permitted to cardholder")
    EXCEEDS_AMOUNT_LIMIT = ("61", "exceeds withdrawal amount limit")
    SECURITY_VIOLATION = ("63", "security violation")
    EXCEEDS_FREQUENCY_LIMIT = ("65", "exceeds withdrawal frequency limit")
    PIN_TRIES_EXCEEDED = ("75", "allowable number of PIN tries exceeded")
    ISSUER_INOPERATIVE = ("91", "issuer or switch inoperative")
    DUPLICATE_TRANSMISSION = ("94", "duplicate transmission")
    RECONCILIATION_ERROR = ("95", "reconciliation error")
    SYSTEM_MALFUNCTION = ("96", "system malfunction")

    @property
    def approved(self) -> bool:
        """True only for 00."""
        return self is ResponseCode.APPROVED


class TerminalCode(_DescribedCode):
    """Authorization response codes the terminal sets itself in tag 8A (EMV Book 4)."""

    Y1 = ("Y1", "offline approved")
    Z1 = ("Z1", "offline declined")
    Y3 = ("Y3", "unable to go online, offline approved")
    Z3 = ("Z3", "unable to go online, offline declined")

    @property
    def approved(self) -> bool:
        """True for Y1 and Y3."""
        return self.value[0] == "Y"


def describe_code(code: str) -> str:
    """Description of a DE39 or 8A code, or ``"unknown code"``."""
    for enum in (ResponseCode, TerminalCode):
        try:
            return enum(code).description
        except ValueError:
            continue
    return "unknown code"
