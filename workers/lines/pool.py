"""The line pool of one site worker: which line is free, busy or out of service.

The send task takes a line for the length of a call. The pool is shared by the worker's
threads (one per line), so it is guarded by a lock, and it is what the site publishes as
its load.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime

from faxfleet.messages import LineStatus, now
from workers.lines.base import Line


class LinePool:
    def __init__(self, lines: Sequence[Line]) -> None:
        self._lines = list(lines)
        self._lock = threading.Lock()
        self._busy: dict[str, tuple[str, int, datetime]] = {}
        self._out_of_service: set[str] = set()
        self._retiring: set[str] = set()

    def acquire(self, job_id: str, recipient: int) -> Line | None:
        """A free line in service, marked busy for this job, or None."""
        with self._lock:
            for line in self._lines:
                if (
                    line.name not in self._busy
                    and line.name not in self._out_of_service
                    and line.name not in self._retiring
                ):
                    self._busy[line.name] = (job_id, recipient, now())
                    return line
        return None

    def release(self, line: Line) -> None:
        with self._lock:
            self._busy.pop(line.name, None)
            if line.name in self._retiring:
                self._retiring.discard(line.name)
                self._lines = [x for x in self._lines if x.name != line.name]

    def resize(self, size: int, make_line: Callable[[int], Line]) -> None:
        """Grow to ``size`` lines with ``make_line(i)`` or shrink: idle lines past the
        size go at once, busy ones when their call ends."""
        with self._lock:
            while len(self._lines) < size:
                self._lines.append(make_line(len(self._lines)))
            self._retiring = {line.name for line in self._lines[size:]}
            self._lines = [
                line for i, line in enumerate(self._lines) if i < size or line.name in self._busy
            ]

    def __len__(self) -> int:
        return len(self._lines)

    def set_out_of_service(self, name: str, out: bool) -> None:
        with self._lock:
            if out:
                self._out_of_service.add(name)
            else:
                self._out_of_service.discard(name)

    def statuses(self) -> list[LineStatus]:
        with self._lock:
            result = []
            for line in self._lines:
                if line.name in self._out_of_service or line.name in self._retiring:
                    result.append(LineStatus(name=line.name, state="out_of_service"))
                elif line.name in self._busy:
                    job, rcpt, since = self._busy[line.name]
                    result.append(
                        LineStatus(
                            name=line.name, state="busy", job_id=job, recipient=rcpt, since=since
                        )
                    )
                else:
                    result.append(LineStatus(name=line.name, state="idle"))
            return result
