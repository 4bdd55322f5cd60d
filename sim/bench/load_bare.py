"""The baseline of ``possim bench load``: a bare gevent client loop, as its own process.

``python -m sim.bench.load_bare --port P [--connections C] [--in-flight K]
[--duration S] [--warmup S] [--pool N] [--batched | --codec]`` drives an echo server with C connections
and K requests in flight on each, closed loop, and prints one JSON line
``{"completed": n, "seconds": s, "rate": r, "cpu_seconds": c, "mismatched": m}``
counted over ``duration`` after ``warmup`` (``cpu_seconds``: this process's CPU in
that window; ``mismatched``: answers whose key or MTI was not their request's; exit 1
if any, or when no request was answered).

Bare means what a load tool cannot do with less: frames are the load kit's own
requests (:class:`sim.live.traffic.Traffic`), encoded and framed once before timing
and sent in turn; an answer is taken off the stream by its length header alone and
releases the oldest request waiting on its connection (the echo server answers in
order). No decoding, no key matching, no statistics, no events.

``--batched`` runs each connection the load kit's way, with the same frames and
nothing more: the reader takes each answer by its length header (checking it is the
frame sent, as the echo server answers in order), queues that lane's
next frame itself and sends what one ``recv``'s answers queued in one write, so a
request costs no write and no greenlet switch of its own. This is the socket work the
Locust users pay; what ``--codec`` adds to it is their ISO 8583 work.

``--codec`` adds what the load kit does per request, and nothing of Locust: the next
request of the traffic stream (pooled ARQCs, restamped), its bytes from
:class:`sim.load.wire.WireEncoder` (spliced into pyiso8583's encoding), the answer's
key and DE39 decoded as pyiso8583 does (:class:`sim.load.answers.AnswerDecoder`), the
connections sharing one pool, encoder and decoder as the Locust users of a process do,
and paired with the request waiting under its key
(MTI class + DE41 + DE11), its MTI checked -- the same ISO 8583 work as the Locust
users -- and their way of running a connection: the reader takes each answer, queues
the next request of that lane itself and sends what one ``recv``'s answers queued in
one write. So Locust's own cost (the request event, its statistics, the users)
is the difference between the two. The plain loop gives each lane a greenlet that
writes its frame on its own and waits for the answer, as the simplest client does.

gevent is imported in :func:`main` only: importing this module (the doctests do)
leaves the interpreter as it was.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import deque
from datetime import datetime, timezone
from typing import Any, Iterator

from ..load.outbox import send_queued


def frames(count: int, *, pool: int = 64, seed: int = 0) -> list[bytes]:
    """``count`` framed requests (be2) from the load kit's traffic, pooled ARQCs.

    >>> fs = frames(3)
    >>> [int.from_bytes(f[:2], "big") == len(f) - 2 for f in fs]
    [True, True, True]
    """
    from ..iso8583.framing import Framing
    from ..live.traffic import Traffic

    framing = Framing()
    traffic = Traffic(seed=seed, terminal_id="BARE0001", pool=pool)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    return [framing.frame(traffic.next(now).encode()) for _ in range(count)]


def split_frames(data: bytes) -> tuple[list[bytes], bytes]:
    r"""The whole be2 frames (two-byte length header, then that many bytes) at the front of
    ``data``, and what is left of it: the least a client can do to take answers off a stream.

    >>> split_frames(b"\x00\x02ab\x00\x01c\x00\x03d")
    ([b'\x00\x02ab', b'\x00\x01c'], b'\x00\x03d')
    """
    frames = []
    while len(data) >= 2:
        end = 2 + int.from_bytes(data[:2], "big")
        if len(data) < end:
            break
        frames.append(data[:end])
        data = data[end:]
    return frames, data


def received(sock: Any) -> Iterator[list[bytes]]:
    """The whole be2 frames each ``recv`` of ``sock`` completes, until the peer closes."""
    buf = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return
        frames, buf = split_frames(buf + chunk)
        yield frames


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--pool", type=int, default=64)
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--codec", action="store_true", help="build each request from the traffic stream and decode each answer")
    modes.add_argument("--batched", action="store_true", help="the same frames, sent the load kit's way (one write per recv)")
    ns = parser.parse_args(argv)

    import gevent
    from gevent import socket
    from gevent.event import AsyncResult, Event

    from ..iso8583.dialect import DEFAULT
    from ..iso8583.framing import Framing
    from ..live.traffic import Traffic
    from ..gc_tuning import settle_heap
    from ..load.answers import KEY_AND_CODE, AnswerDecoder
    from ..load.wire import WireEncoder

    framing = Framing()
    clock = [-1, datetime(1970, 1, 1)]

    def now() -> datetime:
        """The wall clock to the second, one object per second (as the Locust users stamp)."""
        second = int(time.time())
        if second != clock[0]:
            clock[:] = [second, datetime.fromtimestamp(second, timezone.utc).replace(tzinfo=None)]
        return clock[1]
    payload = frames(4096, pool=ns.pool)
    counted = [0]
    mismatched = [0]
    state = {"counting": False, "stop": False}
    # --codec: each connection's stream restamps the first one's pool, and one encoder and
    # one decoder serve them all, as for the Locust users of a process
    streams: list[Traffic] = []
    for i in range(ns.connections if ns.codec else 0):
        streams.append(Traffic(seed=i, terminal_id=f"BARE{i:04d}", pool=ns.pool, pool_from=streams[0] if streams else None))
    wire = WireEncoder(DEFAULT, framing)
    decode = AnswerDecoder(DEFAULT, wanted=KEY_AND_CODE).decode
    for traffic in streams:
        traffic.prefill(now())
        wire.prepare(traffic.templates())

    def connection(index: int) -> None:
        sock = socket.create_connection((ns.host, ns.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ns.codec:
            codec_connection(index, sock)
        elif ns.batched:
            batched_connection(index, sock)
        else:
            plain_connection(index, sock)
        sock.close()

    def plain_connection(index: int, sock: Any) -> None:
        """Lanes of their own, each writing its frame and waiting for its answer."""
        waiting: deque[AsyncResult] = deque()

        def reader() -> None:
            for answers in received(sock):
                for _ in answers:
                    waiting.popleft().set()

        def lane(offset: int) -> None:
            i = offset
            while not state["stop"]:
                done = AsyncResult()
                waiting.append(done)
                sock.sendall(payload[i % len(payload)])
                done.get()
                i += 7
                if state["counting"]:
                    counted[0] += 1

        read = gevent.spawn(reader)
        lanes = [gevent.spawn(lane, index * 131 + k) for k in range(ns.in_flight)]
        gevent.joinall(lanes)
        read.kill()

    def batched_connection(index: int, sock: Any) -> None:
        """The load kit's way of running a connection, with pre-encoded frames and answers
        taken by length: the reader queues each answered lane's next frame and sends what
        one ``recv``'s answers queued in one write."""
        outbox: list[bytes] = []
        lanes: deque[tuple[bytes, int]] = deque()  # each request in flight: its frame, the lane's next payload index
        finished = Event()

        def launch(i: int) -> None:
            frame = payload[i % len(payload)]
            lanes.append((frame, i + 7))
            outbox.append(frame)

        for k in range(ns.in_flight):
            launch(index * 131 + k)
        send_queued(sock, outbox)

        def reader() -> None:
            for answers in received(sock):
                for answer in answers:
                    frame, following = lanes.popleft()
                    if answer != frame:  # the echo server answers in order, with the request itself
                        mismatched[0] += 1
                    if state["counting"]:
                        counted[0] += 1
                    if not state["stop"]:
                        launch(following)
                    elif not lanes:
                        finished.set()
                send_queued(sock, outbox)
                gevent.sleep(0)  # the other connections' turn, as the kit's readers do

        read = gevent.spawn(reader)
        finished.wait(timeout=ns.warmup + ns.duration + 10)
        read.kill()

    def codec_connection(index: int, sock: Any) -> None:
        """The load kit's closed-model connection without Locust: the reader takes each
        answer to the request waiting under its key (and checks its MTI, as the kit does
        with an echo), queues that lane's next request, and sends what one ``recv``'s
        answers queued in one write."""
        traffic = streams[index]
        pending: dict[tuple[str, str, str], Any] = {}
        outbox: list[bytes] = []
        finished = Event()

        def launch() -> None:
            request = traffic.next(now())
            pending[request.key] = request
            outbox.append(wire.frame(request))

        def reader() -> None:
            decoder = framing.decoder()
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                for frame in decoder.feed(chunk):
                    fields = decode(frame.payload)
                    request = pending.pop((fields.get("t", "")[:2], fields.get("41", ""), fields.get("11", "")), None)
                    if request is None or fields.get("t") != request.mti:
                        mismatched[0] += 1
                        continue
                    if state["counting"]:
                        counted[0] += 1
                    if not state["stop"]:
                        launch()
                    elif not pending:
                        finished.set()
                send_queued(sock, outbox)
                gevent.sleep(0)  # the other connections' turn, as the kit's readers do

        for _ in range(ns.in_flight):
            launch()
        send_queued(sock, outbox)
        read = gevent.spawn(reader)
        finished.wait(timeout=ns.warmup + ns.duration + 10)
        read.kill()

    workers = [gevent.spawn(connection, i) for i in range(ns.connections)]
    gevent.sleep(ns.warmup)
    settle_heap()  # as the Locust users do once spawned
    state["counting"] = True
    start, cpu = time.perf_counter(), time.process_time()
    gevent.sleep(ns.duration)
    state["counting"] = False
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    state["stop"] = True
    gevent.joinall(workers, timeout=5)
    print(json.dumps({"completed": counted[0], "seconds": seconds, "rate": counted[0] / seconds, "cpu_seconds": cpu,
                      "mismatched": mismatched[0]}))
    if mismatched[0]:
        raise SystemExit(f"{mismatched[0]} answers did not carry their request's key")
    if not counted[0]:
        raise SystemExit("no request was answered in the measured window")


if __name__ == "__main__":
    main()
