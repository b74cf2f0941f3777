"""Start helper programs in their own process groups and stop exactly those again.

Every program the rig runs (iaxmodem, efax, faxgetty, ...) gets a new session, so stopping
it also stops anything it forked (HylaFAX runs scripts after each call) without touching any
other process on the machine: we only ever signal the process groups we created.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path


class ProcessGroup:
    """The processes one rig started, stopped in reverse order of starting."""

    def __init__(self) -> None:
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        # The efax receiver restarts efax from its own thread while the caller starts
        # senders: the list of what to stop must not lose either.
        self._lock = threading.Lock()

    def start(
        self, name: str, argv: Sequence[str], log: Path, *, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Run ``argv`` with stdout and stderr appended to ``log``."""
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )
        with self._lock:
            self._procs.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
        """SIGTERM the process's group, SIGKILL it if it lingers, then reap the leader.

        The leader is reaped last: while it is an unreaped zombie its pid cannot be reused, so
        the final SIGKILL to its group can only reach processes it forked.
        """
        if proc.returncode is None:
            if exit_status(proc) is None:
                _signal_group(proc.pid, signal.SIGTERM)
                if not _wait_exit(proc, timeout):
                    _signal_group(proc.pid, signal.SIGKILL)
                    _wait_exit(proc, timeout)
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        with self._lock:
            self._procs = [(n, p) for n, p in self._procs if p is not proc]

    def stop_all(self) -> None:
        with self._lock:
            procs = list(self._procs)
        for _, proc in reversed(procs):
            self.stop(proc)

    def pids(self) -> list[int]:
        """Process ids of everything started and not yet stopped."""
        with self._lock:
            return [proc.pid for _, proc in self._procs]

    def dead(self) -> list[tuple[str, int]]:
        """Name and exit status of every tracked process that has exited (not reaped)."""
        found = []
        with self._lock:
            procs = list(self._procs)
        for name, proc in procs:
            status = exit_status(proc)
            if status is not None:
                found.append((name, status))
        return found


def exit_status(proc: subprocess.Popen[bytes]) -> int | None:
    """The exit status of ``proc`` if it has exited, without reaping it (None: running)."""
    if proc.returncode is not None:
        return proc.returncode
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return proc.poll()
    if info is None:
        return None
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while exit_status(proc) is None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
