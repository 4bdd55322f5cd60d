"""Batch upload after a 0510 95: the terminal's transactions of the open batch, as the host takes them.

When the totals of a 0500 differ from the host's (SET-01), the host expects the
terminal's batch: every approved transaction of the batch, each as the message that
carried it with DE39 the decision (a redacted 0200 with ``00``, a 0220 with ``Y1``/``Y3``),
which :meth:`sim.core.host.Host.batch_upload` reads; it adds what it was missing,
once, and closes the batch.

ISO 8583:1987 carries a batch upload in 0320 messages, which the message catalogue
does not hold yet, so no host of possim takes an upload over the wire. The terminal
therefore writes the upload to its state directory, one message per line (hex of the
default-dialect encoding, with the key fields beside it for people)::

    {"mti": "0200", "stan": "000017", "transmitted": "1130101500", "amount": 1250,
     "currency": "978", "de39": "00", "hex": "30323030..."}

and reports the file; :func:`read_upload` turns it back into messages for
``Host.batch_upload``. The batch stays open until a 0500 matches.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...iso8583.message import Message, parse

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Terminal

__all__ = ["batch_messages", "read_upload", "upload_batch"]


def batch_messages(terminal: "Terminal", currency: str) -> list[Message]:
    """The open batch's approved, not fully reversed transactions in ``currency``, as upload messages."""
    out: list[Message] = []
    for a in terminal.store.batch_attempts():
        if a.currency != currency or a.reversed >= a.amount:
            continue
        carrier = terminal.store.carrier(a.id)
        if carrier is None:
            continue
        out.append(carrier if carrier.response_code else carrier.replace(DE39=a.arc or "00"))
    return out


async def upload_batch(terminal: "Terminal", currency: str) -> dict[str, Any]:
    """Write the upload of ``currency`` to the state directory; what the settle answer reports."""
    messages = batch_messages(terminal, currency)
    state = Path(terminal.store.path).parent
    path = state / "uploads" / f"batch-{terminal.store.batch:06d}-{currency}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"mti": m.mti, "stan": m.stan, "transmitted": m.transmitted, "amount": m.amount,
                         "currency": m.currency, "de39": m.response_code, "hex": m.encode().hex()}) for m in messages]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tmp.replace(path)
    return {"accepted": False, "transactions": len(messages), "file": str(path),
            "reason": "the host takes no batch upload over ISO 8583 (no 0320 in the catalogue); batch left open: "
                      "hand the file to the host, then send {\"cmd\": \"close_batch\"}"}


def read_upload(path: str | Path) -> list[Message]:
    """The messages of an upload file (for :meth:`sim.core.host.Host.batch_upload`)."""
    messages = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        try:
            messages.append(parse(bytes.fromhex(json.loads(line)["hex"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not an upload line ({exc})") from None
    return messages
