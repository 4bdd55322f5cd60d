"""The virtual card through a real PC/SC stack: card ↔ vpcd bridge ↔ pcscd ↔ pyscard.

Each run starts its own pcscd in private mount and network namespaces
(:class:`sim.pcsc.pcscd.PrivatePcscd`): the host's pcscd, ``/run/pcscd`` and port
35963 are never touched. The bridge (``python -m sim.pcsc.vpcd``) and the PC/SC client
(``python -m sim.pcsc.transport session``) run inside those namespaces via nsenter,
and every process is stopped by PID in teardown.

The integration tests skip, saying why, when pcscd or vsmartcard-vpcd is missing or
namespaces cannot be created; the pure helpers at the top always run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sim.emv import tlv
from sim.emv.card import VirtualCard
from sim.emv.dol import parse_dol
from sim.emv.kernel import commands
from sim.pcsc.pcscd import PrivatePcscd, child_env, namespace_argv, read_line, stop_process, support_problem
from sim.pcsc.transport import PcscError, ReaderNotFoundError, choose_reader, follow_t0

SELECT_PPSE = commands.select(b"2PAY.SYS.DDF01")
STEP_TIMEOUT = 10.0


# -- pure helpers (no pcscd needed) ---------------------------------------------------------------


def test_reader_choice_prefers_virtual_pcd_and_accepts_a_unique_part_of_a_name() -> None:
    readers = ["ACS ACR39U ICC Reader 00 00", "Virtual PCD 00 00", "Virtual PCD 00 01"]
    assert choose_reader(readers, None) == "Virtual PCD 00 00"
    assert choose_reader(readers, "acr39u") == "ACS ACR39U ICC Reader 00 00"
    assert choose_reader(readers, "Virtual PCD 00 01") == "Virtual PCD 00 01"
    assert choose_reader(["Gemalto PC Twin Reader 00 00"], None) == "Gemalto PC Twin Reader 00 00"


@pytest.mark.parametrize(
    ("readers", "wanted", "words"),
    [
        (["Virtual PCD 00 00"], "Omnikey", ["'Omnikey'", "'Virtual PCD 00 00'"]),
        (["Virtual PCD 00 00", "Virtual PCD 00 01"], "Virtual", ["ambiguous", "'Virtual PCD 00 01'"]),
        ([], None, ["none", "pcscd running"]),
        (["Reader A 00 00", "Reader B 00 00"], None, ["no Virtual PCD", "'Reader B 00 00'"]),
    ],
)
def test_reader_errors_name_the_reader_and_the_readers_available(
    readers: list[str], wanted: str | None, words: list[str]
) -> None:
    with pytest.raises(ReaderNotFoundError) as caught:
        choose_reader(readers, wanted)
    for word in words:
        assert word in str(caught.value)


def test_follow_t0_fetches_61xx_and_resends_6cxx() -> None:
    sent: list[str] = []
    answers = {
        "00B2010C00": "6C05",
        "00B2010C05": "7003AA" + "BBCC" + "6102",
        "00C0000002": "DDEE9000",
    }

    def send(apdu: bytes) -> bytes:
        sent.append(apdu.hex().upper())
        return bytes.fromhex(answers[sent[-1]])

    assert follow_t0(send, bytes.fromhex("00B2010C00")).hex().upper() == "7003AABBCCDDEE9000"
    assert sent == ["00B2010C00", "00B2010C05", "00C0000002"]


def test_follow_t0_is_bounded() -> None:
    with pytest.raises(PcscError, match="61xx/6Cxx 4 times"):
        follow_t0(lambda apdu: b"\x61\x10", SELECT_PPSE, limit=4)


def test_transport_cli_says_clearly_when_pcscd_is_not_there(tmp_path: Any) -> None:
    env = {**child_env(), "PCSCLITE_CSOCK_NAME": str(tmp_path / "no-pcscd.comm")}
    done = subprocess.run(
        [sys.executable, "-m", "sim.pcsc.transport", "readers"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1
    answer = json.loads(done.stdout)
    assert answer["error"] == "PcscError" and "is pcscd running?" in answer["message"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="namespaces are Linux only")
def test_namespace_helper_refuses_to_run_in_the_host_namespaces() -> None:
    """The helper mounts on /run; outside its own namespaces it must stop before that."""
    existed = os.path.exists("/run/pcscd")
    done = subprocess.run(
        [sys.executable, "-m", "sim.pcsc.pcscd", "run-in-namespace", "--max-seconds", "5"],
        env=child_env(), capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1
    event = json.loads(done.stdout.splitlines()[0])
    assert event["event"] == "error" and "unshare --mount --net" in event["message"]
    assert os.path.exists("/run/pcscd") == existed


# -- the full path ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pcscd() -> Iterator[PrivatePcscd]:
    problem = support_problem()
    if problem is not None:
        pytest.skip(f"PC/SC integration needs a private pcscd: {problem}")
    ns = PrivatePcscd(max_seconds=120)
    try:
        ns.start()
    except Exception as exc:
        pytest.fail(f"private pcscd failed to start: {exc}")
    try:
        yield ns
    finally:
        ns.stop()


class Process:
    """A child in the namespaces that speaks JSON lines on stdout."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    def event(self, timeout: float = STEP_TIMEOUT) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = read_line(self.process.stdout, timeout)
        assert line, f"no answer within {timeout} s (exit status {self.process.poll()})"
        return json.loads(line)

    def ask(self, command: str, timeout: float = STEP_TIMEOUT) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        self.process.stdin.flush()
        return self.event(timeout)

    def transmit(self, apdu: bytes) -> bytes:
        answer = self.ask(f"transmit {apdu.hex()}")
        assert answer["ok"], answer
        return bytes.fromhex(answer["rapdu"])

    def stop(self) -> int | None:
        return stop_process(self.process, 5.0)


@pytest.fixture
def insert(pcscd: PrivatePcscd) -> Iterator[Any]:
    """Start a bridge with a virtual card; wait until it is connected to vpcd."""
    started: list[Process] = []

    def _insert(label: str = "healthy", *faults: dict[str, Any]) -> Process:
        args = ["--card", label, "--max-seconds", "60"]
        for fault in faults:
            args += ["--fault", json.dumps(fault)]
        bridge = Process(pcscd.python("sim.pcsc.vpcd", *args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE))
        started.append(bridge)
        assert bridge.event()["event"] == "serving"
        assert bridge.event()["event"] == "inserted"
        return bridge

    yield _insert
    for bridge in started:
        bridge.stop()


@pytest.fixture
def session(pcscd: PrivatePcscd) -> Iterator[Process]:
    """A pyscard client (PcscTransport behind a line protocol) inside the namespaces."""
    client = Process(
        pcscd.python("sim.pcsc.transport", "session", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    )
    yield client
    try:
        client.ask("quit", timeout=2)
    except (AssertionError, OSError):
        pass
    client.stop()


def emv_script(card: VirtualCard) -> list[tuple[bytes, bytes]]:
    """A kernel-like first transaction on ``card``: each C-APDU with the R-APDU it got.

    Follows the card's own answers (AID from the PPSE, PDOL, AFL, CDOL1), so the script
    is what a kernel would send; ARQC requested without CDA, so the answer is
    deterministic for a given card.
    """
    exchanges: list[tuple[bytes, bytes]] = []

    def send(apdu: bytes) -> dict[str, Any]:
        rapdu = card.execute(apdu)
        exchanges.append((apdu, rapdu))
        assert rapdu[-2:] == b"\x90\x00", (apdu.hex(), rapdu.hex())
        return tlv.decode(rapdu[:-2], flatten=True) if len(rapdu) > 2 else {}

    aid = send(SELECT_PPSE)["4F"]
    fci = send(commands.select(aid))
    pdol = parse_dol(fci.get("9F38", b""))
    gpo = send(commands.get_processing_options(bytes(sum(e.length for e in pdol))))
    afl = gpo["94"] if "94" in gpo else gpo["80"][2:]
    cdol1 = b""
    for i in range(0, len(afl), 4):
        sfi, first, last = afl[i] >> 3, afl[i + 1], afl[i + 2]
        for number in range(first, last + 1):
            cdol1 = send(commands.read_record(sfi, number)).get("8C", cdol1)
    assert cdol1, "no CDOL1 in the records"
    send(commands.generate_ac(commands.CryptogramType.ARQC, bytes(sum(e.length for e in parse_dol(cdol1)))))
    send(commands.get_data("9F36"))
    return exchanges


def test_an_emv_session_through_pcsc_returns_what_the_in_process_card_returns(insert: Any, session: Process) -> None:
    reference = VirtualCard.from_label("healthy")
    atr = reference.power_on()
    script = emv_script(reference)
    assert [apdu[1] for apdu, _ in script][:3] == [0xA4, 0xA4, 0xA8] and script[-2][0][1] == 0xAE

    insert("healthy")
    assert session.ask("wait-card 5") == {"ok": True, "present": True}
    powered = session.ask("power-on")
    assert powered == {"ok": True, "atr": atr.hex().upper(), "reader": "Virtual PCD 00 00"}
    for apdu, expected in script:
        assert session.transmit(apdu) == expected, apdu.hex().upper()

    # T=0 procedure bytes come back raw: the kernel does GET RESPONSE itself
    direct = VirtualCard.from_label("healthy")
    direct.power_on()
    no_le = SELECT_PPSE[:-1]
    first = direct.execute(no_le)
    assert first[0] == 0x61
    assert session.transmit(no_le) == first
    get_response = commands.get_response(first[1])
    assert session.transmit(get_response) == direct.execute(get_response)


def test_taking_the_card_out_is_seen_by_pyscard(insert: Any, session: Process) -> None:
    bridge = insert("healthy")
    assert session.ask("wait-card 5")["present"]
    assert session.ask("power-on")["ok"]
    assert session.transmit(SELECT_PPSE)[-2:] == b"\x90\x00"

    assert bridge.stop() == 0  # SIGTERM: the bridge closes its socket, as a pulled card does
    assert session.ask("wait-removal 5") == {"ok": True, "removed": True}
    answer = session.ask(f"transmit {SELECT_PPSE.hex()}")
    assert answer["ok"] is False and answer["error"] == "CardRemovedError"
    again = session.ask("power-on")
    assert again["error"] == "CardRemovedError" and "Virtual PCD 00 00" in again["message"]


def test_a_card_pulled_during_generate_ac_is_a_removal_at_the_terminal(insert: Any, session: Process) -> None:
    reference = VirtualCard.from_label("healthy")
    reference.power_on()
    script = emv_script(reference)
    bridge = insert("healthy", {"target": "GENERATE AC", "effect": "remove"})
    assert session.ask("wait-card 5")["present"]
    assert session.ask("power-on")["ok"]
    for apdu, expected in script:
        if apdu[1] == 0xAE:
            answer = session.ask(f"transmit {apdu.hex()}")
            assert answer["ok"] is False and answer["error"] == "CardRemovedError", answer
            break
        assert session.transmit(apdu) == expected
    assert bridge.event() == {"event": "closed", "reason": "removed"}
    assert session.ask("wait-removal 2")["removed"]


def test_a_mute_chip_is_in_the_reader_but_cannot_be_powered(insert: Any, session: Process) -> None:
    bridge = insert("chip-mute")
    assert session.ask("wait-card 5")["present"]
    answer = session.ask("power-on")
    assert answer["ok"] is False and answer["error"] == "CardMuteError"
    assert "Virtual PCD 00 00" in answer["message"]
    # Take the mute card out and wait until pcscd has seen it go: otherwise the next card can
    # be reported present while pcscd still holds the mute card's failed power-up.
    bridge.stop()
    assert session.ask("wait-removal 5")["removed"]


def test_a_chip_going_mute_mid_command_fails_the_transmit_then_recovers_on_reset(
    insert: Any, session: Process
) -> None:
    insert("healthy", {"target": "GET DATA", "effect": "mute", "trigger": "once"})
    assert session.ask("wait-card 5")["present"]
    first = session.ask("power-on")
    assert first["ok"], first
    assert session.transmit(SELECT_PPSE)[-2:] == b"\x90\x00"
    answer = session.ask(f"transmit {commands.get_data('9F36').hex()}")
    assert answer["ok"] is False and answer["error"] == "CardMuteError", answer
    assert session.ask("power-on")["ok"]  # a reset brings the chip back, as in-process
    assert session.transmit(SELECT_PPSE)[-2:] == b"\x90\x00"


def test_a_client_outside_the_namespace_reaches_the_private_pcscd(pcscd: PrivatePcscd) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sim.pcsc.transport", "readers"],
        env=pcscd.client_env(), capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Virtual PCD 00 00" in json.loads(done.stdout)


def test_one_shot_entry_point_runs_pcscd_a_card_and_a_command() -> None:
    problem = support_problem()
    if problem is not None:
        pytest.skip(f"PC/SC integration needs a private pcscd: {problem}")
    argv = namespace_argv([
        sys.executable, "-m", "sim.pcsc.pcscd", "run-in-namespace", "--card", "healthy", "--max-seconds", "30",
        "--", sys.executable, "-m", "sim.pcsc.transport", "send", SELECT_PPSE.hex(),
    ])
    started = time.monotonic()
    process = subprocess.Popen(argv, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL)
    try:
        out, err = process.communicate(timeout=30)
    finally:
        stop_process(process)
    assert process.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert lines[0]["event"] == "ready"
    assert lines[-1]["reader"] == "Virtual PCD 00 00" and lines[-1]["rapdus"][0].endswith("9000")
    assert time.monotonic() - started < 30


def test_a_full_transaction_through_pcscd_with_possim_terminal() -> None:
    """The kernel on the far side of PC/SC: ``possim terminal --reader`` against the bridged card."""
    problem = support_problem()
    if problem is not None:
        pytest.skip(f"PC/SC integration needs a private pcscd: {problem}")
    # The helper starts the card's bridge and the command together, and the terminal powers the card
    # once: like a terminal showing PRESENT CARD, it waits (--wait-card) until pcscd sees the card
    # (the bridge's start and pcscd's polling take longer than the terminal's own start on a busy machine).
    terminal = [sys.executable, "-m", "sim.cli", "terminal", "--reader", "Virtual PCD 00 00", "--card",
                "healthy", "--amount", "25.00", "--json", "--seed", "3", "--wait-card", "45"]
    argv = namespace_argv([
        sys.executable, "-m", "sim.pcsc.pcscd", "run-in-namespace", "--card", "healthy", "--max-seconds", "90",
        "--", *terminal,
    ])
    process = subprocess.Popen(argv, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL)
    try:
        out, err = process.communicate(timeout=90)
    finally:
        stop_process(process)
    assert process.returncode == 0, err.decode()
    text = out.decode()
    result = json.loads(text[text.index("{\n"):text.rindex("}") + 1])
    assert (result["outcome"], result["arc"], result["cryptogram"], result["entry_mode"]) == ("approved", "00", "TC", "051")
    assert result["messages"] == ["0200"]
