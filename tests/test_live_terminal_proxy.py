"""The live terminal behind the chaos proxy: sliced and delayed bytes, a pulled cable, reset connections.

terminal -> ``possim proxy`` -> ``possim host``, all real processes on loopback. The
proxy slices every chunk into a few bytes and delays them; then it goes down (the
terminal approves offline), comes back with a reset_peer toxic on part of the
connections, and the terminal must deliver every advice exactly once and settle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sim.live.admin import admin_call_sync
from sim.live.process import ServerProcess, start
from sim.live.terminal.client import EcrClient
from sim.live.terminal.verdict import judge


def _admin(proc: ServerProcess, cmd: str, **params: Any) -> dict[str, Any]:
    answer = admin_call_sync(proc.admin_port, {"cmd": cmd, **params})
    assert answer["ok"], answer
    return answer


def test_slicer_outage_and_resets_lose_nothing(tmp_path: Path) -> None:
    procs: list[ServerProcess] = []
    try:
        host = start(["host", "--state", str(tmp_path / "host")], log_dir=tmp_path)
        procs.append(host)
        proxy = start(["proxy", "--upstream", f"127.0.0.1:{host.port}", "--seed", "7"], log_dir=tmp_path)
        procs.append(proxy)
        for stream in ("upstream", "downstream"):
            _admin(proxy, "add_toxic", toxic={"type": "slicer", "average_size": 5, "size_variation": 4,
                                               "delay_us": 200, "stream": stream})
        _admin(proxy, "add_toxic", toxic={"type": "latency", "latency_ms": 20, "jitter_ms": 10, "stream": "downstream"})
        # every byte crosses the proxy in 1-9 byte slices: on a busy machine an answer can take seconds, and
        # nothing in this test is lost silently (down and reset_peer cut the link at once), so the
        # timeout is only a bound for a busy machine, not something the test waits out
        term = start(["terminal", "--serve", "--host", f"127.0.0.1:{proxy.port}", "--state", str(tmp_path / "term"),
                      "--timeout", "10", "--echo-interval", "0.3", "--backoff-max", "0.2", "--seed", "4"],
                     port=None, log_dir=tmp_path)
        procs.append(term)
        told = []
        with EcrClient(term.port) as client:
            for amount in ("10.00", "11.00"):
                out = client.call({"cmd": "sale", "card": "healthy", "amount": amount})
                assert out["arc"] == "00", out
                told.append(out)
            _admin(proxy, "down")
            for minor in (120, 130, 140):
                out = client.call({"cmd": "sale", "card": "offline-only-iac", "amount_minor": minor})
                # the first may go out on the link the proxy is resetting: then a reversal is owed too
                assert out["outcome"] == "approved" and out["stored"] in (["0220"], ["0400", "0220"]), out
                told.append(out)
            _admin(proxy, "add_toxic", toxic={"type": "reset_peer", "timeout_ms": 60, "toxicity": 0.5,
                                               "stream": "upstream"})
            _admin(proxy, "up")
            assert client.call({"cmd": "drain", "timeout": 30})["drained"], client.call({"cmd": "status"})
            _admin(proxy, "reset")  # no more toxics: settle on a clean line
            settle = client.call({"cmd": "settle"})
        assert settle["outcome"] == "settled", settle
        (eur,) = settle["currencies"]
        assert eur["terminal"] == eur["host"] and eur["terminal"]["debits_amount"] == 2100 + 390
        rows = _admin(host, "booked")["booked"]
        for out in told:
            mine = [r for r in rows if (r["stan"], r["transmitted"]) == (out["stan"], out["transmitted"])]
            assert len(mine) == 1 and mine[0]["amount"] == out["amount_minor"], (out, rows)
        term.stop()
        verdict = judge(tmp_path / "term", rows)
        assert verdict.ok, verdict.pretty()
    finally:
        for proc in procs:
            proc.stop(grace=5)
