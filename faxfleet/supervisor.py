"""Keeps a fleet's processes running: a child that exits on its own is started again.

Celery's reconnection cannot be trusted: after a Redis restart, a worker holding
unacknowledged messages exits with ``Unrecoverable error: AttributeError("'NoneType'
object has no attribute 'hostname'")`` (docs/reliability.md). So every process is
supervised: an exit nobody asked for is logged, counted and followed by a restart after
an exponential backoff (0.5 s doubling up to a cap), which starts again from the first
step once the child has stayed up for a while. An exit the fleet asked for
(:meth:`Supervisor.stop`) is never a crash.

A child runs in its own session (process group), and only its main PID is sent
SIGTERM: a Celery worker then finishes or hands back what it holds, while a signal to
the whole group would kill pool children mid-task. What is left of the group after the
main process has gone is killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from faxfleet.log import get_logger
from faxfleet.topology import ServiceSpec

log = get_logger("faxfleet.fleet")


@dataclass(frozen=True)
class Backoff:
    """Delay before restart number ``attempt`` of a child that keeps exiting."""

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 15.0
    stable_after: float = 30.0
    """A child that ran at least this long before exiting starts again at ``initial``."""

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.initial * self.factor ** max(0, attempt - 1))


@dataclass(frozen=True)
class Restart:
    """An exit nobody asked for, and the restart it was answered with."""

    service: str
    exit_code: int
    attempt: int
    delay: float
    uptime: float
    at: float
    """Wall-clock time of the exit (``time.time()``)."""

    def line(self) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(self.at))
        return (
            f"{stamp} WARNING faxfleet.fleet: service exited, restarting "
            f"service={self.service} exit_code={self.exit_code} attempt={self.attempt} "
            f"delay={self.delay:g} uptime={self.uptime:.1f}"
        )


@dataclass
class Child:
    """The current process of one service, and its restart bookkeeping."""

    spec: ServiceSpec
    proc: subprocess.Popen[bytes]
    started: float
    log_offset: int
    """Size of the service's log when this process started: its own output follows."""
    attempt: int = 0
    restart_at: float | None = None
    """Set while the child is dead and waiting out its backoff."""


def _reap_group(pid: int) -> None:
    """Pool children left behind by a process that exited are not ours to keep."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


@dataclass
class Supervisor:
    log_dir: Path
    env: dict[str, str]
    backoff: Backoff = field(default_factory=Backoff)
    enabled: bool = True
    on_restart: Callable[[Restart], None] | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    """name -> the current process (the same dict the fleet exposes)."""
    restarts: Counter[str] = field(default_factory=Counter)
    history: list[Restart] = field(default_factory=list)
    children: dict[str, Child] = field(default_factory=dict)
    poll_interval: float = 0.1

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    # -- starting and stopping ------------------------------------------------------------

    def _spawn(self, spec: ServiceSpec) -> Child:
        path = self.log_dir / f"{spec.name}.log"
        offset = path.stat().st_size if path.exists() else 0
        env = {**os.environ, **self.env, **spec.env, "PYTHONUNBUFFERED": "1"}
        with open(path, "ab") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                [*spec.exec_via, sys.executable, *spec.argv],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[spec.name] = proc
        return Child(spec, proc, time.monotonic(), offset)

    def start(self, spec: ServiceSpec) -> subprocess.Popen[bytes]:
        """Start ``spec`` (or start it now, if it is dead and waiting for a restart)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            old = self.children.get(spec.name)
            if old is not None and old.proc.poll() is None:
                raise RuntimeError(f"{spec.name} is already running (pid {old.proc.pid})")
            child = self._spawn(spec)
            if old is not None:
                child.attempt = old.attempt
            self.children[spec.name] = child
            self._changed.notify_all()
        if self.enabled and self._thread is None:
            self._halt.clear()
            self._thread = threading.Thread(target=self._run, name="fleet-supervisor", daemon=True)
            self._thread.start()
        return child.proc

    def stop(self, name: str, *, kill: bool = False, grace: float = 15.0) -> None:
        """Stop a service on purpose: SIGTERM to its main process (SIGKILL to its group
        with ``kill``, or after ``grace`` seconds). It is not restarted."""
        with self._lock:
            child = self.children.pop(name, None)
            self.processes.pop(name, None)
        if child is None:
            return
        proc = child.proc
        if proc.poll() is None:
            if kill:
                _reap_group(proc.pid)
            else:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                _reap_group(proc.pid)
                proc.wait()
        _reap_group(proc.pid)

    def stop_all(self, grace: float = 15.0) -> None:
        """Stop the supervisor first (nothing is restarted from here on), then every
        service: all are sent SIGTERM at once, so they drain in parallel."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        with self._lock:
            names = list(self.children)
            for name in names:
                proc = self.children[name].proc
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for name in names:
            self.stop(name, grace=max(0.1, deadline - time.monotonic()))

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Signal a service's main process as a crash would: the supervisor restarts it.
        Returns the PID signalled."""
        with self._lock:
            proc = self.children[name].proc
            os.kill(proc.pid, sig)
            return proc.pid

    # -- supervision ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._halt.wait(self.poll_interval):
            with self._lock:
                for name, child in list(self.children.items()):
                    self._tend(name, child)

    def _tend(self, name: str, child: Child) -> None:
        now = time.monotonic()
        if child.restart_at is None:
            code = child.proc.poll()
            if code is None:
                return
            _reap_group(child.proc.pid)
            uptime = now - child.started
            child.attempt = 1 if uptime >= self.backoff.stable_after else child.attempt + 1
            delay = self.backoff.delay(child.attempt)
            child.restart_at = now + delay
            event = Restart(name, code, child.attempt, delay, uptime, time.time())
            self.history.append(event)
            self._record(event)
        elif now >= child.restart_at:
            fresh = self._spawn(child.spec)
            fresh.attempt = child.attempt
            self.children[name] = fresh
            self.restarts[name] += 1
            self._changed.notify_all()

    def _record(self, event: Restart) -> None:
        log.warning(
            f"{event.service} exited ({event.exit_code}), restart {event.attempt} "
            f"in {event.delay:g} s",
            service=event.service,
            exit_code=event.exit_code,
            attempt=event.attempt,
            delay=event.delay,
            uptime=round(event.uptime, 1),
        )
        with contextlib.suppress(OSError), open(self.log_dir / "fleet.log", "a") as out:
            out.write(event.line() + "\n")
        if self.on_restart is not None:
            with contextlib.suppress(Exception):  # a listener never stops supervision
                self.on_restart(event)

    def wait_restarted(self, name: str, since: int, timeout: float = 60.0) -> int:
        """Until ``name`` has been restarted more than ``since`` times; the new count."""
        with self._lock:
            if not self._changed.wait_for(lambda: self.restarts[name] > since, timeout):
                raise TimeoutError(
                    f"{name} not restarted within {timeout} s (restarts: {self.restarts[name]})"
                )
            return self.restarts[name]

    def crash_looping(self, attempts: int) -> list[str]:
        """Services that are down after ``attempts`` quick exits in a row."""
        with self._lock:
            return [
                name
                for name, child in self.children.items()
                if child.attempt >= attempts and child.proc.poll() is not None
            ]

    def dead(self) -> list[str]:
        with self._lock:
            return [n for n, c in self.children.items() if c.proc.poll() is not None]
