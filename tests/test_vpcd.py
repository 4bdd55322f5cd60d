"""vpcd protocol: framing, the bridge state machine, and the socket driver over loopback.

The bridge sits between pcscd's vpcd driver and a card. vpcd hangs on an empty
answer and reads a closed socket as removal, so the properties that matter are: any
input (any chunking, any bytes) is handled without raising, every answer frame is
non-empty, and the card's own failures become either ``6F00`` or a close.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.emv.errors import CardMuteError, CardNotPoweredError, CardRemovedError
from sim.pcsc.vpcd import (
    CTRL_ATR,
    CTRL_OFF,
    CTRL_ON,
    CTRL_RESET,
    MAX_ATR_LENGTH,
    MUTE_ATR,
    NO_PRECISE_DIAGNOSIS,
    FrameDecoder,
    Output,
    VpcdBridge,
    VpcdConnectionError,
    encode_frame,
    serve_card,
)

ATR = bytes.fromhex("3B600000")
SELECT_PPSE = bytes.fromhex("00A404000E325041592E5359532E444446303100")


class FakeCard:
    """A card that records what the bridge asks of it and answers ``data + 9000``."""

    def __init__(self, atr: bytes = ATR, answer: Callable[[bytes], bytes] | None = None) -> None:
        self.atr = atr
        self.answer = answer or (lambda apdu: apdu[:2] + b"\x90\x00")
        self.power_ons = 0
        self.apdus: list[bytes] = []
        self.last_delay_ms = 0

    def power_on(self) -> bytes:
        self.power_ons += 1
        return self.atr

    def execute(self, apdu: bytes) -> bytes:
        self.apdus.append(apdu)
        return self.answer(apdu)


def ctrl(code: int) -> bytes:
    return encode_frame(bytes([code]))


def frames(data: bytes) -> list[bytes]:
    decoder = FrameDecoder()
    out = decoder.feed(data)
    assert decoder.pending == 0
    return out


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:])]


# -- framing ---------------------------------------------------------------------------------


def test_encode_frame_is_big_endian_length_then_payload() -> None:
    assert encode_frame(b"\x04") == b"\x00\x01\x04"
    assert encode_frame(bytes(300))[:2] == b"\x01\x2c"


@pytest.mark.parametrize("payload", [b"", bytes(0x10000)])
def test_encode_frame_refuses_empty_and_oversized(payload: bytes) -> None:
    with pytest.raises(ValueError):
        encode_frame(payload)


@settings(max_examples=300, deadline=None)
@given(
    bodies=st.lists(st.binary(min_size=0, max_size=300), max_size=12),
    cuts=st.lists(st.integers(0, 10_000), max_size=30),
)
def test_any_frames_under_any_chunking(bodies: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(len(b).to_bytes(2, "big") + b for b in bodies)
    decoder = FrameDecoder()
    got: list[bytes] = []
    for chunk in chunked(stream, cuts):
        got.extend(decoder.feed(chunk))
    assert got == bodies
    assert decoder.pending == 0


def test_a_partial_frame_waits_for_the_rest() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00\x05\x00\xa4") == []
    assert decoder.pending == 4
    assert decoder.feed(b"\x04\x00\x00\x00\x01") == [bytes.fromhex("00A4040000")]
    assert decoder.pending == 2


# -- control messages ----------------------------------------------------------------------


def test_power_on_then_atr_request_answers_the_atr() -> None:
    card = FakeCard()
    bridge = VpcdBridge(card)
    assert bridge.receive_data(ctrl(CTRL_ON)) == Output()
    assert card.power_ons == 1 and bridge.powered
    assert frames(bridge.receive_data(ctrl(CTRL_ATR)).data) == [ATR]


def test_presence_polls_do_not_reset_the_card() -> None:
    """pcscd asks for the ATR every few hundred ms; powering on each time would reset the card."""
    card = FakeCard()
    bridge = VpcdBridge(card)
    for _ in range(10):
        assert frames(bridge.receive_data(ctrl(CTRL_ATR)).data) == [ATR]
    assert card.power_ons == 1


def test_reset_powers_the_card_again_and_off_unpowers_it() -> None:
    card = FakeCard()
    bridge = VpcdBridge(card)
    bridge.receive_data(ctrl(CTRL_ON) + ctrl(CTRL_RESET))
    assert card.power_ons == 2
    assert bridge.receive_data(ctrl(CTRL_OFF)) == Output()
    assert not bridge.powered
    # the ATR is still known while the card sits unpowered in the reader
    assert frames(bridge.receive_data(ctrl(CTRL_ATR)).data) == [ATR]
    assert card.power_ons == 2


@pytest.mark.parametrize("message", [b"", b"\x03", b"\x7f", b"\xff"])
def test_unknown_control_and_empty_messages_are_ignored(message: bytes) -> None:
    card = FakeCard()
    bridge = VpcdBridge(card)
    assert bridge.receive_data(len(message).to_bytes(2, "big") + message) == Output()
    assert card.power_ons == 0 and not bridge.closed


# -- APDUs ------------------------------------------------------------------------------------


def test_apdu_is_answered_with_the_cards_rapdu() -> None:
    card = FakeCard()
    bridge = VpcdBridge(card)
    out = bridge.receive_data(ctrl(CTRL_ON) + encode_frame(SELECT_PPSE))
    assert frames(out.data) == [SELECT_PPSE[:2] + b"\x90\x00"]
    assert card.apdus == [SELECT_PPSE]


@pytest.mark.parametrize("before", [b"", ctrl(CTRL_ON) + ctrl(CTRL_OFF)])
def test_apdu_to_an_unpowered_card_gets_6f00_not_silence(before: bytes) -> None:
    card = FakeCard()
    bridge = VpcdBridge(card)
    bridge.receive_data(before)
    assert frames(bridge.receive_data(encode_frame(SELECT_PPSE)).data) == [NO_PRECISE_DIAGNOSIS]
    assert card.apdus == []


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (b"", NO_PRECISE_DIAGNOSIS),
        (b"\x90", NO_PRECISE_DIAGNOSIS),
        (bytes(0x10000), NO_PRECISE_DIAGNOSIS),
        (b"\x6a\x82", b"\x6a\x82"),
    ],
)
def test_a_card_answer_without_status_word_becomes_6f00(answer: bytes, expected: bytes) -> None:
    bridge = VpcdBridge(FakeCard(answer=lambda apdu: answer))
    out = bridge.receive_data(ctrl(CTRL_ON) + encode_frame(SELECT_PPSE))
    assert frames(out.data) == [expected]


@pytest.mark.parametrize("error", [CardNotPoweredError("x"), RuntimeError("bug"), ValueError("bad")])
def test_other_card_failures_become_6f00(error: Exception) -> None:
    def answer(apdu: bytes) -> bytes:
        raise error

    bridge = VpcdBridge(FakeCard(answer=answer))
    out = bridge.receive_data(ctrl(CTRL_ON) + encode_frame(SELECT_PPSE))
    assert frames(out.data) == [NO_PRECISE_DIAGNOSIS] and not out.close


def test_removal_closes_the_connection_without_an_answer() -> None:
    def answer(apdu: bytes) -> bytes:
        raise CardRemovedError("out")

    bridge = VpcdBridge(FakeCard(answer=answer))
    out = bridge.receive_data(ctrl(CTRL_ON) + encode_frame(SELECT_PPSE) + ctrl(CTRL_ATR))
    assert out == Output(b"", True, "removed")
    assert bridge.closed and bridge.close_reason == "removed"
    # nothing more is said on a closed connection, whatever arrives
    assert bridge.receive_data(ctrl(CTRL_ATR)) == Output(close=True, reason="removed")
    assert bridge.remove().reason == "removed"


def test_a_chip_going_mute_mid_command_resets_the_connection() -> None:
    """A reset (not a close) makes vpcd's transmit fail; the card itself stays in the reader."""

    def answer(apdu: bytes) -> bytes:
        raise CardMuteError("silent")

    bridge = VpcdBridge(FakeCard(answer=answer))
    out = bridge.receive_data(ctrl(CTRL_ON) + encode_frame(SELECT_PPSE))
    assert out == Output(b"", True, "mute", abort=True)


@pytest.mark.parametrize(
    "power_on",
    [CardMuteError("no ATR"), RuntimeError("bug"), b"", bytes(MAX_ATR_LENGTH + 1)],
)
def test_a_chip_without_a_usable_atr_stays_in_the_reader_showing_the_mute_atr(power_on: Any) -> None:
    class Card(FakeCard):
        def power_on(self) -> bytes:
            self.power_ons += 1
            if isinstance(power_on, Exception):
                raise power_on
            return power_on

    card = Card()
    bridge = VpcdBridge(card)
    assert frames(bridge.receive_data(ctrl(CTRL_ATR)).data) == [MUTE_ATR]
    assert bridge.mute and not bridge.powered and not bridge.closed
    # polls do not retry; a power-on or reset from the reader does
    assert frames(bridge.receive_data(ctrl(CTRL_ATR)).data) == [MUTE_ATR]
    assert card.power_ons == 1
    assert bridge.receive_data(ctrl(CTRL_RESET) + encode_frame(SELECT_PPSE)).data == encode_frame(NO_PRECISE_DIAGNOSIS)
    assert card.power_ons == 2 and card.apdus == []


def test_a_chip_that_comes_back_after_a_reset_is_served_again() -> None:
    outcomes = iter([CardMuteError("no ATR"), ATR])

    class Card(FakeCard):
        def power_on(self) -> bytes:
            outcome = next(outcomes)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

    bridge = VpcdBridge(Card())
    assert frames(bridge.receive_data(ctrl(CTRL_ON) + ctrl(CTRL_ATR)).data) == [MUTE_ATR]
    assert frames(bridge.receive_data(ctrl(CTRL_RESET) + ctrl(CTRL_ATR)).data) == [ATR]
    assert bridge.powered and not bridge.mute


def test_a_card_removed_at_power_on_leaves_the_reader() -> None:
    class Card(FakeCard):
        def power_on(self) -> bytes:
            raise CardRemovedError("pulled")

    out = VpcdBridge(Card()).receive_data(ctrl(CTRL_ATR))
    assert out == Output(close=True, reason="removed")


def test_remove_closes_with_reason_stopped() -> None:
    bridge = VpcdBridge(FakeCard())
    assert bridge.remove() == Output(close=True, reason="stopped")
    assert bridge.receive_data(ctrl(CTRL_ATR)).data == b""


def test_card_delay_is_passed_to_the_driver() -> None:
    card = FakeCard()
    bridge = VpcdBridge(card)
    bridge.receive_data(ctrl(CTRL_ON))
    card.last_delay_ms = 250
    assert bridge.receive_data(encode_frame(SELECT_PPSE)).delay == pytest.approx(0.25)


# -- properties ----------------------------------------------------------------------------------

controls = st.sampled_from([CTRL_OFF, CTRL_ON, CTRL_RESET, CTRL_ATR]).map(lambda c: bytes([c]))
apdus = st.binary(min_size=2, max_size=261)
messages = st.lists(st.one_of(controls, apdus), max_size=20)


def _answers(apdu: bytes) -> bytes:
    return bytes(reversed(apdu))[:5] + b"\x90\x00"


@settings(max_examples=200, deadline=None)
@given(msgs=messages, cuts=st.lists(st.integers(0, 10_000), max_size=40))
def test_chunking_never_changes_what_the_bridge_says(msgs: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(m) for m in msgs)
    whole = VpcdBridge(FakeCard(answer=_answers)).receive_data(stream).data
    bridge = VpcdBridge(FakeCard(answer=_answers))
    pieces = b"".join(bridge.receive_data(chunk).data for chunk in chunked(stream, cuts))
    assert pieces == whole
    assert all(frames(whole))


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.binary(max_size=400), max_size=20))
def test_random_bytes_never_crash_the_bridge(chunks: list[bytes]) -> None:
    bridge = VpcdBridge(FakeCard())
    for chunk in chunks:
        out = bridge.receive_data(chunk)
        assert isinstance(out, Output)
        assert all(len(f) >= 1 for f in frames(out.data))


failures = st.sampled_from(
    [
        b"", b"\x90", b"\x61\x10", b"\x6f\x00", b"\x90\x00",
        CardRemovedError("out"), CardMuteError("mute"), CardNotPoweredError("off"), RuntimeError("bug"),
    ]
)


@settings(max_examples=200, deadline=None)
@given(msgs=messages, behaviour=st.lists(failures, min_size=1, max_size=10))
def test_whatever_the_card_does_the_bridge_never_sends_an_empty_answer(
    msgs: list[bytes], behaviour: list[Any]
) -> None:
    script = iter(behaviour * 30)

    def answer(apdu: bytes) -> bytes:
        step = next(script)
        if isinstance(step, Exception):
            raise step
        return step

    bridge = VpcdBridge(FakeCard(answer=answer))
    for msg in msgs:
        out = bridge.receive_data(encode_frame(msg))
        for frame in frames(out.data):
            assert frame in (ATR, MUTE_ATR) or len(frame) >= 2
        if out.close:
            assert out.reason in ("removed", "mute") and bridge.closed
            assert out.abort == (out.reason == "mute")
            assert bridge.receive_data(encode_frame(SELECT_PPSE)).data == b""
            break


def test_the_real_virtual_card_answers_the_same_through_the_bridge() -> None:
    card_module = pytest.importorskip("sim.emv.card")
    direct = card_module.VirtualCard.from_label("healthy")
    bridged = card_module.VirtualCard.from_label("healthy")
    bridge = VpcdBridge(bridged)
    atr = frames(bridge.receive_data(ctrl(CTRL_ATR) + ctrl(CTRL_ON) + ctrl(CTRL_ATR)).data)
    assert atr == [direct.power_on()] * 2
    for apdu in (SELECT_PPSE, SELECT_PPSE[:-1], bytes.fromhex("00C0000000"), bytes.fromhex("00B2010C00")):
        assert frames(bridge.receive_data(encode_frame(apdu)).data) == [direct.execute(apdu)]


# -- socket driver over loopback -----------------------------------------------------------------


class FakeVpcd:
    """The reader side of vpcd on an ephemeral loopback port, one connection at a time."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(5)
        self.port = self.server.getsockname()[1]
        self.conn: socket.socket | None = None
        self.decoder = FrameDecoder()

    def accept(self) -> None:
        self.conn, _ = self.server.accept()
        self.conn.settimeout(5)
        self.decoder = FrameDecoder()

    def ask(self, message: bytes, answer: bool = True) -> bytes | None:
        assert self.conn is not None
        self.conn.sendall(encode_frame(message))
        if not answer:
            return None
        return self.read_frame()

    def read_frame(self) -> bytes | None:
        """The next frame, or ``None`` if the card side closed the connection."""
        assert self.conn is not None
        while True:
            got = self.decoder.feed(b"")
            if got:
                return got[0]
            data = self.conn.recv(4096)
            if not data:
                return None
            got = self.decoder.feed(data)
            if got:
                return got[0]

    def drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def close(self) -> None:
        self.drop()
        self.server.close()


@contextmanager
def serving(card: Any, vpcd: FakeVpcd, **kw: Any) -> Iterator[tuple[threading.Event, dict[str, Any]]]:
    stop = threading.Event()
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["reason"] = serve_card(card, "127.0.0.1", vpcd.port, stop, **kw)
        except Exception as exc:  # surfaced to the test below
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield stop, result
    finally:
        stop.set()
        thread.join(10)
        vpcd.close()
        assert not thread.is_alive()


def test_driver_serves_a_session_and_stop_reads_as_removal() -> None:
    vpcd = FakeVpcd()
    with serving(FakeCard(), vpcd) as (stop, result):
        vpcd.accept()
        assert vpcd.ask(bytes([CTRL_ATR])) == ATR
        vpcd.ask(bytes([CTRL_ON]), answer=False)
        assert vpcd.ask(SELECT_PPSE) == SELECT_PPSE[:2] + b"\x90\x00"
        stop.set()
        assert vpcd.read_frame() is None  # closed: the card left
    assert result == {"reason": "stopped"}


def test_driver_reinserts_when_vpcd_drops_the_connection() -> None:
    vpcd = FakeVpcd()
    inserted: list[float] = []
    with serving(FakeCard(), vpcd, on_connect=lambda: inserted.append(time.monotonic())) as (stop, result):
        vpcd.accept()
        assert vpcd.ask(bytes([CTRL_ATR])) == ATR
        vpcd.drop()
        vpcd.accept()
        assert vpcd.ask(bytes([CTRL_ATR])) == ATR
    assert len(inserted) == 2 and result == {"reason": "stopped"}


def test_driver_returns_when_the_card_is_removed() -> None:
    def answer(apdu: bytes) -> bytes:
        raise CardRemovedError("pulled out")

    vpcd = FakeVpcd()
    with serving(FakeCard(answer=answer), vpcd) as (stop, result):
        vpcd.accept()
        vpcd.ask(bytes([CTRL_ON]), answer=False)
        assert vpcd.ask(SELECT_PPSE) is None
        deadline = time.monotonic() + 5
        while "reason" not in result and time.monotonic() < deadline:
            time.sleep(0.01)
        assert result == {"reason": "removed"}


def test_driver_reinserts_a_removed_card_when_asked() -> None:
    calls = iter([CardRemovedError("pulled out")])

    def answer(apdu: bytes) -> bytes:
        for error in calls:
            raise error
        return b"\x90\x00"

    vpcd = FakeVpcd()
    with serving(FakeCard(answer=answer), vpcd, reinsert_after=0.05) as (stop, result):
        vpcd.accept()
        vpcd.ask(bytes([CTRL_ON]), answer=False)
        assert vpcd.ask(SELECT_PPSE) is None
        vpcd.drop()
        vpcd.accept()
        vpcd.ask(bytes([CTRL_ON]), answer=False)
        assert vpcd.ask(SELECT_PPSE) == b"\x90\x00"
    assert result == {"reason": "stopped"}


def test_driver_waits_the_cards_delay_before_answering() -> None:
    card = FakeCard()
    vpcd = FakeVpcd()
    with serving(card, vpcd):
        vpcd.accept()
        vpcd.ask(bytes([CTRL_ON]), answer=False)
        card.last_delay_ms = 300
        started = time.monotonic()
        assert vpcd.ask(SELECT_PPSE) == SELECT_PPSE[:2] + b"\x90\x00"
        assert time.monotonic() - started >= 0.28


def test_driver_gives_up_after_bounded_connect_attempts() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]  # nothing listens there once closed
    started = time.monotonic()
    with pytest.raises(VpcdConnectionError, match=f"127.0.0.1:{port} after 5 attempts"):
        serve_card(FakeCard(), "127.0.0.1", port, connect_attempts=5, retry_delay=0.01)
    assert time.monotonic() - started < 5


def test_driver_stops_by_itself_after_max_seconds() -> None:
    vpcd = FakeVpcd()
    try:
        vpcd_thread_result: dict[str, Any] = {}
        started = time.monotonic()
        thread = threading.Thread(
            target=lambda: vpcd_thread_result.update(
                reason=serve_card(FakeCard(), "127.0.0.1", vpcd.port, max_seconds=0.3, poll_interval=0.05)
            ),
            daemon=True,
        )
        thread.start()
        vpcd.accept()
        assert vpcd.read_frame() is None
        thread.join(5)
        assert vpcd_thread_result == {"reason": "stopped"}
        assert time.monotonic() - started < 3
    finally:
        vpcd.close()


def test_driver_gives_up_when_vpcd_keeps_dropping_the_card() -> None:
    vpcd = FakeVpcd()
    with serving(FakeCard(), vpcd, max_reconnects=2) as (stop, result):
        for _ in range(3):
            vpcd.accept()
            vpcd.drop()
        deadline = time.monotonic() + 5
        while not result and time.monotonic() < deadline:
            time.sleep(0.01)
        assert isinstance(result.get("error"), VpcdConnectionError)


def test_driver_resets_the_connection_for_a_mute_chip_and_reconnects() -> None:
    calls = iter([CardMuteError("silent")])

    def answer(apdu: bytes) -> bytes:
        for error in calls:
            raise error
        return b"\x90\x00"

    vpcd = FakeVpcd()
    with serving(FakeCard(answer=answer), vpcd) as (stop, result):
        vpcd.accept()
        vpcd.ask(bytes([CTRL_ON]), answer=False)
        with pytest.raises(ConnectionResetError):
            vpcd.ask(SELECT_PPSE)
        vpcd.drop()
        vpcd.accept()  # back at once, without reinsert_after: the card never left
        vpcd.ask(bytes([CTRL_ON]), answer=False)
        assert vpcd.ask(SELECT_PPSE) == b"\x90\x00"
    assert result == {"reason": "stopped"}
