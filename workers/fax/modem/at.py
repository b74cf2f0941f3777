"""The AT command layer: one modem on one serial line, commands in, result codes out.

Everything above this module (Class 1 primitives, the T.30 engine) speaks in commands and
result codes; everything below is bytes through pyserial. The rules this layer keeps:

- Every wait has a deadline. A modem that says nothing raises :class:`AtTimeout`; a modem
  that stays silent through :meth:`AtPort.reset` raises :class:`ModemNotResponding`.
- Echo is tolerated: with ATE1 the modem repeats the command before answering, and the
  repeat is dropped, so callers never need to know which echo mode the modem is in.
- Result codes that nobody asked for (RING, caller ID, a late NO CARRIER) are queued, not
  lost and not mistaken for the answer to the next command.
- Software flow control (XON/XOFF) is honoured only while the host sends data
  (:meth:`AtPort.send_stream`). Received page data contains the bytes 0x11 and 0x13 as
  ordinary data, so the serial driver's own XON/XOFF handling is never switched on.
- The modem control lines (DTR, RTS, CTS, DSR, RI, CD) are never touched: a pty, a TCP
  bridge and many USB modems do not have them.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

import serial

from faxfleet.log import get_logger
from workers.fax.modem.dle import END

Flow = Literal["xonxoff", "rtscts", "none"]

XON = 0x11
XOFF = 0x13

DEFAULT_FINALS: tuple[str, ...] = (
    "OK",
    "ERROR",
    "CONNECT",
    "NO CARRIER",
    "BUSY",
    "NO DIALTONE",
    "NO DIAL TONE",
    "NO ANSWER",
    "+FCERROR",
)
"""Result codes that end a command."""

UNSOLICITED_PREFIXES: tuple[str, ...] = (
    "RING",
    "NMBR",
    "NAME",
    "DATE",
    "TIME",
    "CID",
    "DRON",
    "DROF",
)
"""Lines a modem sends on its own, at any time: queued rather than taken as information."""

_POLL = 0.05
"""Granularity of every wait: the serial read timeout."""


class AtError(Exception):
    """The modem did something this layer cannot make sense of."""


class AtTimeout(AtError):
    """No final result code arrived in time."""

    def __init__(self, command: str, lines: list[str], timeout: float) -> None:
        super().__init__(f"no final result to {command!r} within {timeout:g}s (got {lines!r})")
        self.command = command
        self.lines = lines
        self.timeout = timeout


class ModemNotResponding(AtError):
    """The modem answered nothing even after every way of waking it up."""


@dataclass(frozen=True)
class AtResponse:
    """The outcome of one command: its final result line and the information lines before it.

    ``final`` is the whole final line as the modem sent it (``CONNECT 9600``, ``+FHS:00``).
    """

    final: str
    lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.final == "OK"

    def is_(self, code: str) -> bool:
        """Whether the final line is ``code``, alone or followed by a parameter."""
        return _matches(self.final, code)


def _matches(line: str, code: str) -> bool:
    if code.endswith(":"):
        return line.startswith(code)
    return line == code or line.startswith(code + " ")


class AtPort:
    """One modem on one serial line (a device, ``socket://host:port`` or ``rfc2217://``)."""

    def __init__(self, ser: serial.SerialBase, *, name: str, flow: Flow = "xonxoff") -> None:
        self._ser = ser
        self.name = name
        self.flow: Flow = flow
        self._buf = bytearray()
        self._skip_lf = False
        self._queue: list[str] = []
        self._xoff = False
        self._log = get_logger("faxfleet.modem")

    @classmethod
    def open(
        cls,
        url: str,
        *,
        baudrate: int = 115200,
        flow: Flow = "xonxoff",
        name: str | None = None,
    ) -> AtPort:
        """Open the modem at ``url``; ``name`` (the line's name) labels every log record."""
        ser = serial.serial_for_url(url, do_not_open=True)
        ser.baudrate = baudrate
        ser.timeout = _POLL
        # pyserial's RFC 2217 client refuses write timeouts; elsewhere a write that hangs
        # (a wedged USB modem) must not hang the worker.
        ser.write_timeout = None if url.lower().startswith("rfc2217://") else 30
        ser.xonxoff = False
        ser.rtscts = flow == "rtscts"
        ser.open()
        port = cls(ser, name=name or url, flow=flow)
        port._log.debug("modem opened", line=port.name, url=url, flow=flow)
        return port

    def close(self) -> None:
        self._ser.close()

    def __enter__(self) -> AtPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- raw bytes -------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Write raw bytes (frames, aborts, escapes) without any interpretation."""
        self._ser.write(data)

    def read(self, n: int, timeout: float) -> bytes:
        """Up to ``n`` raw bytes, returning as soon as any have arrived; ``b""`` on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            self._drop_split_lf()
            if self._buf:
                out = bytes(self._buf[:n])
                del self._buf[:n]
                return out
            if not self._fill(deadline):
                self._drop_split_lf()
                out = bytes(self._buf[:n])
                del self._buf[:n]
                return out

    def unread(self, data: bytes) -> None:
        """Put bytes back in front of the input (what followed DLE ETX in a data read)."""
        self._buf[:0] = data

    def _fill(self, deadline: float) -> bool:
        """Read whatever arrives before ``deadline``; False if nothing did."""
        while True:
            chunk = self._ser.read(max(1, self._ser.in_waiting))
            if chunk:
                self._buf += chunk
                return True
            if time.monotonic() >= deadline:
                return False

    def _fill_available(self) -> None:
        while waiting := self._ser.in_waiting:
            self._buf += self._ser.read(waiting)

    def _drop_split_lf(self) -> None:
        """A line ended with CR at the end of a read: its LF may come with the next read."""
        if self._skip_lf and self._buf:
            if self._buf[0] == 0x0A:
                del self._buf[0]
            self._skip_lf = False

    def discard_input(self) -> bytes:
        """Throw away everything received so far (after a reset or an abort)."""
        self._fill_available()
        junk = bytes(self._buf)
        self._buf.clear()
        self._skip_lf = False
        return junk

    # -- lines -----------------------------------------------------------------------

    def _take_line(self) -> str | None:
        """The next complete line in the buffer ("" for an empty one), or None."""
        self._drop_split_lf()
        buf = self._buf
        cr = buf.find(b"\r")
        lf = buf.find(b"\n")
        ends = [i for i in (cr, lf) if i >= 0]
        if not ends:
            return None
        i = min(ends)
        raw = bytes(buf[:i])
        if buf[i] == 0x0D and i + 1 < len(buf) and buf[i + 1] == 0x0A:
            del buf[: i + 2]
        else:
            if buf[i] == 0x0D and i + 1 == len(buf):
                self._skip_lf = True
            del buf[: i + 1]
        text = raw.replace(bytes((XON,)), b"").replace(bytes((XOFF,)), b"")
        return text.decode("latin-1").strip()

    def read_line(self, timeout: float) -> str | None:
        """The next non-empty line, or None when none arrives within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._take_line()
            if line:
                return line
            if line is None and not self._fill(deadline):
                line = self._take_line()
                while line == "":
                    line = self._take_line()
                return line

    def command(
        self, cmd: str, *, timeout: float = 5.0, finals: Collection[str] | None = None
    ) -> AtResponse:
        """Send ``cmd`` and collect its answer up to a final result code.

        ``finals`` adds codes to the default ones (a code ending in ":" matches any line
        starting with it). Raises :class:`AtTimeout` when no final code arrives in time.
        """
        codes = tuple(DEFAULT_FINALS) + tuple(finals or ())
        self._queue_pending()
        self._log.debug("at command", line=self.name, cmd=cmd)
        self._ser.write((cmd + "\r").encode("ascii"))
        deadline = time.monotonic() + timeout
        echo = cmd.strip().upper()
        lines: list[str] = []
        while True:
            remaining = deadline - time.monotonic()
            line = self.read_line(remaining) if remaining > 0 else None
            if line is None:
                self._log.warning("at timeout", line=self.name, cmd=cmd, got=lines)
                raise AtTimeout(cmd, lines, timeout)
            if echo and not lines and line.upper() == echo:
                echo = ""
                continue
            if any(_matches(line, code) for code in codes):
                self._log.debug("at result", line=self.name, cmd=cmd, final=line)
                return AtResponse(final=line, lines=lines)
            if line.startswith(UNSOLICITED_PREFIXES):
                self._queue.append(line)
                continue
            lines.append(line)

    def _queue_pending(self) -> None:
        """Lines that arrived between commands are unsolicited: queue them."""
        self._fill_available()
        while (line := self._take_line()) is not None:
            if line:
                self._log.debug("unsolicited", line=self.name, code=line)
                self._queue.append(line)

    def unsolicited(self) -> list[str]:
        """Every unsolicited line received so far (oldest first), emptying the queue."""
        self._queue_pending()
        out, self._queue = self._queue, []
        return out

    def wait_for(self, codes: Collection[str], timeout: float) -> str | None:
        """Wait for an unsolicited line matching one of ``codes`` (e.g. RING); others stay
        queued. Returns the line, or None on timeout."""
        self._queue_pending()
        for i, line in enumerate(self._queue):
            if any(_matches(line, c) for c in codes):
                del self._queue[i]
                return line
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            line = self.read_line(remaining)
            if line is None:
                return None
            if any(_matches(line, c) for c in codes):
                return line
            self._queue.append(line)
        return None

    # -- data with flow control ----------------------------------------------------------

    def _poll_flow(self) -> None:
        """Take in what the modem sent while we send data: XON/XOFF steer us, the rest
        (result codes) is kept for the reader."""
        while waiting := self._ser.in_waiting:
            for b in self._ser.read(waiting):
                if b == XOFF:
                    self._xoff = True
                elif b == XON:
                    self._xoff = False
                else:
                    self._buf.append(b)

    def _in_flight(self) -> int:
        """Bytes written but not yet taken by the other end (0 where nobody can tell)."""
        try:
            return int(self._ser.out_waiting)
        except (AttributeError, NotImplementedError, OSError):
            return 0

    def send_stream(
        self,
        data: bytes,
        *,
        chunk: int = 128,
        max_in_flight: int = 1024,
        xoff_timeout: float = 30.0,
        abort_on: Collection[bytes] = (b"NO CARRIER", b"ERROR"),
    ) -> bool:
        """Write ``data`` (already DLE-stuffed) honouring the modem's XON/XOFF.

        No more than ``max_in_flight`` bytes are left in the driver's output queue, so an
        XOFF takes effect within that many bytes even where the line has no baud rate to
        slow the writer down (a pty). Returns False, having stopped early, when the modem
        reports one of ``abort_on`` (the call dropped while we were sending); raises
        :class:`AtTimeout` when the modem holds XOFF for longer than ``xoff_timeout``.
        """
        if self.flow != "xonxoff":
            self._ser.write(data)
            self._ser.flush()
            return True
        self._xoff = False
        pos = 0
        try:
            while pos < len(data):
                self._poll_flow()
                if any(code in self._buf for code in abort_on):
                    return False
                if self._xoff:
                    held = time.monotonic()
                    while self._xoff:
                        if time.monotonic() - held > xoff_timeout:
                            raise AtTimeout("<data>", [], xoff_timeout)
                        if self._ser.in_waiting == 0:
                            time.sleep(0.005)
                        self._poll_flow()
                        if any(code in self._buf for code in abort_on):
                            return False
                    self._log.debug("xon after xoff", line=self.name, held=time.monotonic() - held)
                if self._in_flight() > max_in_flight:
                    time.sleep(0.001)
                    continue
                self._ser.write(data[pos : pos + chunk])
                pos += chunk
                time.sleep(0)  # let a modem in this process (an emulator) keep up
            self._ser.flush()
            self._poll_flow()
            return True
        finally:
            self._xoff = False

    # -- recovery --------------------------------------------------------------------

    def _answers(self, timeout: float) -> bool:
        self.discard_input()
        try:
            return self.command("AT", timeout=timeout).ok
        except AtTimeout:
            return False

    def reset(self, *, patience: float = 15.0, guard: float = 1.1) -> None:
        """Bring a confused modem back to command mode with known settings.

        In order: end any data the modem still expects (DLE ETX), abort any receive (the
        AT itself does that: any character aborts), the guard-time escape ``+++`` for a
        modem stuck online, then keep knocking until ``patience`` runs out. Once it
        answers: ATZ, then echo off, verbose results on, quiet off, and two ATs in a row
        to be sure the answers line up with the questions again. Raises
        :class:`ModemNotResponding` when nothing helps.
        """
        self._log.warning("modem reset", line=self.name)
        deadline = time.monotonic() + patience
        self._ser.write(END)
        time.sleep(0.2)
        alive = self._answers(1.0)
        if not alive:
            time.sleep(guard)
            self.discard_input()
            self._ser.write(b"+++")
            time.sleep(guard)
            alive = self._answers(1.0)
        while not alive and time.monotonic() < deadline:
            self._ser.write(END + b"\r")
            alive = self._answers(1.0)
        if alive:
            try:
                if self.command("ATZ", timeout=5.0).ok and self.command("ATE0V1Q0").ok:
                    time.sleep(0.1)
                    if self._answers(2.0) and self._answers(2.0):
                        self._queue.clear()
                        self._log.info("modem reset done", line=self.name)
                        return
            except AtTimeout:
                pass
        self._log.error("modem not responding", line=self.name)
        raise ModemNotResponding(f"modem on {self.name} does not respond")
