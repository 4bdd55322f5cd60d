"""Step definitions for features/live/host.feature: a real ``possim host`` on loopback.

The host is started through its ready file and stopped by PID at the end of the scenario;
broken terminals are plain sockets that send part of a frame and then reset or go silent,
and what the host booked is read from its admin endpoint.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path
from typing import Any, Iterator

import pytest
from pytest_bdd import given, parsers, scenarios, then, when

from sim.core.money import currency, parse_amount
from sim.iso8583.framing import Framing
from sim.iso8583.message import Message
from sim.live.admin import admin_call_sync
from sim.live.client import Client
from sim.live.host_server import utc_now
from sim.live.process import ServerProcess, start
from sim.live.sales import chip_sale, echo

scenarios("live/host.feature")

FRAMING = Framing()
EUR = currency("EUR")


@pytest.fixture
def live(tmp_path: Path) -> Iterator[dict[str, Any]]:
    state: dict[str, Any] = {"procs": []}
    yield state
    for proc in state["procs"]:
        proc.stop(grace=5)


@given("a live host on loopback")
def a_live_host(live: dict[str, Any], tmp_path: Path) -> None:
    host = start(["host", "--admin-port", "0", "--state", str(tmp_path / "host")], log_dir=tmp_path)
    live["procs"].append(host)
    live["host"] = host


def _sale(live: dict[str, Any], tid: str, amount: str, label: str) -> bytes:
    sale = chip_sale(label, parse_amount(amount, EUR), stan=1, when=utc_now(), terminal_id=tid)
    live["sale"] = sale
    return FRAMING.frame(sale.encode())


@when(parsers.parse('terminal {tid} sends the first {n:d} bytes of a chip sale of {amount} with card "{label}" and resets the connection'))
def partial_then_reset(live: dict[str, Any], tid: str, n: int, amount: str, label: str) -> None:
    frame = _sale(live, tid, amount, label)
    assert n < len(frame)
    sock = socket.create_connection(("127.0.0.1", live["host"].port), timeout=5)
    sock.sendall(frame[:n])
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
    sock.close()


@when(parsers.parse('terminal {tid} sends the first {n:d} bytes of a chip sale of {amount} with card "{label}" and goes silent'))
def partial_then_silent(live: dict[str, Any], tid: str, n: int, amount: str, label: str) -> None:
    frame = _sale(live, tid, amount, label)
    sock = socket.create_connection(("127.0.0.1", live["host"].port), timeout=5)
    sock.sendall(frame[:n])
    live["silent"] = sock  # held open, half a frame in the host's buffer


@when(parsers.parse("terminal {tid} sends the whole chip sale on a new connection"))
def whole_sale(live: dict[str, Any], tid: str) -> None:
    sale: Message = live["sale"]
    assert sale.terminal_id == tid

    async def main() -> Message:
        async with await Client.connect("127.0.0.1", live["host"].port, timeout=10) as client:
            return await client.request(sale)

    live["answer"] = asyncio.run(main())
    live.pop("silent").close()


@then("another terminal's echo is answered 00")
def others_served(live: dict[str, Any]) -> None:
    async def main() -> Message:
        async with await Client.connect("127.0.0.1", live["host"].port, timeout=10) as client:
            return await client.request(echo(1, utc_now(), terminal_id="TOTHER01"))

    assert asyncio.run(main()).response_code == "00"


@then(parsers.parse("the answer is {code}"))
def answer_is(live: dict[str, Any], code: str) -> None:
    assert live["answer"].response_code == code


def _booked(live: dict[str, Any], tid: str) -> list[dict[str, Any]]:
    host: ServerProcess = live["host"]
    answer = admin_call_sync(host.admin_port, {"cmd": "booked"})
    assert answer["ok"], answer
    return [row for row in answer["booked"] if row["terminal_id"] == tid]


@then(parsers.parse("the host booked nothing for terminal {tid}"))
def booked_nothing(live: dict[str, Any], tid: str) -> None:
    assert _booked(live, tid) == []


@then(parsers.parse("the host booked {amount} once for terminal {tid}"))
def booked_once(live: dict[str, Any], amount: str, tid: str) -> None:
    assert [row["amount"] for row in _booked(live, tid)] == [parse_amount(amount, EUR)]
