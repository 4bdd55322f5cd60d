"""Locust users that speak ISO 8583 over TCP to a possim host (or any host on the same wire).

Each user is one persistent TCP connection (a terminal, or a terminal concentrator)
with a reader greenlet that pairs answers to requests by the QMUX key (MTI class +
DE41 + DE11), so several requests are in flight on one connection and answers may
come back in any order. Framing and dialect are the wire layer's
(``sim.iso8583.framing``, ``sim.iso8583.dialect``); requests come from
``sim.live.traffic`` with the DE39 the host owes each of them.

Every exchange fires ``environment.events.request`` with request_type = the MTI,
name = the transaction kind, the response time in ms, the answer's length, and an
exception when DE39 is not the expected code, the answer timed out, or the
connection failed. A failure never crashes the user: a broken connection fails what
was in flight and the next request reconnects (after a short pause).

Users
-----
``RetailUser``   closed model: ``--in-flight`` lanes per connection, each sending the
                 next request as soon as the previous answer arrived (the default mix).
``OutageUser``   a terminal whose link was down: a burst of 0220 advices (pipelined),
                 then quiet, again and again.
``EchoUser``     0800 echoes only (network management load).
``ArrivalUser``  open model: requests leave on a fixed schedule whatever the answers
                 do (``--arrival-rate`` requests/s in total, split over the users);
                 the response time counts from the scheduled moment, so a slow host
                 cannot slow the load down and hide its own latency.

Options (``locust ... --in-flight 4``; sent to workers in distributed runs)
---------------------------------------------------------------------------
``--in-flight`` lanes per connection (4) · ``--request-timeout`` seconds (5) ·
``--traffic-seed`` (0) · ``--traffic-pool`` (64 requests built in full per kind and
user before the run, then restamped; 0: a fresh ARQC per request) ·
``--framing`` (be2) · ``--dialect`` (default; a name or a spec file) ·
``--echo-server`` (the target echoes frames back: an answer is the request itself) ·
``--arrival-rate`` requests/s (open model) · ``--max-in-flight`` per connection in
the open model (256; more is a failure, not a queue) · ``--summary-out FILE`` (JSON:
final statistics per kind, errors, and counts of kind / expected / answered DE39,
written at the end by the master or the single process) ·
shape options (see ``shapes.py``).
"""

from __future__ import annotations

import warnings

warnings.filterwarnings("ignore", message=".*TripleDES")  # pyemv/psec use two-key 3DES, as the schemes do

import json
import logging
import socket
import time
import zlib
from collections import Counter, deque
from datetime import datetime, timezone
from typing import Any

import gevent
from gevent.event import AsyncResult, Event
from gevent.pool import Group
from locust import User, constant, events, task
from locust.exception import StopUser

from sim.iso8583.codes import describe_code
from sim.iso8583.dialect import resolve_dialect
from sim.iso8583.errors import WireError
from sim.iso8583.framing import Framing, parse_framing
from sim.live.traffic import DEFAULT_MIX, Request, Traffic
from sim.gc_tuning import settle_heap
from sim.load.answers import AnswerDecoder
from sim.load.wire import WireEncoder

log = logging.getLogger("possim.load")

CODES: Counter[str] = Counter()
"""kind|expected|answered -> count, for this process (merged on the master)."""

_TALLY: Counter[tuple[str, str, str]] = Counter()
"""(kind, expected, answered) -> count since the last fold into :data:`CODES` (no string per request)."""


class UnexpectedCode(Exception):
    """The host answered, with another DE39 than the request was owed."""


class NoAnswer(Exception):
    """No answer within the request timeout."""


class LinkDown(Exception):
    """The connection could not be made or broke before the answer."""


class Overloaded(Exception):
    """The open-model user had too many requests in flight on its connection."""


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("possim ISO 8583")
    group.add_argument("--in-flight", type=int, default=4, help="requests in flight per connection (closed model lanes)")
    group.add_argument("--request-timeout", type=float, default=5.0, help="seconds to wait for an answer")
    group.add_argument("--traffic-seed", type=int, default=0, help="seed of the request streams")
    group.add_argument("--traffic-pool", type=int, default=64, help="requests built in full per kind, then restamped (0: fresh ARQC each)")
    group.add_argument("--framing", default="be2", help="be2, le2, ascii4, optionally +tpdu")
    group.add_argument("--dialect", default=None, help="dialect name or spec file (default ISO 8583:1987 ascii)")
    group.add_argument("--echo-server", action="store_true", default=False, help="target echoes frames back")
    group.add_argument("--arrival-rate", type=float, default=100.0, help="open model: requests/s in total")
    group.add_argument("--max-in-flight", type=int, default=256, help="open model: requests in flight per connection")
    group.add_argument("--summary-out", default="", help="write the final figures and DE39 counts (JSON) here")
    group.add_argument("--shape-users", type=int, default=20, help="peak users of the load shape")
    group.add_argument("--shape-duration", type=float, default=60.0, help="seconds the load shape lasts")


def _target(host: str | None) -> tuple[str, int]:
    text = (host or "").strip()
    for prefix in ("tcp://", "iso8583://"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    name, _, port = text.rstrip("/").rpartition(":")
    if not name or not port.isdigit():
        raise ValueError(f"--host {host!r}: expected HOST:PORT (e.g. 127.0.0.1:8583)")
    return name, int(port)


_USER_SEQ = [0]


class _Connection:
    """One TCP connection: a reader greenlet pairing answers to waiting requests by key,
    a writer greenlet sending what the lanes queued.

    The lanes of a connection usually wake together (one ``recv`` brings several
    answers); each queues its next frame and the writer sends them all in one
    ``sendall`` when it runs, right after them in the same event-loop turn. Frames
    leave no later than with one write each (nothing waits for a timer), in fewer
    system calls: on loopback a write costs more CPU than building the request.
    """

    def __init__(self, address: tuple[str, int], framing: Framing, answers: AnswerDecoder, timeout: float) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(None)
        self.framing, self.answers = framing, answers
        self.pending: dict[tuple[str, str, str], AsyncResult] = {}
        self.closed = False
        self.outbox: list[bytes] = []
        self.queued = Event()
        self.timeout = timeout
        self.deadlines: deque[tuple[float, tuple[str, str, str], AsyncResult]] = deque()
        self.reader = gevent.spawn(self._read)
        self.writer = gevent.spawn(self._write)
        self.sweeper = gevent.spawn(self._sweep)

    def _read(self) -> None:
        decoder = self.framing.decoder()
        decode = self.answers.decode
        pending = self.pending
        error: Exception = LinkDown("connection closed by the host")
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                for frame in decoder.feed(chunk):
                    try:
                        fields = decode(frame.payload)
                    except WireError as exc:
                        log.warning("undecodable answer dropped: %s", exc)
                        continue
                    key = (fields.get("t", "")[:2], fields.get("41", ""), fields.get("11", ""))
                    waiter = pending.pop(key, None)
                    if waiter is not None:
                        waiter.set((fields, len(frame.payload)))
        except WireError as exc:
            error = LinkDown(f"framing error from the host: {exc}")
        except OSError as exc:
            error = LinkDown(f"connection lost: {exc.strerror or exc}")
        finally:
            self.closed = True
            for waiter in list(pending.values()):
                waiter.set_exception(error)
            pending.clear()

    def _write(self) -> None:
        outbox, queued = self.outbox, self.queued
        try:
            while True:
                queued.wait()
                queued.clear()
                if outbox:
                    data = b"".join(outbox)
                    outbox.clear()
                    self.sock.sendall(data)
        except OSError as exc:
            self.closed = True
            error = LinkDown(f"send failed: {exc.strerror or exc}")
            for waiter in list(self.pending.values()):
                waiter.set_exception(error)
            self.pending.clear()
            self.close()

    def _sweep(self) -> None:
        """Fail the requests whose answer is overdue (NoAnswer), a few times per timeout.

        One timer per connection instead of one per request: the timeout is the same
        for every request, so the deadlines are in send order and only the oldest
        ones need looking at. An answer is failed at most a tenth of a second (or a
        quarter of the timeout) after its deadline.
        """
        deadlines, pending = self.deadlines, self.pending
        period = min(0.1, self.timeout / 4)
        error = f"no answer within {self.timeout:g} s"
        while True:
            gevent.sleep(period)
            now = time.monotonic()
            while deadlines and deadlines[0][0] <= now:
                _, key, waiter = deadlines.popleft()
                if not waiter.ready():
                    if pending.get(key) is waiter:
                        del pending[key]
                    waiter.set_exception(NoAnswer(error))

    def send(self, key: tuple[str, str, str], frame: bytes) -> AsyncResult:
        """Queue ``frame`` for the writer; the waiter gets the answer, or NoAnswer / LinkDown."""
        if self.closed:
            raise LinkDown("connection closed")
        waiter = AsyncResult()
        self.pending[key] = waiter
        self.deadlines.append((time.monotonic() + self.timeout, key, waiter))
        self.outbox.append(frame)
        self.queued.set()
        return waiter

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass
        self.reader.kill(block=False)
        self.sweeper.kill(block=False)
        if gevent.getcurrent() is not self.writer:
            self.writer.kill(block=False)


class Iso8583User(User):
    """Base of the ISO 8583 users: one connection, the traffic stream, the request events."""

    abstract = True
    wait_time = constant(0)
    mix = DEFAULT_MIX

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        opts = environment.parsed_options
        self.options = opts
        self.address = _target(environment.host)
        self.framing = parse_framing(getattr(opts, "framing", "be2") or "be2")
        self.dialect = resolve_dialect(getattr(opts, "dialect", None))
        self.wire = WireEncoder(self.dialect, self.framing)  # pooled requests: encoded once, restamped per send
        self.answers = AnswerDecoder(self.dialect)  # answers: decoded once per layout, then read in place
        self.timeout = float(getattr(opts, "request_timeout", 5.0))
        self.echo = bool(getattr(opts, "echo_server", False))
        runner = environment.runner
        worker = int(getattr(runner, "worker_index", 0) or 0)
        _USER_SEQ[0] += 1
        seq = _USER_SEQ[0]
        self.terminal_id = f"L{worker % 100:02d}{seq % 100000:05d}"
        seed = zlib.crc32(f"{getattr(opts, 'traffic_seed', 0)}/{worker}/{seq}".encode())
        self.traffic = Traffic(
            seed=seed, terminal_id=self.terminal_id, mix=self.mix, pool=int(getattr(opts, "traffic_pool", 64)),
            reversal_lag=max(64, 4 * int(getattr(opts, "in_flight", 4))),
        )
        self._second = -1
        self._now = datetime(1970, 1, 1)
        self.traffic.prefill(self.now())  # ARQCs of the pool now, while spawning, not on the hot path
        self.wire.prepare(self.traffic.templates())  # and their pyiso8583 encodings
        self.conn: _Connection | None = None
        self.lanes = Group()
        self._down_until = 0.0

    # Connection ---------------------------------------------------------------------------

    def _connection(self) -> _Connection:
        conn = self.conn
        if conn is not None and not conn.closed:
            return conn
        if conn is not None:
            conn.close()
        if time.monotonic() < self._down_until:
            gevent.sleep(self._down_until - time.monotonic())
        try:
            self.conn = _Connection(self.address, self.framing, self.answers, self.timeout)
        except OSError as exc:
            self.conn = None
            self._down_until = time.monotonic() + 0.5
            raise LinkDown(f"cannot connect to {self.address[0]}:{self.address[1]}: {exc.strerror or exc}") from None
        return self.conn

    def on_stop(self) -> None:
        self.lanes.kill(block=True, timeout=1.0)
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    # One exchange ---------------------------------------------------------------------------

    def now(self) -> datetime:
        """The wall clock the requests are stamped with (UTC), to the second (DE7 has no finer unit).

        The same object for a whole second, so the traffic stream formats DE7/DE12/DE13
        once a second instead of once per request.
        """
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._now = datetime.fromtimestamp(second, timezone.utc).replace(tzinfo=None)
        return self._now

    def exchange(self, request: Request, started: float | None = None) -> str | None:
        """Send ``request``, wait for its answer, fire the request event; the answered DE39."""
        start = time.perf_counter() if started is None else started
        mti = request.mti
        length = 0
        code: str | None = None
        exc: Exception | None = None
        try:
            frame = self.wire.frame(request)
            conn = self._connection()
            waiter = conn.send(request.key, frame)
            fields, length = waiter.get()  # the connection's sweeper fails it when overdue
            code = fields.get("39")
            if self.echo:
                if fields.get("t") != mti:
                    exc = UnexpectedCode(f"echo server answered MTI {fields.get('t')}, sent {mti}")
                code = request.expected  # an echo answers nothing: count the request as owed
            elif code != request.expected:
                exc = UnexpectedCode(
                    f"DE39 {code} ({describe_code(code or '')}), expected {request.expected} ({request.reason})"
                    + (f" for card {request.card}" if request.card else "")
                )
        except (LinkDown, NoAnswer) as failure:
            exc = failure
        self.environment.events.request.fire(
            request_type=mti,
            name=request.kind,
            response_time=(time.perf_counter() - start) * 1000.0,
            response_length=length,
            exception=exc,
            context={"expected": request.expected, "code": code, "card": request.card},
        )
        return code


class _LaneUser(Iso8583User):
    """Closed model with lanes: the main greenlet plus ``--in-flight - 1`` more, one request each."""

    abstract = True

    def on_start(self) -> None:
        lanes = max(1, int(getattr(self.options, "in_flight", 4)))
        for _ in range(lanes - 1):
            self.lanes.spawn(self._lane)

    def _lane(self) -> None:
        while True:
            self.one()
            wait = self.wait_time()
            if wait:
                gevent.sleep(wait)

    def one(self) -> None:
        self.exchange(self.traffic.next(self.now()))

    @task
    def transaction(self) -> None:
        self.one()


class RetailUser(_LaneUser):
    """Chip sales, taps, swipes, refunds, reversals, echoes and advices in the default mix."""

    weight = 10


class EchoUser(_LaneUser):
    """0800 echo tests only: the network management floor of a host."""

    weight = 1
    mix = {"echo": 1}


class OutageUser(Iso8583User):
    """A terminal back from an outage: a pipelined burst of 0220 advices, then a pause."""

    weight = 1
    burst = 20
    wait_time = constant(2.0)

    @task
    def advice_burst(self) -> None:
        requests = self.traffic.advice_burst(self.now(), self.burst)
        burst = [self.lanes.spawn(self.exchange, request) for request in requests]  # killed with the user
        gevent.joinall(burst)


class ArrivalUser(Iso8583User):
    """Open model: requests leave on schedule, whatever the answers do (no coordinated omission).

    With R = ``--arrival-rate`` and N = the users of the shape (``--shape-users``),
    user i sends at t0 + i/R + k*N/R. Each send is its own greenlet; the response time
    is measured from the scheduled moment, so time spent waiting for a slow host (or a
    busy load generator) shows up as latency instead of as fewer requests.
    """

    abstract = False
    weight = 1
    fixed_count = 0

    def on_start(self) -> None:
        users = max(1, int(getattr(self.options, "shape_users", 1)))
        rate = float(getattr(self.options, "arrival_rate", 100.0))
        if rate <= 0:
            raise StopUser()
        self.interval = users / rate
        self.limit = max(1, int(getattr(self.options, "max_in_flight", 256)))
        seq = int(self.terminal_id[3:])
        self.next_at = time.perf_counter() + (seq % users) / rate

    @task
    def scheduled(self) -> None:
        delay = self.next_at - time.perf_counter()
        if delay > 0:
            gevent.sleep(delay)
        due = self.next_at
        self.next_at += self.interval
        request = self.traffic.next(self.now())
        if len(self.lanes) >= self.limit:
            self.environment.events.request.fire(
                request_type=request.mti, name=request.kind, response_time=(time.perf_counter() - due) * 1000.0,
                response_length=0, exception=Overloaded(f"{self.limit} requests already in flight on the connection"),
                context={"expected": request.expected, "code": None, "card": request.card},
            )
            return
        self.lanes.spawn(self.exchange, request, due)


# DE39 counts: counted from the same events as Locust's statistics; workers report theirs
# to the master with their statistics, and the master writes --summary-out at the end.


@events.request.add_listener
def _count(name: str, context: dict | None = None, **_: Any) -> None:
    if context and "expected" in context:
        code = context.get("code")
        _TALLY[(name, context["expected"], code if code is not None else "-")] += 1


def _fold() -> Counter[str]:
    """Move the tallies into :data:`CODES` under their ``kind|expected|answered`` keys."""
    for (name, expected, code), n in _TALLY.items():
        CODES[f"{name}|{expected}|{code}"] += n
    _TALLY.clear()
    return CODES


@events.report_to_master.add_listener
def _report(client_id: str, data: dict) -> None:
    data["possim_codes"] = dict(_fold())
    CODES.clear()


@events.worker_report.add_listener
def _merge(client_id: str, data: dict) -> None:
    CODES.update(data.get("possim_codes", {}))


_ENV: list[Any] = []
_CPU: dict[str, float] = {}


@events.spawning_complete.add_listener
def _measure_from_here(**_: Any) -> None:
    """CPU and wall time of this process from the end of spawning (what --reset-stats counts).

    The first time, also take the heap built so far (Locust, the pools) out of the
    garbage collector's sight (:func:`sim.gc_tuning.settle_heap`)."""
    if "settled" not in _CPU:
        settle_heap()
        _CPU["settled"] = 1.0
    _CPU.update(cpu=time.process_time(), wall=time.perf_counter())


@events.test_stop.add_listener
def _measure_to_here(**_: Any) -> None:
    if "cpu" in _CPU and "cpu_seconds" not in _CPU:
        _CPU.update(cpu_seconds=time.process_time() - _CPU["cpu"], wall_seconds=time.perf_counter() - _CPU["wall"])


@events.init.add_listener
def _keep_environment(environment: Any, **_: Any) -> None:
    _ENV[:] = [environment]


def _row(entry: Any, kind: str, name: str) -> dict[str, Any]:
    return {
        "type": kind, "name": name, "requests": entry.num_requests, "failures": entry.num_failures,
        "rps": entry.total_rps, "mean_ms": entry.avg_response_time, "max_ms": entry.max_response_time,
        "p50_ms": entry.get_response_time_percentile(0.5), "p95_ms": entry.get_response_time_percentile(0.95),
        "p99_ms": entry.get_response_time_percentile(0.99),
    }


@events.quit.add_listener
def _write_summary(exit_code: int, **_: Any) -> None:
    """The final figures (Locust's CSV is rewritten once a second and may miss the last one)."""
    if not _ENV:
        return
    environment = _ENV[0]
    path = getattr(environment.parsed_options, "summary_out", "") if environment.parsed_options else ""
    if not path or type(environment.runner).__name__ == "WorkerRunner":
        return
    stats = environment.runner.stats
    rows = [_row(e, e.method or "", e.name) for e in sorted(stats.entries.values(), key=lambda e: (e.name, e.method or ""))]
    rows.append(_row(stats.total, "", "Aggregated"))
    errors = [{"type": e.method, "name": e.name, "error": str(e.error), "occurrences": e.occurrences} for e in stats.errors.values()]
    with open(path, "w", encoding="utf-8") as out:
        process = {k: _CPU[k] for k in ("cpu_seconds", "wall_seconds") if k in _CPU}
        json.dump({"stats": rows, "codes": dict(sorted(_fold().items())), "errors": errors, "process": process}, out, indent=1)
