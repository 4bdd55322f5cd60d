"""The live terminal as a process against ``possim host`` as a process, on loopback.

Each test starts real processes on ephemeral ports (ready files), drives the
terminal through its ECR port like a cash register, asks the host what it booked
(admin ``booked``, ``balance``) and stops every process by PID in teardown. The
history checker judges the terminal's own history against the host's bookings.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from sim.core.cards import load_cards
from sim.live.admin import admin_call_sync
from sim.live.process import ServerProcess, start
from sim.live.terminal.client import EcrClient, EcrError
from sim.live.terminal.verdict import judge

CARDS = load_cards()
FAST = ["--timeout", "1.5", "--echo-interval", "0.3", "--backoff-max", "0.2", "--seed", "11"]


class Lab:
    """Processes of one test, stopped by PID at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[ServerProcess] = []

    def host(self, port: int = 0, *extra: str) -> ServerProcess:
        proc = start(["host", "--admin-port", "0", "--state", str(self.tmp / "host-state"), "--journal", str(self.tmp / "journal.jsonl"),
                      *extra], port=port, log_dir=self.tmp)
        self.procs.append(proc)
        return proc

    def terminal(self, host_port: int, *extra: str, state: str = "term") -> ServerProcess:
        proc = start(["terminal", "--serve", "--host", f"127.0.0.1:{host_port}", "--state", str(self.tmp / state),
                      *FAST, *extra], port=None, log_dir=self.tmp)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.stop(grace=5)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.stop_all()


def admin(host: ServerProcess, cmd: str, **params: Any) -> dict[str, Any]:
    answer = admin_call_sync(host.admin_port, {"cmd": cmd, **params})
    assert answer["ok"], answer
    return answer


def booked(host: ServerProcess) -> list[dict[str, Any]]:
    return admin(host, "booked")["booked"]


def ecr(term: ServerProcess, request: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    with EcrClient(term.port, timeout=timeout) as client:
        return client.call(request)


def keys_booked(rows: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        counts[(r["stan"], r["transmitted"])] = counts.get((r["stan"], r["transmitted"]), 0) + 1
    return counts


def journal_mtis(path: Path) -> list[str]:
    out = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("dir") == "in":
            out.append(row.get("mti"))
    return out


def test_online_approval_decline_and_bad_ecr_input(lab: Lab) -> None:
    host = lab.host()
    term = lab.terminal(host.port)
    with EcrClient(term.port) as client:
        sale = client.call({"cmd": "sale", "card": "healthy", "amount": "25.00", "id": 1})
        assert (sale["ok"], sale["id"], sale["outcome"], sale["arc"], sale["cryptogram"]) == (True, 1, "approved", "00", "TC")
        assert (sale["amount_minor"], sale["currency"], sale["messages"], sale["stored"]) == (2500, "978", ["0200"], [])
        declined = client.call({"cmd": "sale", "card": "insufficient-funds", "amount_minor": 2500})
        assert (declined["outcome"], declined["arc"]) == ("declined", "51")
        # bad input: a clear error each time, and the same connection keeps working
        assert "not JSON" in client.call_raw(b"{sale\n")["error"]
        assert "allowed: sale" in client.call({"cmd": "fly"})["error"]
        assert "never a JSON number" in client.call({"cmd": "sale", "card": "healthy", "amount": 12.34})["error"]
        assert "no card 'nope'" in client.call({"cmd": "sale", "card": "nope", "amount": "1.00"})["error"]
        assert "decimals" in client.call({"cmd": "sale", "card": "healthy", "amount": "1.001"})["error"]
        assert "one of them" in client.call({"cmd": "sale", "card": "healthy"})["error"]
        assert "no approved transaction" in client.call({"cmd": "void", "stan": "424242"})["error"]
        status = client.call({"cmd": "status"})
        assert status["ok"] and status["attempts"] == {"approved-online": 1, "declined": 1}
        rows = booked(host)
        assert keys_booked(rows) == {(sale["stan"], sale["transmitted"]): 1}
        verdict = judge(lab.tmp / "term", rows)
        assert verdict.ok, verdict.pretty()
        # a host that refuses a reversal for good: it leaves the queue but is kept, and the verdict shows it
        admin(host, "add_rule", rule={"mti": ["0400", "0401"], "action": "respond", "code": "12", "core": False})
        assert client.call({"cmd": "void", "stan": sale["stan"]})["stored"] == ["0400"]
        assert client.call({"cmd": "drain", "timeout": 10})["drained"]
        status = client.call({"cmd": "status"})
        assert (status["rejected_by_host"], status["owed_reversals"]) == (1, 0)
    assert term.stop() == 0  # SIGTERM: a clean exit, everything already stored
    verdict = judge(lab.tmp / "term", booked(host))
    assert [(f.stan, f.detail) for f in verdict.unexpected] == [(sale["stan"], "booked though reversed")]


def test_timeout_reversal_releases_the_hold_and_the_late_answer_is_ignored(lab: Lab) -> None:
    """REV-01, REV-02: the host books the sale but answers after the terminal's timeout."""
    host = lab.host()
    pan = CARDS.card("healthy").pan
    before = admin(host, "balance", pan=pan)
    admin(host, "add_rule", rule={"mti": "0200", "action": "delay", "delay_ms": 2500, "count_to": 1})
    term = lab.terminal(host.port)
    sale = ecr(term, {"cmd": "sale", "card": "healthy", "amount": "42.00"})
    assert sale["arc"] in ("Y3", "Z3") and "0400" in sale["stored"], sale
    assert ecr(term, {"cmd": "drain", "timeout": 10})["drained"]
    after = admin(host, "balance", pan=pan)
    expected = before["available"] - (4200 if sale["arc"] == "Y3" else 0)
    # Y3: the card approved offline, so the 0220 books it once; the 0200's hold is reversed either way
    assert after["available"] == expected, (before, after, sale)
    deadline_status = ecr(term, {"cmd": "status"})
    deadline = time.monotonic() + 30  # the late 0210 leaves the host 2.5 s after the sale; a busy machine adds more
    while deadline_status["late_answers_ignored"] < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
        deadline_status = ecr(term, {"cmd": "status"})
    assert deadline_status["late_answers_ignored"] >= 1
    assert deadline_status["owed_reversals"] == 0
    term.stop()
    rows = booked(host)
    host.stop()  # flushes the journal
    assert "0400" in journal_mtis(lab.tmp / "journal.jsonl")
    verdict = judge(lab.tmp / "term", rows)
    assert verdict.ok, verdict.pretty()


def test_outage_offline_approvals_delivered_once_with_repeats(lab: Lab) -> None:
    """OFF-05: approvals made while the host is down go as 0220 when it returns; 0221 repeats book once."""
    host = lab.host()
    port = host.port
    host.stop()
    term = lab.terminal(port)
    approvals = []
    with EcrClient(term.port) as client:
        for i in range(6):
            out = client.call({"cmd": "sale", "card": "offline-only-iac", "amount_minor": 100 + i})
            assert out["outcome"] == "approved" and out["arc"] in ("Y1", "Y3") and out["stored"] == ["0220"], out
            approvals.append(out)
        status = client.call({"cmd": "status"})
        assert status["owed_advices"] == 6 and status["link"] == "down"
    # the host loses its first two answers to advices: the terminal repeats them as 0221. The rule is
    # in place before the host listens: the terminal redials every 0.2 s and may deliver everything
    # between a start and an admin call
    rules = lab.tmp / "rules.toml"
    rules.write_text('[[rules]]\nmti = ["0220", "0221"]\naction = "drop"\ncount_to = 2\n')
    host = lab.host(port, "--rules", str(rules))
    assert ecr(term, {"cmd": "drain", "timeout": 20})["drained"]
    rows = booked(host)
    counts = keys_booked(rows)
    for out in approvals:
        assert counts.get((out["stan"], out["transmitted"])) == 1, (out["stan"], counts)
    settle = ecr(term, {"cmd": "settle"})
    assert settle["outcome"] == "settled", settle
    (eur,) = settle["currencies"]
    assert eur["code"] == "00" and eur["terminal"] == eur["host"] == {
        "debits_count": 6, "debits_amount": sum(100 + i for i in range(6)), "credits_count": 0, "credits_amount": 0}
    term.stop()
    host.stop()  # flushes the journal
    mtis = journal_mtis(lab.tmp / "journal.jsonl")
    assert mtis.count("0221") >= 2 and mtis.count("0220") == 6, mtis
    verdict = judge(lab.tmp / "term", rows)
    assert verdict.ok, verdict.pretty()


def test_settlement_matches_and_mismatch_is_settled_by_upload(lab: Lab) -> None:
    """SET-01: 0500 per currency matches (00) after a sale, a refund and a void; a host that lost an
    advice answers 95, takes the 0320 upload and settles on the 0500 960000."""
    host = lab.host()
    term = lab.terminal(host.port)
    with EcrClient(term.port) as client:
        a = client.call({"cmd": "sale", "card": "healthy", "amount": "30.00"})
        b = client.call({"cmd": "sale", "card": "mc-healthy", "amount": "7.00"})
        c = client.call({"cmd": "refund", "card": "healthy", "amount": "5.00"})
        d = client.call({"cmd": "sale", "card": "healthy", "amount": "11.00"})
        assert [x["arc"] for x in (a, b, c, d)] == ["00"] * 4
        void = client.call({"cmd": "void", "stan": d["stan"]})
        assert void["ok"] and void["stored"] == ["0400"], void
        assert "already reversed" in client.call({"cmd": "void", "stan": d["stan"]})["error"]
        settle = client.call({"cmd": "settle"})
        assert settle["outcome"] == "settled", settle
        by_cur = {c["currency"]: c for c in settle["currencies"]}
        assert by_cur["978"]["terminal"] == by_cur["978"]["host"] == {
            "debits_count": 1, "debits_amount": 3000, "credits_count": 1, "credits_amount": 500}
        assert by_cur["840"]["code"] == "00" and by_cur["840"]["host"]["debits_amount"] == 700
        assert "upload" not in by_cur["978"]
    host.stop()
    with EcrClient(term.port) as client:
        offline = client.call({"cmd": "sale", "card": "offline-only-iac", "amount_minor": 250})
        assert offline["outcome"] == "approved" and offline["stored"][-1] == "0220", offline
        second = client.call({"cmd": "sale", "card": "offline-only-iac", "amount_minor": 120})
        assert second["outcome"] == "approved" and second["stored"][-1] == "0220", second
    pan = CARDS.card("offline-only-iac").pan
    before = CARDS.card("offline-only-iac").balance
    # the restarted host acknowledges the first advice without its core ever seeing it: its totals miss one
    rules = lab.tmp / "rules.toml"
    rules.write_text('[[rules]]\nmti = ["0220", "0221"]\naction = "respond"\ncode = "00"\ncore = false\ncount_to = 1\n')
    host = lab.host(host.port, "--rules", str(rules))
    settle = ecr(term, {"cmd": "settle"})
    assert settle["outcome"] == "settled", settle
    (eur,) = settle["currencies"]
    assert eur["code"] == "95" and eur["terminal"]["debits_amount"] == 370 and eur["host"]["debits_amount"] == 120
    upload = eur["upload"]
    assert (upload["transactions"], upload["sent"], upload["complete"], upload["code"]) == (2, 2, True, "00"), upload
    assert upload["host"] == eur["terminal"]
    # the advice the host had missed reached the issuer through the upload, once
    assert admin(host, "balance", pan=pan)["balance"] == before - 370
    rows = booked(host)
    assert keys_booked(rows)[(offline["stan"], offline["transmitted"])] == 1
    status = ecr(term, {"cmd": "status"})
    assert (status["batch"], status["upload_pending"]) == (3, 0)
    term.stop()
    host.stop()  # flushes the journal
    mtis = journal_mtis(lab.tmp / "journal.jsonl")
    assert mtis.count("0320") == 2 and mtis.count("0500") == 4, mtis  # 2 currencies, then 920000 + 960000
    verdict = judge(lab.tmp / "term", rows)
    assert verdict.ok, verdict.pretty()


def test_upload_cut_by_kill_resumes_without_counting_twice(lab: Lab) -> None:
    """SET-01 across a power cut: the terminal dies with a 0320 out (its USD already settled 00);
    after a restart the settle leaves USD alone, repeats the 0320 as 0321, uploads the rest and
    settles; the host counts each transaction once."""
    host = lab.host()
    port = host.port
    host.stop()
    term = lab.terminal(port, "--timeout", "5")
    with EcrClient(term.port) as client:
        sales = [client.call({"cmd": "sale", "card": "offline-only-iac", "amount_minor": 300 + i}) for i in range(2)]
    assert all(s["outcome"] == "approved" for s in sales), sales
    # the host never sees the advices (answered by the driver alone), and holds back its first 0330
    rules = lab.tmp / "rules.toml"
    rules.write_text('[[rules]]\nmti = ["0220", "0221"]\naction = "respond"\ncode = "00"\ncore = false\n\n'
                     '[[rules]]\nname = "hold the first 0320"\nmti = "0320"\naction = "delay"\ndelay_ms = 4000\n'
                     'count_to = 1\n')
    host = lab.host(port, "--rules", str(rules))
    assert ecr(term, {"cmd": "drain", "timeout": 10})["drained"]
    usd = ecr(term, {"cmd": "sale", "card": "mc-healthy", "amount_minor": 700})
    assert (usd["outcome"], usd["currency"]) == ("approved", "840"), usd
    settling = threading.Thread(target=_quiet_settle, args=(term,))
    settling.start()
    # kill once the first 0320 has reached the host (held there 4 s): a send counted in the store but
    # not yet written to the socket would reach the host only as the 0321 after the restart
    deadline = time.monotonic() + 30
    while admin(host, "rules")["counts"]["hold the first 0320"] < 1:
        assert time.monotonic() < deadline, "the first 0320 never reached the host"
        time.sleep(0.01)
    assert term.kill() == -9
    db = sqlite3.connect(lab.tmp / "term" / "terminal.sqlite")
    settling.join()
    assert db.execute("SELECT COUNT(*), SUM(sends), COUNT(done) FROM uploads").fetchone() == (2, 1, 0)
    db.close()
    term = lab.terminal(port, "--timeout", "5")
    assert "settled batch" in ecr(term, {"cmd": "void", "stan": usd["stan"]})["error"]
    settle = ecr(term, {"cmd": "settle"})
    assert settle["outcome"] == "settled", settle
    (eur,) = settle["currencies"]  # USD was settled before the cut
    assert eur["code"] == "95" and eur["upload"]["code"] == "00" and eur["upload"]["sent"] == 2, eur
    assert eur["upload"]["host"] == eur["terminal"] == {
        "debits_count": 2, "debits_amount": 601, "credits_count": 0, "credits_amount": 0}
    rows = booked(host)
    counts = keys_booked(rows)
    assert [counts.get((s["stan"], s["transmitted"])) for s in sales] == [1, 1], counts
    term.stop()
    host.stop()  # flushes the journal
    mtis = journal_mtis(lab.tmp / "journal.jsonl")
    assert (mtis.count("0320"), mtis.count("0321"), mtis.count("0500")) == (2, 1, 4), mtis  # USD, EUR; EUR twice
    verdict = judge(lab.tmp / "term", rows)
    assert verdict.ok, verdict.pretty()


def _quiet_settle(term: ServerProcess) -> None:
    """A settle whose terminal is killed under it: the cash register just loses the connection."""
    try:
        ecr(term, {"cmd": "settle"}, timeout=15)
    except (EcrError, ConnectionError, OSError):
        pass


def test_offline_store_full_declines_instead_of_dropping(lab: Lab) -> None:
    """OFF-07: with the profile's offline store full, no further offline approval; nothing silently dropped."""
    text = (Path(__file__).parent.parent / "hardware_profiles" / "countertop-ethernet.toml").read_text()
    small = lab.tmp / "tiny-store.toml"
    small.write_text(text.replace('name = "countertop-ethernet"', 'name = "tiny-store"').replace(
        "capacity = 500", "capacity = 2"))
    host = lab.host()
    port = host.port
    host.stop()
    term = lab.terminal(port, "--profile", str(small))
    with EcrClient(term.port) as client:
        outs = [client.call({"cmd": "sale", "card": "offline-only-iac", "amount_minor": 300}) for _ in range(3)]
        status = client.call({"cmd": "status"})
    assert [o["outcome"] for o in outs] == ["approved", "approved", "declined"], outs
    assert outs[2]["stored"] == [] and status["owed_advices"] == 2 and status["offline_capacity"] == 2


def test_serve_option_errors_name_the_option(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sim import cli

    if not cli.app.registered_groups:
        cli._register()
    runner = CliRunner()
    cases = [
        (["terminal", "--serve", "--state", str(tmp_path)], "--host"),
        (["terminal", "--serve", "--host", "127.0.0.1:8583"], "--state"),
        (["terminal", "--serve", "--host", "nowhere", "--state", str(tmp_path)], "HOST:PORT"),
        (["terminal", "--serve", "--host", "127.0.0.1:8583", "--state", str(tmp_path), "--card", "healthy"], "ECR"),
        (["terminal", "--serve", "--host", "127.0.0.1:8583", "--state", str(tmp_path), "--ecr", "x"], "--ecr"),
        (["terminal", "--serve", "--host", "127.0.0.1:8583", "--state", str(tmp_path), "--profile", "toaster"],
         "countertop-ethernet"),
        (["terminal", "--serve", "--host-down", "--state", str(tmp_path)], "--host-down"),
        (["terminal", "--card", "healthy"], "--amount"),
        (["ecr", "status"], "--ready-file"),
    ]
    for args, expected in cases:
        result = runner.invoke(cli.app, args)
        assert result.exit_code == 2, (args, result.output)
        assert expected in result.output, (args, result.output)
    unreachable = runner.invoke(cli.app, ["ecr", "status", "--port", "9"])
    assert unreachable.exit_code == 2 and "cannot connect" in unreachable.output


def test_one_state_directory_serves_one_terminal(lab: Lab) -> None:
    term = lab.terminal(9)
    second = subprocess.run([sys.executable, "-m", "sim.cli", "terminal", "--serve", "--host", "127.0.0.1:9",
                             "--state", str(lab.tmp / "term")], capture_output=True, text=True, timeout=60)
    assert second.returncode == 2, second.stderr
    assert f"in use by another terminal process (pid {term.pid})" in " ".join(second.stderr.split())
    assert ecr(term, {"cmd": "status"})["ok"]
