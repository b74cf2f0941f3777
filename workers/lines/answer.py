"""Inbound answering: an idle line's modem waits for RING, answers and receives.

One :class:`Listener` thread per answering line. It listens in short slices
(``slice_seconds``), holding the modem only for one slice at a time, so the send task,
which takes the line from the pool and then the modem, never waits for more than a slice.
On RING it claims the line in the pool like a call would (the site then shows it busy,
``job_id`` ``inbound``); if a send took the line first, the ring is left to ring. The
reception (pages as single-page TIFFs, the caller's TSI, the called line's number, ok or
the cause) goes to ``deliver``, which the site worker points at
:func:`workers.inbound.deliver_inbound`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from faxfleet.log import get_logger
from faxfleet.messages import Cause
from workers.lines.base import Line
from workers.lines.class1 import Class1ModemLine
from workers.lines.modem import PROBE_ERRORS
from workers.lines.pool import LinePool

log = get_logger("faxfleet.lines")

INBOUND_JOB = "inbound"
"""The job id a line shows in the site's status while it receives."""


@dataclass(frozen=True)
class Reception:
    """One inbound call as the line saw it."""

    line: str
    called: str | None
    """The line's own number (its ``did``): which number the caller dialled."""
    remote_id: str | None
    pages: list[bytes]
    ok: bool
    cause: Cause | None
    detail: str | None


class Listener:
    def __init__(
        self,
        pool: LinePool,
        line: Line,
        modem_line: Class1ModemLine,
        deliver: Callable[[Reception], object],
        *,
        did: str | None = None,
        slice_seconds: float = 0.5,
    ) -> None:
        """``line`` is the pool's line (its name is what the pool knows); ``modem_line``
        the Class 1 line underneath (the line itself, or an emulated line's side A)."""
        self.pool = pool
        self.line = line
        self.modem_line = modem_line
        self.deliver = deliver
        self.did = did
        self.slice = slice_seconds
        self.receptions = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"answer-{line.name}", daemon=True)

    def start(self) -> Listener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._ringing():
                    continue
                if not self.pool.claim(self.line, INBOUND_JOB):
                    continue  # a send took the line at this very moment
                try:
                    reception = self._receive()
                finally:
                    self.pool.release(self.line)
                if reception is not None:
                    self.receptions += 1
                    self.deliver(reception)
            except Exception:  # one bad call must not stop the line answering
                log.exception("inbound call failed", line=self.line.name)
                self._stop.wait(self.slice)

    def _ringing(self) -> bool:
        """One listening slice: True when the modem said RING."""
        modem = self.modem_line.modem
        if modem.broken is not None or not self.pool.idle(self.line.name):
            self._stop.wait(self.slice)
            return False
        if not modem.lock.acquire(timeout=self.slice):
            return False
        try:
            port = modem.port()
            return port.wait_for(["RING"], self.slice) is not None
        except PROBE_ERRORS as error:
            modem.mark_broken(f"listening failed: {error}")
            return False
        finally:
            modem.lock.release()

    def _receive(self) -> Reception | None:
        with self.modem_line.modem.lock:
            result = self.modem_line.receive()
        if result.phase == "A" and not result.received:
            log.info("ring not answered", line=self.line.name, detail=result.detail)
            return None  # a stale RING, or the caller gave up before the answer
        log.info(
            "fax received",
            line=self.line.name,
            pages=len(result.received),
            ok=result.ok,
            remote=result.remote_id,
        )
        return Reception(
            line=self.line.name,
            called=self.did,
            remote_id=result.remote_id or None,
            pages=list(result.received),
            ok=result.ok,
            cause=result.cause,
            detail=result.detail or None,
        )
