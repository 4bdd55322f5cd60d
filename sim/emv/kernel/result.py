"""How a transaction ended: the frozen record the kernel hands its driver in :class:`Done`.

A result carries what a receipt, a journal, a conformance check and the
store-and-forward queue need, and nothing that must not be kept: the PAN only
masked, no track data, no PIN block. Messages still owed to the host (an advice
for an offline approval, a reversal for an approval the card refused) are in
``pending``; the driver must store them durably before it reports the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ...iso8583.message import Message

__all__ = ["Outcome", "TransactionResult"]


class Outcome(str, Enum):
    """The end of a transaction, as the merchant sees it."""

    APPROVED = "approved"
    DECLINED = "declined"
    TERMINATED = "terminated"  # no decision: card error, card removed, cancelled


@dataclass(frozen=True, slots=True)
class TransactionResult:
    """One finished transaction.

    Attributes
    ----------
    outcome : Outcome
        Approved, declined, or terminated without a decision.
    reason : str
        Why, in words (``"host approved (00)"``, ``"card expired; TAC/IAC denial"``).
    arc : str or None
        Authorisation response code as tag 8A holds it: the host's DE39 (``"00"``,
        ``"51"``) or the terminal's own ``Y1``/``Z1``/``Y3``/``Z3``; ``None`` when
        no decision was made.
    tvr, tsi : str
        Final TVR (95) and TSI (9B) in hex.
    tvr_bits : tuple of str
        Names of the TVR bits set (see :mod:`sim.emv.tvr`).
    cvm : str
        CVM Results (9F34) in hex (``""`` when no chip transaction took place).
    cvm_label : str
        The CVM performed in words.
    entry_mode : str
        DE22 (``051`` chip, ``071`` contactless, ``801`` fallback swipe, ``901`` swipe,
        ``791`` keyed after chip failure, ``011`` keyed); ``""`` if no card was read.
    cryptogram : str or None
        The last cryptogram the card gave: ``"TC"``, ``"AAC"`` or ``"ARQC"``.
    amount_minor : int
        Amount in minor units of ``currency``.
    currency : str
        ISO 4217 numeric code.
    messages : tuple of str
        MTIs of the messages sent to the host during the transaction, in order.
    pending : tuple of Message
        Messages owed to the host afterwards (0220 advices, 0400 reversals), in the
        order they must be sent.
    interface : str or None
        The interface the card was finally read on.
    aid, application_label : str
        The application used (chip only).
    masked_pan : str
        First 6 and last 4 digits.
    online : bool
        A request reached the host and an answer came back.
    host_response_code, auth_code : str or None
        DE39 and DE38 of the host's answer.
    issuer_authentication : str or None
        ``"passed"``, ``"failed"`` (5:40), or ``None`` when not performed.
    signature_required : bool
        The receipt needs a signature line.
    stans : tuple of int
        STANs the transaction used (the request, then any reversal): the driver's
        counter continues after the last.
    log_key : str
        Digest of the PAN for the same-PAN log (:meth:`PanLog.record_digest`); the
        PAN itself is not kept.
    receipt : str
        ``"printed"``, or ``"not printed: out of paper"`` / ``"not printed: no
        printer"`` (DEV-02): the outcome never waits on the printer, the record
        says the cardholder got no slip.
    """

    outcome: Outcome
    reason: str
    arc: str | None
    tvr: str
    tsi: str
    tvr_bits: tuple[str, ...]
    cvm: str
    cvm_label: str
    entry_mode: str
    cryptogram: str | None
    amount_minor: int
    currency: str
    messages: tuple[str, ...] = ()
    pending: tuple[Message, ...] = ()
    interface: str | None = None
    aid: str = ""
    application_label: str = ""
    masked_pan: str = ""
    online: bool = False
    host_response_code: str | None = None
    auth_code: str | None = None
    issuer_authentication: str | None = None
    signature_required: bool = False
    stans: tuple[int, ...] = ()
    log_key: str = ""
    receipt: str = "printed"

    @property
    def approved(self) -> bool:
        """True when the merchant may hand over the goods."""
        return self.outcome is Outcome.APPROVED

    @property
    def declined(self) -> bool:
        """True for a decision to decline (offline, by the host, or by the card)."""
        return self.outcome is Outcome.DECLINED

    @property
    def terminated(self) -> bool:
        """True when the transaction ended without a decision."""
        return self.outcome is Outcome.TERMINATED

    @property
    def receipt_printed(self) -> bool:
        """True when the receipt came out of the printer."""
        return self.receipt == "printed"

    @property
    def pending_mtis(self) -> tuple[str, ...]:
        """MTIs of the messages still owed (``("0220",)``, ``("0400",)``)."""
        return tuple(message.mti for message in self.pending)

    def has_bit(self, name_or_address: str) -> bool:
        """True when the TVR bit (name or ``byte:mask``) is set."""
        from ..tvr import Tvr

        return Tvr.from_hex(self.tvr).test(name_or_address)

    def summary(self) -> str:
        """One line for logs: outcome, ARC, cryptogram, entry mode, masked PAN, amount, TVR."""
        parts = [self.outcome.value, f"arc={self.arc or '-'}", f"ac={self.cryptogram or '-'}",
                 f"de22={self.entry_mode or '-'}", self.masked_pan or "-", f"{self.amount_minor} {self.currency}",
                 f"tvr={self.tvr}", self.reason]
        return " ".join(parts)
