"""Bad input against a live host process: it answers 30 or drops that connection, and keeps serving."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sim.iso8583.catalogue import MESSAGE_TYPES
from sim.iso8583.dialect import DEFAULT
from sim.iso8583.framing import Framing
from sim.live import process
from sim.live.admin import admin_call_sync
from sim.live.client import Client
from sim.live.host_server import utc_now
from sim.live.sales import chip_sale, echo, write_load_cards

FRAMING = Framing()


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    d = tmp_path_factory.mktemp("robust")
    srv = process.start(
        ["host", "--cards", str(write_load_cards(d / "cards.toml")), "--state", str(d / "state"),
         "--frame-timeout", "0.6", "--idle-timeout", "1.5", "--max-connections", "40", "--max-frame", "2048"],
        log_dir=d,
    )
    yield srv
    assert srv.stop() == 0, srv.output()


STAN = iter(range(1, 999_999))


def good_client_is_answered(port: int) -> bool:
    async def main():
        async with await Client.connect("127.0.0.1", port, timeout=5) as c:
            return (await c.request(echo(next(STAN), utc_now()))).response_code == "00"

    return asyncio.run(main())


def raw_exchange(port: int, data: bytes, wait: float = 0.3) -> tuple[bytes, bool]:
    """Send ``data``; return what came back within ``wait`` s and whether the host closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(data)
        sock.settimeout(wait)
        got = b""
        closed = False
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            got += chunk
        return got, closed


SALE = chip_sale("healthy", 100, stan=1, when=utc_now()).encode()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.binary(max_size=300),                                                   # random bytes, any framing
        st.binary(min_size=1, max_size=300).map(FRAMING.frame),                    # garbage in a valid frame
        st.integers(1, len(SALE) - 1).map(lambda n: FRAMING.frame(SALE[:n])),      # truncated message
        st.tuples(st.integers(0, len(SALE) - 1), st.integers(0, 255)).map(         # one byte changed
            lambda t: FRAMING.frame(SALE[: t[0]] + bytes([t[1]]) + SALE[t[0] + 1:])),
        st.integers(1, len(SALE) + 2).map(lambda n: FRAMING.frame(SALE)[:n]),      # frame cut short (half-open)
    )
)
@example(data=FRAMING.frame(SALE[:2] + b"\x00" + SALE[3:]))  # an MTI with no response: 30 under its own MTI
@example(data=FRAMING.frame(SALE[:2] + b"2" + SALE[3:]))  # the sale as an 0220 advice: answered 0230
def test_any_bytes_get_a_30_or_a_closed_connection_and_the_host_keeps_answering(host, data):
    got, closed = raw_exchange(host.port, data, wait=0.15)
    sent = _payloads(data)
    for frame in Framing().decoder().feed(got) if got else []:
        fields = DEFAULT.decode(frame.payload)
        assert fields["39"] and frame.payload not in sent  # an answer (30 or the core's own), never an echo
        requests = [MESSAGE_TYPES.get(_mti(payload)) for payload in sent]
        known = [mt.response for mt in requests if mt is not None and mt.response is not None]
        if len(sent) == 1 and known:  # a request of the catalogue gets its own response MTI (0210, 0230, 0410...)
            assert fields["t"] == known[0]
    assert host.alive and good_client_is_answered(host.port)


def _payloads(data: bytes) -> list[bytes]:
    """The payloads of the whole frames in ``data`` (none when it does not frame)."""
    try:
        return [frame.payload for frame in Framing().decoder().feed(data)]
    except Exception:  # noqa: BLE001 - random bytes need not frame
        return []


def _mti(payload: bytes) -> str:
    """The MTI of an ASCII ISO 8583 payload, as pyiso8583 reads it ("" when it does not decode)."""
    try:
        return payload[:4].decode("ascii")
    except UnicodeDecodeError:
        return ""


def test_good_client_still_answered_after_the_fuzzing(host):
    assert good_client_is_answered(host.port)
    status = admin_call_sync(host.admin_port, {"cmd": "status"})
    assert status["ok"] and status["connections_open"] <= 2
    # the process's sweep has been freezing survivors; the hourly full collection is not due yet
    assert status["heap_freezes"] >= 1 and status["heap_full_collections"] == 0


def test_frame_with_a_readable_key_but_bad_content_gets_30_and_the_connection_stays(host):
    fields = DEFAULT.decode(SALE)
    fields = {k: v for k, v in fields.items() if k not in ("p", "1")}
    fields["4"] = "00000000012X"  # DE4 must be digits: the codec reads it, the catalogue refuses it
    fields["11"] = "424242"
    with socket.create_connection(("127.0.0.1", host.port), timeout=3) as sock:
        sock.sendall(FRAMING.frame(DEFAULT.encode(fields)))
        decoder = FRAMING.decoder()
        frames = []
        while not frames:
            frames = decoder.feed(sock.recv(4096))
        answer = DEFAULT.decode(frames[0].payload)
        assert (answer["t"], answer["11"], answer["39"], answer["41"]) == ("0210", "424242", "30", fields["41"])
        sock.sendall(FRAMING.frame(echo(5, utc_now()).encode()))
        frames = []
        while not frames:
            frames = decoder.feed(sock.recv(4096))
        assert DEFAULT.decode(frames[0].payload)["39"] == "00"


def test_truncated_body_with_key_fields_read_gets_30(host):
    cut = SALE[:120]  # bitmap, DE2..DE11 read; the rest missing
    got, _ = raw_exchange(host.port, FRAMING.frame(cut), wait=1.0)
    [frame] = FRAMING.decoder().feed(got)
    answer = DEFAULT.decode(frame.payload)
    assert answer["39"] == "30" and answer["11"] == "000001"


def test_unreadable_frame_closes_only_that_connection(host):
    async def main():
        async with await Client.connect("127.0.0.1", host.port, timeout=5) as good:
            first = await good.request(echo(next(STAN), utc_now()))
            _, closed = await asyncio.to_thread(raw_exchange, host.port, FRAMING.frame(b"\xff" * 40), 1.0)
            second = await good.request(echo(next(STAN), utc_now()))
            return first, closed, second

    first, closed, second = asyncio.run(main())
    assert closed and first.response_code == second.response_code == "00"


def test_oversize_length_header_closes_the_connection(host):
    _, closed = raw_exchange(host.port, (60000).to_bytes(2, "big") + b"0200", wait=1.0)
    assert closed


def test_slowloris_partial_frame_is_cut_after_the_frame_timeout(host):
    with socket.create_connection(("127.0.0.1", host.port), timeout=5) as sock:
        frame = FRAMING.frame(SALE)
        sock.sendall(frame[:30])
        t0 = time.monotonic()
        assert good_client_is_answered(host.port)
        sock.settimeout(5)
        try:
            assert sock.recv(10) == b""
        except ConnectionResetError:
            pass
        assert time.monotonic() - t0 < 3.5


def test_idle_connection_is_closed(host):
    with socket.create_connection(("127.0.0.1", host.port), timeout=6) as sock:
        t0 = time.monotonic()
        try:
            assert sock.recv(10) == b""
        except ConnectionResetError:
            pass
        assert 1.0 < time.monotonic() - t0 < 5


def test_connection_flood_is_bounded_and_the_host_recovers(host):
    socks = []
    try:
        for _ in range(60):
            socks.append(socket.create_connection(("127.0.0.1", host.port), timeout=2))
        time.sleep(0.3)
        status = admin_call_sync(host.admin_port, {"cmd": "status"})
        assert status["connections_open"] <= 40 and status["refused"] >= 20
    finally:
        for s in socks:
            s.close()
    time.sleep(0.2)
    assert good_client_is_answered(host.port)


def test_half_closed_client_still_gets_its_answer(host):
    with socket.create_connection(("127.0.0.1", host.port), timeout=5) as sock:
        sock.sendall(FRAMING.frame(chip_sale("healthy", 5, stan=777, when=utc_now()).encode()))
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    [frame] = FRAMING.decoder().feed(data)
    assert DEFAULT.decode(frame.payload)["39"] == "00"
