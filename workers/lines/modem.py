"""What every modem line shares: its serial port, kept open between calls, its health,
and the pieces of a call report that do not depend on the fax class.

A modem line is used by one thing at a time (a send, an inbound listen, a probe), so the
port sits behind a lock. A modem that stops answering AT commands makes the line
*broken*: :attr:`ModemPort.broken` names the reason, the pool takes the line out of
service, and only a successful :meth:`ModemPort.probe` clears it. The port is closed when
the line breaks, so a USB modem that was unplugged is opened afresh by the next probe.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from faxfleet.log import get_logger
from workers.fax.modem.at import AtError, AtPort, AtTimeout, Flow

log = get_logger("faxfleet.lines")

T = TypeVar("T")

PROBE_ERRORS = (AtError, OSError, ValueError)
"""What a dead, unplugged or wrongly configured modem raises (pyserial's SerialException
is an OSError; a bad URL is a ValueError)."""


class LineBroken(Exception):
    """The line's modem cannot be used: the message says why."""


@dataclass
class ModemPort:
    """One modem's serial port, opened on first use and reopened after a failure."""

    name: str
    url: str
    baudrate: int = 115200
    flow: Flow = "xonxoff"
    broken: str | None = None
    """Why the line is out of order, or None."""
    lock: threading.RLock = field(default_factory=threading.RLock)
    _port: AtPort | None = None

    def port(self) -> AtPort:
        """The open port (opening it if needed); raises what pyserial raises."""
        if self._port is None:
            self._port = AtPort.open(
                self.url, baudrate=self.baudrate, flow=self.flow, name=self.name
            )
        return self._port

    def close(self) -> None:
        if self._port is not None:
            with contextlib.suppress(OSError):
                self._port.close()
            self._port = None

    def alive(self, timeout: float = 2.0, tries: int = 2) -> bool:
        """Whether the modem answers a plain ``AT`` (after a call ended badly)."""
        try:
            port = self.port()
        except PROBE_ERRORS:
            return False
        for _ in range(tries):
            port.discard_input()
            try:
                if port.command("AT", timeout=timeout).ok:
                    return True
            except AtTimeout:
                continue
            except PROBE_ERRORS:
                return False
        return False

    def mark_broken(self, reason: str) -> None:
        if self.broken is None:
            log.warning("line out of order", line=self.name, reason=reason)
        self.broken = reason
        self.close()

    def probe(self, check: Callable[[AtPort], T]) -> T:
        """Run ``check`` on a freshly opened port: its result, or :class:`LineBroken`
        (and the line marked broken) when the modem is missing, silent or unfit."""
        with self.lock:
            self.close()
            try:
                result = check(self.port())
            except LineBroken as error:
                self.mark_broken(str(error))
                raise
            except PROBE_ERRORS as error:
                reason = f"probe failed: {type(error).__name__}: {error}"
                self.mark_broken(reason)
                raise LineBroken(reason) from error
            if self.broken is not None:
                log.info("line back in service", line=self.name, was=self.broken)
            self.broken = None
            return result


def classes_offered(port: AtPort) -> tuple[list[str], tuple[str, ...]]:
    """``ATI`` and the fax classes of ``AT+FCLASS=?`` (for Class 2.0 modems; Class 1
    modems are probed by :meth:`Class1Modem.probe`, which reads more)."""
    port.command("ATE0V1Q0")
    identity = port.command("ATI", timeout=3).lines
    raw = ",".join(port.command("AT+FCLASS=?").lines)
    classes = tuple(c.strip().strip("()") for c in raw.replace("(", "").split(",") if c.strip())
    return identity, classes


def phase_detail(cause_text: str | None, detail: str, phase: str, page: int | None) -> str | None:
    """A call's failure in words, with the page and T.30 phase it happened in:
    ``remote disconnected on page 3 (phase D): the far end sent DCN in phase D``."""
    if cause_text is None:
        return None
    words = cause_text.replace("_", " ")
    where = f" on page {page}" if page is not None and phase in ("C", "D") else ""
    text = f"{words}{where} (phase {phase})"
    return f"{text}: {detail}" if detail else text
