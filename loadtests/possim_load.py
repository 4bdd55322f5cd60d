"""Locust users that speak ISO 8583 over TCP to a possim host (or any host on the same wire).

Each user is one persistent TCP connection (a terminal, or a terminal concentrator)
with a reader greenlet that pairs answers to requests by the QMUX key (MTI class +
DE41 + DE11), so several requests are in flight on one connection and answers may
come back in any order. Framing and dialect are the wire layer's
(``sim.iso8583.framing``, ``sim.iso8583.dialect``); requests come from
``sim.live.traffic`` with the DE39 the host owes each of them, their bytes from
``sim.load.wire`` (pyiso8583's encoding, restamped), and answers are decoded by
``sim.load.answers`` (exactly as pyiso8583 decodes them, each layout decoded once;
the key and DE39 alone read from the rest). The users of a process with the same mix
share one pool of requests, restamped with each user's own DE41, trace numbers and
times, one encoder and one answer decoder.
A closed-model user's lanes are driven by the reader: an answer fires the request
event and queues that lane's next request without a greenlet switch.

Every exchange fires ``environment.events.request`` with request_type = the MTI,
name = the transaction kind, the response time in ms, the answer's length, and an
exception when DE39 is not the expected code, the answer timed out, or the
connection failed. A failure never crashes the user: a broken connection fails what
was in flight and the user reconnects (after a short pause when connecting failed).
Users stop at once when killed, and after their requests in flight when stopped
gracefully (``--stop-timeout``).

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
``--traffic-seed`` (0) · ``--traffic-pool`` (64 requests built in full per kind before
the run, shared by the users of a process with the same mix, then restamped with each
user's terminal, trace numbers and times; 0: a fresh ARQC per request) ·
``--framing`` (be2) · ``--dialect`` (default; a name or a spec file) ·
``--echo-server`` (the target echoes frames back: an answer is the request itself) ·
``--arrival-rate`` requests/s (open model) · ``--max-in-flight`` per connection in
the open model (256; more is a failure, not a queue) · ``--summary-out FILE`` (JSON:
final statistics per kind, errors, and counts of kind / expected / answered DE39,
written at the end by the master or the single process; with a single process also
its CPU and wall seconds and requests from the end of spawning, or from
``--measure-after`` seconds later) ·
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
from collections import Counter, defaultdict
from datetime import datetime, timezone
from typing import Any

import gevent
from gevent.event import AsyncResult, Event
from gevent.pool import Group
from locust import User, constant, events, task
from locust.exception import StopUser
from locust.user.task import LOCUST_STATE_STOPPING

from sim.iso8583.codes import describe_code
from sim.iso8583.dialect import resolve_dialect
from sim.iso8583.errors import WireError
from sim.iso8583.framing import Framing, parse_framing
from sim.live.traffic import DEFAULT_MIX, Request, Traffic
from sim.gc_tuning import settle_heap
from sim.load.answers import KEY_AND_CODE, AnswerDecoder
from sim.load.outbox import send_queued
from sim.load.wire import WireEncoder

log = logging.getLogger("possim.load")

CODES: Counter[str] = Counter()
"""kind|expected|answered -> count, for this process (merged on the master)."""

_TALLY: defaultdict[tuple[str, str, str], int] = defaultdict(int)
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
    group.add_argument("--traffic-pool", type=int, default=64, help="requests built in full per kind, shared by the users of a process, then restamped (0: fresh ARQC each)")
    group.add_argument("--framing", default="be2", help="be2, le2, ascii4, optionally +tpdu")
    group.add_argument("--dialect", default=None, help="dialect name or spec file (default ISO 8583:1987 ascii)")
    group.add_argument("--echo-server", action="store_true", default=False, help="target echoes frames back")
    group.add_argument("--arrival-rate", type=float, default=100.0, help="open model: requests/s in total")
    group.add_argument("--max-in-flight", type=int, default=256, help="open model: requests in flight per connection")
    group.add_argument("--summary-out", default="", help="write the final figures and DE39 counts (JSON) here")
    group.add_argument("--measure-after", type=float, default=0.0, help="process CPU figures start this many seconds after spawning (warm-up)")
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

_SHARED: dict[tuple[Any, ...], tuple[Traffic, WireEncoder, AnswerDecoder]] = {}
"""What the users of one process share, per mix, pool and wire options: the first user's
traffic stream (whose pool the others restamp with their own DE41, DE11 and times), the
encoder of the pooled messages and the answer decoder. Each user then walks through one
pool and one set of layouts, not its own copy: the kit's work per request is mostly
memory, and a pool per user made eight users' worth of it."""

_clock = time.perf_counter
"""Response times and deadlines (monotonic)."""


class _Waiter:
    """A request whose sender waits for it (:meth:`Iso8583User.exchange`): the answer or the failure."""

    __slots__ = ("result", "start")

    def __init__(self) -> None:
        self.result = AsyncResult()
        self.start = _clock()
        """When it was queued (its timeout counts from here)."""

    def answer(self, fields: dict[str, str], length: int) -> None:
        self.result.set((fields, length))

    def fail(self, exc: Exception) -> None:
        self.result.set_exception(exc)


class _Connection:
    """One TCP connection: a reader greenlet handing answers to what waits for them, by key.

    What waits for an answer is a :class:`_Waiter` (a greenlet blocked in
    :meth:`Iso8583User.exchange`) or a :class:`_Lane` of a closed-model user, which the
    reader calls directly: it fires the request event and queues the lane's next
    request without a greenlet switch. The frames queued while the reader works
    through one ``recv`` (several answers) go out in one write by the reader
    itself (:func:`sim.load.outbox.send_queued`); frames queued by other greenlets
    (waiters, the sweeper) are sent by a writer greenlet, all those of one event-loop
    turn in one write. Nothing waits for a timer; on loopback a write costs more CPU
    than building the request. One greenlet writes at a time (:meth:`flush`): a frame
    queued while another is blocked writing goes out with that write's next round.
    """

    def __init__(self, address: tuple[str, int], framing: Framing, answers: AnswerDecoder, timeout: float) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(None)
        self.framing, self.answers = framing, answers
        self.pending: dict[tuple[str, str, str], Any] = {}
        self.closed = False
        self.outbox: list[bytes] = []
        self.queued = Event()
        self.writing = False
        self.timeout = timeout
        self.reader = gevent.spawn(self._read)
        self.writer = gevent.spawn(self._write)
        self.sweeper = gevent.spawn(self._sweep)

    def _read(self) -> None:
        decoder = self.framing.decoder()
        decode = self.answers.decode
        pending, outbox = self.pending, self.outbox
        error: Exception = LinkDown("connection closed by the host")
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                for frame in decoder.feed(chunk):
                    payload = frame.payload
                    try:
                        fields = decode(payload)
                    except WireError as exc:
                        log.warning("undecodable answer dropped: %s", exc)
                        continue
                    key = (fields.get("t", "")[:2], fields.get("41", ""), fields.get("11", ""))
                    entry = pending.pop(key, None)
                    if entry is not None:
                        entry.answer(fields, len(payload))
                if outbox:
                    self.flush()
                    # Let the other connections have their turn: the answers to what was just
                    # sent may already be back, and a reader that never waits starves the rest.
                    gevent.sleep(0)
        except WireError as exc:
            error = LinkDown(f"framing error from the host: {exc}")
        except OSError as exc:
            error = LinkDown(f"connection lost: {exc.strerror or exc}")
        finally:
            self._fail_all(error)

    def _fail_all(self, error: Exception) -> None:
        """Closed: every request in flight fails with ``error`` (once)."""
        self.closed = True
        pending = self.pending
        while pending:
            _, entry = pending.popitem()
            entry.fail(error)

    def flush(self) -> None:
        """Send what is queued, in one write; nothing when another greenlet is writing
        (it sends this too before it stops). A failed write closes the connection."""
        if self.writing:
            return
        outbox = self.outbox
        self.writing = True
        try:
            send_queued(self.sock, outbox)
        except OSError as exc:
            outbox.clear()
            self._fail_all(LinkDown(f"send failed: {exc.strerror or exc}"))
            self.close()
        finally:
            self.writing = False

    def _write(self) -> None:
        queued = self.queued
        while not self.closed:
            queued.wait()
            queued.clear()
            self.flush()

    def _sweep(self) -> None:
        """Fail the requests whose answer is overdue (NoAnswer), a few times per timeout.

        One timer per connection instead of one per request, looking at what is in
        flight (a few requests per connection: each knows when it left), so nothing
        is kept per request once it is answered. An answer is failed at most a tenth
        of a second (or a quarter of the timeout) after its deadline.
        """
        pending, timeout = self.pending, self.timeout
        period = min(0.1, timeout / 4)
        error = f"no answer within {timeout:g} s"
        while True:
            gevent.sleep(period)
            oldest = _clock() - timeout
            overdue = [(key, entry) for key, entry in pending.items() if entry.start <= oldest]
            for key, entry in overdue:
                if pending.get(key) is entry:
                    del pending[key]
                    entry.fail(NoAnswer(error))
            if self.outbox:
                self.flush()  # lanes whose request failed have queued their next one

    def queue(self, key: tuple[str, str, str], frame: bytes, entry: Any) -> None:
        """Queue ``frame``; ``entry.answer(fields, length)`` or ``entry.fail(exc)`` follows,
        the latter at the latest ``timeout`` seconds after ``entry.start``.

        The caller then sends it (:meth:`flush`), or wakes the writer (``queued.set()``)
        to send it with the other frames of this event-loop turn.
        """
        if self.closed:
            raise LinkDown("connection closed")
        self.pending[key] = entry
        self.outbox.append(frame)

    def send(self, key: tuple[str, str, str], frame: bytes) -> AsyncResult:
        """Queue ``frame`` for the writer; the result gets the answer, or NoAnswer / LinkDown."""
        waiter = _Waiter()
        self.queue(key, frame, waiter)
        self.queued.set()
        return waiter.result

    def close(self) -> None:
        """Close the socket and stop the greenlets; what is still in flight is dropped
        without an event (the user stopped, nobody waits for it)."""
        self.closed = True
        self.pending.clear()
        try:
            self.sock.close()
        except OSError:
            pass
        current = gevent.getcurrent()
        for greenlet in (self.reader, self.sweeper, self.writer):
            if greenlet is not current:
                greenlet.kill(block=False)


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
        self.timeout = float(getattr(opts, "request_timeout", 5.0))
        self.echo = bool(getattr(opts, "echo_server", False))
        runner = environment.runner
        worker = int(getattr(runner, "worker_index", 0) or 0)
        _USER_SEQ[0] += 1
        seq = _USER_SEQ[0]
        self.terminal_id = f"L{worker % 100:02d}{seq % 100000:05d}"
        seed = zlib.crc32(f"{getattr(opts, 'traffic_seed', 0)}/{worker}/{seq}".encode())
        pool = int(getattr(opts, "traffic_pool", 64))
        kit = (tuple(self.mix.items()), pool, getattr(opts, "framing", None), getattr(opts, "dialect", None))
        shared = _SHARED.get(kit)
        self.traffic = Traffic(
            seed=seed, terminal_id=self.terminal_id, mix=self.mix, pool=pool,
            reversal_lag=max(64, 4 * int(getattr(opts, "in_flight", 4))),
            pool_from=shared[0] if shared is not None else None,
        )
        if shared is None:
            # pooled requests: encoded once, restamped per send; answers: decoded once per
            # layout, then the key and DE39 read in place
            shared = _SHARED[kit] = (self.traffic, WireEncoder(self.dialect, self.framing),
                                     AnswerDecoder(self.dialect, wanted=KEY_AND_CODE))
        _, self.wire, self.answers = shared
        self._second = -1
        self._now = datetime(1970, 1, 1)
        self.traffic.prefill(self.now())  # ARQCs of the pool now, while spawning, not on the hot path
        self.wire.prepare(self.traffic.templates())  # and their pyiso8583 encodings
        self.conn: _Connection | None = None
        self.lanes = Group()
        self._down_until = 0.0
        self._fire = environment.events.request.fire

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

    def verdict(self, request: Request, fields: dict[str, str]) -> tuple[str | None, Exception | None]:
        """The DE39 to count for ``request`` answered with ``fields``, and the failure, if it is one."""
        code = fields.get("39")
        if self.echo:
            mti = fields.get("t")
            # an echo answers nothing: count the request as owed
            if mti != request.mti:
                return request.expected, UnexpectedCode(f"echo server answered MTI {mti}, sent {request.mti}")
            return request.expected, None
        if code != request.expected:
            return code, UnexpectedCode(
                f"DE39 {code} ({describe_code(code or '')}), expected {request.expected} ({request.reason})"
                + (f" for card {request.card}" if request.card else "")
            )
        return code, None

    def report(self, request: Request, start: float, length: int, code: str | None, exc: Exception | None) -> None:
        """Fire the request event of one exchange and count its DE39."""
        self._fire(
            request_type=request.mti,
            name=request.kind,
            response_time=(time.perf_counter() - start) * 1000.0,
            response_length=length,
            exception=exc,
            context={"expected": request.expected, "code": code, "card": request.card},
        )
        _TALLY[(request.kind, request.expected, code if code is not None else "-")] += 1

    def exchange(self, request: Request, started: float | None = None) -> str | None:
        """Send ``request``, wait for its answer, fire the request event; the answered DE39."""
        start = time.perf_counter() if started is None else started
        length = 0
        code: str | None = None
        exc: Exception | None = None
        try:
            frame = self.wire.frame(request)
            conn = self._connection()
            fields, length = conn.send(request.key, frame).get()  # the connection's sweeper fails it when overdue
            code, exc = self.verdict(request, fields)
        except (LinkDown, NoAnswer) as failure:
            exc = failure
        self.report(request, start, length, code, exc)
        return code


class _Lane:
    """One request after the other on a connection, driven by the connection's reader.

    The answer (or failure) of the lane's request arrives as a call from the reader
    (or the sweeper): the lane fires the request event and queues its next request
    right there, so a closed-model exchange costs no greenlet switch of its own.
    This is the kit's hot path: what does not change per request is bound once.
    """

    __slots__ = ("user", "conn", "request", "start", "fire", "traffic", "wire", "pending", "outbox", "echo")

    def __init__(self, user: "_LaneUser", conn: _Connection) -> None:
        self.user, self.conn = user, conn
        self.fire, self.traffic, self.wire, self.echo = user._fire, user.traffic, user.wire, user.echo
        self.pending, self.outbox = conn.pending, conn.outbox
        self.request: Request | None = None
        self.start = 0.0

    def launch(self, wake: bool = False, waited: bool = False) -> None:
        """Queue the lane's next request (after ``wait_time``, unless ``waited``), unless the user
        stops or the connection is gone; ``wake``: wake the writer (the caller is not the reader
        or the sweeper, which send what their turn queued)."""
        user = self.user
        if user._state == LOCUST_STATE_STOPPING or self.conn.closed:
            user.lane_idle()
            return
        if not (waited or user.no_wait):
            wait = user.wait_time()
            if wait:
                user.lanes.add(gevent.spawn_later(wait, self.launch, True, True))
                return
        request = self.traffic.next(user.now())
        self.request = request
        key = request.key
        self.start = _clock()
        self.pending[key] = self
        self.outbox.append(self.wire.frame(request))
        if wake:
            self.conn.queued.set()

    def answer(self, fields: dict[str, str], length: int) -> None:
        request = self.request
        assert request is not None
        if self.echo:  # an echo answers nothing: count the request as owed
            code = request.expected
            exc = None if fields.get("t") == request.mti else self.user.verdict(request, fields)[1]
        else:
            code = fields.get("39")
            exc = None if code == request.expected else self.user.verdict(request, fields)[1]
        self.fire(
            request_type=request.mti, name=request.kind, response_time=(_clock() - self.start) * 1000.0,
            response_length=length, exception=exc, context={"expected": request.expected, "code": code, "card": request.card},
        )
        _TALLY[(request.kind, request.expected, code if code is not None else "-")] += 1
        self.launch()

    def fail(self, exc: Exception) -> None:
        request = self.request
        assert request is not None
        self.user.report(request, self.start, 0, None, exc)
        self.launch()


class _LaneUser(Iso8583User):
    """Closed model: ``--in-flight`` lanes on the user's connection, each sending its next
    request as soon as the previous answer arrived (after ``wait_time``, 0 by default).

    The user's task opens the connection, starts the lanes and waits until the
    connection is gone (its requests then failed) or the user is stopping (the lanes
    send nothing more and the task returns once their answers are in or failed); the
    next run of the task reconnects, half a second after a failed attempt.
    """

    abstract = True

    def on_start(self) -> None:
        self.in_flight = max(1, int(getattr(self.options, "in_flight", 4)))
        self.idle = Event()
        self.active = 0
        self.no_wait = type(self).wait_time is Iso8583User.wait_time  # constant(0): no call per request

    def lane_idle(self) -> None:
        self.active -= 1
        if self.active <= 0:
            self.idle.set()

    @task
    def transaction(self) -> None:
        try:
            conn = self._connection()
        except LinkDown as exc:
            now = self.now()
            for _ in range(self.in_flight):  # each lane's request fails, as it would have on its own
                self.report(self.traffic.next(now), time.perf_counter(), 0, None, exc)
            return
        self.idle.clear()
        self.active = self.in_flight
        for _ in range(self.in_flight):
            _Lane(self, conn).launch(waited=True)  # the first requests leave now
        conn.flush()
        self.idle.wait()


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
            self.report(request, due, 0, None, Overloaded(f"{self.limit} requests already in flight on the connection"))
            return
        self.lanes.spawn(self.exchange, request, due)


# DE39 counts: counted by Iso8583User.report beside the request event it fires (the same
# exchanges as Locust's statistics); workers report theirs to the master with their
# statistics, and the master writes --summary-out at the end.


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
    """CPU and wall time of this process, and the requests it made, from the end of
    spawning (what --reset-stats counts) or ``--measure-after`` seconds later.

    The first time, also take the heap built so far (Locust, the pools) out of the
    garbage collector's sight (:func:`sim.gc_tuning.settle_heap`). The warm-up lets a
    benchmark measure the steady state, as its bare loops do: the answer layouts
    learnt, Locust's first-second work done."""
    if "settled" not in _CPU:
        settle_heap()
        _CPU["settled"] = 1.0
    options = _ENV[0].parsed_options if _ENV else None
    gevent.spawn_later(max(0.0, float(getattr(options, "measure_after", 0.0) or 0.0)), _mark)


def _mark() -> None:
    """Start of the measured window (after the statistics were reset, if they are)."""
    if "cpu_seconds" not in _CPU:
        _CPU.update(cpu=time.process_time(), wall=time.perf_counter(), requests=float(_requests()))


def _requests() -> int:
    runner = _ENV[0].runner if _ENV else None
    return int(runner.stats.total.num_requests) if runner is not None else 0


@events.test_stop.add_listener
def _measure_to_here(**_: Any) -> None:
    if "cpu" in _CPU and "cpu_seconds" not in _CPU:
        _CPU.update(cpu_seconds=time.process_time() - _CPU["cpu"], wall_seconds=time.perf_counter() - _CPU["wall"],
                    requests=float(_requests() - _CPU["requests"]))


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
        process = {k: _CPU[k] for k in ("cpu_seconds", "wall_seconds", "requests") if k in _CPU and "cpu_seconds" in _CPU}
        json.dump({"stats": rows, "codes": dict(sorted(_fold().items())), "errors": errors, "process": process}, out, indent=1)
