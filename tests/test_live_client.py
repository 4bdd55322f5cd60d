"""The asyncio ISO 8583 client: key matching with answers out of order, timeouts, lost connections."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from sim.emv.kernel.events import HostTimeout, HostUnreachable
from sim.iso8583.framing import Framing
from sim.iso8583.message import Message, network_request
from sim.live.client import Client, ConnectionLost, KeyInFlight, NotConnected, RequestTimeout, echo_server

WHEN = datetime(2026, 11, 22, 10, 30)


def echo(stan: int, terminal: str = "TERM0001") -> Message:
    return network_request("301", stan=stan, transmitted=WHEN, terminal_id=terminal)


async def _reversing_server(batch: int, drop_stans: frozenset[str] = frozenset()):
    """Collects ``batch`` frames, then answers them in reverse order (as 0810 00), skipping ``drop_stans``."""
    framing = Framing()
    from sim.iso8583.dialect import DEFAULT

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = framing.decoder()
        held = []
        while len(held) < batch:
            data = await reader.read(4096)
            if not data:
                break
            held.extend(decoder.feed(data))
        for frame in reversed(held):
            fields = DEFAULT.decode(frame.payload)
            if fields["11"] in drop_stans:
                continue
            answer = {k: v for k, v in fields.items() if k not in ("p", "1")}
            answer.update(t="0810", **{"39": "00"})
            writer.write(framing.frame(DEFAULT.encode(answer)))
        await writer.drain()
        await reader.read()  # hold the connection until the client closes
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def _port(server) -> int:
    return server.sockets[0].getsockname()[1]


def test_answers_out_of_order_reach_their_own_requests():
    async def main():
        server = await _reversing_server(5)
        client = await Client.connect("127.0.0.1", _port(server), timeout=5)
        answers = await asyncio.gather(*(client.request(echo(n)) for n in range(1, 6)))
        await client.close()
        server.close()
        return answers, client

    answers, client = asyncio.run(main())
    assert [a.stan for a in answers] == [f"{n:06d}" for n in range(1, 6)]
    assert all(a.mti == "0810" and a.response_code == "00" for a in answers)
    assert client.answered == 5 and client.unmatched == 0


def test_same_stan_on_another_terminal_is_another_key():
    async def main():
        server = await _reversing_server(2)
        client = await Client.connect("127.0.0.1", _port(server), timeout=5)
        a, b = await asyncio.gather(client.request(echo(9, "TERMAAAA")), client.request(echo(9, "TERMBBBB")))
        await client.close()
        server.close()
        return a, b

    a, b = asyncio.run(main())
    assert (a.terminal_id, b.terminal_id) == ("TERMAAAA", "TERMBBBB")


def test_timeout_is_per_request_and_a_late_or_missing_answer_is_counted():
    async def main():
        server = await _reversing_server(3, drop_stans=frozenset({"000002"}))
        client = await Client.connect("127.0.0.1", _port(server), timeout=5)
        results = await asyncio.gather(
            client.request(echo(1)), client.request(echo(2), timeout=0.3), client.request(echo(3)),
            return_exceptions=True,
        )
        await client.close()
        server.close()
        return results, client

    (first, second, third), client = asyncio.run(main())
    assert first.stan == "000001" and third.stan == "000003"
    assert isinstance(second, RequestTimeout) and isinstance(second, HostTimeout)
    assert client.in_flight == 0


def test_second_request_with_a_key_in_flight_is_refused():
    async def main():
        server = await _reversing_server(2)
        client = await Client.connect("127.0.0.1", _port(server), timeout=5)
        first = asyncio.ensure_future(client.request(echo(4)))
        await asyncio.sleep(0)
        with pytest.raises(KeyInFlight):
            await client.request(echo(4))
        await client.request(echo(5))
        answer = await first
        await client.close()
        server.close()
        return answer

    assert asyncio.run(main()).stan == "000004"


def test_connection_closed_before_the_answer_is_connection_lost_then_not_connected():
    async def main():
        async def slam(reader, writer):
            await reader.read(10)
            writer.close()

        server = await asyncio.start_server(slam, "127.0.0.1", 0)
        client = await Client.connect("127.0.0.1", _port(server), timeout=5)
        with pytest.raises(ConnectionLost) as lost:
            await client.request(echo(1))
        with pytest.raises(NotConnected) as never_sent:
            await client.request(echo(2))
        server.close()
        return lost.value, never_sent.value

    lost, never_sent = asyncio.run(main())
    assert isinstance(lost, HostTimeout) and isinstance(never_sent, HostUnreachable)


def test_connect_to_a_closed_port_is_not_connected():
    async def main():
        server = await echo_server()
        port = _port(server)
        server.close()
        await server.wait_closed()
        with pytest.raises(NotConnected, match=str(port)):
            await Client.connect("127.0.0.1", port)

    asyncio.run(main())


def test_tpdu_framing_round_trip_through_the_echo_server():
    async def main():
        framing = Framing(tpdu=True)
        server = await echo_server(framing=framing)
        async with await Client.connect("127.0.0.1", _port(server), framing=framing, tpdu=bytes.fromhex("6000120034")) as c:
            answers = await asyncio.gather(*(c.request(echo(n)) for n in range(1, 40)))
        server.close()
        return answers

    assert [a.stan for a in asyncio.run(main())] == [f"{n:06d}" for n in range(1, 40)]
