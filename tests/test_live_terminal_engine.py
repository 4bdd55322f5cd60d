"""The live terminal's engine in-process, against the host core behind a small asyncio server.

Faults a process test cannot place precisely: a driver fault in the middle of a
transaction, after the request went out and the host approved.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sim.core.cards import load_cards
from sim.core.host import Host
from sim.emv.card import VirtualCard
from sim.iso8583.framing import Framing
from sim.live.terminal.ecr import EcrServer
from sim.live.terminal.engine import Terminal, TerminalSettings
from sim.live.terminal.link import HostLink
from sim.live.terminal.store import TerminalStore
from sim.profiles import load_profile


async def _host_server(host: Host) -> asyncio.AbstractServer:
    framing = Framing()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = framing.decoder()
        while data := await reader.read(4096):
            for frame in decoder.feed(data):
                raw = host.receive(frame.payload, datetime.now(timezone.utc).replace(tzinfo=None))
                if raw is not None:
                    writer.write(framing.frame(raw))
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


class _DiesAtSecondGenerateAc:
    """A card whose driver fails at the second GENERATE AC (after the host approved)."""

    def __init__(self, card: VirtualCard) -> None:
        self.card_obj, self.card, self.generate_ac = card, card.card, 0

    def power_on(self) -> bytes:
        return self.card_obj.power_on()

    def execute(self, apdu: bytes) -> bytes:
        if apdu[1] == 0xAE:
            self.generate_ac += 1
            if self.generate_ac == 2:
                raise RuntimeError("reader firmware crashed")
        return self.card_obj.execute(apdu)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.card_obj, name)


def test_a_driver_fault_after_the_host_approved_owes_a_reversal_at_once(tmp_path: Path) -> None:
    cards = load_cards()
    host = Host(cards=cards)
    pan = cards.card("healthy").pan
    before = host.available(pan)

    async def scenario() -> dict[str, Any]:
        server = await _host_server(host)
        port = server.sockets[0].getsockname()[1]
        store = TerminalStore(tmp_path / "terminal.sqlite")
        terminal = Terminal(TerminalSettings(echo_interval=0, backoff_max=0.1), load_profile("countertop-ethernet"),
                            store, cards, HostLink("127.0.0.1", port, response_timeout=5))
        await terminal.start()
        terminal.wallet["healthy"] = _DiesAtSecondGenerateAc(VirtualCard.from_label("healthy", cards))
        ecr = EcrServer(terminal)
        failed = await ecr.handle_line(b'{"cmd": "sale", "card": "healthy", "amount": "33.00"}\n')
        owed_right_after = [o.message.mti for o in store.owed()]
        drained = await terminal.drain(5)
        status = await ecr.handle_line(json.dumps({"cmd": "status"}).encode())
        await terminal.stop()
        server.close()
        attempts = store.attempts()
        store.close()
        return {"failed": failed, "owed": owed_right_after, "drained": drained, "status": status, "attempts": attempts}

    out = asyncio.run(scenario())
    assert out["failed"]["ok"] is False and "RuntimeError: reader firmware crashed" in out["failed"]["error"]
    assert out["owed"] == ["0400"] and out["drained"]
    assert out["status"]["ok"] and out["status"]["attempts"] == {"unknown": 1}
    (attempt,) = out["attempts"]
    assert attempt.reversed == attempt.amount == 3300 and "transaction failed" in attempt.reason
    assert host.available(pan) == before  # the hold the host placed is released
