"""The emulated Class 2.0 modem: AT commands in on a pty, T.32 responses out.

The host opens the pty's slave end (its path is a pyserial URL) exactly as it would open a
modem's serial device; this side reads the master end in a background thread. What the
modem answers follows ITU-T T.32 for Class 2.0:

- Reports are ``+FCO`` (fax connection), ``+FCI:"id"`` (called station), ``+FIS:`` (the
  far end's DIS), ``+FCS:`` (the DCS sent after training), ``+FPS:`` (post-page response)
  and ``+FHS:`` (hang-up, in hex, followed by ``OK``). +FCI, +FIS and +FCS appear only once
  the host enables them with ``AT+FNR`` (they are off after reset, as T.32 says).
- A page is sent after ``AT+FDT`` answers ``CONNECT``: the host streams the data with
  every DLE doubled (``DLE SUB`` stands for two) and ends it with ``DLE`` plus the post-page
  message: ``,`` MPS, ``;`` EOM, ``.`` EOP. The modem answers ``+FPS:<ppr>,<lines>,...``
  then ``OK`` for a good page or ``ERROR`` for a rejected one. For hosts written for the
  older Class 2, ``DLE ETX`` also ends a page; the modem says ``OK`` and waits for
  ``AT+FET=<ppm>``.
- ``AT+FBO`` picks the bit order of page data: 0 (direct) is line order, 1 is reversed,
  which is the order of a TIFF with FillOrder 1.
- While a page streams in, the line drains it at the negotiated bit rate (scaled); when
  more than a buffer's worth is waiting the modem sends XOFF and sends XON once the line
  has caught up (``AT+FLO=1``, the default).

Receiving (``ATA``, ``AT+FDR``), polling and ECM framing are not emulated.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import threading
import time
import tty
from collections.abc import Collection, Mapping
from dataclasses import replace

from workers.fax.class2.codes import Params, PostPage, Ppr, negotiate
from workers.fax.emulator.class2.commands import Command, CommandSyntaxError, split
from workers.fax.emulator.class2.farend import Behaviour, CallRecord, FarEnd

DLE = 0x10
ETX = 0x03
SUB = 0x1A
XON = b"\x11"
XOFF = b"\x13"

# Line time, in seconds of a real call (divided by the emulator's scale).
RING_AND_ANSWER = 6.0
"""Dialling, two rings, the far end's CED."""
PHASE_B = 3.0
"""DIS, CSI (and the host's wait for the prologue)."""
TRAINING = 2.0
"""DCS, TCF, CFR or FTT: one training attempt."""
POST_PAGE = 1.0
"""Post-page message and response."""
T1 = 35.0
"""T.30 T1: how long a caller waits for a DIS."""
T4 = 3.0
"""T.30 T4: how long a command waits for a response (repeated three times)."""
BUSY_TONE = 4.0
RING_OUT = 60.0
DIAL_TONE_WAIT = 2.0

_DIAL_CHARS = re.compile(r"[^0-9*#+]")
_EOL = re.compile("0{11,}1")
_LINE_BITS = [format(value, "08b")[::-1] for value in range(256)]
"""Each byte's bits in the order they go on the line (least significant first)."""
_REVERSE = bytes(int(format(value, "08b")[::-1], 2) for value in range(256))

_SETTINGS = {
    "+FLO": "1",
    "+FBO": "0",
    "+FPP": "0",
    "+FNR": "0,0,0,0",
    "+FIE": "0",
    "+FCQ": "1,0",
    "+FCT": "1E",
    "+FCR": "0",
    "+FBU": "0",
    "+FMS": "0",
    "+FPI": '""',
    "+FSP": "0",
    "+FAP": "0,0,0",
    "+FAA": "0",
    "+FEA": "0",
    "+FPS": "1",
}
"""Settable +F parameters and their values after reset (hex where numeric)."""

_DEFAULT_CAPABILITIES = Params(vr=1, br=5, wd=0, ln=2, df=1, ec=0, bf=0, st=0)
_CAPABILITY_RANGES = "(0-1),(0-5),(0-4),(0-2),(0-1),(0),(0),(0-7),(0)"


def count_lines(page: bytes) -> int:
    """Coded rows in line-order T.4 data: its EOL codes, less the six of the RTC."""
    bits = "".join(_LINE_BITS[b] for b in page)
    return max(0, len(_EOL.findall(bits)) - 6)


class _Error(Exception):
    """The command fails: the modem answers ERROR."""


class Class2Emulator:
    """A Class 2.0 modem on a fresh pty, calling the simulated far ends it was given.

    ``far_ends`` maps dialled digits to a :class:`FarEnd` (others get ``default``).
    ``scale`` divides every simulated line time: 1 is real time, 1000 runs a page in a
    few milliseconds. Every call is recorded in :attr:`calls`.
    """

    def __init__(
        self,
        far_ends: Mapping[str, FarEnd] | None = None,
        *,
        default: FarEnd | None = None,
        scale: float = 1.0,
        buffer_bytes: int = 4096,
        unsupported: Collection[str] = (),
    ) -> None:
        self.far_ends = dict(far_ends or {})
        self.default = default or FarEnd()
        self.scale = scale
        self.buffer_bytes = buffer_bytes
        self.unsupported = frozenset(name.upper() for name in unsupported)
        """Extended commands (``+FPP``) this modem answers ERROR to, as some models do."""
        self.calls: list[CallRecord] = []
        self.commands: list[str] = []
        """Every command line received, in order (for tests and traces)."""
        self.xoffs = 0
        """How often the modem held the host off (XOFF) because the line was behind."""
        self._master = -1
        self._slave = -1
        self._path = ""
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._reset_settings()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> str:
        """Open the pty and start answering; returns the path to open (a pyserial URL)."""
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self._path = os.ttyname(self._slave)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="class2-emulator", daemon=True)
        self._thread.start()
        return self._path

    @property
    def url(self) -> str:
        return self._path

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1

    def __enter__(self) -> Class2Emulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state -------------------------------------------------------------------------

    def _reset_settings(self) -> None:
        self._echo = True
        self._fclass = "0"
        self._local_id = ""
        self._capabilities = _DEFAULT_CAPABILITIES
        self._session = _DEFAULT_CAPABILITIES
        self._settings = dict(_SETTINGS)
        self._silent = False
        self._call: CallRecord | None = None
        self._state = "idle"
        """idle | phase_b (connected, no page yet) | data (page streaming) |
        page_end (DLE ETX seen, +FET expected) | phase_d (page answered, next +FDT) |
        retrain (page rejected or EOM: the next +FDT trains again)."""
        self._trained: Params | None = None
        self._last_hangup = 0
        self._last_ppr = Ppr.MCF
        self._page = bytearray()
        self._pending_dle = False
        self._line_free_at = 0.0

    def _report(self, index: int) -> bool:
        """Whether +FNR subparameter ``index`` (0 rpr, 1 tpr, 2 idr, 3 nsr) is on."""
        parts = self._settings["+FNR"].split(",")
        return len(parts) > index and parts[index].strip() not in ("", "0")

    def _wait(self, seconds: float) -> None:
        self._stopping.wait(seconds / self.scale)

    # -- I/O ---------------------------------------------------------------------------

    def _send(self, *lines: str) -> None:
        for line in lines:
            self._write(b"\r\n" + line.encode("latin-1") + b"\r\n")

    def _write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(self._master, data)

    def _read(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self._master], [], [], timeout)
        if not ready:
            return b""
        try:
            return os.read(self._master, 65536)
        except OSError:
            return b""

    def _run(self) -> None:
        buf = bytearray()
        while not self._stopping.is_set():
            chunk = self._read(0.05)
            if self._silent:
                continue
            buf += chunk
            while buf and not self._stopping.is_set():
                if self._state == "data":
                    if not self._take_data(buf):
                        break
                    continue
                end = min((i for i in (buf.find(b"\r"), buf.find(b"\n")) if i >= 0), default=-1)
                if end < 0:
                    break
                raw = bytes(buf[:end]).decode("latin-1")
                del buf[: end + 1]
                line = raw.replace("\x11", "").replace("\x13", "").strip()
                if line:
                    self._line(line)

    # -- commands ----------------------------------------------------------------------

    def _line(self, line: str) -> None:
        self.commands.append(line)
        if self._echo:
            self._write(line.encode("latin-1") + b"\r")
        try:
            commands = split(line)
        except CommandSyntaxError:
            self._send("ERROR")
            return
        info: list[str] = []
        for command in commands:
            try:
                result = self._command(command)
            except _Error:
                self._send(*info, "ERROR")
                return
            if result is None:
                return
            info += result
            if self._silent:
                return
        self._send(*info, "OK")

    def _command(self, c: Command) -> list[str] | None:
        """Information lines for a command that ends in OK; None when it answered itself."""
        name = c.name
        if name in ("E", "V", "Q", "X", "M", "L", "&C", "&D", "&K"):
            if name == "E":
                self._echo = c.arg != "0"
            return []
        if name in ("Z", "&F"):
            self._end_call(0x00)
            self._reset_settings()
            return []
        if name == "I":
            return ["faxfleet Class 2.0 emulator"]
        if name.startswith("S") and name[1:].isdigit():
            return ["000"] if c.op == "?" else []
        if name == "H":
            self._end_call(0x00)
            return []
        if name == "A":
            raise _Error("receiving is not emulated")
        if name == "D":
            self._dial(c.arg)
            return None
        if name.startswith("+F"):
            return self._fax_command(c)
        raise _Error(name)

    def _fax_command(self, c: Command) -> list[str] | None:
        name, op, arg = c.name, c.op, c.arg
        if name in self.unsupported:
            raise _Error(name)
        if name == "+FCLASS":
            if op == "=?":
                return ["0,2.0"]
            if op == "?":
                return [self._fclass]
            if op == "=" and arg in ("0", "2.0"):
                self._fclass = arg
                return []
            raise _Error(arg)
        if self._fclass != "2.0":
            raise _Error("not in Class 2.0")
        if name in ("+FMI", "+FMM", "+FMR") and op == "?":
            return [{"+FMI": "faxfleet", "+FMM": "Class 2.0 emulator", "+FMR": "1.0"}[name]]
        if name == "+FLI":
            return self._identifier(op, arg)
        if name in ("+FCC", "+FIS"):
            return self._parameters(name, op, arg)
        if name == "+FHS" and op == "?":
            return [f"{self._last_hangup:02X}"]
        if name == "+FDT" and op == "":
            self._page_start()
            return None
        if name == "+FET" and op == "=":
            if self._state != "page_end" or arg not in ("0", "1", "2"):
                raise _Error(arg)
            self._post_page(PostPage(int(arg)))
            return None
        if name in ("+FKS", "+FK") and op == "":
            if self._call is not None:
                self._wait(POST_PAGE)
                self._send("+FHS:02")
                self._end_call(0x02)
            return []
        if name == "+FDR":
            raise _Error("receiving is not emulated")
        if name == "+FPS" and op == "?":
            return [f"{int(self._last_ppr):X}"]
        if name in self._settings:
            if op == "?":
                return [self._settings[name]]
            if op == "=?":
                return ["(0-FF)"]
            if op == "=" and arg:
                self._settings[name] = arg
                return []
        raise _Error(name)

    def _identifier(self, op: str, arg: str) -> list[str]:
        if op == "?":
            return [f'"{self._local_id}"']
        if op == "=?":
            return ["(20),(20-7E)"]
        if op == "=" and len(arg) >= 2 and arg[0] == arg[-1] == '"' and len(arg) <= 22:
            self._local_id = arg[1:-1]
            return []
        raise _Error(arg)

    def _parameters(self, name: str, op: str, arg: str) -> list[str]:
        if op == "?":
            params = self._capabilities if name == "+FCC" else self._session
            return [params.format(9)]
        if op == "=?":
            return [_CAPABILITY_RANGES]
        if op != "=":
            raise _Error(name)
        base = self._capabilities if name == "+FCC" else self._session
        try:
            update = Params.parse(arg)
        except ValueError as exc:
            raise _Error(arg) from exc
        given = [part.strip() != "" for part in arg.split(",")]
        merged = replace(
            base,
            **{
                field: getattr(update, field)
                for field, present in zip(
                    ("vr", "br", "wd", "ln", "df", "ec", "bf", "st", "jp"), given, strict=False
                )
                if present
            },
        )
        if merged.br > 5 or merged.wd > 4 or merged.ln > 2 or merged.df > 3 or merged.st > 7:
            raise _Error(arg)
        if name == "+FCC":
            self._capabilities = merged
        self._session = merged
        return []

    # -- calls -------------------------------------------------------------------------

    def _dial(self, dial_string: str) -> None:
        if self._fclass != "2.0" or self._call is not None:
            self._send("ERROR")
            return
        number = _DIAL_CHARS.sub("", dial_string.lstrip("TtPp"))
        far_end = self.far_ends.get(number, self.default)
        call = CallRecord(number=number, far_end=far_end, local_id=self._local_id)
        self.calls.append(call)
        behaviour = far_end.behaviour
        if behaviour is Behaviour.SILENT:
            self._silent = True
            return
        if behaviour is Behaviour.NO_DIALTONE:
            self._wait(DIAL_TONE_WAIT)
            self._send("NO DIALTONE")
            return
        if behaviour is Behaviour.BUSY:
            self._wait(BUSY_TONE)
            self._send("BUSY")
            return
        if behaviour is Behaviour.NO_ANSWER:
            self._wait(RING_OUT)
            self._send("NO ANSWER")
            return
        self._call = call
        if behaviour is Behaviour.VOICE:
            self._wait(RING_AND_ANSWER + T1)
            self._hang_up(0x11)
            return
        self._wait(RING_AND_ANSWER + PHASE_B)
        lines = ["+FCO"]
        if self._report(2):
            lines.append(f'+FCI:"{far_end.remote_id:>20}"')
        if self._report(1):
            lines.append(f"+FIS:{far_end.capabilities.format()}")
        self._send(*lines, "OK")
        self._state = "phase_b"

    def _page_start(self) -> None:
        call = self._call
        if call is None or self._state not in ("phase_b", "phase_d", "retrain"):
            self._send("ERROR")
            return
        if self._state == "phase_d" and self._trained is not None:
            self._state = "data"
            self._page = bytearray()
            self._pending_dle = False
            self._line_free_at = time.monotonic()
            self._send("CONNECT")
            return
        if call.far_end.behaviour is Behaviour.TRAIN_FAIL:
            self._wait(TRAINING * 3 * (self._session.br + 1))
            self._hang_up(0x27)
            return
        session = negotiate(self._session, call.far_end.capabilities)
        if self._state == "retrain" and self._trained is not None:
            session = replace(session, br=max(0, self._trained.br - 1))
        self._wait(TRAINING)
        self._trained = session
        call.session = session
        lines = [f"+FCS:{session.format()}"] if self._report(1) else []
        self._state = "data"
        self._page = bytearray()
        self._pending_dle = False
        self._line_free_at = time.monotonic()
        self._send(*lines, "CONNECT")

    def _take_data(self, buf: bytearray) -> bool:
        """Consume page data from ``buf``; True when the page ended (the rest is commands)."""
        out = self._page
        i = 0
        n = len(buf)
        ended: int | None = None
        while i < n:
            b = buf[i]
            i += 1
            if self._pending_dle:
                self._pending_dle = False
                if b == DLE:
                    out.append(DLE)
                elif b == SUB:
                    out += b"\x10\x10"
                elif b == ETX or PostPage.from_dle_code(b) is not None:
                    ended = b
                    break
                continue
            if b == DLE:
                self._pending_dle = True
            else:
                out.append(b)
        del buf[:i]
        self._drain(i)
        if ended is None:
            return False
        self._end_page(ended)
        return True

    def _drain(self, received: int) -> None:
        """Let the simulated line take ``received`` bytes; hold the host off when full."""
        rate = (self._trained or self._session).bit_rate / 8 * self.scale
        now = time.monotonic()
        self._line_free_at = max(self._line_free_at, now) + received / rate
        backlog = (self._line_free_at - now) * rate
        if backlog > self.buffer_bytes and self._settings["+FLO"] == "1":
            self._write(XOFF)
            self.xoffs += 1
            self._stopping.wait(max(0.0, self._line_free_at - now - self.buffer_bytes / 2 / rate))
            self._write(XON)

    def _end_page(self, code: int) -> None:
        call = self._call
        assert call is not None
        data = bytes(self._page)
        if self._settings["+FBO"] in ("1", "3"):
            data = data.translate(_REVERSE)
        call.pages.append(data)
        self._stopping.wait(max(0.0, self._line_free_at - time.monotonic()))
        if code == ETX:
            self._state = "page_end"
            self._send("OK")
            return
        ppm = PostPage.from_dle_code(code)
        assert ppm is not None
        self._post_page(ppm)

    def _post_page(self, ppm: PostPage) -> None:
        call = self._call
        assert call is not None
        far_end = call.far_end
        page = len(call.pages)
        lines = count_lines(call.pages[-1])
        if far_end.behaviour is Behaviour.DROP_PAGE and page >= far_end.page:
            self._wait(3 * T4)
            call.responses.append("none")
            self._hang_up({PostPage.MPS: 0x52, PostPage.EOM: 0x56, PostPage.EOP: 0x54}[ppm])
            return
        self._wait(POST_PAGE)
        if far_end.behaviour is Behaviour.REJECT_PAGE and page == far_end.page:
            call.responses.append("RTN")
            self._last_ppr = Ppr.RTN
            self._state = "retrain"
            self._send(f"+FPS:{int(Ppr.RTN):X},{lines:X},{lines:X},{lines:X},0", "ERROR")
            return
        call.responses.append("MCF")
        self._last_ppr = Ppr.MCF
        status = f"+FPS:{int(Ppr.MCF):X},{lines:X},0,0,0"
        if ppm is PostPage.EOP:
            self._send(status)
            self._hang_up(0x00)
            return
        self._state = "retrain" if ppm is PostPage.EOM else "phase_d"
        self._send(status, "OK")

    def _hang_up(self, code: int) -> None:
        """Report the end of the call (+FHS then OK) and go back on hook."""
        self._send(f"+FHS:{code:02X}", "OK")
        self._end_call(code)

    def _end_call(self, code: int) -> None:
        if self._call is not None and self._call.hangup is None:
            self._call.hangup = code
            self._last_hangup = code
        self._call = None
        self._trained = None
        self._state = "idle"
