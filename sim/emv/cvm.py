"""Cardholder Verification Method (CVM) lists, rule conditions and the CVM processing rules.

The card's CVM list (tag 8E) says how the cardholder must prove who they are:
two amounts X and Y (binary, in the application currency's minor units) and then
two-byte rules, tried in order (EMV 4.4 Book 3 section 10.5 and Annex C3):

* byte 1: bits 6-1 the method (:class:`CvmCode`), bit 7 "apply the next rule if
  this one fails", bit 8 RFU;
* byte 2: the condition under which the rule applies (:class:`Condition`).

:func:`process` is the one place the walking rules live. It is a generator: it
yields each rule the terminal must actually perform and is sent back an
:class:`Attempt`; what it returns (:class:`CvmDecision`) carries the CVM Results
(9F34) and the TVR bits the walk sets (3:80 failed, 3:40 unrecognised, 3:10 PIN
pad missing). Performing a method (a PIN prompt, a VERIFY command) is the
kernel's job, so this module never does I/O.

Examples
--------
>>> cvm_list = CvmList.parse(bytes.fromhex("000000000000000042031E031F03"))
>>> [str(rule) for rule in cvm_list.rules]
['enciphered PIN online, if terminal supports the CVM, else next', 'signature, if terminal supports the CVM', 'no CVM required, if terminal supports the CVM']
>>> ctx = CvmContext(amount=1000, currency="978", supported=frozenset({CvmCode.SIGNATURE}))
>>> decision = run(cvm_list, ctx, lambda rule: Attempt.UNKNOWN)
>>> decision.results.hex(), decision.signature_required
('1E0300', True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, IntEnum
from functools import lru_cache
from typing import Callable, Generator

__all__ = [
    "Attempt",
    "Condition",
    "CvmCode",
    "CvmContext",
    "CvmDecision",
    "CvmError",
    "CvmList",
    "CvmResult",
    "CvmResults",
    "CvmRule",
    "PIN_CODES",
    "capability_codes",
    "condition_satisfied",
    "process",
    "run",
]


class CvmError(ValueError):
    """A CVM list that cannot be parsed (too short, odd number of rule bytes)."""


class CvmCode(IntEnum):
    """CVM codes (byte 1, bits 6-1) EMV defines; other values are RFU or scheme/issuer specific."""

    FAIL = 0x00
    PLAINTEXT_PIN_ICC = 0x01
    ENCIPHERED_PIN_ONLINE = 0x02
    PLAINTEXT_PIN_ICC_AND_SIGNATURE = 0x03
    ENCIPHERED_PIN_ICC = 0x04
    ENCIPHERED_PIN_ICC_AND_SIGNATURE = 0x05
    SIGNATURE = 0x1E
    NO_CVM = 0x1F
    NOT_PERFORMED = 0x3F  # CVM Results only: no CVM performed

    @property
    def label(self) -> str:
        """Words for reports."""
        return _CODE_LABELS[self]


_CODE_LABELS = {
    CvmCode.FAIL: "fail CVM processing",
    CvmCode.PLAINTEXT_PIN_ICC: "plaintext PIN by ICC",
    CvmCode.ENCIPHERED_PIN_ONLINE: "enciphered PIN online",
    CvmCode.PLAINTEXT_PIN_ICC_AND_SIGNATURE: "plaintext PIN by ICC and signature",
    CvmCode.ENCIPHERED_PIN_ICC: "enciphered PIN by ICC",
    CvmCode.ENCIPHERED_PIN_ICC_AND_SIGNATURE: "enciphered PIN by ICC and signature",
    CvmCode.SIGNATURE: "signature",
    CvmCode.NO_CVM: "no CVM required",
    CvmCode.NOT_PERFORMED: "no CVM performed",
}

PIN_CODES = frozenset(
    {
        CvmCode.PLAINTEXT_PIN_ICC,
        CvmCode.ENCIPHERED_PIN_ONLINE,
        CvmCode.PLAINTEXT_PIN_ICC_AND_SIGNATURE,
        CvmCode.ENCIPHERED_PIN_ICC,
        CvmCode.ENCIPHERED_PIN_ICC_AND_SIGNATURE,
    }
)
"""Methods that need a PIN pad."""

_BY_CODE: dict[int, CvmCode] = {code.value: code for code in CvmCode}
"""Method codes to :class:`CvmCode`: a dict lookup, where calling the enum costs a search and an exception."""

_SIGNATURE_CODES = frozenset(
    {CvmCode.SIGNATURE, CvmCode.PLAINTEXT_PIN_ICC_AND_SIGNATURE, CvmCode.ENCIPHERED_PIN_ICC_AND_SIGNATURE}
)


class Condition(IntEnum):
    """CVM condition codes (byte 2); 0A-7F are RFU, 80-FF payment-system specific."""

    ALWAYS = 0x00
    UNATTENDED_CASH = 0x01
    NOT_CASH_OR_CASHBACK = 0x02
    TERMINAL_SUPPORTS = 0x03
    MANUAL_CASH = 0x04
    CASHBACK = 0x05
    UNDER_X = 0x06
    OVER_X = 0x07
    UNDER_Y = 0x08
    OVER_Y = 0x09

    @property
    def label(self) -> str:
        """Words for reports."""
        return _CONDITION_LABELS[self]


_CONDITION_LABELS = {
    Condition.ALWAYS: "always",
    Condition.UNATTENDED_CASH: "if unattended cash",
    Condition.NOT_CASH_OR_CASHBACK: "if not unattended cash, not manual cash, not cashback",
    Condition.TERMINAL_SUPPORTS: "if terminal supports the CVM",
    Condition.MANUAL_CASH: "if manual cash",
    Condition.CASHBACK: "if purchase with cashback",
    Condition.UNDER_X: "if in application currency and under X",
    Condition.OVER_X: "if in application currency and over X",
    Condition.UNDER_Y: "if in application currency and under Y",
    Condition.OVER_Y: "if in application currency and over Y",
}


@dataclass(frozen=True, slots=True)
class CvmRule:
    """One CV rule: method code (bits 6-1), apply-next flag (bit 7), condition byte."""

    code: int
    apply_next: bool
    condition: int

    @classmethod
    def from_bytes(cls, pair: bytes) -> "CvmRule":
        """Decode the two rule bytes (bit 8 of byte 1 is RFU and ignored)."""
        return cls(pair[0] & 0x3F, bool(pair[0] & 0x40), pair[1])

    def encode(self) -> bytes:
        """The two rule bytes."""
        return bytes([self.code | (0x40 if self.apply_next else 0), self.condition])

    @property
    def method(self) -> CvmCode | None:
        """The method, or ``None`` when the code is not one EMV defines (unrecognised)."""
        if self.code == CvmCode.NOT_PERFORMED:
            return None
        return _BY_CODE.get(self.code)

    def __str__(self) -> str:
        method = self.method.label if self.method is not None else f"unrecognised CVM {self.code:02X}"
        try:
            cond = Condition(self.condition).label
        except ValueError:
            cond = f"condition {self.condition:02X}"
        return f"{method}, {cond}" + (", else next" if self.apply_next else "")


@dataclass(frozen=True, slots=True)
class CvmList:
    """A parsed CVM list: amounts X and Y (minor units of the application currency) and rules."""

    amount_x: int
    amount_y: int
    rules: tuple[CvmRule, ...]

    @classmethod
    def parse(cls, raw: bytes) -> "CvmList":
        """Parse tag 8E.

        Raises
        ------
        CvmError
            Fewer than 8 bytes (no room for X and Y) or an odd number of rule bytes.
        """
        return _parsed_list(bytes(raw))

    def encode(self) -> bytes:
        """The tag 8E value (the inverse of :meth:`parse`, bit 8 of rule bytes cleared)."""
        head = self.amount_x.to_bytes(4, "big") + self.amount_y.to_bytes(4, "big")
        return head + b"".join(rule.encode() for rule in self.rules)


@lru_cache(maxsize=1024)
def _parsed_list(data: bytes) -> CvmList:
    """:meth:`CvmList.parse`, remembered: a card's 8E is the same in every transaction, and a
    parsed list is immutable, so one parse serves them all."""
    if len(data) < 8:
        raise CvmError(f"CVM list is {len(data)} bytes; it needs amount X and Y (8 bytes) first")
    if (len(data) - 8) % 2:
        raise CvmError(f"CVM list has {len(data) - 8} rule bytes; rules are 2 bytes each")
    rules = tuple(CvmRule.from_bytes(data[i : i + 2]) for i in range(8, len(data), 2))
    return CvmList(int.from_bytes(data[0:4], "big"), int.from_bytes(data[4:8], "big"), rules)


@dataclass(frozen=True, slots=True)
class CvmContext:
    """What the conditions look at: the transaction and the terminal.

    Attributes
    ----------
    amount : int
        Amount authorised, minor units of ``currency``.
    currency : str
        Transaction currency, ISO numeric (5F2A).
    application_currency : str or None
        The card's application currency (9F42); amounts X and Y are in it, and
        conditions 06-09 apply only when the transaction is in it.
    transaction_type : str
        9C: ``00`` purchase, ``01`` cash, ``09`` purchase with cashback, ``20`` refund.
    unattended : bool
        From the terminal type (9F35 second digit 4-6).
    supported : frozenset of CvmCode
        Methods the terminal supports (:func:`capability_codes` of 9F33).
    pin_pad_working : bool
        False when the PIN pad is absent or broken: PIN methods then fail with 3:10.
    """

    amount: int
    currency: str
    application_currency: str | None = None
    transaction_type: str = "00"
    unattended: bool = False
    supported: frozenset[CvmCode] = field(default_factory=frozenset)
    pin_pad_working: bool = True

    @property
    def cash(self) -> bool:
        """True for a cash transaction (9C 01)."""
        return self.transaction_type == "01"

    @property
    def cashback(self) -> bool:
        """True for a purchase with cashback (9C 09)."""
        return self.transaction_type == "09"


def capability_codes(terminal_capabilities: bytes) -> frozenset[CvmCode]:
    """The CVM codes a terminal supports, from 9F33 byte 2 (CVM capability).

    ``FAIL`` is always "supported": failing needs no hardware.
    """
    return _capability_codes(bytes(terminal_capabilities))


@lru_cache(maxsize=64)
def _capability_codes(terminal_capabilities: bytes) -> frozenset[CvmCode]:
    """:func:`capability_codes`, remembered: a terminal's 9F33 is the same in all its transactions."""
    if len(terminal_capabilities) != 3:
        raise CvmError("terminal capabilities (9F33) are 3 bytes")
    cap = terminal_capabilities[1]
    plain, online, signature, enciphered, no_cvm = (bool(cap & m) for m in (0x80, 0x40, 0x20, 0x10, 0x08))
    codes = {CvmCode.FAIL}
    if plain:
        codes.add(CvmCode.PLAINTEXT_PIN_ICC)
    if online:
        codes.add(CvmCode.ENCIPHERED_PIN_ONLINE)
    if plain and signature:
        codes.add(CvmCode.PLAINTEXT_PIN_ICC_AND_SIGNATURE)
    if enciphered:
        codes.add(CvmCode.ENCIPHERED_PIN_ICC)
    if enciphered and signature:
        codes.add(CvmCode.ENCIPHERED_PIN_ICC_AND_SIGNATURE)
    if signature:
        codes.add(CvmCode.SIGNATURE)
    if no_cvm:
        codes.add(CvmCode.NO_CVM)
    return frozenset(codes)


def condition_satisfied(rule: CvmRule, cvm_list: CvmList, ctx: CvmContext) -> bool:
    """True when the rule's condition holds; unknown conditions (RFU, payment-system) never do."""
    cond = rule.condition
    if cond == Condition.ALWAYS:
        return True
    if cond == Condition.UNATTENDED_CASH:
        return ctx.cash and ctx.unattended
    if cond == Condition.NOT_CASH_OR_CASHBACK:
        return not ctx.cash and not ctx.cashback
    if cond == Condition.TERMINAL_SUPPORTS:
        method = rule.method
        return method is not None and method in ctx.supported
    if cond == Condition.MANUAL_CASH:
        return ctx.cash and not ctx.unattended
    if cond == Condition.CASHBACK:
        return ctx.cashback
    if cond in (Condition.UNDER_X, Condition.OVER_X, Condition.UNDER_Y, Condition.OVER_Y):
        if ctx.application_currency is None or ctx.application_currency != ctx.currency:
            return False
        limit = cvm_list.amount_x if cond in (Condition.UNDER_X, Condition.OVER_X) else cvm_list.amount_y
        return ctx.amount < limit if cond in (Condition.UNDER_X, Condition.UNDER_Y) else ctx.amount > limit
    return False


class CvmResult(IntEnum):
    """CVM Results byte 3."""

    UNKNOWN = 0x00
    FAILED = 0x01
    SUCCESSFUL = 0x02


@dataclass(frozen=True, slots=True)
class CvmResults:
    """CVM Results, tag 9F34: the rule byte performed, its condition, the result."""

    method: int
    condition: int
    result: CvmResult

    @classmethod
    def not_performed(cls, result: CvmResult = CvmResult.UNKNOWN) -> "CvmResults":
        """``3F 00 xx``: no CVM performed (list absent: unknown; nothing applicable: failed)."""
        return cls(CvmCode.NOT_PERFORMED, 0x00, result)

    @classmethod
    def of(cls, rule: CvmRule, result: CvmResult) -> "CvmResults":
        """The results for ``rule`` performed with ``result``."""
        return cls(rule.encode()[0], rule.condition, result)

    def encode(self) -> bytes:
        """The 3-byte 9F34 value."""
        return bytes([self.method, self.condition, int(self.result)])

    def hex(self) -> str:
        """9F34 as upper-case hex."""
        return self.encode().hex().upper()

    @property
    def label(self) -> str:
        """``"signature (unknown)"``: words for reports."""
        code = _BY_CODE.get(self.method & 0x3F)
        name = code.label if code is not None else f"CVM {self.method & 0x3F:02X}"
        return f"{name} ({self.result.name.lower()})"


class Attempt(str, Enum):
    """What performing one CVM came to (sent back into :func:`process`)."""

    SUCCESSFUL = "successful"  # offline PIN verified, no CVM
    UNKNOWN = "unknown"  # done, but only the issuer or the merchant can judge (online PIN, signature)
    FAILED = "failed"  # wrong PIN to the limit, PIN bypassed, method could not be done


@dataclass(frozen=True, slots=True)
class CvmDecision:
    """The outcome of cardholder verification.

    Attributes
    ----------
    results : CvmResults
        9F34.
    tvr_bits : tuple of str
        TVR bit names the walk itself sets (3:80, 3:40, 3:10); the performer sets its own.
    verified : bool
        False when cardholder verification failed (3:80).
    signature_required : bool
        The receipt needs a signature line.
    online_pin : bool
        An online PIN block goes with the request.
    """

    results: CvmResults
    tvr_bits: tuple[str, ...] = ()
    verified: bool = True
    signature_required: bool = False
    online_pin: bool = False


def process(cvm_list: CvmList, ctx: CvmContext) -> Generator[CvmRule, Attempt, CvmDecision]:
    """Walk the CVM list (EMV Book 3 10.5): yield each rule to perform, return the decision.

    The caller sends an :class:`Attempt` for every rule yielded. Rules whose
    condition does not hold are skipped; an unrecognised method sets 3:40 and
    fails; a method the terminal cannot do fails (3:10 for PIN methods); a failed
    rule moves on only when its apply-next bit is set. Running out of rules fails
    verification (3:80).
    """
    bits: list[str] = []
    last: CvmRule | None = None
    for rule in cvm_list.rules:
        if not condition_satisfied(rule, cvm_list, ctx):
            continue
        last = rule
        method = rule.method
        if method is None:
            bits.append("unrecognised_cvm")
            outcome = Attempt.FAILED
        elif method is CvmCode.FAIL:
            bits.append("cardholder_verification_failed")
            return CvmDecision(CvmResults.of(rule, CvmResult.FAILED), tuple(bits), verified=False)
        elif method in PIN_CODES and not ctx.pin_pad_working:
            bits.append("pin_pad_missing")
            outcome = Attempt.FAILED
        elif method not in ctx.supported:
            outcome = Attempt.FAILED
        else:
            outcome = yield rule
        if outcome is Attempt.FAILED:
            if rule.apply_next:
                continue
            break
        result = CvmResult.SUCCESSFUL if outcome is Attempt.SUCCESSFUL else CvmResult.UNKNOWN
        if method in _SIGNATURE_CODES and result is CvmResult.SUCCESSFUL:
            result = CvmResult.UNKNOWN  # a signature is judged by the merchant later
        return CvmDecision(
            CvmResults.of(rule, result),
            tuple(bits),
            signature_required=method in _SIGNATURE_CODES,
            online_pin=method is CvmCode.ENCIPHERED_PIN_ONLINE,
        )
    bits.append("cardholder_verification_failed")
    results = CvmResults.of(last, CvmResult.FAILED) if last is not None else CvmResults.not_performed(CvmResult.FAILED)
    return CvmDecision(results, tuple(bits), verified=False)


def run(cvm_list: CvmList, ctx: CvmContext, perform: Callable[[CvmRule], Attempt]) -> CvmDecision:
    """:func:`process` with a plain callback for performing each rule (tests, offline planning)."""
    walk = process(cvm_list, ctx)
    try:
        rule = next(walk)
        while True:
            rule = walk.send(perform(rule))
    except StopIteration as stop:
        return stop.value
