"""``possim demo``: the main job on built-in defaults.

Runs the sample exchange (echo, chip sale with ARPC, reversal) through the wire
layer end to end: builds each message, frames it, sends it over a loopback TCP
connection to an in-process peer that decodes it, writes the capture as a pcap,
and dissects that pcap back, printing every message with its fields and DE55 tags.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from .iso8583.catalogue import MESSAGE_TYPES
from .iso8583.dialect import DEFAULT
from .iso8583.framing import Framing
from .iso8583.message import Message, parse
from .iso8583.pretty import field_rows, icc_tags
from .iso8583.samples import sample_exchange

console = Console()


def _loopback_exchange(messages: list[Message], framing: Framing) -> list[Message]:
    """Send each framed message over 127.0.0.1 TCP; the peer decodes and returns what it read."""
    received: list[Message] = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def peer() -> None:
            conn, _ = server.accept()
            with conn:
                decoder = framing.decoder()
                conn.settimeout(5)
                while len(received) < len(messages):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    received.extend(parse(f.payload) for f in decoder.feed(chunk))

        thread = threading.Thread(target=peer, daemon=True)
        thread.start()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            for message in messages:
                client.sendall(framing.frame(message.encode()))
        thread.join(timeout=5)
    return received


def _show(message: Message) -> None:
    table = Table(title=f"{message.mti} {MESSAGE_TYPES[message.mti].name}", title_justify="left", show_header=False)
    for key, desc, value in field_rows(message.fields, DEFAULT):
        table.add_row(f"DE{key}" if key != "t" else "MTI", desc, value)
    for tag, name, value in icc_tags(message.fields):
        table.add_row(f"  {tag}", name, value)
    console.print(table)


def demo_command(
    out: Path = typer.Option(Path("out/demo.pcap"), help="Where to write the capture of the exchange."),
) -> None:
    """Encode, send over loopback, capture and dissect the sample chip sale exchange."""
    from .iso8583.pcap import read_messages, write_pcap

    framing = Framing()
    messages = sample_exchange()
    received = _loopback_exchange(messages, framing)
    if received != messages:
        console.print("[red]loopback exchange altered messages[/red]")
        raise typer.Exit(1)
    console.print(f"[green]{len(received)} messages framed ({framing.describe()}), sent over 127.0.0.1 and decoded intact[/green]")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_pcap(out, messages)
    captured = read_messages(out)
    console.print(f"wrote {out} ({len(captured)} messages); dissected back:")
    for message in messages:
        _show(message)
    console.print(f"inspect with: tshark -r {out} -d tcp.port==8583,iso8583 -o iso8583.len_endian:bigendian -V")
