"""The live host's heap: serving makes no reference cycles, so freezing survivors loses nothing.

:class:`sim.gc_tuning.HeapKeeper` takes each second's survivors out of the cyclic
collector's sight. That is only safe if what the host keeps and drops is freed by
reference counting alone: these tests serve every kind of traffic and bad input with
the collector off, then ask it what it would have had to find.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import time
import weakref
from collections import Counter

import pytest

from sim.gc_tuning import HeapKeeper
from sim.iso8583.dialect import DEFAULT
from sim.iso8583.framing import Framing
from sim.live.host_server import HostServer, HostSettings, utc_now
from sim.live.loop import loop_factory
from sim.live.sales import chip_sale, echo, write_load_cards

FRAMING = Framing()


def _exchange(port: int, data: bytes, *, answers: int = 1, wait: float = 2.0) -> tuple[list[dict[str, str]], bool]:
    """Send ``data`` on a fresh connection; the answers read (up to ``answers``) and whether the host closed it."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        decoder = FRAMING.decoder()
        got: list[dict[str, str]] = []
        deadline = time.monotonic() + wait
        while len(got) < answers and time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                return got, True
            if not chunk:
                return got, True
            got += [DEFAULT.decode(f.payload) for f in decoder.feed(chunk)]
        return got, False


def _traffic(port: int, terminal_id: str) -> dict[str, object]:
    """Every path of the host once or more, from blocking sockets (no client objects in the host's heap)."""
    now = utc_now()
    sales = b"".join(
        FRAMING.frame(chip_sale(label, 100 + i, stan=i + 1, when=now, terminal_id=terminal_id).encode())
        for i, label in enumerate(["healthy", "mc-healthy", "insufficient-funds", "healthy"] * 5)
    )
    seen: dict[str, object] = {}
    answers, _ = _exchange(port, sales, answers=20)
    seen["sales"] = Counter(a["39"] for a in answers)
    answers, _ = _exchange(port, FRAMING.frame(echo(900, now).encode()))
    seen["echo"] = [a["39"] for a in answers]
    bad = {k: v for k, v in DEFAULT.decode(chip_sale("healthy", 100, stan=901, when=now).encode()).items()
           if k not in ("p", "1")}
    bad["4"] = "00000000012X"  # read by the codec, refused by the catalogue: answered 30
    answers, _ = _exchange(port, FRAMING.frame(DEFAULT.encode(bad)))
    seen["format_error"] = [a["39"] for a in answers]
    cut = chip_sale("healthy", 100, stan=902, when=now, terminal_id=terminal_id).encode()[:120]
    answers, _ = _exchange(port, FRAMING.frame(cut))  # key fields read, the rest missing: the driver's 30
    seen["truncated"] = [a["39"] for a in answers]
    seen["undecodable_closed"] = _exchange(port, FRAMING.frame(b"\xff" * 40))[1]
    seen["framing_closed"] = _exchange(port, (60000).to_bytes(2, "big") + b"0200")[1]
    seen["partial_closed"] = _exchange(port, b"\x00\x40" + b"0200", answers=1, wait=3.0)[1]
    return seen


def test_serving_every_path_makes_no_reference_cycles(tmp_path):
    if loop_factory() is None:
        pytest.skip("uvloop is not installed: the stdlib loop's transports make cycles of their own")

    async def main() -> tuple[dict[str, object], int, Counter[str], dict[str, int]]:
        srv = HostServer(HostSettings(port=0, cards=write_load_cards(tmp_path / "cards.toml"),
                                      journal=tmp_path / "journal.jsonl", frame_timeout=0.4))
        await srv.start()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, _traffic, srv.port, "HEAP0001")  # warm-up: caches filled, thread started
        gc.collect()
        gc.disable()
        try:
            seen = await loop.run_in_executor(None, _traffic, srv.port, "HEAP0002")
            await asyncio.sleep(0.1)
            gc.set_debug(gc.DEBUG_SAVEALL)
            found = gc.collect()
            kinds = Counter(type(o).__name__ for o in gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
        counters = dict(srv.counters)
        srv.request_stop()
        await srv.shutdown()
        return seen, found, kinds, counters

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        seen, found, kinds, counters = runner.run(main())
    # every path really ran
    assert seen["sales"] == Counter({"00": 15, "51": 5})
    assert seen["echo"] == ["00"] and seen["format_error"] == seen["truncated"] == ["30"]
    assert seen["undecodable_closed"] and seen["framing_closed"] and seen["partial_closed"]
    assert counters["format_errors"] == 2 and counters["undecodable_closed"] == 2, counters
    assert counters["timeouts_closed"] == 2
    # and none of it left garbage only the cyclic collector could free
    assert found == 0, f"reference cycles left by serving: {kinds.most_common(10)}"


def test_a_failed_stream_raises_again_without_holding_its_traceback():
    decoder = Framing().decoder()
    for _ in range(2):
        with pytest.raises(Exception, match="out of range"):
            decoder.feed((60000).to_bytes(2, "big") + b"0200")
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            try:
                decoder.feed(b"\x00\x05")
            except Exception:  # noqa: BLE001 - the FramingError under test
                pass
        del decoder
        assert gc.collect() == 0
    finally:
        gc.enable()


class _Node:
    me: object


def test_keeper_freezes_survivors_and_runs_a_full_collection_when_due():
    keeper = HeapKeeper(100.0, full_every_s=60.0)
    before = gc.get_freeze_count()
    try:
        survivors = [[i] for i in range(1_000)]  # tracked containers alive across the tick
        assert keeper.tick(101.0) == "freeze"
        assert gc.get_freeze_count() >= before + len(survivors)
        node = _Node()
        node.me = node
        gone = weakref.ref(node)
        gc.freeze()  # a cycle frozen alive, then dropped: only the full collection frees it
        del node
        assert keeper.tick(159.9) == "freeze"
        assert gone() is not None
        assert keeper.tick(160.0) == "full"
        assert gone() is None
        assert gc.get_freeze_count() > 0 and keeper.freezes == 2 and keeper.full_collections == 1
        assert keeper.tick(161.0) == "freeze"  # the next full one is 60 s on
    finally:
        gc.unfreeze()


def test_keeper_rejects_a_negative_interval():
    with pytest.raises(ValueError, match="full_every_s -1 must be >= 0"):
        HeapKeeper(0.0, full_every_s=-1)
    assert HeapKeeper(0.0, full_every_s=0).tick(10**9) == "freeze"
    gc.unfreeze()
