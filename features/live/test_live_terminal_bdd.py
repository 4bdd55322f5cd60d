"""Step definitions for features/live/terminal.feature: real processes on loopback.

The host is ``possim host`` and the terminal ``possim terminal --serve``, each a child
process started through a ready file and stopped by PID at the end of the scenario.
The cash register talks JSON lines to the terminal's ECR port; the host is asked
what it booked through its admin endpoint.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
from pytest_bdd import given, parsers, scenarios, then, when

from sim.core.cards import load_cards
from sim.core.money import parse_amount
from sim.live.admin import admin_call_sync
from sim.live.process import ServerProcess, start
from sim.live.terminal.client import EcrClient, EcrError
from sim.live.terminal.verdict import judge

scenarios("live/terminal.feature")

CARDS = load_cards()
TERMINAL = ["--timeout", "1.5", "--echo-interval", "0.3", "--backoff-max", "0.2", "--seed", "3"]


@dataclass
class Live:
    tmp: Path
    procs: list[ServerProcess] = field(default_factory=list)
    host: ServerProcess | None = None
    host_port: int = 0
    terminal: ServerProcess | None = None
    told: list[dict[str, Any]] = field(default_factory=list)
    rules: list[dict[str, Any]] = field(default_factory=list)
    balances: dict[str, dict[str, Any]] = field(default_factory=dict)

    def start_host(self) -> None:
        self.host = start(["host", "--admin-port", "0", "--state", str(self.tmp / "host")], port=self.host_port, log_dir=self.tmp)
        self.procs.append(self.host)
        self.host_port = self.host.port
        for rule in self.rules:
            self.admin("add_rule", rule=rule)

    def start_terminal(self) -> None:
        self.terminal = start(["terminal", "--serve", "--host", f"127.0.0.1:{self.host_port}", "--state",
                               str(self.tmp / "term"), *TERMINAL], port=None, log_dir=self.tmp)
        self.procs.append(self.terminal)

    def admin(self, cmd: str, **params: Any) -> dict[str, Any]:
        assert self.host is not None and self.host.alive, "the host is down"
        answer = admin_call_sync(self.host.admin_port, {"cmd": cmd, **params})
        assert answer["ok"], answer
        return answer

    def ecr(self, request: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        assert self.terminal is not None
        with EcrClient(self.terminal.port, timeout=timeout) as client:
            return client.call(request)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    world = Live(tmp_path)
    try:
        yield world
    finally:
        for proc in world.procs:
            proc.stop(grace=5)


@given("a possim host process")
def host_process(live: Live) -> None:
    live.start_host()


@given(parsers.parse("a possim host process that answers {mti} after {seconds:d} seconds"))
def slow_host(live: Live, mti: str, seconds: int) -> None:
    live.rules.append({"mti": mti, "action": "delay", "delay_ms": seconds * 1000, "count_to": 1})
    live.start_host()


@given("the host is down")
def host_down(live: Live) -> None:
    assert live.host is not None
    live.host.stop()


@given("a live terminal process for that host")
def terminal_process(live: Live) -> None:
    live.start_terminal()


@when(parsers.parse('the cash register makes {count:d} sales of {amount} with card "{label}"'))
@when(parsers.parse('the cash register makes {count:d} sale of {amount} with card "{label}"'))
def sales(live: Live, count: int, amount: str, label: str) -> None:
    card = CARDS.card(label)
    if label not in live.balances and live.host is not None and live.host.alive:
        live.balances[label] = live.admin("balance", pan=card.pan)
    minor = parse_amount(amount, card.currency_info)
    for _ in range(count):
        out = live.ecr({"cmd": "sale", "card": label, "amount_minor": minor})
        assert out["ok"], out
        live.told.append(out)


@when(parsers.parse('the cash register starts a sale of {amount} with card "{label}" and the terminal loses power while it waits'))
def sale_cut(live: Live, amount: str, label: str) -> None:
    card = CARDS.card(label)
    live.balances[label] = live.admin("balance", pan=card.pan)
    minor = parse_amount(amount, card.currency_info)
    assert live.terminal is not None
    outcome: list[Any] = []

    def register() -> None:
        try:
            outcome.append(live.ecr({"cmd": "sale", "card": label, "amount_minor": minor}))
        except (EcrError, ConnectionError) as exc:
            outcome.append(exc)

    thread = threading.Thread(target=register)
    thread.start()
    # the power goes once the request is at the host (which answers only after 3 s), well before the
    # terminal's own 1.5 s timeout: a fixed pause could land before the request left or after the timeout
    deadline = time.monotonic() + 30
    while sum(live.admin("rules")["counts"].values()) < 1:
        assert time.monotonic() < deadline and thread.is_alive(), f"the sale never reached the host: {outcome}"
        time.sleep(0.01)
    live.terminal.kill()
    thread.join(10)
    assert outcome and isinstance(outcome[0], Exception), f"the sale finished before the power cut: {outcome}"


@when("the terminal loses power")
def power_cut(live: Live) -> None:
    assert live.terminal is not None
    live.terminal.kill()


@when("the terminal is started again on the same state")
def restart(live: Live) -> None:
    live.start_terminal()


@when("the host comes back")
def host_back(live: Live) -> None:
    live.start_host()


@when("the terminal has delivered everything it owes")
def drained(live: Live) -> None:
    out = live.ecr({"cmd": "drain", "timeout": 20})
    assert out["drained"], live.ecr({"cmd": "status"})


@then(parsers.parse("each sale is approved offline and stored as a {mti}"))
def approved_offline(live: Live, mti: str) -> None:
    assert live.told and all(o["outcome"] == "approved" and o["arc"] in ("Y1", "Y3") and o["stored"] == [mti]
                             for o in live.told), live.told


@then(parsers.parse("the sale is not approved and a {mti} reversal is owed for it"))
def not_approved_reversal_owed(live: Live, mti: str) -> None:
    (out,) = live.told
    assert out["outcome"] != "approved" and mti in out["stored"], out


@when("the late answer has arrived")
def late_answer(live: Live) -> None:
    deadline = time.monotonic() + 30  # it leaves the host 3 s after the sale; a busy machine may add more
    while time.monotonic() < deadline:
        if live.ecr({"cmd": "status"})["late_answers_ignored"]:
            return
        time.sleep(0.1)


@then("the terminal ignored the late answer")
def ignored(live: Live) -> None:
    assert live.ecr({"cmd": "status"})["late_answers_ignored"] >= 1


@then("the host booked each approved sale exactly once")
def booked_once(live: Live) -> None:
    rows = live.admin("booked")["booked"]
    for out in live.told:
        mine = [r for r in rows if (r["terminal_id"], r["stan"], r["transmitted"]) ==
                (out["terminal_id"], out["stan"], out["transmitted"])]
        assert len(mine) == 1 and mine[0]["amount"] == out["amount_minor"], (out, rows)


@then(parsers.parse('the funds of card "{label}" are available again'))
def funds_back(live: Live, label: str) -> None:
    after = live.admin("balance", pan=CARDS.card(label).pan)
    assert after["available"] == live.balances[label]["available"], (live.balances[label], after)


@then("the history checker finds nothing lost or duplicated")
def history_ok(live: Live) -> None:
    rows = live.admin("booked")["booked"]
    assert live.terminal is not None
    live.terminal.stop()
    verdict = judge(live.tmp / "term", rows)
    assert verdict.ok, verdict.pretty()
