"""The rules overlay on a live host process: delay, drop, close, malformed, respond, counts, reload."""

from __future__ import annotations

import asyncio
import time

import pytest

from sim.core.cards import load_cards
from sim.live import process
from sim.live.admin import admin_call_sync
from sim.live.client import Client, ConnectionLost, RequestTimeout
from sim.live.host_server import utc_now
from sim.live.sales import chip_sale, write_load_cards

CARDS = load_cards()
PAN = CARDS.card("healthy").pan

RULES = """
[[rules]]
name = "slow terminal"
terminal_id = "SLOWTERM"
action = "delay"
delay_ms = 1200
"""


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    d = tmp_path_factory.mktemp("rules")
    (d / "rules.toml").write_text(RULES)
    srv = process.start(["host", "--cards", str(write_load_cards(d / "cards.toml")), "--rules", str(d / "rules.toml")],
                        log_dir=d)
    srv.dir = d
    yield srv
    assert srv.stop() == 0, srv.output()


@pytest.fixture
def admin(host):
    def call(cmd, **kw):
        answer = admin_call_sync(host.admin_port, {"cmd": cmd, **kw})
        assert answer["ok"], answer
        return answer

    yield call
    call("clear_rules")
    call("reload")  # back to the file's rules alone, counters reset


STAN = iter(range(1000, 999_999))


def sale(terminal="TERM0001", amount=100, label="healthy"):
    return chip_sale(label, amount, stan=next(STAN), when=utc_now(), terminal_id=terminal)


def balance(host):
    return admin_call_sync(host.admin_port, {"cmd": "balance", "pan": PAN})["balance"]


def test_delay_makes_a_short_client_timeout_expire_while_others_on_the_connection_are_answered(host):
    async def main():
        async with await Client.connect("127.0.0.1", host.port, timeout=5) as c:
            slow = asyncio.ensure_future(c.request(sale("SLOWTERM"), timeout=0.4))
            patient = asyncio.ensure_future(c.request(sale("SLOWTERM")))
            t0 = time.monotonic()
            quick = await c.request(sale())
            quick_time = time.monotonic() - t0
            with pytest.raises(RequestTimeout):
                await slow
            answer = await patient
            return quick, quick_time, answer, time.monotonic() - t0, c.late

    quick, quick_time, answer, total, late = asyncio.run(main())
    assert quick.response_code == "00" and quick_time < 1.0
    assert answer.response_code == "00" and total >= 1.2
    assert late == 1  # the timed-out request's answer came after all


def test_drop_answers_nothing_but_the_core_booked_it(host, admin):
    admin("add_rule", rule={"terminal_id": "DROPTERM", "action": "drop"})
    before = balance(host)

    async def main():
        async with await Client.connect("127.0.0.1", host.port, timeout=5) as c:
            dropped = asyncio.ensure_future(c.request(sale("DROPTERM", 250), timeout=0.8))
            other = await c.request(sale("TERM0001", 1))
            with pytest.raises(RequestTimeout):
                await dropped
            return other

    assert asyncio.run(main()).response_code == "00"
    assert before - balance(host) == 251  # the lost answer's sale was booked: the terminal owes a reversal


def test_drop_without_core_is_a_lost_request(host, admin):
    admin("add_rule", rule={"terminal_id": "LOSTREQ1", "action": "drop", "core": False})
    before = balance(host)

    async def main():
        async with await Client.connect("127.0.0.1", host.port, timeout=0.6) as c:
            with pytest.raises(RequestTimeout):
                await c.request(sale("LOSTREQ1", 300))

    asyncio.run(main())
    assert balance(host) == before


def test_close_drops_the_connection_instead_of_answering(host, admin):
    admin("add_rule", rule={"terminal_id": "CLOSTERM", "action": "close"})

    async def main():
        c = await Client.connect("127.0.0.1", host.port, timeout=5)
        with pytest.raises(ConnectionLost):
            await c.request(sale("CLOSTERM"))
        async with await Client.connect("127.0.0.1", host.port, timeout=5) as again:
            return await again.request(sale())

    assert asyncio.run(main()).response_code == "00"


def test_malformed_answer_is_not_iso8583_and_the_request_times_out(host, admin):
    admin("add_rule", rule={"terminal_id": "BADANSWR", "action": "malformed"})

    async def main():
        async with await Client.connect("127.0.0.1", host.port, timeout=0.8) as c:
            with pytest.raises(RequestTimeout):
                await c.request(sale("BADANSWR"))
            return c.undecodable + c.unmatched

    assert asyncio.run(main()) == 1


def test_respond_without_core_declines_and_books_nothing(host, admin):
    admin("add_rule", rule={"pan_prefix": PAN[:6], "amount_min": 7000, "amount_max": 7999, "action": "respond",
                            "code": "91", "core": False})
    before = balance(host)

    async def main():
        async with await Client.connect("127.0.0.1", host.port, timeout=5) as c:
            return await asyncio.gather(c.request(sale(amount=7500)), c.request(sale(amount=8000)))

    hit, miss = asyncio.run(main())
    assert hit.response_code == "91" and "38" not in hit.fields
    assert miss.response_code == "00"
    assert before - balance(host) == 8000


def test_count_window_acts_on_the_second_match_only(host, admin):
    admin("add_rule", rule={"mti": "0200", "processing_code": "00", "terminal_id": "COUNTERS", "count_from": 2,
                            "count_to": 2, "action": "respond", "code": "05"})

    async def main():
        async with await Client.connect("127.0.0.1", host.port, timeout=5) as c:
            return [(await c.request(sale("COUNTERS"))).response_code for _ in range(3)]

    assert asyncio.run(main()) == ["00", "05", "00"]
    assert admin("rules")["counts"]["rule-2"] == 3


def test_rules_file_is_reloaded_when_it_changes_and_a_bad_one_keeps_the_old_rules(host, admin):
    path = host.dir / "rules.toml"
    path.write_text(RULES + '\n[[rules]]\nname = "refuse refunds"\nprocessing_code = "20"\naction = "respond"\ncode = "57"\n')
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(admin("rules")["rules"]) < 2:
        time.sleep(0.1)
    assert [r["name"] for r in admin("rules")["rules"]] == ["slow terminal", "refuse refunds"]

    async def refund():
        async with await Client.connect("127.0.0.1", host.port, timeout=5) as c:
            return await c.request(chip_sale("healthy", 100, stan=next(STAN), when=utc_now(), processing_code="200000"))

    assert asyncio.run(refund()).response_code == "57"
    path.write_text("[[rules]]\naction = 'explode'\n")
    bad = admin_call_sync(host.admin_port, {"cmd": "reload"})
    assert not bad["ok"] and "explode" in bad["error"] and "rules.toml" in bad["error"]
    assert len(admin("rules")["rules"]) == 2
    path.write_text(RULES)


def test_bad_admin_rule_is_refused_with_the_key_named(host):
    answer = admin_call_sync(host.admin_port, {"cmd": "add_rule", "rule": {"action": "respond", "code": "5"}})
    assert not answer["ok"] and "'code'" in answer["error"]
