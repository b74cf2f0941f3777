"""One emulated Class 1 fax modem: an AT command interpreter on a pty, joined to the other
modem of its pair through the emulated line (:mod:`workers.fax.emulator.line`).

It behaves as a real Class 1 modem (and iaxmodem) does, in the points a host depends on:

- Command mode: ``AT`` lines, echo (E1 by default), verbose or numeric results, quiet
  mode, several commands in one line; after ``;`` only extended (``+``) commands follow,
  so ``AT+FCLASS=1;A`` is an ERROR as on iaxmodem. An action (D, A, +FTH, +FRH, +FTM,
  +FRM, +FTS, +FRS) ends the line.
- ATD rings the other modem (RING repeated) until it answers (ATA, or ATS0=n after n
  rings); the answerer goes straight into V.21 HDLC transmit (CONNECT after its answer
  tone); the caller's ATD ends with CONNECT when the answerer's flags arrive, and the
  caller is then receiving HDLC as after AT+FRH=3.
- AT+FTH=3: frames from the host up to DLE ETX each; CONNECT after each frame, OK after
  the one with the final bit (once it has left the line). The modem adds the FCS; the
  receiving modem checks it: AT+FRH=3 gives CONNECT, the frame, DLE ETX, then OK or ERROR.
- AT+FTM: CONNECT, data with XON/XOFF flow control at the line's pace, DLE ETX, OK once it
  has left the line. AT+FRM: +FCERROR if the far end is on another modulation, else
  CONNECT, data, DLE ETX, NO CARRIER when the carrier ends.
- Any character from the host aborts a receive or a wait (OK). A call that goes down
  ends whatever is in progress with NO CARRIER.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable

from workers.fax.emulator.host import HostLink
from workers.fax.emulator.line import (
    ANSWER_TONE,
    BIT_RATES,
    DIAL_TIME,
    FLAG_PREAMBLE,
    RING_PERIOD,
    TRAINING,
    V21_RATE,
    Call,
    Item,
    Switch,
    Transmission,
)
from workers.fax.modem.dle import END, Unstuffer, stuff
from workers.fax.t30.hdlc import fcs

XON = b"\x11"
XOFF = b"\x13"

MODULATIONS = "24,48,72,73,74,96,97,98,121,122,145,146"
NUMERIC = {
    "OK": "0",
    "CONNECT": "1",
    "RING": "2",
    "NO CARRIER": "3",
    "ERROR": "4",
    "NO DIALTONE": "6",
    "BUSY": "7",
    "NO ANSWER": "8",
    "+FCERROR": "+F4",
}

FLOW_HIGH = 4096
"""Bytes waiting for the line above which the modem sends XOFF."""
FLOW_LOW = 1024
"""... and below which it sends XON again."""
FLOW_CAPACITY = FLOW_HIGH + 16384
"""Its buffer: what a host sends beyond this, ignoring XOFF, is lost. Generous, because a
pty has no baud rate: a host may have written a lot before it reads the XOFF."""
FORCED_XOFF_SLACK = 16384
SLOW_XOFF_AFTER = 1024
ANSWER_CONNECT = 0.7
"""Line seconds of flags already sent when the answering modem reports CONNECT (iaxmodem
answers CONNECT late: the caller's CONNECT comes first)."""
CARRIER_TAIL = b"\xff" * 20 + bytes.fromhex("af3bc2895494e5c275bf") + b"\xee" * 20
"""What a demodulator makes of the end of a carrier: iaxmodem hands over such bytes after
the last data byte of every high-speed reception."""
HOST_IDLE = 5.0
"""Wall seconds a transmitting modem waits for more from the host before giving up."""


def _v17_family(mod: int) -> int:
    """Short and long V.17 training at one rate are one carrier to a receiver."""
    return mod - 1 if mod in (74, 98, 122, 146) else mod


class EmulatedModem:
    MANUFACTURER = "faxfleet"
    MODEL = "Class 1 emulator"
    REVISION = "1.0"

    def __init__(
        self,
        name: str,
        number: str,
        switch: Switch,
        *,
        tcp_port: int | None = None,
        fcs_to_host: bool = True,
        carrier_tail: bool = True,
    ):
        self.name = name
        self.fcs_to_host = fcs_to_host
        """Pass each received frame's FCS to the host after the frame, as T.31 modems do."""
        self.carrier_tail = carrier_tail
        """End each high-speed reception with the junk a real demodulator produces."""
        self.number = number
        self.switch = switch
        self.clock = switch.clock
        self.cond = switch.cond
        self._in = bytearray()
        self.call: Call | None = None
        self.inbox: list[Transmission] = []
        self.rings = 0
        self.answer_pending = False
        self.silent_until: float | None = None
        self.overruns = 0
        """Bytes of data lost because the host ignored XOFF."""
        self.commands: list[str] = []
        """Every command line received, for tests and traces."""
        self._defaults()
        self.host = HostLink(self._feed, tcp_port=tcp_port)
        self._thread = threading.Thread(target=self._run, name=f"modem {name}", daemon=True)

    def _defaults(self) -> None:
        self.echo = True
        self.verbose = True
        self.quiet = False
        self.fclass = "0"
        self.sreg = {0: 0, 7: 60}
        self.adaptive = 0
        self.flow = 1

    @property
    def url(self) -> str:
        return self.host.url

    @property
    def tcp_url(self) -> str | None:
        return self.host.tcp_url

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join(timeout=3)
        self.host.close()

    # -- host I/O --------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        with self.cond:
            self._in += data
            self.cond.notify_all()

    def _unread(self, data: bytes) -> None:
        if data:
            with self.cond:
                self._in[:0] = data
                self.cond.notify_all()

    def _take(self) -> bytes:
        with self.cond:
            data = bytes(self._in)
            self._in.clear()
            return data

    def _write(self, data: bytes) -> None:
        self.host.write(data)

    def _result(self, code: str) -> None:
        if self.quiet:
            return
        if self.verbose:
            self._write(b"\r\n" + code.encode() + b"\r\n")
        else:
            self._write(NUMERIC.get(code, code).encode() + b"\r")

    def _info(self, lines: list[str]) -> None:
        for line in lines:
            self._write(b"\r\n" + line.encode() + b"\r\n")

    def _wait(self, pred: Callable[[], bool], timeout: float | None) -> bool:
        """Wait under the line's lock for ``pred`` (or a stop); False on timeout."""
        with self.cond:
            return self.cond.wait_for(lambda: self.switch.stopped or pred(), timeout)

    def _pause(self, seconds: float, *, abortable: bool = True) -> str:
        """Let ``seconds`` pass: "done", or "abort" (host sent something), "down" (the
        call went down) or "stop"."""
        deadline = self.clock.now() + seconds
        call = self.call
        while True:
            with self.cond:
                self.cond.wait_for(
                    lambda: (
                        self.switch.stopped
                        or (abortable and bool(self._in))
                        or (call is not None and call.down)
                    ),
                    max(0.0, deadline - self.clock.now()),
                )
                if self.switch.stopped:
                    return "stop"
                if abortable and self._in:
                    self._in.clear()
                    return "abort"
                if call is not None and call.down:
                    return "down"
            if self.clock.now() >= deadline:
                return "done"

    # -- command mode ----------------------------------------------------------------

    def _run(self) -> None:
        line = bytearray()
        while True:
            with self.cond:
                self.cond.wait_for(
                    lambda: self.switch.stopped or bool(self._in) or self.answer_pending
                )
                if self.switch.stopped:
                    return
                auto_answer, self.answer_pending = self.answer_pending, False
                data = bytes(self._in)
                self._in.clear()
            if auto_answer:
                self._unread(data)
                self._answer()
                continue
            if self.silent_until is not None:
                if self.clock.now() < self.silent_until:
                    continue
                self.silent_until = None
            for i, b in enumerate(data):
                if b == 0x0D:
                    if self.echo:
                        self._write(b"\r")
                    self._unread(data[i + 1 :])
                    text = line.decode("latin-1")
                    line.clear()
                    self._command(text)
                    break
                if b in (0x08, 0x7F):
                    if line:
                        line.pop()
                    continue
                if b < 0x20:
                    continue
                line.append(b)
                if self.echo:
                    self._write(bytes((b,)))

    def _command(self, text: str) -> None:
        idx = text.upper().find("AT")
        if idx < 0:
            return
        self.commands.append(text[idx:])
        if len(self.commands) > 2000:  # a long-running emulator keeps the recent ones
            del self.commands[:1000]
        try:
            self._execute(text[idx + 2 :])
        except Exception:
            self._result("ERROR")

    def _execute(self, body: str) -> None:
        info: list[str] = []
        i, n = 0, len(body)
        after_semicolon = False
        while i < n:
            c = body[i].upper()
            if c == " ":
                i += 1
                continue
            if c == ";":
                after_semicolon = True
                i += 1
                continue
            if c == "+":
                m = re.match(r"\+([A-Za-z]+)(=\?|\?|=([^;]*))?", body[i:])
                if not m:
                    return self._result("ERROR")
                i += m.end()
                name, op, arg = m.group(1).upper(), m.group(2) or "", (m.group(3) or "").strip()
                action = self._extended(name, op, arg, info)
                if action is None:
                    return self._result("ERROR")
                if action is not True:
                    if body[i:].strip(" ;"):
                        return self._result("ERROR")
                    self._info(info)
                    return action()
                continue
            if after_semicolon:
                return self._result("ERROR")
            if c == "D":
                self._info(info)
                return self._dial(body[i + 1 :])
            if c == "A":
                if body[i + 1 :].strip():
                    return self._result("ERROR")
                self._info(info)
                return self._answer()
            if c == "&":
                m = re.match(r"&([A-Za-z])(\d*)", body[i:])
                if not m:
                    return self._result("ERROR")
                i += m.end()
                if m.group(1).upper() == "F":
                    self._defaults()
                continue
            if c == "S":
                m = re.match(r"[Ss](\d+)(?:=(\d+)|(\?))", body[i:])
                if not m:
                    return self._result("ERROR")
                i += m.end()
                reg = int(m.group(1))
                if m.group(3):
                    info.append(f"{self.sreg.get(reg, 0):03d}")
                else:
                    self.sreg[reg] = int(m.group(2))
                continue
            m = re.match(r"([EVQHZILMX])(\d*)", body[i:], re.IGNORECASE)
            if not m:
                return self._result("ERROR")
            i += m.end()
            letter, value = m.group(1).upper(), int(m.group(2) or 0)
            if letter == "E":
                self.echo = value == 1
            elif letter == "V":
                self.verbose = value == 1
            elif letter == "Q":
                self.quiet = value == 1
            elif letter == "H":
                if value != 0:
                    return self._result("ERROR")
                self._hangup()
            elif letter == "Z":
                self._hangup()
                self._defaults()
            elif letter == "I":
                info.extend(self._identity(value))
        self._info(info)
        self._result("OK")

    def _identity(self, n: int) -> list[str]:
        if n == 3:
            return [f"{self.MANUFACTURER} {self.MODEL} {self.REVISION}"]
        return [f"{self.MANUFACTURER} {self.MODEL}"]

    def _extended(
        self, name: str, op: str, arg: str, info: list[str]
    ) -> Callable[[], None] | bool | None:
        """True when handled (info may have grown), an action to run last, None for ERROR."""
        fax = self.fclass in ("1", "1.0")
        if name == "FCLASS":
            if op == "=?":
                info.append("0,1,1.0")
            elif op == "?":
                info.append(self.fclass)
            elif arg in ("0", "1", "1.0"):
                self.fclass = arg
            else:
                return None
            return True
        if name in ("FMI", "FMM", "FMR") and op == "?":
            info.append({"FMI": self.MANUFACTURER, "FMM": self.MODEL, "FMR": self.REVISION}[name])
            return True
        if name in ("FAR", "FLO"):
            limit = 1 if name == "FAR" else 2
            if op == "=?":
                info.append("0,1" if name == "FAR" else "0-2")
            elif op == "?":
                info.append(str(self.adaptive if name == "FAR" else self.flow))
            elif arg.isdigit() and int(arg) <= limit:
                setattr(self, "adaptive" if name == "FAR" else "flow", int(arg))
            else:
                return None
            return True
        if name not in ("FTH", "FRH", "FTM", "FRM", "FTS", "FRS") or not fax:
            return None
        if op == "=?":
            info.append(
                "3"
                if name in ("FTH", "FRH")
                else "0-255"
                if name in ("FTS", "FRS")
                else MODULATIONS
            )
            return True
        if op != "=" + arg or not arg.isdigit():
            return None
        value = int(arg)
        if self.call is None or self.call.down:
            return None  # no call, or the far end hung up meanwhile: ERROR, as on iaxmodem
        if name in ("FTS", "FRS"):
            if value > 255:
                return None
            return (
                (lambda: self._tx_silence(value))
                if name == "FTS"
                else lambda: self._rx_silence(value)
            )
        if name in ("FTH", "FRH"):
            if value != 3:
                return None
        elif value not in TRAINING:
            return None
        if name == "FTH":
            return lambda: self._tx_hdlc(first=False)
        if name == "FRH":
            return lambda: self._rx_hdlc(self.clock.now(), connect_sent=False)
        if name == "FTM":
            return lambda: self._tx_data(value)
        return lambda: self._rx_data(value)

    # -- calls -----------------------------------------------------------------------

    def _peer(self) -> EmulatedModem | None:
        for modem in self.switch.modems.values():
            if modem is not self:
                return modem  # type: ignore[return-value]
        return None

    def _hangup(self) -> None:
        with self.cond:
            call = self.call
            if call is not None and not call.down:
                call.state = "down"
            self.call = None
            self.inbox.clear()
            self.rings = 0
            self.cond.notify_all()

    def _dial(self, dial_string: str) -> None:
        s = dial_string.strip()
        if s[:1].upper() in ("T", "P"):
            s = s[1:]
        number = re.sub(r"[^0-9*#]", "", s)
        faults = self.switch.faults_for(number)
        if self.call is not None and not self.call.down:
            return self._result("ERROR")
        self._hangup()
        if self.fclass not in ("1", "1.0"):
            return self._result("NO CARRIER")
        if faults.silent is not None:
            span = faults.silent if faults.silent_recovers else math.inf
            self.silent_until = self.clock.now() + span
            self._take()
            return None
        if faults.no_dialtone:
            self._pause(self.clock.wall(2.0))
            return self._result("NO DIALTONE")
        if self._pause(self.clock.wall(DIAL_TIME)) != "done":
            return self._result("NO CARRIER")
        peer = self._peer()
        if (
            faults.busy
            or number == self.number
            or peer is None
            or (peer.call is not None and not peer.call.down)
        ):
            return self._result("BUSY")
        s7 = self.clock.wall(self.sreg.get(7, 60))
        if faults.no_answer or faults.voice:
            outcome = self._pause(s7)
            if outcome == "stop":
                return None
            if outcome == "done":
                return self._result("NO ANSWER" if faults.no_answer else "NO CARRIER")
            return self._result("NO CARRIER")
        call = Call(self, peer, number, faults)
        with self.cond:
            self.call = call
            peer.call = call
            self.inbox.clear()
            peer.inbox.clear()
            peer.rings = 0
        deadline = self.clock.now() + s7
        next_ring = self.clock.now()
        while True:
            until = min(next_ring, deadline)
            with self.cond:
                self.cond.wait_for(
                    lambda until=until: (
                        self.switch.stopped
                        or call.state != "ringing"
                        or bool(self._in)
                        or self.clock.now() >= until
                    ),
                    max(0.0, until - self.clock.now()),
                )
                if self.switch.stopped:
                    return None
                if call.state == "up":
                    break
                aborted = bool(self._in)
                self._in.clear()
                if call.down or aborted or self.clock.now() >= deadline:
                    call.state = "down"
                    self.cond.notify_all()
                    timed_out = not aborted and self.clock.now() >= deadline
                    return self._result("NO ANSWER" if timed_out else "NO CARRIER")
            if self.clock.now() >= next_ring:
                peer._result("RING")
                with self.cond:
                    peer.rings += 1
                    if 0 < peer.sreg.get(0, 0) <= peer.rings:
                        peer.answer_pending = True
                        self.cond.notify_all()
                next_ring = self.clock.now() + max(self.clock.wall(RING_PERIOD), 0.2)
        self._rx_hdlc(call.up_at, connect_sent=False, deadline=deadline + s7)
        return None

    def _answer(self) -> None:
        call = self.call
        if call is None or call.state != "ringing" or call.callee is not self:
            return self._result("ERROR")  # nothing rings (iaxmodem says ERROR too)
        if self.fclass not in ("1", "1.0"):
            return self._result("NO CARRIER")
        with self.cond:
            call.state = "up"
            call.up_at = self.clock.now()
            self.cond.notify_all()
        self._tx_hdlc(first=True)
        return None

    def _open_transmission(self, tx: Transmission) -> bool:
        with self.cond:
            call = self.call
            if call is None or call.down:
                return False
            peer = call.peer(self)
            peer.inbox.append(tx)  # type: ignore[attr-defined]
            self.cond.notify_all()
        return True

    # -- V.21 HDLC -------------------------------------------------------------------

    def _tx_hdlc(self, *, first: bool) -> None:
        now = self.clock.now()
        start = now + (self.clock.wall(ANSWER_TONE) if first else 0.0)
        tx = Transmission("hdlc", 3, start=start, ready=start + self.clock.wall(FLAG_PREAMBLE))
        tx.line_free = tx.ready
        call = self.call
        if call is None or not self._open_transmission(tx):
            return self._result("NO CARRIER")
        if first:
            wait = start + self.clock.wall(ANSWER_CONNECT) - self.clock.now()
            if self._pause(wait, abortable=False) != "done":
                return self._result("NO CARRIER")
        self._result("CONNECT")
        unstuffer = Unstuffer()
        frame = bytearray()
        while True:
            got = self._wait(lambda: bool(self._in) or call.down, HOST_IDLE)
            if self.switch.stopped:
                return None
            if call.down:
                tx.end = self.clock.now()
                self._swallow(unstuffer)
                return self._result("NO CARRIER")
            if not got:
                with self.cond:
                    tx.end = max(self.clock.now(), tx.line_free)
                    self.cond.notify_all()
                return self._result("ERROR")
            frame += unstuffer.feed(self._take())
            if not unstuffer.done:
                continue
            self._unread(unstuffer.rest)
            if not frame:
                with self.cond:
                    tx.end = max(self.clock.now(), tx.line_free)
                    self.cond.notify_all()
                return self._result("OK")
            duration = self.clock.wall((len(frame) + 3) * 8 / V21_RATE)
            with self.cond:
                begin = max(self.clock.now(), tx.line_free)
                item = Item(begin, begin + duration, bytes(frame), call.next_frame_good())
                tx.items.append(item)
                tx.line_free = item.arrival
                final = len(frame) >= 2 and bool(frame[1] & 0x10)
                if final:
                    tx.end = item.arrival
                self.cond.notify_all()
            if not final:
                self._result("CONNECT")
                unstuffer = Unstuffer()
                frame = bytearray()
                continue
            outcome = self._pause(item.arrival - self.clock.now(), abortable=False)
            return self._result("NO CARRIER" if outcome == "down" else "OK")

    def _rx_hdlc(
        self, listen_at: float, *, connect_sent: bool, deadline: float | None = None
    ) -> None:
        tol = self.clock.tolerance
        carrier_seen = False
        while True:
            found: tuple[Transmission, Item] | None = None
            event = ""
            with self.cond:
                while True:
                    if self.switch.stopped:
                        return None
                    now = self.clock.now()
                    if self._in:
                        self._in.clear()
                        event = "abort"
                        break
                    call = self.call
                    if call is None or call.down:
                        event = "down"
                        break
                    flags_on = False
                    wake = math.inf if deadline is None else deadline
                    for tx in self.inbox:
                        if tx.kind != "hdlc":
                            continue
                        if tx.active(now):
                            flags_on = True
                        elif tx.start > now:
                            wake = min(wake, tx.start)
                        while (
                            not tx.locked
                            and tx.delivered < len(tx.items)
                            and tx.items[tx.delivered].start < listen_at - tol
                        ):
                            tx.delivered += 1
                        if tx.delivered < len(tx.items):
                            item = tx.items[tx.delivered]
                            if item.arrival <= now:
                                tx.delivered += 1
                                tx.locked = True
                                found = (tx, item)
                            else:
                                wake = min(wake, item.arrival)
                            break
                        if tx.end is not None and tx.end > now:
                            wake = min(wake, tx.end)
                    if found:
                        break
                    if flags_on and not connect_sent:
                        event = "connect"
                        break
                    if flags_on:
                        carrier_seen = True
                    elif connect_sent and carrier_seen:
                        event = "down"
                        break
                    if deadline is not None and now >= deadline:
                        event = "down"
                        break
                    self.cond.wait(None if wake == math.inf else max(0.0, wake - now))
            if event == "abort":
                return self._result("OK")
            if event == "down":
                return self._result("NO CARRIER")
            if event == "connect":
                connect_sent = True
                carrier_seen = True
                self._result("CONNECT")
                continue
            assert found is not None
            _, item = found
            payload = item.payload
            check = fcs(payload)
            if not item.good:
                payload = payload[:-1] + bytes((payload[-1] ^ 0x01,))
            if self.fcs_to_host:
                payload += check
            if not connect_sent:
                self._result("CONNECT")
            self._write(stuff(payload) + END)
            return self._result("OK" if item.good else "ERROR")

    # -- high-speed data -------------------------------------------------------------

    def _page_faults(self, tx: Transmission, call: Call, payload: bytes) -> tuple[bytes, bool]:
        """Apply the call's page faults to the next piece of data: (what goes on, drop?)."""
        if tx.page is None:
            if not any(payload):
                tx.nbytes += len(payload)
                return payload, False
            call.pages += 1
            tx.page = call.pages
        f = call.faults
        out = bytearray(payload)
        if f.noisy_page == tx.page:
            every = max(1, f.noise_every)
            first = (-(tx.nbytes + 1)) % every
            for k in range(first, len(out), every):
                out[k] ^= 0x04
        drop = False
        if f.drop_after is not None and call.page_bytes + len(out) >= f.drop_after:
            out = out[: max(0, f.drop_after - call.page_bytes)]
            drop = True
        call.page_bytes += len(out)
        tx.nbytes += len(out)
        return bytes(out), drop

    def _tx_data(self, mod: int) -> None:
        call = self.call
        now = self.clock.now()
        byte_time = self.clock.wall(8 / BIT_RATES[mod])
        tx = Transmission("data", mod, start=now, ready=now + self.clock.wall(TRAINING[mod]))
        tx.line_free = tx.ready
        if call is None or not self._open_transmission(tx):
            return self._result("NO CARRIER")
        self._result("CONNECT")
        unstuffer = Unstuffer()
        xoff = False
        forced_until: float | None = None
        forced_taken = 0
        idle_deadline = now + HOST_IDLE
        while True:
            now = self.clock.now()
            backlog = max(0.0, tx.line_free - now) / byte_time
            forced = forced_until is not None and now < forced_until
            want = forced or backlog > FLOW_HIGH or (xoff and backlog > FLOW_LOW)
            if want != xoff:
                self._write(XOFF if want else XON)
                xoff = want
            wake = idle_deadline - now
            if forced:
                wake = min(wake, forced_until - now)  # type: ignore[operator]
            elif xoff:
                wake = min(wake, (backlog - FLOW_LOW) * byte_time)
            got = self._wait(lambda: bool(self._in) or call.down, max(0.0, wake))
            if self.switch.stopped:
                return None
            if call.down:
                with self.cond:
                    tx.end = self.clock.now()
                    self.cond.notify_all()
                self._result("NO CARRIER")
                return self._swallow(unstuffer)
            if not got:
                if self.clock.now() >= idle_deadline:
                    with self.cond:
                        tx.end = self.clock.now()
                        self.cond.notify_all()
                    return self._result("ERROR")
                continue
            now = self.clock.now()
            idle_deadline = now + HOST_IDLE
            backlog = max(0.0, tx.line_free - now) / byte_time
            forced = forced_until is not None and now < forced_until
            payload = unstuffer.feed(self._take())
            if forced:
                room = max(0, FORCED_XOFF_SLACK - forced_taken)
                self.overruns += max(0, len(payload) - room)
                payload = payload[:room]
                forced_taken += len(payload)
            elif backlog + len(payload) > FLOW_CAPACITY:
                room = max(0, int(FLOW_CAPACITY - backlog))
                self.overruns += len(payload) - room
                payload = payload[:room]
            with self.cond:
                payload, drop = self._page_faults(tx, call, payload)
                if payload:
                    begin = max(tx.line_free, now)
                    tx.items.append(Item(begin, begin + len(payload) * byte_time, payload))
                    tx.line_free = begin + len(payload) * byte_time
                if drop:
                    tx.end = max(tx.line_free, now)
                self.cond.notify_all()
            if drop:
                # What was on the line before the loss still reaches the far end.
                self._pause(tx.end - self.clock.now(), abortable=False)  # type: ignore[operator]
                with self.cond:
                    call.state = "down"
                    self.cond.notify_all()
                self._result("NO CARRIER")
                return self._swallow(unstuffer)
            slow = call.faults.slow_xoff
            if (
                slow is not None
                and tx.page == 1
                and not call.xoff_done
                and call.page_bytes >= SLOW_XOFF_AFTER
            ):
                call.xoff_done = True
                forced_until = now + slow
                forced_taken = 0
            if unstuffer.done:
                self._unread(unstuffer.rest)
                outcome = self._pause(tx.line_free - self.clock.now(), abortable=False)
                with self.cond:
                    tx.end = min(tx.line_free, self.clock.now())
                    self.cond.notify_all()
                if xoff:
                    self._write(XON)
                return self._result("NO CARRIER" if outcome == "down" else "OK")

    def _swallow(self, unstuffer: Unstuffer) -> None:
        """After a lost carrier, drop what the host still sends up to its DLE ETX."""
        while not unstuffer.done:
            if not self._wait(lambda: bool(self._in), 2.0) or self.switch.stopped:
                return
            unstuffer.feed(self._take())
        self._unread(unstuffer.rest)

    def _rx_data(self, mod: int) -> None:
        listen_at = self.clock.now()
        tol = self.clock.tolerance
        chosen: Transmission | None = None
        event = ""
        with self.cond:
            while True:
                if self.switch.stopped:
                    return None
                now = self.clock.now()
                if self._in:
                    self._in.clear()
                    event = "abort"
                    break
                call = self.call
                if call is None or call.down:
                    event = "down"
                    break
                wake = math.inf
                for tx in self.inbox:
                    if tx.kind == "hdlc":
                        if tx.active(now):
                            event = "fcerror"
                            break
                        if tx.start > now:
                            wake = min(wake, tx.start)
                        continue
                    if tx.received or tx.start < listen_at - tol:
                        continue
                    if tx.start > now:
                        wake = min(wake, tx.start)
                        continue
                    if _v17_family(tx.mod) != _v17_family(mod):
                        event = "fcerror"
                        break
                    tx.received = True
                    chosen = tx
                    break
                if event or chosen:
                    break
                self.cond.wait(None if wake == math.inf else max(0.0, wake - now))
        if event == "abort":
            return self._result("OK")
        if event == "down":
            return self._result("NO CARRIER")
        if event == "fcerror":
            return self._result("+FCERROR")
        assert chosen is not None
        tx = chosen
        outcome = self._pause(max(0.0, tx.ready - self.clock.now()))
        if outcome == "abort":
            return self._result("OK")
        if outcome != "done" and not tx.items:
            return self._result("NO CARRIER")
        self._result("CONNECT")
        sent = 0
        while True:
            chunks: list[bytes] = []
            with self.cond:
                while True:
                    if self.switch.stopped:
                        return None
                    now = self.clock.now()
                    wake = math.inf
                    while sent < len(tx.items) and tx.items[sent].arrival <= now:
                        chunks.append(tx.items[sent].payload)
                        sent += 1
                    if sent < len(tx.items):
                        wake = tx.items[sent].arrival
                    ended = tx.end is not None and tx.end <= now and sent == len(tx.items)
                    down = self.call is None or self.call.down
                    if chunks or ended or down or self._in:
                        break
                    if tx.end is not None:
                        wake = min(wake, tx.end)
                    self.cond.wait(None if wake == math.inf else max(0.0, wake - now))
                aborted = bool(self._in)
                self._in.clear()
            if chunks:
                self._write(stuff(b"".join(chunks)))
            if aborted:
                self._write(END)
                return self._result("OK")
            if ended or (down and sent == len(tx.items)) or (down and not chunks):
                self._write((stuff(CARRIER_TAIL) if self.carrier_tail else b"") + END)
                return self._result("NO CARRIER")

    # -- silence ---------------------------------------------------------------------

    def _tx_silence(self, tens_of_ms: int) -> None:
        outcome = self._pause(self.clock.wall(tens_of_ms / 100))
        if outcome != "stop":
            self._result("OK")

    def _rx_silence(self, tens_of_ms: int) -> None:
        need = self.clock.wall(tens_of_ms / 100)
        begin = self.clock.now()
        with self.cond:
            while True:
                if self.switch.stopped:
                    return None
                now = self.clock.now()
                if self._in:
                    self._in.clear()
                    break
                wake = math.inf
                quiet_since = begin
                active = False
                for tx in self.inbox:
                    if tx.active(now):
                        active = True
                        if tx.end is not None:
                            wake = min(wake, tx.end)
                    elif tx.start > now:
                        wake = min(wake, tx.start)
                    elif tx.end is not None:
                        quiet_since = max(quiet_since, tx.end)
                if not active and now - quiet_since >= need:
                    break
                if not active:
                    wake = min(wake, quiet_since + need)
                self.cond.wait(None if wake == math.inf else max(0.0, wake - now))
        self._result("OK")
        return None
