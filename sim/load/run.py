"""Run a Locust load test of the ISO 8583 users as a subprocess, and read back what it measured.

Locust (with gevent's monkey patching) runs only in its own processes: this module
builds the command line, starts it, and reads the CSV statistics and the DE39 counts
the users write. Nothing here imports gevent or Locust, so the possim CLI and the
test process stay plain CPython.

The load kit lives in ``loadtests/`` beside the package: one locustfile per shape
(:data:`SHAPES`), the users in ``loadtests/possim_load.py``, the shapes in
``loadtests/shapes.py``.

Examples
--------
>>> plan = LoadPlan(shape="step", target=("127.0.0.1", 8583), users=10, duration=30.0, out=Path("out/load"))
>>> argv = plan.argv(python="python")
>>> argv[argv.index("--host") + 1], argv[argv.index("--shape-users") + 1]
('127.0.0.1:8583', '10')
>>> parse_target("localhost:99999")
Traceback (most recent call last):
...
ValueError: --target 'localhost:99999': port 99999 is outside 1..65535
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

SHAPES: dict[str, str] = {
    "step": "step.py",
    "spike": "spike.py",
    "soak": "soak.py",
    "arrival": "arrival.py",
    "mix": "locustfile.py",
}
"""Shape name -> locustfile in ``loadtests/`` (``mix``: no shape, constant users)."""


def loadtests_dir() -> Path:
    """The ``loadtests/`` folder of the checkout the package runs from."""
    return Path(__file__).resolve().parent.parent.parent / "loadtests"


def parse_target(text: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port); a ValueError says what is wrong."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"--target {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8583")
    number = int(port)
    if not 1 <= number <= 65535:
        raise ValueError(f"--target {text!r}: port {number} is outside 1..65535")
    return host, number


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on ``host`` (for Locust's master, which cannot bind port 0)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class LoadPlan:
    """One headless Locust run, as data."""

    shape: str
    target: tuple[str, int]
    out: Path
    users: int = 20
    duration: float = 60.0
    rate: float = 200.0
    in_flight: int = 4
    spawn_rate: float | None = None
    processes: int = 0
    seed: int = 0
    pool: int = 64
    timeout: float = 5.0
    framing: str = "be2"
    dialect: str | None = None
    echo_server: bool = False
    measure_after: float = 0.0
    html: bool = True
    extra: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"shape {self.shape!r} unknown; allowed: {', '.join(SHAPES)}")
        for name, value, low in (("users", self.users, 1), ("in_flight", self.in_flight, 1), ("processes", self.processes, 0)):
            if value < low:
                raise ValueError(f"{name} is {value}; it must be >= {low}")
        if self.duration <= 0 or self.rate <= 0 or self.timeout <= 0:
            raise ValueError("duration, rate and timeout must be > 0")

    @property
    def csv_prefix(self) -> Path:
        return self.out / self.shape

    @property
    def summary_path(self) -> Path:
        """Final statistics, errors and DE39 counts (JSON), written by the load kit at the end."""
        return self.out / f"{self.shape}_summary.json"

    @property
    def html_path(self) -> Path:
        return self.out / f"{self.shape}_report.html"

    def argv(self, python: str = sys.executable) -> list[str]:
        """The ``python -m locust ...`` command line of this run."""
        argv = [
            python, "-m", "locust", "-f", str(loadtests_dir() / SHAPES[self.shape]),
            "--headless", "--only-summary", "--host", f"{self.target[0]}:{self.target[1]}",
            # absolute: Locust runs from the repository root, the user from anywhere
            "--csv", str(self.csv_prefix.absolute()), "--summary-out", str(self.summary_path.absolute()),
            "--shape-users", str(self.users), "--shape-duration", f"{self.duration:g}",
            "--arrival-rate", f"{self.rate:g}", "--in-flight", str(self.in_flight),
            "--traffic-seed", str(self.seed), "--traffic-pool", str(self.pool),
            "--request-timeout", f"{self.timeout:g}", "--framing", self.framing,
            "--stop-timeout", "0", "--exit-code-on-error", "0",
        ]
        if self.shape == "mix":
            rate = self.spawn_rate if self.spawn_rate is not None else self.users
            argv += ["-u", str(self.users), "-r", f"{rate:g}", "-t", f"{self.duration:g}s"]
        if self.html:
            argv += ["--html", str(self.html_path.absolute())]
        if self.dialect:
            spec = Path(self.dialect)
            argv += ["--dialect", str(spec.absolute()) if spec.suffix in (".json", ".toml") else self.dialect]
        if self.echo_server:
            argv.append("--echo-server")
        if self.measure_after:
            argv += ["--measure-after", f"{self.measure_after:g}"]
        if self.processes:
            port = str(free_port())
            argv += ["--processes", str(self.processes), "--master-bind-host", "127.0.0.1",
                     "--master-bind-port", port, "--master-host", "127.0.0.1", "--master-port", port]
        return argv + list(self.extra)


@dataclass(frozen=True)
class StatRow:
    """One line of Locust's statistics (``*_stats.csv``, or the final summary)."""

    type: str
    name: str
    requests: int
    failures: int
    median_ms: float
    mean_ms: float
    max_ms: float
    rps: float
    p95_ms: float
    p99_ms: float


@dataclass
class LoadResult:
    """What a run measured: Locust's statistics, the DE39 counts, the exit code, the output."""

    plan: LoadPlan
    returncode: int
    stats: list[StatRow]
    codes: dict[tuple[str, str, str], int]
    errors: list[dict]
    output: str
    elapsed: float
    process: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> StatRow | None:
        """The ``Aggregated`` line."""
        return next((row for row in self.stats if row.name == "Aggregated"), None)

    @property
    def unexpected(self) -> dict[tuple[str, str, str], int]:
        """(kind, expected, answered) counts where the answer was not the expected DE39."""
        return {k: n for k, n in self.codes.items() if k[1] != k[2]}


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def read_stats(path: Path) -> list[StatRow]:
    """Rows of a Locust ``*_stats.csv`` (empty when the file is missing)."""
    if not path.exists():
        return []
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        for rec in csv.DictReader(f):
            rows.append(StatRow(
                type=rec.get("Type", ""), name=rec.get("Name", ""), requests=int(_num(rec.get("Request Count", "0"))),
                failures=int(_num(rec.get("Failure Count", "0"))), median_ms=_num(rec.get("Median Response Time", "0")),
                mean_ms=_num(rec.get("Average Response Time", "0")), max_ms=_num(rec.get("Max Response Time", "0")),
                rps=_num(rec.get("Requests/s", "0")), p95_ms=_num(rec.get("95%", "0")), p99_ms=_num(rec.get("99%", "0")),
            ))
    return rows


def read_summary(path: Path) -> tuple[list[StatRow], dict[tuple[str, str, str], int], list[dict], dict[str, float]]:
    """The final statistics, the DE39 counts ((kind, expected, answered) -> n; ``-``: no
    answer), the errors, and the Locust process's CPU and wall seconds and requests from
    the end of spawning (or ``measure_after`` seconds later) to the stop, as a run wrote
    them to ``--summary-out`` (empty when missing)."""
    if not path.exists():
        return [], {}, [], {}
    raw = json.loads(path.read_text(encoding="utf-8"))
    rows = [
        StatRow(type=r["type"], name=r["name"], requests=r["requests"], failures=r["failures"], median_ms=r["p50_ms"],
                mean_ms=r["mean_ms"], max_ms=r["max_ms"], rps=r["rps"], p95_ms=r["p95_ms"], p99_ms=r["p99_ms"])
        for r in raw.get("stats", [])
    ]
    codes = {tuple(key.split("|")): int(n) for key, n in raw.get("codes", {}).items()}
    return rows, codes, list(raw.get("errors", [])), dict(raw.get("process", {}))  # type: ignore[return-value]


def run(plan: LoadPlan, *, grace: float = 60.0, echo: Callable[[str], None] | None = None) -> LoadResult:
    """Run ``plan`` headless and wait for it (killed after duration + ``grace`` seconds)."""
    plan.out.mkdir(parents=True, exist_ok=True)
    for stale in (plan.summary_path, Path(f"{plan.csv_prefix}_stats.csv")):
        stale.unlink(missing_ok=True)
    argv = plan.argv()
    start = time.monotonic()
    # Its own process group: Locust forks its workers (--processes), and a run that
    # overstays is stopped with all of them, by that group's id.
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=str(loadtests_dir().parent),
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = start + plan.duration + grace
        for line in proc.stdout:
            lines.append(line)
            if echo is not None:
                echo(line.rstrip("\n"))
            if time.monotonic() > deadline:
                break
        try:
            code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            code = None
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # our child's own group: it and its workers
            except ProcessLookupError:
                pass
            proc.wait()
            lines.append(f"possim load: locust did not finish within {plan.duration + grace:g} s; killed\n")
        if proc.stdout is not None:
            proc.stdout.close()
    stats, codes, errors, process = read_summary(plan.summary_path)
    return LoadResult(
        plan, proc.returncode if code is None else code, stats, codes, errors, "".join(lines), time.monotonic() - start, process
    )
