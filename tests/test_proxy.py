"""``possim proxy`` between a client and a live host: toxics break the wire, never the messages."""

from __future__ import annotations

import asyncio
import time

import pytest

from sim.core.history import BookedEffect, HistoryEvent, check
from sim.iso8583.pretty import mask_pan
from sim.live import process
from sim.live.admin import admin_call_sync
from sim.live.client import Client, ClientError, ConnectionLost, NotConnected, RequestTimeout
from sim.live.host_server import utc_now
from sim.live.sales import chip_sale, echo, write_load_cards

STAN = iter(range(1, 999_999))


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    d = tmp_path_factory.mktemp("proxyhost")
    srv = process.start(["host", "--cards", str(write_load_cards(d / "cards.toml")), "--state", str(d / "state")],
                        log_dir=d)
    yield srv
    assert srv.stop() == 0, srv.output()


@pytest.fixture(scope="module")
def proxy(host, tmp_path_factory):
    d = tmp_path_factory.mktemp("proxy")
    srv = process.start(["proxy", "--upstream", f"127.0.0.1:{host.port}", "--seed", "7"], log_dir=d)
    yield srv
    assert srv.stop() == 0, srv.output()


@pytest.fixture
def admin(proxy):
    def call(cmd, **kw):
        answer = admin_call_sync(proxy.admin_port, {"cmd": cmd, **kw})
        assert answer["ok"], answer
        return answer

    yield call
    call("reset")
    call("up")


def sale(terminal="PROXY001", amount=100, label="healthy"):
    return chip_sale(label, amount, stan=next(STAN), when=utc_now(), terminal_id=terminal)


def host_status(host):
    return admin_call_sync(host.admin_port, {"cmd": "status"})


def test_slicer_both_ways_corrupts_nothing(host, proxy, admin):
    admin("add_toxic", toxic={"type": "slicer", "stream": "upstream", "average_size": 3, "size_variation": 2, "delay_us": 50})
    admin("add_toxic", toxic={"type": "slicer", "stream": "downstream", "average_size": 5, "size_variation": 4})
    before = host_status(host)

    async def main():
        async with await Client.connect("127.0.0.1", proxy.port, timeout=10) as c:
            msgs = [sale(amount=100 + i) for i in range(12)] + [echo(next(STAN), utc_now(), "PROXY001")]
            return msgs, await asyncio.gather(*(c.request(m) for m in msgs))

    msgs, answers = asyncio.run(main())
    assert [a.stan for a in answers] == [m.stan for m in msgs]
    assert {a.response_code for a in answers} == {"00"}
    after = host_status(host)
    assert after["format_errors"] == before["format_errors"]
    assert after["requests"] - before["requests"] == 13


def test_latency_with_jitter_then_changed_at_runtime(proxy, admin):
    admin("add_toxic", toxic={"name": "slow", "type": "latency", "latency_ms": 300, "jitter_ms": 50})

    async def timed():
        async with await Client.connect("127.0.0.1", proxy.port, timeout=5) as c:
            t0 = time.monotonic()
            answer = await c.request(echo(next(STAN), utc_now()))
            return answer, time.monotonic() - t0

    answer, slow = asyncio.run(timed())
    assert answer.response_code == "00" and 0.25 <= slow < 1.5
    admin("update_toxic", name="slow", latency_ms=0, jitter_ms=0)
    _, fast = asyncio.run(timed())
    assert fast < 0.2


def test_reset_peer_mid_burst_then_retransmission_books_each_sale_once(host, proxy, admin):
    admin("add_toxic", toxic={"type": "reset_peer", "stream": "downstream", "timeout_ms": 150})
    now = utc_now()
    sales = [chip_sale("healthy", 300 + i, stan=i + 1, when=now, terminal_id="RESETTRM") for i in range(40)]
    history = []

    def ev(kind, s):
        return HistoryEvent(kind, s.terminal_id, s.stan, mask_pan(s.pan), s.amount, s.currency, s.transmitted)

    async def burst():
        unknown = []
        async with await Client.connect("127.0.0.1", proxy.port, timeout=3) as c:
            async def one(i, s):
                await asyncio.sleep(i * 0.01)
                history.append(ev("invoked", s))
                try:
                    a = await c.request(s)
                except (ConnectionLost, RequestTimeout):
                    history.append(ev("unknown", s))
                    unknown.append(s)
                except NotConnected:
                    history.append(ev("declined", s))
                    unknown.append(s)
                else:
                    history.append(ev("approved-online" if a.response_code == "00" else "declined", s))
            await asyncio.gather(*(one(i, s) for i, s in enumerate(sales)))
        return unknown

    unknown = asyncio.run(burst())
    assert unknown, "the reset should have cut the burst"
    assert admin("status")["resets"] >= 1
    admin("reset")

    async def retransmit():
        async with await Client.connect("127.0.0.1", proxy.port, timeout=5) as c:
            return await asyncio.gather(*(c.request(s) for s in unknown))

    for s, a in zip(unknown, asyncio.run(retransmit())):
        history.append(ev("invoked", s))
        history.append(ev("approved-online" if a.response_code == "00" else "declined", s))
    booked = [BookedEffect.from_mapping(r) for r in admin_call_sync(host.admin_port, {"cmd": "booked"})["booked"]
              if r["terminal_id"] == "RESETTRM"]
    verdict = check(history, booked)
    assert verdict.ok, verdict.pretty()
    assert len(booked) == 40


def test_down_refuses_connections_and_up_restores_them(proxy, admin):
    admin("down")

    async def attempt():
        async with await Client.connect("127.0.0.1", proxy.port, timeout=2, connect_timeout=1) as c:
            return await c.request(echo(next(STAN), utc_now()))

    with pytest.raises(ClientError):
        asyncio.run(attempt())
    admin("up")
    assert asyncio.run(attempt()).response_code == "00"


def test_limit_data_closes_mid_answer_without_delivering_a_broken_message(proxy, admin):
    admin("add_toxic", toxic={"type": "limit_data", "stream": "downstream", "bytes": 100})

    async def main():
        c = await Client.connect("127.0.0.1", proxy.port, timeout=3)
        with pytest.raises(ConnectionLost):
            await c.request(sale())
        return c.undecodable, c.unmatched

    assert asyncio.run(main()) == (0, 0)


def test_timeout_closes_after_its_delay_and_a_blackhole_never_answers(proxy, admin):
    admin("add_toxic", toxic={"name": "hole", "type": "timeout", "stream": "upstream", "timeout_ms": 0})

    async def main(limit):
        async with await Client.connect("127.0.0.1", proxy.port, timeout=limit) as c:
            t0 = time.monotonic()
            try:
                await c.request(echo(next(STAN), utc_now()))
            except ClientError as exc:
                return type(exc), time.monotonic() - t0

    kind, _ = asyncio.run(main(0.5))
    assert kind is RequestTimeout
    admin("update_toxic", name="hole", timeout_ms=300)
    kind, took = asyncio.run(main(3))
    assert kind is ConnectionLost and 0.25 < took < 2.5


def test_bandwidth_limits_the_rate(proxy, admin):
    admin("add_toxic", toxic={"type": "bandwidth", "stream": "downstream", "rate_kbps": 1})

    async def main():
        async with await Client.connect("127.0.0.1", proxy.port, timeout=5) as c:
            t0 = time.monotonic()
            answers = await asyncio.gather(*(c.request(echo(next(STAN), utc_now())) for _ in range(8)))
            return answers, time.monotonic() - t0

    answers, took = asyncio.run(main())
    size = 8 * 67  # 8 framed 0810 answers of about 67 bytes at 1 KB/s
    assert {a.response_code for a in answers} == {"00"} and took >= 0.8 * size / 1024


def test_toxicity_half_hits_some_links_and_the_same_seed_picks_the_same_ones(host, tmp_path):
    toxics = tmp_path / "toxics.toml"
    toxics.write_text('[[toxics]]\nname = "some"\ntype = "latency"\nlatency_ms = 800\ntoxicity = 0.5\n')

    async def slow_links(port):
        flags = []
        for _ in range(8):
            async with await Client.connect("127.0.0.1", port, timeout=5) as c:
                t0 = time.monotonic()
                await c.request(echo(next(STAN), utc_now()))
                # 800 ms of toxic against a loopback echo: even a busy machine keeps clean links well under 0.4 s
                flags.append(time.monotonic() - t0 > 0.4)
        return flags

    runs = []
    for _ in range(2):
        with process.start(["proxy", "--upstream", f"127.0.0.1:{host.port}", "--seed", "11", "--toxics", str(toxics)],
                           log_dir=tmp_path) as p:
            runs.append(asyncio.run(slow_links(p.port)))
    assert 1 <= sum(runs[0]) <= 7
    assert runs[0] == runs[1]


def test_bad_toxic_is_refused_naming_the_key(proxy):
    answer = admin_call_sync(proxy.admin_port, {"cmd": "add_toxic", "toxic": {"type": "latency", "latency_ms": -5}})
    assert not answer["ok"] and "'latency_ms'" in answer["error"]
    answer = admin_call_sync(proxy.admin_port, {"cmd": "add_toxic", "toxic": {"type": "wormhole"}})
    assert not answer["ok"] and "slicer" in answer["error"]


def test_upstream_can_be_repointed_while_running(host, proxy, admin):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    admin("upstream", address=f"127.0.0.1:{dead}")

    async def attempt():
        async with await Client.connect("127.0.0.1", proxy.port, timeout=2) as c:
            return await c.request(echo(next(STAN), utc_now()))

    try:
        with pytest.raises(ClientError):
            asyncio.run(attempt())
        assert admin("status")["upstream_failures"] >= 1
    finally:
        admin("upstream", address=f"127.0.0.1:{host.port}")
    assert asyncio.run(attempt()).response_code == "00"
