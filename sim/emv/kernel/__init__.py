"""The terminal kernel: EMV contact (and simplified contactless) processing, sans-IO.

A :class:`Transaction` is a state machine in data: it yields events
(:mod:`.events`) the driver acts on and ends with :class:`Done` carrying a frozen
:class:`TransactionResult`. Its configuration (:class:`TerminalConfig`) comes from a
hardware profile (:mod:`sim.profiles`). Rules live in small modules named for them:
:mod:`.selection`, :mod:`.records`, :mod:`.restrictions`, :mod:`.risk`,
:mod:`.action`, :mod:`.messages`, :mod:`.entry`; the TVR/TSI, DOL and CVM rules in
:mod:`sim.emv.tvr`, :mod:`sim.emv.dol` and :mod:`sim.emv.cvm`.
:func:`run_transaction` drives one transaction in-process.
"""

from __future__ import annotations

from .action import ActionCodes, ActionDecision
from .commands import CryptogramType
from .config import Application, ExceptionFile, PanLog, RandomSelectionParams, TerminalConfig
from .driver import PIN_BYPASS, PIN_PAD_FAILURE, run_transaction
from .events import (
    Cancelled,
    Done,
    Event,
    HostTimeout,
    HostUnreachable,
    ManualEntry,
    NeedApdu,
    NeedCard,
    NeedManualEntry,
    NeedOnline,
    NeedPin,
    NeedSelection,
    PinBypassed,
    PinEntered,
    PinPadFailure,
    PowerOn,
    Presented,
    ReadStripe,
    ScanQr,
)
from .result import Outcome, TransactionResult
from .transaction import PAYMENT_METHODS, TRANSACTION_TYPES, KernelUsageError, Transaction

__all__ = [
    "ActionCodes",
    "ActionDecision",
    "Application",
    "Cancelled",
    "CryptogramType",
    "Done",
    "Event",
    "ExceptionFile",
    "HostTimeout",
    "HostUnreachable",
    "KernelUsageError",
    "ManualEntry",
    "NeedApdu",
    "NeedCard",
    "NeedManualEntry",
    "NeedOnline",
    "NeedPin",
    "NeedSelection",
    "Outcome",
    "PIN_BYPASS",
    "PIN_PAD_FAILURE",
    "PAYMENT_METHODS",
    "PanLog",
    "PinBypassed",
    "PinEntered",
    "PinPadFailure",
    "PowerOn",
    "Presented",
    "RandomSelectionParams",
    "ReadStripe",
    "ScanQr",
    "TRANSACTION_TYPES",
    "TerminalConfig",
    "Transaction",
    "TransactionResult",
    "run_transaction",
]
