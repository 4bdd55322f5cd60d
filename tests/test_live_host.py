"""``possim host`` end to end on loopback: a real process, started and stopped by PID."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from sim.core.cards import load_cards
from sim.emv import tlv
from sim.iso8583.pretty import mask_pan
from sim.live import process
from sim.live.admin import admin_call_sync
from sim.live.client import Client
from sim.live.host_server import utc_now
from sim.live.sales import chip_sale, echo, write_load_cards

CARDS = load_cards()


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    d = tmp_path_factory.mktemp("host")
    cards = write_load_cards(d / "cards.toml")
    srv = process.start(["host", "--cards", str(cards), "--state", str(d / "state"),
                         "--journal", str(d / "journal.jsonl")], log_dir=d)
    srv.dir = d
    yield srv
    code = srv.stop()
    assert code == 0, srv.output()


def run(coro):
    return asyncio.run(coro)


async def _requests(port, messages, timeout=5.0):
    async with await Client.connect("127.0.0.1", port, timeout=timeout) as client:
        return await asyncio.gather(*(client.request(m) for m in messages), return_exceptions=True)


def _stan():
    _stan.n += 1
    return _stan.n


_stan.n = 100


def test_online_approval_carries_auth_code_and_arpc_and_debits_once(host):
    pan = CARDS.card("healthy").pan
    before = admin_call_sync(host.admin_port, {"cmd": "balance", "pan": pan})["balance"]
    sale = chip_sale("healthy", 1234, stan=_stan(), when=utc_now())
    [answer] = run(_requests(host.port, [sale]))
    assert answer.mti == "0210" and answer.response_code == "00"
    assert answer.auth_code and answer.stan == sale.stan
    assert "91" in tlv.decode(bytes.fromhex(answer.fields["55"]))
    after = admin_call_sync(host.admin_port, {"cmd": "balance", "pan": pan})["balance"]
    assert before - after == 1234


def test_decline_for_funds_leaves_the_balance(host):
    pan = CARDS.card("insufficient-funds").pan
    before = admin_call_sync(host.admin_port, {"cmd": "balance", "pan": pan})
    [answer] = run(_requests(host.port, [chip_sale("insufficient-funds", 900, stan=_stan(), when=utc_now())]))
    assert answer.response_code == "51" and "38" not in answer.fields
    assert admin_call_sync(host.admin_port, {"cmd": "balance", "pan": pan}) == before


def test_echo_and_pipelined_sales_on_one_connection(host):
    now = utc_now()
    msgs = [echo(_stan(), now)] + [chip_sale("healthy", 100 + i, stan=_stan(), when=now) for i in range(20)]
    answers = run(_requests(host.port, msgs))
    assert answers[0].mti == "0810" and answers[0].response_code == "00"
    assert [a.stan for a in answers] == [m.stan for m in msgs]
    assert {a.response_code for a in answers[1:]} == {"00"}


def test_journal_masks_pans_and_keeps_no_track_pin_or_chip_data(host):
    pan = CARDS.card("healthy").pan
    run(_requests(host.port, [chip_sale("healthy", 77, stan=_stan(), when=utc_now())]))
    path = Path(host.dir) / "journal.jsonl"
    deadline = time.monotonic() + 5
    text = ""
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if '"000000000077"' in text:
            break
        time.sleep(0.1)
    records = [json.loads(line) for line in text.splitlines()]
    sale = [r for r in records if r.get("fields", {}).get("4") == "000000000077"]
    assert {r["dir"] for r in sale} == {"in", "out"}
    assert pan not in text and mask_pan(pan) in text
    for r in records:
        assert not {"35", "45", "52", "55"} & set(r.get("fields", {}))


def test_issuer_outage_stand_in_and_pcap_survive_a_restart(tmp_path):
    from sim.iso8583.pcap import read_messages

    cards = write_load_cards(tmp_path / "cards.toml")
    args = ["host", "--cards", str(cards), "--state", str(tmp_path / "state"), "--pcap", str(tmp_path / "s.pcap")]
    srv = process.start(args, log_dir=tmp_path)
    try:
        assert admin_call_sync(srv.admin_port, {"cmd": "issuer", "issuer": "possim-visa-test", "up": False})["ok"]
        [first] = run(_requests(srv.port, [chip_sale("healthy", 1000, stan=1, when=utc_now(), terminal_id="STIPTERM")]))
    finally:
        assert srv.stop() == 0, srv.output()
    assert first.response_code == "00" and first.auth_code.startswith("ST")
    captured = read_messages(tmp_path / "s.pcap", port=srv.port)
    assert [(c.fields["t"], c.fields["11"]) for c in captured] == [("0200", "000001"), ("0210", "000001")]

    again = process.start(args, log_dir=tmp_path)
    try:
        assert admin_call_sync(again.admin_port, {"cmd": "status"})["replayed"] == 2
        [second] = run(_requests(again.port, [chip_sale("healthy", 2000, stan=2, when=utc_now(), terminal_id="STIPTERM")]))
        assert second.auth_code.startswith("ST")  # the issuer is still down after the restart
        assert not [b for b in admin_call_sync(again.admin_port, {"cmd": "booked"})["booked"] if b["terminal_id"] == "STIPTERM"]
        admin_call_sync(again.admin_port, {"cmd": "issuer", "issuer": "possim-visa-test", "up": True})
        assert admin_call_sync(again.admin_port, {"cmd": "issuer", "issuer": "nobody", "up": True})["ok"] is False
        run(_requests(again.port, [chip_sale("healthy", 5, stan=3, when=utc_now(), terminal_id="STIPTERM")]))
        booked = sorted(b["amount"] for b in admin_call_sync(again.admin_port, {"cmd": "booked"})["booked"]
                        if b["terminal_id"] == "STIPTERM")
        assert booked == [5, 1000, 2000]  # both stand-in approvals reached the issuer once
    finally:
        assert again.stop() == 0, again.output()


def test_bad_rules_file_stops_the_start_naming_file_rule_and_key(tmp_path):
    bad = tmp_path / "rules.toml"
    bad.write_text('[[rules]]\nname = "x"\naction = "respond"\ncode = "5"\n')
    with pytest.raises(process.ProcessError) as err:
        process.start(["host", "--rules", str(bad)], log_dir=tmp_path)
    assert str(bad) in str(err.value) and "rule #1 (x)" in str(err.value) and "'code'" in str(err.value)
