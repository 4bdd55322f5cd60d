"""MACs end to end on the live stack (SEC-01): ``possim host``, the asyncio client, the
one-shot TCP link, ``possim terminal`` (one-shot and ``--serve``), and the replay log.

Hosts and terminals run as child processes on loopback (ephemeral ports), stopped by PID.
Expected MACs are never taken from the side under test: requests are signed here with
:func:`sim.iso8583.mac.sign` and answers checked with :func:`verify` over the bytes received.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from sim import cli
from sim.core.cards import load_cards
from sim.core.crypto import encrypt_pin_block
from sim.core.host import Host
from sim.emv.kernel import HostTimeout
from sim.iso8583.dialect import resolve_dialect
from sim.iso8583.framing import Framing
from sim.iso8583.mac import TEST_MAC_KEY, MacKeys, MacResult, sign, verify
from sim.iso8583.message import Message, parse, transaction_request
from sim.live.admin import admin_call_sync
from sim.live.client import Client, MacFailure
from sim.live.exchange import core_answer
from sim.live.host_server import utc_now
from sim.live.process import ServerProcess, start
from sim.live.redact import MAC_VERDICTS, join_track2, redact_request, restore_request, split_track2, strip_track2
from sim.live.sales import chip_sale
from sim.live.store import StateStore, identity, replay
from sim.live.terminal.client import EcrClient
from sim.terminal.links import TcpLink

MAC = resolve_dialect("iso8583-1987-ascii-mac")
CARDS = load_cards()
OTHER_KEY = "0123456789ABCDEFFEDCBA9876543210"
RULES = """
[[rules]]
terminal_id = "RULETERM"
action = "respond"
code = "05"

[[rules]]
terminal_id = "PLAINTRM"
action = "respond"
code = "91"
core = false
"""


def _host(tmp: Path, *extra: str, state: str = "state") -> ServerProcess:
    config = tmp / "host.toml"
    config.write_text(f'[mac]\nkeys = {{ OWNKEY01 = "{OTHER_KEY}" }}\n')
    rules = tmp / "rules.toml"
    rules.write_text(RULES)
    return start(["host", "--dialect", MAC.name, "--admin-port", "0", "--config", str(config), "--rules", str(rules),
                  "--state", str(tmp / state), *extra], log_dir=tmp)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = _host(tmp_path_factory.mktemp("machost"))
    try:
        yield proc
    finally:
        proc.stop(grace=5)


def _admin(proc: ServerProcess, cmd: str, **params: Any) -> dict[str, Any]:
    answer = admin_call_sync(proc.admin_port, {"cmd": cmd, **params})
    assert answer["ok"], answer
    return answer


def _balance(proc: ServerProcess, label: str) -> tuple[int, int]:
    answer = _admin(proc, "balance", pan=CARDS.card(label).pan)
    return answer["balance"], answer["available"]


def _booked(proc: ServerProcess, tid: str) -> list[dict[str, Any]]:
    return [row for row in _admin(proc, "booked")["booked"] if row["terminal_id"] == tid]


def _exchange(port: int, raw: bytes) -> bytes:
    """One framed request out, one framed answer back, on a plain socket (the answer's exact bytes)."""
    framing = Framing()
    decoder = framing.decoder()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(framing.frame(raw))
        while True:
            chunk = sock.recv(65536)
            assert chunk, "the host closed the connection without answering"
            frames = decoder.feed(chunk)
            if frames:
                return frames[0].payload


def _answer(port: int, msg: Message) -> tuple[Message, bytes]:
    raw = _exchange(port, msg.encode(MAC))
    return parse(raw, MAC), raw


def _sale(tid: str, stan: int, amount: int = 2500, label: str = "healthy") -> Message:
    return chip_sale(label, amount, stan=stan, when=utc_now(), terminal_id=tid)


def _swipe(tid: str, stan: int, label: str = "magstripe-only", amount: int = 1500) -> tuple[Message, str]:
    card = CARDS.card(label)
    track = f"{card.pan}D{card.expiry}{card.service_code}0000077700"
    msg = transaction_request("0200", amount=amount, currency=card.currency_info.numeric, stan=stan,
                              transmitted=utc_now().strftime("%m%d%H%M%S"), terminal_id=tid, entry_mode="901",
                              track2=track, pin_block=encrypt_pin_block(card.pin, card.pan))
    return msg, track


# the live host -------------------------------------------------------------------------------------


def test_signed_sale_is_approved_and_its_answer_verifies_tampered_or_unsigned_gets_63_and_books_nothing(host):
    before = _balance(host, "healthy")
    answer, raw = _answer(host.port, sign(_sale("MACTERM1", 1), MAC))
    assert answer.response_code == "00"
    assert verify(answer, MAC, TEST_MAC_KEY, raw=raw) is MacResult.VALID
    after = _balance(host, "healthy")
    assert before[0] - after[0] == 2500 or before[1] - after[1] == 2500  # captured, or held

    signed = sign(_sale("MACTERM1", 2), MAC)
    tampered = signed.replace(DE4=f"{25:012d}")
    assert tampered.fields["64"] == signed.fields["64"]
    for msg in (tampered, _sale("MACTERM1", 3)):  # wrong MAC, then none at all
        answer, raw = _answer(host.port, msg)
        assert answer.response_code == "63"
        assert verify(answer, MAC, TEST_MAC_KEY, raw=raw) is MacResult.VALID  # the refusal is signed too
    assert _balance(host, "healthy") == after
    assert [row["stan"] for row in _booked(host, "MACTERM1")] == ["000001"]


def test_answers_the_server_changes_or_builds_itself_are_signed(host):
    changed, raw = _answer(host.port, sign(_sale("RULETERM", 1), MAC))  # core approves, the rule says 05
    assert changed.response_code == "05" and "38" not in changed.fields
    assert verify(changed, MAC, TEST_MAC_KEY, raw=raw) is MacResult.VALID

    built, raw = _answer(host.port, sign(_sale("PLAINTRM", 1), MAC))  # core = false: the driver answers 91
    assert built.response_code == "91"
    assert verify(built, MAC, TEST_MAC_KEY, raw=raw) is MacResult.VALID

    whole = sign(_sale("FMTERR01", 1), MAC).encode(MAC)
    cut = whole[:whole.index(b"FMTERR01") + 8]  # MTI, bitmap, ... DE41: then the frame ends
    raw = _exchange(host.port, cut)
    error = parse(raw, MAC)
    assert (error.response_code, error.stan, error.terminal_id) == ("30", "000001", "FMTERR01")
    assert verify(error, MAC, TEST_MAC_KEY, raw=raw) is MacResult.VALID


def test_client_signs_verifies_and_treats_an_answer_with_a_foreign_mac_as_no_answer(host):
    async def main() -> tuple[Message, Message, Client]:
        async with await Client.connect("127.0.0.1", host.port, dialect=MAC, timeout=5) as client:
            ok = await client.request(_sale("MACTERM2", 1))
            echo = await client.request(Message({"t": "0800", "7": utc_now().strftime("%m%d%H%M%S"), "11": "000002",
                                                 "41": "MACTERM2", "70": "301"}))
            with pytest.raises(MacFailure, match="MAC does not verify"):
                await client.request(_sale("OWNKEY01", 1))  # the host answers 63 under that terminal's own key
            return ok, echo, client

    ok, echo, client = asyncio.run(main())
    assert ok.response_code == "00" and echo.response_code == "00"
    assert (client.answered, client.bad_mac) == (2, 1)
    assert _booked(host, "OWNKEY01") == []

    link = TcpLink(f"127.0.0.1:{host.port}", dialect=MAC, timeout_s=5)
    try:
        assert link(_sale("MACTERM3", 1)).response_code == "00"
        with pytest.raises(HostTimeout, match="treated as no answer"):
            link(_sale("OWNKEY01", 2))
        assert link.bad_mac == 1
    finally:
        link.close()
    right = TcpLink(f"127.0.0.1:{host.port}", dialect=MAC, timeout_s=5, mac_key=bytes.fromhex(OTHER_KEY))
    try:
        assert right(_sale("OWNKEY01", 3)).response_code == "00"
    finally:
        right.close()


def test_one_shot_terminal_over_tcp_on_the_mac_dialect_approves(host):
    if not cli.app.registered_groups:
        cli._register()
    result = CliRunner().invoke(cli.app, ["terminal", "--card", "healthy", "--amount", "12.34", "--host",
                                          f"127.0.0.1:{host.port}", "--dialect", MAC.name, "--terminal-id", "ONESHOT1",
                                          "--json", "--seed", "4"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert (out["outcome"], out["arc"]) == ("approved", "00"), out
    assert [row["amount"] for row in _booked(host, "ONESHOT1")] == [1234]


def test_one_shot_terminal_signs_with_its_own_mac_key(host):
    if not cli.app.registered_groups:
        cli._register()
    base = ["terminal", "--card", "healthy", "--amount", "3.21", "--host", f"127.0.0.1:{host.port}",
            "--dialect", MAC.name, "--terminal-id", "OWNKEY01", "--json", "--seed", "6", "--timeout", "3"]
    before = [row["amount"] for row in _booked(host, "OWNKEY01")]
    result = CliRunner().invoke(cli.app, [*base, "--stan", "901", "--mac-key", OTHER_KEY])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["arc"] == "00"
    # the documented test key is not this terminal's key: the host answers 63 under its own key,
    # which the terminal cannot verify, so it books nothing and the sale is not approved
    wrong = json.loads(CliRunner().invoke(cli.app, [*base, "--stan", "902"]).output)
    assert wrong["outcome"] != "approved"
    assert [row["amount"] for row in _booked(host, "OWNKEY01")] == [*before, 321]
    bad = CliRunner().invoke(cli.app, [*base, "--mac-key", "zz"])
    assert bad.exit_code == 2 and "--mac-key" in bad.output


def test_live_terminal_serving_on_the_mac_dialect_approves_a_sale_from_the_cash_register(host, tmp_path):
    term = start(["terminal", "--serve", "--host", f"127.0.0.1:{host.port}", "--dialect", MAC.name, "--state",
                  str(tmp_path / "term"), "--terminal-id", "LIVEMAC1", "--timeout", "3", "--echo-interval", "0",
                  "--seed", "5"], port=None, log_dir=tmp_path)
    try:
        with EcrClient(term.port, timeout=30) as ecr:
            sale = ecr.call({"cmd": "sale", "card": "healthy", "amount": "42.00"})
            assert (sale["ok"], sale["outcome"], sale["arc"]) == (True, "approved", "00"), sale
            status = ecr.call({"cmd": "status"})
    finally:
        term.stop(grace=5)
    assert status["link"] == "up"
    assert [row["amount"] for row in _booked(host, "LIVEMAC1")] == [4200]


# replay on the MAC dialect -----------------------------------------------------------------------


def test_restart_replays_a_mac_dialect_log_whose_requests_were_redacted_and_keeps_no_track_on_disk(tmp_path):
    first = _host(tmp_path)
    try:
        card = CARDS.card("magstripe-only")
        opening = _balance(first, "magstripe-only")
        swipe, track = _swipe("REPLAY01", 1)
        answers = [_answer(first.port, sign(swipe, MAC))[0]]
        answers.append(_answer(first.port, sign(swipe, MAC).replace(DE4=f"{99:012d}"))[0])  # the same, tampered
        answers.append(_answer(first.port, sign(_sale("REPLAY01", 2), MAC))[0])
        answers.append(_answer(first.port, sign(_sale("RULETERM", 3), MAC))[0])
        balances = (_balance(first, "magstripe-only"), _balance(first, "healthy"))
    finally:
        assert first.stop() == 0
    assert [a.response_code for a in answers] == ["00", "63", "00", "05"]
    assert opening != balances[0]

    stored = b"".join(p.read_bytes() for p in (tmp_path / "state").iterdir() if p.is_file())
    for gone in (track, track[:track.index("D") + 8], f"{card.pan}D{card.expiry}", f"{card.pan}={card.expiry}"):
        assert gone.encode() not in stored, gone
    with sqlite3.connect(tmp_path / "state" / "host.sqlite3") as db:
        marks = [json.loads(m) for (m,) in db.execute("SELECT marks FROM events WHERE kind = 'message' ORDER BY seq")]
    assert [m["mac"] for m in marks] == ["valid", "mismatch", "valid", "valid"]

    again = _host(tmp_path)  # replay must give every stored answer again, or the start fails
    try:
        assert _admin(again, "status")["replayed"] == 4
        assert (_balance(again, "magstripe-only"), _balance(again, "healthy")) == balances
        assert _answer(again.port, sign(_sale("REPLAY01", 4), MAC))[0].response_code == "00"
        assert _answer(again.port, sign(swipe, MAC))[0].response_code == "00"  # a duplicate: its first answer again
        assert sorted(row["stan"] for row in _booked(again, "REPLAY01")) == ["000001", "000002", "000004"]
    finally:
        assert again.stop() == 0


def test_rows_written_before_marks_existed_still_replay(tmp_path):
    """A log from before the marks column (and the live MAC check) opens, gains the column and replays."""
    state = tmp_path / "state"
    state.mkdir()
    ident = identity({}, CARDS)
    now = datetime(2026, 11, 22, 10, 30)
    sale = sign(chip_sale("healthy", 700, stan=1, when=now, terminal_id="OLDROW01"), MAC)
    answered = core_answer(Host(cards=CARDS), dict(sale.fields), now, MAC, check_mac=False)  # as answered then
    with sqlite3.connect(state / "host.sqlite3") as db:
        db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                         "CREATE TABLE events (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, at TEXT NOT NULL, "
                         "dialect TEXT, request BLOB, pin TEXT, answer BLOB, detail TEXT);")
        db.executemany("INSERT INTO meta VALUES (?, ?)", sorted(ident.items()))
        db.execute("INSERT INTO events VALUES (1, 'message', ?, ?, ?, NULL, ?, NULL)",
                   (now.isoformat(), MAC.name, sale.encode(MAC), answered.raw))
    store = StateStore.open(state, ident)
    try:
        events = list(store.events())
        assert events[0].marks is None
        host = Host(cards=CARDS)
        report = replay(events, host, {MAC.name: MAC})
        assert report.ok and report.messages == 1
        assert host.balance(sale.pan or "") != Host(cards=CARDS).balance(sale.pan or "") or \
            host.available(sale.pan or "") != Host(cards=CARDS).available(sale.pan or "")
    finally:
        store.close()


# what the replay log keeps of a request ----------------------------------------------------------------


_digits = st.text("0123456789", min_size=0, max_size=21)
_tracks = st.one_of(
    st.builds(lambda pan, sep, rest: f"{pan}{sep}{rest}", _digits, st.sampled_from(["D", "=", "d"]),
              st.text("0123456789=D", max_size=30)),
    _digits,
    st.text(max_size=20),
)


@settings(max_examples=300, deadline=None)
@given(track=_tracks, de2=st.one_of(st.none(), _digits), de14=st.one_of(st.none(), st.text("0123456789", min_size=4, max_size=4)))
def test_track2_taken_apart_is_rebuilt_as_the_core_read_it(track, de2, de14):
    fields = {"t": "0200", "35": track}
    if de2:
        fields["2"] = de2
    if de14:
        fields["14"] = de14
    red = redact_request(fields, None)
    assert "35" not in red.fields
    rebuilt = restore_request(dict(red.fields), None, None, json.loads(json.dumps(red.marks)))
    assert {k: v for k, v in rebuilt.items() if k != "35"} == {k: v for k, v in fields.items() if k != "35"}
    assert rebuilt["35"] == strip_track2(track)  # what the core was given before the log kept no track
    sep = next((s for s in "D=d" if s in track), None)
    if sep is not None and not red.marks["track2"].get("redacted"):  # nothing of it stored as a track
        stored = json.dumps(red.fields) + json.dumps(red.marks)
        pan, _, rest = track.partition(sep)
        assert f"{pan}{sep}{rest[:4]}" not in stored or not (pan and rest[:4])


def test_split_track2_keeps_no_track_shape_of_a_card():
    card = CARDS.card("magstripe-only")
    added, marker = split_track2(f"{card.pan}D{card.expiry}{card.service_code}123456", {})
    assert added == {"2": card.pan, "14": card.expiry}
    assert marker == {"sep": "D", "svc": card.service_code, "moved": ["2", "14"]}
    rebuilt = dict(added)
    join_track2(rebuilt, marker)
    assert rebuilt == {"35": f"{card.pan}D{card.expiry}{card.service_code}"}


@pytest.mark.parametrize("verdict", ["valid", "mismatch", "missing", "malformed", "no-key"])
def test_replay_gives_a_redacted_request_a_mac_the_core_judges_as_at_receipt(verdict):
    keys = MacKeys({"NOKEYTRM": OTHER_KEY}, default=TEST_MAC_KEY) if verdict != "no-key" else MacKeys(default=None)
    swipe, _ = _swipe("MACTERM9", 7)
    signed = sign(swipe, MAC)
    sent = {"valid": signed, "mismatch": signed.replace(DE4=f"{1:012d}"), "missing": swipe,
            "malformed": signed.replace(DE64="not hex at all!!"), "no-key": signed}[verdict]
    key = keys.key_for("MACTERM9")
    at_receipt = verify(sent, MAC, key)
    assert MAC_VERDICTS[at_receipt] == verdict
    red = redact_request(sent.fields, CARDS, mac=at_receipt)
    restored = restore_request(dict(red.fields), red.pin, CARDS, red.marks, MAC, keys)
    if verdict == "valid":  # replay does not check it again: the MAC stays as received (duplicate check)
        assert restored["64"] == sent.fields["64"]
        assert verify(Message(restored), MAC, key) is MacResult.MISMATCH  # the track was cut: why it is not checked
    else:
        assert verify(Message(restored), MAC, key) is at_receipt


@pytest.mark.parametrize("track_tag", [None, "57", "9F6B"])
def test_redaction_with_the_cores_decoded_chip_data_equals_redaction_on_its_own(track_tag: str | None) -> None:
    """The host hands the redaction the DE55 objects the core decoded; what is stored is the same
    as when the redaction decodes DE55 itself, and track tags are gone either way."""
    from sim.emv import tlv

    sale = chip_sale("healthy", 1234, stan=7, when=datetime(2026, 11, 30, 10), card_set=CARDS)
    fields = {k: v for k, v in sale.fields.items() if k not in ("p", "1")}
    if track_tag is not None:
        objects = tlv.decode(bytes.fromhex(fields["55"]))
        objects[track_tag] = bytes.fromhex("4761739001010010D28122011234567899")
        fields["55"] = tlv.encode(objects).hex().upper()
    result = core_answer(Host(cards=CARDS), dict(fields), datetime(2026, 11, 30, 10))
    assert result.icc is not None and (track_tag is None or track_tag in result.icc)
    shared, alone = redact_request(fields, CARDS, icc=result.icc), redact_request(fields, CARDS)
    assert shared == alone
    assert shared.changed is (track_tag is not None)
    kept = tlv.decode(bytes.fromhex(shared.fields["55"]))
    assert track_tag not in kept and "9F26" in kept
