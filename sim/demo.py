"""``possim demo``: the main job on built-in defaults.

A terminal-side script runs a short day against the host core over a real loopback
TCP connection, with the wire defaults (ISO 8583:1987 ``default_ascii``, 2-byte
big-endian length): sign-on, echo, a chip sale with a real ARQC (approved with an
ARPC that the card's key verifies), a sale declined for funds, a sale whose answer
is treated as lost and reversed, an offline approval forwarded as an advice, and the
end-of-day reconciliation. Every message is written to a pcap, dissected back, and
the history checker judges what the host booked against what the terminal saw.
"""

from __future__ import annotations

import socket
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from .core import crypto
from .core.history import HistoryEvent, check
from .core.host import Host
from .iso8583.catalogue import MESSAGE_TYPES
from .iso8583.codes import describe_code
from .iso8583.framing import Framing
from .iso8583.message import Message, advice, network_request, parse, reconciliation_request, reversal, transaction_request
from .iso8583.pretty import mask_pan

console = Console()
TERMINAL = "TERM0001"
START = datetime(2026, 11, 22, 9, 0)


class _HostServer:
    """The host core behind a loopback TCP socket, one connection, for the demo's duration."""

    def __init__(self, host: Host, framing: Framing, clock: list[datetime]) -> None:
        self.host, self.framing, self.clock = host, framing, clock
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            conn.settimeout(10)
            decoder = self.framing.decoder()
            while chunk := conn.recv(4096):
                for frame in decoder.feed(chunk):
                    answer = self.host.receive(frame.payload, self.clock[0])
                    if answer is not None:
                        conn.sendall(self.framing.frame(answer))

    def close(self) -> None:
        self.thread.join(timeout=10)
        self.server.close()


class _Terminal:
    """The terminal side: frames requests, waits for the matching answer, keeps the history."""

    def __init__(self, port: int, framing: Framing, cards, clock: list[datetime]) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.framing, self.cards, self.clock = framing, cards, clock
        self.decoder = framing.decoder()
        self.stan = 0
        self.sent: list[Message] = []
        self.history: list[HistoryEvent] = []

    @property
    def transmitted(self) -> str:
        return self.clock[0].strftime("%m%d%H%M%S")

    def next_stan(self) -> int:
        self.stan += 1
        return self.stan

    def exchange(self, msg: Message, *, deliver_answer: bool = True) -> Message:
        self.sent.append(msg)
        self.sock.sendall(self.framing.frame(msg.encode()))
        while True:
            frames = self.decoder.feed(self.sock.recv(4096))
            if frames:
                answer = parse(frames[0].payload)
                self.sent.append(answer)
                return answer if deliver_answer else msg

    def chip_request(self, label: str, amount: int, *, mti: str = "0200", offline: bool = False) -> Message:
        card = self.cards.card(label)
        issuer = self.cards.issuer(card.issuer)
        stan = self.next_stan()
        icc = crypto.chip_data(
            issuer, card, amount=amount, currency=card.currency_info.numeric, country="250", date=self.clock[0],
            un=(0x1A2B0000 + stan).to_bytes(4, "big"), atc=0x20 + stan,
            tvr=bytes(5) if offline else bytes.fromhex("0000008000"),
        )
        common = dict(
            pan=card.pan, amount=amount, currency=card.currency_info.numeric, stan=stan, transmitted=self.transmitted,
            terminal_id=TERMINAL, entry_mode="051", expiry=card.expiry, pan_sequence=card.psn, icc=icc,
        )
        if offline:
            icc["9F27"] = b"\x40"
            return advice(response_code="Y1", **common)
        return transaction_request(mti, **common)

    def note(self, kind: str, msg: Message, amount: int | None = None) -> None:
        self.history.append(HistoryEvent(
            kind, msg.terminal_id or "", msg.stan or "", msg.pan or "", msg.amount if amount is None else amount,
            msg.currency or "", msg.transmitted,
        ))


def _day(terminal: _Terminal, clock: list[datetime]) -> list[tuple[str, Message, Message, bool]]:
    steps: list[tuple[str, Message, Message, bool]] = []

    def step(what: str, msg: Message, deliver_answer: bool = True) -> Message:
        answer = terminal.exchange(msg, deliver_answer=deliver_answer)
        steps.append((what, msg, terminal.sent[-1], deliver_answer))
        clock[0] += timedelta(seconds=37)
        return answer

    step("sign-on", network_request("001", stan=terminal.next_stan(), transmitted=terminal.transmitted, terminal_id=TERMINAL))
    step("echo test", network_request("301", stan=terminal.next_stan(), transmitted=terminal.transmitted, terminal_id=TERMINAL))
    for label, amount, what in (("healthy", 2500, "chip sale, 25.00 EUR"), ("insufficient-funds", 2500, "chip sale, low balance")):
        sale = terminal.chip_request(label, amount)
        terminal.note("invoked", sale)
        answer = step(what, sale)
        terminal.note("approved-online" if answer.response_code == "00" else "declined", sale)
        if "91" in answer.icc:
            card = terminal.cards.card(label)
            icc_mk = crypto.icc_master_key(terminal.cards.issuer(card.issuer), card)
            ok = crypto.verify_arpc(icc_mk, sale.icc["9F26"], answer.icc["91"])
            console.print(f"ARPC in tag 91 for {mask_pan(card.pan)}: {'verified by the card key' if ok else 'DOES NOT VERIFY'}")
    timed_out = terminal.chip_request("healthy", 4200)
    terminal.note("invoked", timed_out)
    step("chip sale, answer lost (timeout)", timed_out, deliver_answer=False)
    terminal.note("unknown", timed_out)
    step("reversal of the timed-out sale", reversal(timed_out, stan=terminal.next_stan(), transmitted=terminal.transmitted, reason="68"))
    terminal.note("reversed", timed_out)
    offline = terminal.chip_request("healthy", 900, offline=True)
    terminal.note("invoked", offline)
    terminal.note("approved-offline", offline)
    step("offline approval Y1 forwarded", offline)
    step("end-of-day reconciliation", reconciliation_request(
        terminal_id=TERMINAL, stan=terminal.next_stan(), transmitted=terminal.transmitted, currency="978",
        credits_count=0, credits_amount=0, debits_count=2, debits_amount=3400,
    ))
    return steps


def demo_command(
    out: Path = typer.Option(Path("out/demo.pcap"), help="Where to write the capture of the exchange."),
) -> None:
    """A terminal's day against the host core over loopback TCP: capture, dissection, verdict."""
    from .iso8583.pcap import read_messages, write_pcap

    framing = Framing()
    clock = [START]
    host = Host()
    server = _HostServer(host, framing, clock)
    terminal = _Terminal(server.port, framing, host.cards, clock)
    try:
        steps = _day(terminal, clock)
    finally:
        terminal.sock.close()
        server.close()

    table = Table(title=f"{TERMINAL} against the host core on 127.0.0.1 ({framing.describe()} framing)")
    for col in ("step", "request", "answer", "DE39", "meaning"):
        table.add_column(col)
    for what, request, answer, delivered in steps:
        code = answer.response_code or ""
        meaning = describe_code(code) if delivered else f"{describe_code(code)}, never seen by the terminal"
        table.add_row(what, f"{request.mti} {MESSAGE_TYPES[request.mti].name}", answer.mti, code, meaning)
    console.print(table)

    out.parent.mkdir(parents=True, exist_ok=True)
    write_pcap(out, terminal.sent, start=Decimal(int(START.replace(tzinfo=timezone.utc).timestamp())))
    captured = read_messages(out)
    broken = [c for c in captured if c.error]
    console.print(f"wrote {out}: {len(captured)} messages, {len(broken)} undecodable; dissect with "
                  f"`possim pcap dissect {out}` or `tshark -r {out} -d tcp.port==8583,iso8583 -o iso8583.len_endian:bigendian -V`")

    verdict = check(terminal.history, host.booked_effects())
    console.print(verdict.pretty())
    if broken or not verdict.ok or len(captured) != len(terminal.sent):
        raise typer.Exit(1)
