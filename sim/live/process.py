"""Start and stop possim server processes by PID, learning their ports through a ready file.

Tests, benchmarks and suites run the live servers (``possim host``, ``possim proxy``,
the live terminal) as real processes on loopback, on ephemeral ports, so that parallel
runs never collide and a kill -9 is a real one. A server started with
``--ready-file PATH`` writes, once it listens, a JSON object to ``PATH`` (atomically:
written to a temporary name, then renamed)::

    {"pid": 12345, "port": 40123, "admin_port": 40124, "kind": "host", ...}

``pid`` and ``port`` are always there; servers add what else callers need
(``admin_port``, an ECR port...). :func:`start` waits for that file, checks the PID is
the child's, and returns a :class:`ServerProcess`; :meth:`ServerProcess.stop` sends
SIGTERM (the server drains and exits), then SIGKILL after a grace period;
:meth:`ServerProcess.kill` is the power cut (SIGKILL at once). Processes are only ever
signalled by the PID this module started, never by name.

Public API (stable)
-------------------
``start(args, *, port=0, ready_timeout=30.0, env=None, cwd=None, log_dir=None, die_with_parent=True) -> ServerProcess``
    Run ``python -m sim.cli *args --port PORT --ready-file FILE`` (``--port`` is left
    out when ``port`` is ``None``, e.g. for commands with several port options given in
    ``args``) and wait until it is ready. Raises :class:`ProcessError` with the tail of
    the child's output if it exits or stays silent.
``start_command(argv, ready_file, *, ...) -> ServerProcess``
    The same for any command line that writes ``ready_file`` (not only possim's).
``ServerProcess``: ``pid``, ``port``, ``admin_port`` (or ``None``), ``info`` (the whole
    ready file), ``log_path``, ``alive``, ``stop(grace=10.0) -> int | None`` (exit code),
    ``kill() -> int | None``, ``wait(timeout) -> int | None``, ``output()`` (its log text),
    usable as a context manager (stops on exit).
``write_ready_file(path, **info)``
    For servers: write the ready file atomically (``pid`` added when missing).

Examples
--------
>>> import json, tempfile, os
>>> with tempfile.TemporaryDirectory() as d:
...     write_ready_file(os.path.join(d, "r.json"), port=8583)
...     json.loads(open(os.path.join(d, "r.json")).read())["port"]
8583
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class ProcessError(RuntimeError):
    """A server process did not start (the message holds the tail of its output)."""


def write_ready_file(path: str | Path, **info: Any) -> None:
    """Write ``info`` (plus ``pid``) as JSON to ``path`` atomically, for :func:`start` to read."""
    path = Path(path)
    info.setdefault("pid", os.getpid())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info), encoding="utf-8")
    os.replace(tmp, path)


class ServerProcess:
    """A running server started by :func:`start`; see the module notes.

    Attributes
    ----------
    pid, port : int
        From the ready file.
    admin_port : int or None
        The local admin endpoint, when the server has one.
    info : dict
        The whole ready file.
    log_path : Path
        The child's stdout and stderr.
    """

    def __init__(self, popen: subprocess.Popen[bytes], info: Mapping[str, Any], log_path: Path, argv: Sequence[str]) -> None:
        self.popen = popen
        self.info = dict(info)
        self.pid = int(info["pid"])
        self.port = int(info["port"])
        admin = info.get("admin_port")
        self.admin_port = int(admin) if admin is not None else None
        self.log_path = log_path
        self.argv = list(argv)

    def __repr__(self) -> str:
        return f"ServerProcess(pid={self.pid}, port={self.port}, admin_port={self.admin_port}, alive={self.alive})"

    @property
    def alive(self) -> bool:
        """True while the process has not exited."""
        return self.popen.poll() is None

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for exit; the exit code, or ``None`` if still running after ``timeout``."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def _signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM (the server drains in-flight work and exits), then SIGKILL after ``grace`` s."""
        self._signal(signal.SIGTERM)
        code = self.wait(grace)
        if code is None:
            return self.kill()
        return code

    def kill(self) -> int | None:
        """SIGKILL now (a power cut) and reap; the exit code (``-9``)."""
        self._signal(signal.SIGKILL)
        return self.wait(10.0)

    def output(self) -> str:
        """What the process wrote to stdout and stderr so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_command(
    argv: Sequence[str],
    ready_file: str | Path,
    *,
    ready_timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    log_path: str | Path | None = None,
    die_with_parent: bool = True,
) -> ServerProcess:
    """Run ``argv`` and wait until it writes ``ready_file`` (see :func:`start`).

    With ``die_with_parent`` (Linux), the child gets SIGTERM if the process that
    started it dies first, so a crashed test run leaves no server behind. Linux ties
    this to the starting *thread*: start servers from the main thread (or a thread
    that outlives them), or pass ``die_with_parent=False``.
    """
    ready = Path(ready_file)
    ready.unlink(missing_ok=True)
    log = Path(log_path) if log_path is not None else ready.with_suffix(".log")
    full_env = dict(os.environ if env is None else env)
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    with open(log, "wb") as out:
        popen = subprocess.Popen(  # noqa: S603
            list(argv), stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=cwd,
            preexec_fn=_die_with_parent if die_with_parent else None,  # noqa: PLW1509
        )
    deadline = time.monotonic() + ready_timeout
    delay = 0.005
    while True:
        if ready.exists():
            try:
                info = json.loads(ready.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                info = None
            if isinstance(info, dict) and info.get("pid") == popen.pid and "port" in info:
                return ServerProcess(popen, info, log, argv)
        code = popen.poll()
        if code is not None or time.monotonic() > deadline:
            if code is None:
                popen.kill()
                popen.wait()
            tail = log.read_text(encoding="utf-8", errors="replace")[-2000:] if log.exists() else ""
            what = f"exited with code {code}" if code is not None else f"not ready within {ready_timeout:g} s"
            raise ProcessError(f"{' '.join(argv)}: {what}; output:\n{tail}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def start(
    args: Sequence[str],
    *,
    port: int | None = 0,
    ready_timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    log_dir: str | Path | None = None,
    die_with_parent: bool = True,
) -> ServerProcess:
    """Start ``possim *args`` as a child process on 127.0.0.1 and wait until it listens.

    Parameters
    ----------
    args : sequence of str
        The possim command and its options, e.g. ``["host", "--state", "st"]``.
    port : int or None
        Passed as ``--port`` (0: an ephemeral port, read back from the ready file);
        ``None`` passes no ``--port``.
    ready_timeout : float
        Seconds to wait for the ready file.
    log_dir : path, optional
        Where the ready file and the child's output go (default: a new temporary directory).
    """
    directory = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="possim-proc-"))
    directory.mkdir(parents=True, exist_ok=True)
    name = args[0] if args else "possim"
    ready = directory / f"{name}-{os.getpid()}-{time.monotonic_ns()}.ready.json"
    argv = [sys.executable, "-m", "sim.cli", *args]
    if port is not None:
        argv += ["--port", str(port)]
    argv += ["--ready-file", str(ready)]
    return start_command(argv, ready, ready_timeout=ready_timeout, env=env, cwd=cwd,
                         log_path=ready.with_suffix(".log"), die_with_parent=die_with_parent)
