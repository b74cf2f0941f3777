"""The line pool of one site worker: which line is free, busy or out of service.

The send task takes a line for the length of a call. The pool is shared by the worker's
threads (one per line), so it is guarded by a lock, and it is what the site publishes as
its load.

Modem lines (anything with ``probe()`` and ``broken``) are probed when the pool starts;
a line whose probe fails, or whose modem stops responding during a call, is out of
service with the reason (published in :class:`~faxfleet.messages.LineStatus`), and the
worker carries on with the others. A background thread probes the broken lines again
every ``probe_interval`` seconds and puts back those that answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from faxfleet.log import get_logger
from faxfleet.messages import LineStatus, now
from workers.lines.base import Line
from workers.lines.modem import LineBroken

log = get_logger("faxfleet.lines")


@runtime_checkable
class ProbedLine(Protocol):
    """A line whose modem can be checked."""

    name: str

    @property
    def broken(self) -> str | None: ...

    def probe(self) -> str: ...


class LinePool:
    def __init__(self, lines: Sequence[Line]) -> None:
        self._lines = list(lines)
        self._lock = threading.Lock()
        self._busy: dict[str, tuple[str, int, datetime]] = {}
        self._out_of_service: set[str] = set()
        self._broken: dict[str, str] = {}
        self._retiring: set[str] = set()
        self._stop = threading.Event()
        self._reprober: threading.Thread | None = None

    def acquire(self, job_id: str, recipient: int) -> Line | None:
        """A free line in service, marked busy for this job, or None."""
        with self._lock:
            for line in self._lines:
                if line.name not in self._busy and self._in_service(line.name):
                    self._busy[line.name] = (job_id, recipient, now())
                    return line
        return None

    def claim(self, line: Line, job_id: str) -> bool:
        """Mark this very line busy (an inbound call on it), if it is free and in service."""
        with self._lock:
            if line.name in self._busy or not self._in_service(line.name):
                return False
            self._busy[line.name] = (job_id, 0, now())
            return True

    def idle(self, name: str) -> bool:
        """Whether the line is free and in service."""
        with self._lock:
            return name not in self._busy and self._in_service(name)

    def _in_service(self, name: str) -> bool:
        return (
            name not in self._out_of_service
            and name not in self._retiring
            and name not in self._broken
        )

    def release(self, line: Line) -> None:
        """The call is over. A line whose modem broke during it leaves service."""
        reason = line.broken if isinstance(line, ProbedLine) else None
        with self._lock:
            self._busy.pop(line.name, None)
            if reason is not None:
                self._broken[line.name] = reason
                log.warning("line out of service", line=line.name, reason=reason)
            if line.name in self._retiring:
                self._retiring.discard(line.name)
                self._lines = [x for x in self._lines if x.name != line.name]
                _close(line)

    def resize(self, size: int, make_line: Callable[[int], Line]) -> None:
        """Grow to ``size`` lines with ``make_line(i)`` or shrink: idle lines past the
        size go at once, busy ones when their call ends."""
        with self._lock:
            while len(self._lines) < size:
                self._lines.append(make_line(len(self._lines)))
            self._retiring = {line.name for line in self._lines[size:]}
            gone = [
                line
                for i, line in enumerate(self._lines)
                if i >= size and line.name not in self._busy
            ]
            self._lines = [
                line for i, line in enumerate(self._lines) if i < size or line.name in self._busy
            ]
        for line in gone:
            _close(line)

    def __len__(self) -> int:
        return len(self._lines)

    def lines(self) -> list[Line]:
        with self._lock:
            return list(self._lines)

    def set_out_of_service(self, name: str, out: bool) -> None:
        with self._lock:
            if out:
                self._out_of_service.add(name)
            else:
                self._out_of_service.discard(name)

    # -- probing ---------------------------------------------------------------------

    def probe(self, line: Line) -> bool:
        """Probe one idle modem line; True when it is (back) in service. A busy line is
        left alone (its call is the proof it works)."""
        if not isinstance(line, ProbedLine):
            return True
        with self._lock:
            if line.name in self._busy:
                return line.name not in self._broken
            self._busy[line.name] = ("probe", 0, now())
        try:
            identity = line.probe()
            reason = None
        except LineBroken as error:
            reason = str(error)
        except Exception as error:  # a probe must never kill the worker
            reason = f"probe failed: {type(error).__name__}: {error}"
        with self._lock:
            self._busy.pop(line.name, None)
            was = self._broken.pop(line.name, None)
            if reason is not None:
                self._broken[line.name] = reason
                if was != reason:
                    log.warning("line out of service", line=line.name, reason=reason)
            elif was is not None:
                log.info("line back in service", line=line.name, modem=identity, was=was)
        return reason is None

    def probe_all(self) -> dict[str, bool]:
        """Probe every modem line (at start): name -> in service."""
        return {line.name: self.probe(line) for line in self.lines()}

    def reprobe_broken(self) -> None:
        for line in self.lines():
            with self._lock:
                broken = line.name in self._broken
            if broken:
                self.probe(line)

    def start_reprobing(self, interval: float) -> None:
        """Probe the broken lines again every ``interval`` seconds, in the background."""
        if self._reprober is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.reprobe_broken()
                except Exception:  # keep probing whatever one line does
                    log.exception("re-probe failed")

        self._reprober = threading.Thread(target=loop, name="line-reprobe", daemon=True)
        self._reprober.start()

    def close(self) -> None:
        """Stop re-probing and release every line's resources."""
        self._stop.set()
        for line in self.lines():
            _close(line)

    # -- status ----------------------------------------------------------------------

    def _note_broken(self) -> None:
        """Take in lines whose modem broke outside a call (while listening for rings)."""
        for line in self._lines:
            if line.name in self._busy or line.name in self._broken:
                continue
            reason = line.broken if isinstance(line, ProbedLine) else None
            if reason is not None:
                self._broken[line.name] = reason
                log.warning("line out of service", line=line.name, reason=reason)

    def statuses(self) -> list[LineStatus]:
        with self._lock:
            self._note_broken()
            result = []
            for line in self._lines:
                name = line.name
                if name in self._broken:
                    result.append(
                        LineStatus(name=name, state="out_of_service", reason=self._broken[name])
                    )
                elif name in self._out_of_service or name in self._retiring:
                    result.append(LineStatus(name=name, state="out_of_service"))
                elif name in self._busy and self._busy[name][0] != "probe":
                    job, rcpt, since = self._busy[name]
                    result.append(
                        LineStatus(name=name, state="busy", job_id=job, recipient=rcpt, since=since)
                    )
                else:
                    result.append(LineStatus(name=name, state="idle"))
            return result


def _close(line: Line) -> None:
    close = getattr(line, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # closing a line must not fail its caller
            log.exception("closing a line failed", line=line.name)
