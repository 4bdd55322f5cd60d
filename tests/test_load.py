"""The Locust load kit against a real ``possim host`` process on loopback.

Locust runs as a subprocess (gevent's monkey patching never enters this process);
the host is started by the test and stopped by its PID. Runs are a few seconds each.
"""

from __future__ import annotations

import csv
import re
import socket
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sim.cli import app, _register
from sim.live.traffic import DEFAULT_CARD_MIX, CardRole
from sim.load.cli import start_load_host
from sim.load.run import LoadPlan, read_stats, run

SALES = ("chip sale", "contactless", "swipe sale")
DECLINE_OF = {"insufficient-funds": "51", "low-limits": "61", "expired": "54", "lost": "41", "stolen": "43", "blocked": "57"}


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    server = start_load_host(tmp_path_factory.mktemp("load-host"))
    yield server
    server.stop()  # by PID
    assert not server.alive


def _plan(host, tmp_path: Path, **kw) -> LoadPlan:
    base = dict(shape="mix", target=("127.0.0.1", host.port), out=tmp_path, users=3, duration=4.0, in_flight=2, html=False)
    base.update(kw)
    return LoadPlan(**base)


def _check_clean(result) -> None:
    assert result.returncode == 0, result.output[-3000:]
    total = result.total
    assert total is not None and total.failures == 0, result.output[-3000:]
    assert result.unexpected == {}
    assert sum(result.codes.values()) == total.requests


@pytest.mark.parametrize("pool", [0, 64])  # 0: a fresh ARQC for every chip request; 64: the users' shared pool
def test_headless_run_answers_every_request_as_the_card_mix_says(host, tmp_path: Path, pool: int) -> None:
    plan = _plan(host, tmp_path, duration=5.0, pool=pool, html=True)
    result = run(plan)
    _check_clean(result)
    total = result.total
    assert total.requests > 300
    assert {row.name for row in result.stats} >= {"chip sale", "contactless", "refund", "echo", "advice", "Aggregated"}
    assert {row.type for row in result.stats if row.name == "reversal"} <= {"0400"}
    assert plan.html_path.stat().st_size > 10_000 and Path(f"{plan.csv_prefix}_failures.csv").exists()
    # Declines at the rates of the card mix: each declining card's share of the sales.
    sales = {k: n for k, n in result.codes.items() if k[0] in SALES}
    n_sales = sum(sales.values())
    weights = sum(w for w, _ in DEFAULT_CARD_MIX.values())
    for label, code in DECLINE_OF.items():
        seen = sum(n for (kind, expected, answered), n in sales.items() if answered == code)
        share = DEFAULT_CARD_MIX[label][0] / weights
        assert abs(seen / n_sales - share) < 0.035, (label, code, seen, n_sales, share)
    approve = sum(w for w, role in DEFAULT_CARD_MIX.values() if role is CardRole.APPROVE) / weights
    approved = sum(n for k, n in sales.items() if k[2] == "00") / n_sales
    assert abs(approved - approve) < 0.05


def test_relative_output_folder_is_the_users_not_the_kits(host, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # Locust itself runs from the repository root
    plan = _plan(host, Path("reports/load"), duration=2.0, html=True)
    result = run(plan)
    _check_clean(result)
    assert (tmp_path / "reports/load/mix_summary.json").exists() and (tmp_path / "reports/load/mix_report.html").exists()


def test_distributed_run_with_two_worker_processes(host, tmp_path: Path) -> None:
    result = run(_plan(host, tmp_path, users=4, processes=2))
    _check_clean(result)
    assert result.total.requests > 200
    assert "2 workers connected" in result.output or "(index 1)" in result.output, result.output[-3000:]


@pytest.mark.parametrize("shape,levels", [
    ("step", [1, 2, 3, 4, 5]),  # five equal steps up to the peak
    ("spike", [1, 5, 1]),  # baseline 20%, the peak, baseline again
    ("soak", [3, 5]),  # half the peak for the first tenth, then the peak
])
def test_shapes_follow_their_tables(host, tmp_path: Path, shape, levels) -> None:
    result = run(_plan(host, tmp_path, shape=shape, users=5, duration=6.0))
    _check_clean(result)
    # Locust logs each level the shape asks for; the shape ticks once a second and
    # every stage lasts longer than that, so each level shows up, in order.
    asked = [int(n) for n in re.findall(r"Shape test updating to (\d+) users", result.output)]
    assert [n for i, n in enumerate(asked) if i == 0 or asked[i - 1] != n] == levels, asked
    with open(f"{result.plan.csv_prefix}_stats_history.csv", newline="") as f:
        users = [int(r["User Count"]) for r in csv.DictReader(f) if r["Name"] == "Aggregated"]
    assert max(users) <= 5


def test_open_model_sends_at_the_arrival_rate(host, tmp_path: Path) -> None:
    result = run(_plan(host, tmp_path, shape="arrival", users=4, rate=150.0, duration=4.0))
    _check_clean(result)
    # 150/s for about 4 s, whatever the answers do (the first ones wait for the users to start).
    assert 350 <= result.total.requests <= 650, result.total


def test_connection_refused_and_timeouts_are_failures_and_the_run_stops_on_time(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]  # nothing listens here once closed
    refused = run(LoadPlan(shape="mix", target=("127.0.0.1", closed_port), out=tmp_path / "a", users=2, duration=2.0, html=False))
    assert refused.total is not None and refused.total.requests > 0
    assert refused.total.failures == refused.total.requests
    assert all(answered == "-" for (_, _, answered) in refused.codes)
    assert refused.elapsed < 20

    silent = socket.create_server(("127.0.0.1", 0))  # accepts, reads, never answers
    conns: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = silent.accept()
            except OSError:
                return
            conns.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    try:
        plan = LoadPlan(shape="mix", target=silent.getsockname(), out=tmp_path / "b", users=2, duration=3.0, timeout=0.5,
                        in_flight=2, html=False)
        timed_out = run(plan)
    finally:
        silent.close()
        for conn in conns:
            conn.close()
    assert timed_out.returncode == 0, timed_out.output[-2000:]
    assert timed_out.total.requests >= 4 and timed_out.total.failures == timed_out.total.requests
    failures = Path(f"{plan.csv_prefix}_failures.csv").read_text()
    assert "no answer within 0.5 s" in failures
    assert timed_out.elapsed < 20


def test_possim_load_cli_errors_and_summary(host, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    _register()
    runner = CliRunner()
    bad = runner.invoke(app, ["load", "tsunami"])
    assert bad.exit_code == 2 and "allowed: step, spike, soak, arrival, mix" in bad.output
    bad = runner.invoke(app, ["load", "mix", "--target", "localhost"])
    assert bad.exit_code == 2 and "HOST:PORT" in bad.output
    bad = runner.invoke(app, ["load", "mix", "--framing", "be3"])
    assert bad.exit_code == 2 and "--framing" in bad.output
    bad = runner.invoke(app, ["load"])
    assert bad.exit_code == 2 and "give a shape" in bad.output
    cards = runner.invoke(app, ["load", "--write-cards", str(tmp_path / "cards.toml")])
    assert cards.exit_code == 0 and "possim host --cards" in cards.output
    from sim.core.cards import load_cards
    from sim.live.traffic import load_card_set

    assert load_cards(tmp_path / "cards.toml").cards == load_card_set().cards
    ok = runner.invoke(app, ["load", "mix", "--target", f"127.0.0.1:{host.port}", "--users", "2", "--duration", "2",
                             "--out", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    assert "Aggregated" in ok.output and "DE39 answered vs expected" in ok.output
    rows = read_stats(tmp_path / "mix_stats.csv")
    assert rows and rows[-1].failures == 0


def test_wrong_answers_are_failures_naming_the_codes(tmp_path: Path, monkeypatch) -> None:
    """A host on the shipped cards (20 approvals a day) answers 65 where 00 is owed.

    The host and the kit speak TPDU framing here: the answers that come back prove
    the kit frames (and reads) a TPDU after the length header."""
    from sim.live import process

    monkeypatch.setenv("COLUMNS", "200")
    _register()
    shipped = process.start(["host", "--framing", "be2+tpdu"], log_dir=tmp_path)
    try:
        out = CliRunner().invoke(app, ["load", "mix", "--target", f"127.0.0.1:{shipped.port}", "--users", "2",
                                       "--duration", "3", "--framing", "be2+tpdu", "--out", str(tmp_path / "out")])
    finally:
        shipped.stop()
    assert out.exit_code == 1, out.output
    assert "DE39 65 (exceeds withdrawal frequency limit), expected 00 (approved) for card" in out.output
    assert "load card set" in out.output


def test_paced_lanes_and_a_graceful_stop(host, tmp_path: Path) -> None:
    """Lanes honour a user's wait_time between requests, and a graceful stop (--stop-timeout)
    ends the users once their requests in flight are answered, not at the stop timeout."""
    import subprocess
    import time

    from sim.load.run import loadtests_dir, read_summary

    locustfile = tmp_path / "paced.py"
    locustfile.write_text(
        f"import sys\nsys.path.insert(0, {str(loadtests_dir())!r})\n"
        "from locust import constant\nfrom possim_load import RetailUser\n\n\n"
        "class PacedUser(RetailUser):\n    wait_time = constant(0.1)\n"
    )
    plan = _plan(host, tmp_path, users=2, in_flight=2, duration=3.0)
    argv = plan.argv()
    argv[argv.index("-f") + 1] = str(locustfile)
    argv[argv.index("--stop-timeout") + 1] = "8"
    argv += ["--measure-after", "1", "PacedUser"]
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=str(loadtests_dir().parent))
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    stats, codes, errors, process = read_summary(plan.summary_path)
    total = next(row for row in stats if row.name == "Aggregated")
    assert total.failures == 0 and errors == []
    assert sum(codes.values()) == total.requests
    # 2 users x 2 lanes, one request per lane every 0.1 s (plus the answer time), for about 3 s.
    assert 40 <= total.requests <= 130, total
    assert elapsed < 3.0 + 6.0  # spawning and start-up, but not the 8 s stop timeout
    # The process figures count from one second after spawning: fewer requests than in total.
    assert 0 < process["requests"] < total.requests and process["cpu_seconds"] > 0


def test_a_connection_the_host_drops_fails_what_was_in_flight_and_the_users_reconnect(tmp_path: Path) -> None:
    """An echo server that hangs up after a few answers on every connection: each drop fails
    the requests in flight (LinkDown), and the users carry on over new connections."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []

    def serve(conn: socket.socket) -> None:
        with conn:
            buf, answered = b"", 0
            while answered < 30:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while len(buf) >= 2 and len(buf) >= 2 + int.from_bytes(buf[:2], "big"):
                    n = 2 + int.from_bytes(buf[:2], "big")
                    if answered < 30:
                        try:
                            conn.sendall(buf[:n])  # echo it, then hang up with the rest unanswered
                        except OSError:
                            return  # the load generator went away first (the end of the run)
                        answered += 1
                    buf = buf[n:]

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(1)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        plan = LoadPlan(shape="mix", target=server.getsockname(), out=tmp_path, users=2, duration=3.0, in_flight=3,
                        echo_server=True, html=False, extra=["RetailUser"])
        result = run(plan)
    finally:
        server.close()
    assert result.returncode == 0, result.output[-2000:]
    total = result.total
    assert total is not None and len(accepted) >= 4  # reconnected, again and again
    # every connection answered its 30 (but the last of each user, cut short by the end of the run)
    assert total.requests - total.failures >= 30 * (len(accepted) - 4)
    assert 0 < total.failures
    failures = Path(f"{plan.csv_prefix}_failures.csv").read_text()
    assert "LinkDown" in failures and "UnexpectedCode" not in failures
    assert sum(result.codes.values()) == total.requests
