"""The ECR interface: how a cash register (or a test suite) drives the live terminal.

JSON lines over a local TCP port (127.0.0.1): one JSON object per line in, one per
line out, in order. Every request has ``cmd``; an ``id`` is echoed back. Answers
are ``{"ok": true, "cmd": ..., ...}`` or ``{"ok": false, "error": "..."}``; a bad
line gets an error and the connection stays usable.

Commands
--------
``sale``, ``refund``, ``cash``, ``cashback``
    ``card`` (a test card label; optional with a PC/SC reader), the amount as
    ``amount_minor`` (an integer of minor units) or ``amount`` (a decimal *string* in
    major units, ``"12.34"``; JSON numbers with a fraction are refused: money is never
    a float), ``currency`` (ISO 4217 alpha or numeric; default the card's), ``pin``
    (typed at the PIN pad; ``"bypass"`` skips it; default the card's own). The answer holds the keys of
    ``possim terminal --json`` plus ``terminal_id``, ``stan``, ``transmitted`` (the key
    the host books it under), ``attempt`` and ``stored`` (MTIs owed to the host for it).
    It is sent only once the outcome and whatever is owed are durable.
``void``
    ``stan``: reverse an approved transaction of the open batch (an 0400 owed).
``settle``
    Deliver what is owed, then 0500 per currency; on 0510 95 the batch upload (0320s)
    and a 0500 960000; ``drain_timeout`` (s, default 30).
``close_batch``
    Close the open batch without a 0500 (a host that settles some other way).
``drain``
    Wait until nothing is owed to the host; ``timeout`` (s, default 30).
``status``, ``echo``, ``help``
    The terminal's state; an 0800 echo test; the command list.

Example::

    $ printf '{"cmd": "sale", "card": "healthy", "amount": "12.34"}\\n' | nc 127.0.0.1 9600
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Awaitable, Callable

from ...core.money import Currency, CurrencyError, currency, parse_amount
from ...iso8583.message import MAX_AMOUNT
from ..journal import scrub
from .engine import TYPES, Terminal, TerminalError

log = logging.getLogger("possim.terminal")

__all__ = ["EcrServer", "MAX_LINE", "parse_money"]

MAX_LINE = 64 * 1024
"""Longest request line accepted, bytes."""

COMMANDS = {
    "sale": "card, amount_minor | amount (string), [currency], [pin]: a purchase",
    "refund": "as sale: a refund (always online)",
    "cash": "as sale: cash withdrawal",
    "cashback": "as sale: purchase with cashback",
    "void": "stan: reverse an approved transaction of the open batch",
    "settle": "[drain_timeout]: deliver what is owed, then 0500 per currency (95: 0320 upload, 0500 960000)",
    "close_batch": "close the open batch without a 0500 (a host that settles some other way)",
    "drain": "[timeout]: wait until nothing is owed to the host",
    "status": "the terminal's state",
    "echo": "an 0800 echo test to the host",
    "help": "this list",
}


def _number(value: Any, name: str, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 3600:
        raise TerminalError(f"{name} is {value!r}; allowed: a number of seconds 0..3600")
    return float(value)


def parse_money(request: dict[str, Any], default: Currency | None) -> tuple[int, Currency]:
    """The amount (minor units) and currency of an ECR request; :class:`TerminalError` naming the key.

    >>> parse_money({"amount": "12.34"}, currency("EUR"))
    (1234, Currency(alpha='EUR', numeric='978', exponent=2))
    >>> parse_money({"amount_minor": 1000, "currency": "JPY"}, None)[0]
    1000
    """
    code = request.get("currency")
    if code is not None:
        if not isinstance(code, (str, int)) or isinstance(code, bool):
            raise TerminalError(f"currency is {code!r}; allowed: an ISO 4217 code such as 'EUR' or '978'")
        try:
            cur = currency(code)
        except CurrencyError as exc:
            raise TerminalError(f"currency: {exc}") from None
    elif default is not None:
        cur = default
    else:
        raise TerminalError("currency: give an ISO 4217 code (no card to take it from)")
    minor, text = request.get("amount_minor"), request.get("amount")
    if (minor is None) == (text is None):
        raise TerminalError("give the amount as amount_minor (integer of minor units) or amount (decimal string), one of them")
    if minor is not None:
        if isinstance(minor, bool) or not isinstance(minor, int):
            raise TerminalError(f"amount_minor is {minor!r}; allowed: an integer of minor units 0..{MAX_AMOUNT}")
        value = minor
    elif isinstance(text, str):
        try:
            value = parse_amount(text, cur)
        except CurrencyError as exc:
            raise TerminalError(f"amount: {exc}") from None
    else:
        raise TerminalError(f"amount is {text!r}; allowed: a decimal string such as \"12.34\" "
                            "(never a JSON number: use amount_minor for an integer of minor units)")
    if not 0 <= value <= MAX_AMOUNT:
        raise TerminalError(f"amount is {value} minor units; allowed: 0..{MAX_AMOUNT}")
    return value, cur


class EcrServer:
    """The JSON-lines server in front of one :class:`Terminal`."""

    def __init__(self, terminal: Terminal) -> None:
        self.terminal = terminal
        self._server: asyncio.AbstractServer | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            **{kind: self._transaction for kind in TYPES},
            "void": self._void, "settle": self._settle, "close_batch": self._close_batch, "drain": self._drain, "status": self._status,
            "echo": self._echo, "help": self._help,
        }
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen; returns the port (useful with 0)."""
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_LINE)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        """Stop listening (connections in progress finish their line)."""
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    await self._write(writer, {"ok": False, "error": f"request line longer than {MAX_LINE} bytes; closing"})
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                await self._write(writer, await self.handle_line(line))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
        writer.write(json.dumps(answer).encode() + b"\n")
        await writer.drain()

    async def handle_line(self, line: bytes) -> dict[str, Any]:
        """One request line in, one answer out (never raises for bad input)."""
        try:
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            return {"ok": False, "error": f"not JSON: {exc}; send one JSON object per line with a \"cmd\" key"}
        if not isinstance(request, dict):
            return {"ok": False, "error": f"expected a JSON object with a \"cmd\" key, got {type(request).__name__}"}
        cmd = request.get("cmd")
        base: dict[str, Any] = {"cmd": cmd}
        if "id" in request:
            base["id"] = request["id"]
        handler = self._handlers.get(cmd) if isinstance(cmd, str) else None
        if handler is None:
            return {"ok": False, **base, "error": f"cmd is {cmd!r}; allowed: {', '.join(self._handlers)}"}
        try:
            answer = await handler(request)
        except TerminalError as exc:
            return {"ok": False, **base, "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - a server never dies on a request; the cause is shown
            log.exception("ECR %s failed", cmd)
            return {"ok": False, **base, "error": f"internal error in {cmd}: {type(exc).__name__}: {scrub(str(exc))}"}
        return {"ok": True, **base, **answer}

    async def _transaction(self, request: dict[str, Any]) -> dict[str, Any]:
        label = request.get("card")
        if label is not None and not isinstance(label, str):
            raise TerminalError(f"card is {label!r}; allowed: a card label string (see `possim cards`)")
        pin = request.get("pin")
        if pin is not None and pin != "bypass" and not (isinstance(pin, str) and pin.isdigit() and 4 <= len(pin) <= 12):
            raise TerminalError("pin: 4 to 12 digits as a string, or \"bypass\" (the cardholder skips PIN entry)")
        amount, cur = parse_money(request, self.terminal.card_currency(label))
        return await self.terminal.transact(request["cmd"], card=label, amount=amount, cur=cur, pin=pin)

    async def _void(self, request: dict[str, Any]) -> dict[str, Any]:
        stan = request.get("stan")
        if isinstance(stan, int) and not isinstance(stan, bool):
            stan = str(stan)
        if not (isinstance(stan, str) and stan.isdigit() and len(stan) <= 6):
            raise TerminalError(f"stan is {stan!r}; allowed: the DE11 of the sale, up to 6 digits")
        return await self.terminal.void(stan)

    async def _settle(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self.terminal.settle(_number(request.get("drain_timeout"), "drain_timeout", 30.0))

    async def _close_batch(self, _request: dict[str, Any]) -> dict[str, Any]:
        return await self.terminal.close_batch()

    async def _drain(self, request: dict[str, Any]) -> dict[str, Any]:
        done = await self.terminal.drain(_number(request.get("timeout"), "timeout", 30.0))
        return {"drained": done, "owed": self.terminal.store.owed_count()}

    async def _status(self, _request: dict[str, Any]) -> dict[str, Any]:
        return self.terminal.status()

    async def _echo(self, _request: dict[str, Any]) -> dict[str, Any]:
        return await self.terminal.echo()

    async def _help(self, _request: dict[str, Any]) -> dict[str, Any]:
        return {"commands": COMMANDS}
