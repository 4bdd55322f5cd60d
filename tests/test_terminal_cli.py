"""``possim terminal`` as a user runs it: in-process host, host down, TCP host, bad arguments."""

from __future__ import annotations

import json
import socket
import threading
from datetime import datetime

import pytest
from typer.testing import CliRunner

from sim import cli
from sim.core.host import Host
from sim.iso8583.framing import Framing


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    if not cli.app.registered_groups:
        cli._register()
    return CliRunner()


def _run(runner: CliRunner, *args: str) -> dict:
    result = runner.invoke(cli.app, ["terminal", *args, "--json", "--seed", "7"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_online_chip_approval_in_process(runner: CliRunner) -> None:
    out = _run(runner, "--card", "healthy", "--amount", "25.00")
    assert (out["outcome"], out["arc"], out["cryptogram"], out["entry_mode"]) == ("approved", "00", "TC", "051")
    assert out["messages"] == ["0200"] and out["pending"] == []
    assert (out["amount_minor"], out["currency"]) == (2500, "978")
    assert out["masked_pan"] == "476173******0010"


def test_decline_for_funds_and_exponents(runner: CliRunner) -> None:
    assert _run(runner, "--card", "insufficient-funds", "--amount", "25.00")["arc"] == "51"
    jpy = _run(runner, "--card", "jpy-healthy", "--amount", "1000")
    assert (jpy["amount_minor"], jpy["currency"], jpy["arc"]) == (1000, "392", "00")
    kwd = _run(runner, "--card", "kwd-healthy", "--amount", "1.234")
    assert (kwd["amount_minor"], kwd["currency"]) == (1234, "414")


def test_host_down_decides_offline(runner: CliRunner) -> None:
    out = _run(runner, "--card", "online-only-iac", "--amount", "80.00", "--host-down")
    assert out["arc"] in ("Y3", "Z3")
    assert out["messages"] == []
    assert (out["arc"] == "Y3") == (out["outcome"] == "approved")


def test_qr_wallet_is_online_only_and_needs_a_scanner(runner: CliRunner) -> None:
    online = _run(runner, "--card", "healthy", "--amount", "12.34", "--profile", "mobile-3g", "--method", "qr")
    assert (online["outcome"], online["arc"], online["entry_mode"][:2], online["messages"]) == ("approved", "00", "03", ["0200"])
    down = _run(runner, "--card", "healthy", "--amount", "12.34", "--profile", "mobile-3g", "--method", "qr", "--host-down")
    assert (down["outcome"], down["messages"], down["pending"]) == ("declined", [], [])
    assert "online only" in down["reason"]
    no_scanner = _run(runner, "--card", "healthy", "--amount", "12.34", "--method", "qr")
    assert no_scanner["outcome"] == "declined" and "scanner" in no_scanner["reason"]


def test_receipt_says_whether_it_printed(runner: CliRunner) -> None:
    assert _run(runner, "--card", "healthy", "--amount", "5.00")["receipt"] == "printed"
    out = _run(runner, "--card", "healthy", "--amount", "5.00", "--paper", "0")
    assert (out["outcome"], out["receipt"]) == ("approved", "not printed: out of paper")


def test_over_tcp_to_a_host(runner: CliRunner) -> None:
    host = Host()
    framing = Framing()
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(10)
            decoder = framing.decoder()
            while chunk := conn.recv(4096):
                for frame in decoder.feed(chunk):
                    answer = host.receive(frame.payload, datetime.now())
                    if answer is not None:
                        conn.sendall(framing.frame(answer))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        out = _run(runner, "--card", "healthy", "--amount", "12.34", "--host", f"127.0.0.1:{port}")
    finally:
        thread.join(timeout=10)
        server.close()
    assert (out["outcome"], out["arc"]) == ("approved", "00")
    assert host.balance(host.cards.card("healthy").pan) == host.cards.card("healthy").balance - 1234


def test_unreachable_tcp_host_is_not_a_crash(runner: CliRunner) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    out = _run(runner, "--card", "online-only-iac", "--amount", "80.00", "--host", f"127.0.0.1:{port}")
    assert out["arc"] in ("Y3", "Z3")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--card", "nope", "--amount", "1.00"], "healthy"),
        (["--card", "healthy", "--amount", "1.001"], "decimals"),
        (["--card", "healthy", "--amount", "1.00", "--currency", "XYZ"], "ISO 4217"),
        (["--card", "healthy", "--amount", "1.00", "--profile", "toaster"], "countertop-ethernet"),
        (["--card", "healthy", "--amount", "1.00", "--host", "nowhere"], "HOST:PORT"),
        (["--card", "healthy", "--amount", "1.00", "--type", "loan"], "refund"),
        (["--card", "healthy", "--amount", "1.00", "--method", "cash"], "qr"),
        (["--card", "healthy", "--amount", "1.00", "--paper", "-1"], "--paper"),
    ],
)
def test_bad_arguments_name_what_is_allowed(runner: CliRunner, args: list[str], needle: str) -> None:
    result = runner.invoke(cli.app, ["terminal", *args])
    assert result.exit_code == 2
    assert needle in result.output


class _SlowCardReader:
    """A PC/SC transport stand-in: the reader is empty until ``arrives`` waits have passed,
    then holds a virtual card that answers the kernel's APDUs."""

    waits: list[float] = []
    arrives = True

    def __init__(self, reader: str) -> None:
        from sim.core.cards import load_cards
        from sim.emv.card import VirtualCard

        self.card = VirtualCard.from_label("healthy", load_cards())
        self.closed = False

    def card_present(self) -> bool:
        return False

    def wait_for_card(self, timeout: float) -> bool:
        type(self).waits.append(timeout)
        return type(self).arrives

    def close(self) -> None:
        self.closed = True

    def __getattr__(self, name: str):
        return getattr(self.card, name)


@pytest.fixture()
def slow_reader(monkeypatch: pytest.MonkeyPatch) -> type[_SlowCardReader]:
    from sim.pcsc import transport

    monkeypatch.setattr(transport, "list_readers", lambda: ["Virtual PCD 00 00"])
    monkeypatch.setattr(transport, "PcscTransport", _SlowCardReader)
    _SlowCardReader.waits = []
    _SlowCardReader.arrives = True
    return _SlowCardReader


def test_with_a_reader_the_terminal_waits_for_a_card_then_pays(runner: CliRunner, slow_reader) -> None:
    result = runner.invoke(cli.app, ["terminal", "--reader", "Virtual PCD", "--card", "healthy", "--amount", "25.00",
                                     "--wait-card", "12", "--json", "--seed", "7"])
    assert result.exit_code == 0, result.output
    assert slow_reader.waits == [12.0]
    assert "present a card to Virtual PCD (waiting up to 12 s)" in result.output
    assert json.loads(result.output[result.output.index("{"):])["arc"] == "00"


@pytest.mark.parametrize("wait", ["3", "0"])
def test_no_card_presented_in_time_is_a_clear_failure(runner: CliRunner, slow_reader, wait: str) -> None:
    slow_reader.arrives = False
    result = runner.invoke(cli.app, ["terminal", "--reader", "Virtual PCD", "--card", "healthy", "--amount", "1.00",
                                     "--wait-card", wait])
    assert result.exit_code == 1
    assert f"no card was presented to Virtual PCD in {wait} s (--wait-card)" in result.output
    assert slow_reader.waits == ([3.0] if wait == "3" else [])
