"""The emulated line: the production fax driver against an emulated far end, fast.

Each line is a pair of emulated Class 1 modems (:class:`workers.fax.emulator.EmulatorPair`)
joined by an emulated telephone line that runs ``time_scale`` times faster than real
time. Side A is driven by :class:`~workers.lines.class1.Class1ModemLine`, exactly as a
real modem line is; side B is the far end: a thread acting as the remote fax machine,
which answers and receives with faxfleet's own T.30 receiver.

Calls follow the same per-number script in Redis as the simulated line
(``ff:sim:script:<number>``, :class:`~workers.lines.simulated.SimulatedNetwork`), but
every outcome happens for real on the line, so the sender's driver meets it as it would
in the field:

=================  =====================================================================
``ok``             the far end answers and receives every page
``busy``           the emulator's ``busy`` fault: the modem reports BUSY
``no_answer``      ``no_answer``: it rings out (NO ANSWER)
``no_dialtone``    ``no_dialtone``: NO DIALTONE
``no_carrier``     ``voice``: answered by no modem, the modem reports NO CARRIER
``not_a_fax``      the far end goes off hook and never sends DIS: T.30's T1 runs out
``drop:N``         the far end drops the carrier while page N is on the line
``rtn:N``          page N reaches the far end damaged, every time: it answers RTN
``stall:S``        after page 1 the far end says "not ready" (RNR) for S seconds (at most
                   ``MAX_STALL``): the sender polls (RR) and the call hangs meanwhile
=================  =====================================================================

Both sides live in one process, so before each call the line tells its far end which job
and pages the call carries; the far end then records what it accepted, in absolute page
numbers, in ``ff:sim:received:<number>`` exactly like the simulated line, plus a hash of
each received page image (:func:`page_image_hash`) so that a test can check that what
arrived is what was rendered.
"""

from __future__ import annotations

import hashlib
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

from faxfleet.kinds import Resolution
from faxfleet.log import get_logger
from faxfleet.messages import Cause
from workers.fax.emulator import EmulatorPair
from workers.fax.emulator.faults import Faults
from workers.fax.modem.at import AtError, AtPort
from workers.fax.modem.class1 import CallStatus, Class1Modem, DataResult, Modulation
from workers.fax.session import Hooks, SessionResult, receive_fax, send_fax
from workers.fax.t30.engine import Config, Timers
from workers.fax.t30.frames import Fcf
from workers.fax.t30.hdlc import Frame
from workers.lines.base import Call, CallHooks, SendReport
from workers.lines.class1 import Class1ModemLine
from workers.lines.simulated import SimulatedNetwork
from workers.render.coding import Coding
from workers.render.tiff import encode_page, read_pages

log = get_logger("faxfleet.lines")

MAX_STALL = 15.0
"""Longest stall (wall seconds): a sender polls a receiver that is not ready at most
``MAX_RR`` (20) times, and each answer must come within its T4."""
_RNR_STEP = 0.8
"""Wall seconds the far end takes over each answer while it stalls (less than T4)."""

_FAULTS = {
    "busy": Faults(busy=True),
    "no_answer": Faults(no_answer=True),
    "no_dialtone": Faults(no_dialtone=True),
    "no_carrier": Faults(voice=True),
}
"""Outcomes the emulated exchange produces on its own: nobody needs to answer."""


def calls_in_key(line: str) -> str:
    """Calls the emulated network is to place *into* ``line`` (a Redis list of JSON
    objects ``{"remote_id": "...", "pages": N}``), for lines that answer."""
    return f"ff:sim:call-in:{line}"


def _inbound_page(number: int) -> bytes:
    """A page for a call placed into a line: bars whose layout depends on ``number``."""
    image = Image.new("1", (1728, 400), 1)
    draw = ImageDraw.Draw(image)
    for y in range(20, 380, 30):
        draw.rectangle((50 + 60 * number, y, 1600 - (y % 70), y + 8), fill=0)
    return encode_page(image, Resolution.FINE, Coding.MMR)


def page_image_hash(page_tiff: bytes) -> str:
    """A short hash of a page's pixels (not of its file: the far end re-encodes pages)."""
    page = next(read_pages(page_tiff))
    return hashlib.sha256(page.bitmap.bits).hexdigest()[:16]


def scaled_timers(time_scale: float) -> Timers:
    """T.30 timers for a line ``time_scale`` times faster than real time, kept long
    enough for a busy two-core machine to turn a frame around."""
    real = Timers()
    return Timers(
        t1=max(real.t1 / time_scale, 6.0),
        t2=max(real.t2 / time_scale, 3.0),
        t3=max(real.t3 / time_scale, 3.0),
        t4=max(real.t4 / time_scale, 1.5),
        t5=max(real.t5 / time_scale, 6.0),
    )


@dataclass
class Plan:
    """What the next call carries and what the far end is to do with it."""

    call: Call
    kind: str
    arg: str
    faults: Faults
    ready: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    abandoned: threading.Event = field(default_factory=threading.Event)
    """The caller gave up before the far end rang (its modem never dialled)."""
    pages: list[int] = field(default_factory=list)
    """Absolute numbers of the pages the far end accepted."""
    outcome: str = ""

    @property
    def target(self) -> int | None:
        return int(self.arg) if self.kind in ("drop", "rtn") and self.arg else None


class _FarHooks(Hooks):
    def __init__(self, first_page: int) -> None:
        self.offset = first_page - 1
        self.page: int | None = None

    def page_started(self, number: int) -> None:
        self.page = self.offset + number


class _Trouble:
    """The far end's modem, with the trouble the script asks for on page N: the carrier
    drops under it (the exchange cuts the call a few bytes into the page), or what it
    demodulates is damaged (one flipped bit every ten bytes: bad lines, hence RTN); or,
    for a stall, its first page confirmation is held back by "not ready" answers."""

    def __init__(
        self,
        modem: Class1Modem,
        plan: Plan,
        hooks: _FarHooks,
        pair: EmulatorPair,
        confirmed: Callable[[int], None] | None = None,
    ):
        self.modem = modem
        self.plan = plan
        self.hooks = hooks
        self.pair = pair
        self.confirmed = confirmed
        self.stall = min(float(plan.arg or MAX_STALL), MAX_STALL) if plan.kind == "stall" else 0

    def send_hdlc(self, frames: Sequence[bytes]) -> CallStatus:
        mcf = bool(frames) and frames[-1][2:3] == bytes((Fcf.MCF,))
        if self.stall > 0 and mcf:
            seconds, self.stall = self.stall, 0
            self._not_ready(seconds)
        status = self.modem.send_hdlc(frames)
        if mcf and self.confirmed is not None and self.hooks.page is not None:
            self.confirmed(self.hooks.page)  # the far end holds this page: said at once
        return status

    def _not_ready(self, seconds: float) -> None:
        """Answer RNR, take the sender's RR poll, again, for ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(_RNR_STEP, left))
            if time.monotonic() >= deadline:
                return
            if self.modem.send_hdlc([Frame(Fcf.RNR).encode()]) != CallStatus.OK:
                return
            got = self.modem.receive_hdlc(timeout=5.0)
            if got.status != "ok" or not got.frame or got.frame[2] & 0xFE != Fcf.RR & 0xFE:
                return

    def __getattr__(self, name: str) -> object:
        return getattr(self.modem, name)

    def receive_data(self, mod: Modulation, timeout: float) -> DataResult:
        on_target = self.hooks.page is not None and self.hooks.page == self.plan.target
        if on_target and self.plan.kind == "drop":
            emulated_call = self.pair.b.call
            if emulated_call is not None:
                self.plan.faults.drop_after = emulated_call.page_bytes + 64
        got = self.modem.receive_data(mod, timeout)
        if on_target and self.plan.kind == "rtn" and any(got.data):
            noisy = bytearray(got.data)
            for k in range(5, len(noisy), 10):
                noisy[k] ^= 0x04
            return DataResult(got.status, bytes(noisy))
        return got


class FarEnd:
    """The remote fax machine on side B: one thread, one call per plan."""

    def __init__(
        self,
        pair: EmulatorPair,
        network: SimulatedNetwork,
        site: str,
        line: str,
        timers: Timers,
        *,
        calls_in: bool = False,
    ) -> None:
        """``calls_in``: also place the calls listed under :func:`calls_in_key` into the
        line (when it answers inbound calls)."""
        self.calls_in = calls_in
        self.pair = pair
        self.network = network
        self.site = site
        self.line = line
        self.timers = timers
        self._plans: queue.Queue[Plan | None] = queue.Queue()
        self._port = AtPort.open(pair.urls[1], name=f"{line}-far")
        self._thread = threading.Thread(target=self._run, name=f"{line}-far", daemon=True)
        self._thread.start()

    def expect(self, plan: Plan) -> None:
        """Be ready for ``plan``'s call (returns once the far end listens)."""
        self._plans.put(plan)
        plan.ready.wait(10)

    def stop(self) -> None:
        self._plans.put(None)
        self._thread.join(10)
        self._port.close()

    def _run(self) -> None:
        modem = Class1Modem(self._port)
        try:
            self._port.command("ATE0V1Q0")
        except AtError:
            log.exception("emulated far end did not start", line=self.line)
        while True:
            try:
                plan = self._plans.get(timeout=0.5) if self.calls_in else self._plans.get()
            except queue.Empty:
                self._call_in(modem)
                continue
            if plan is None:
                return
            try:
                self._port.discard_input()
                self._port.unsolicited()
                plan.ready.set()
                self._take(modem, plan)
            except Exception:  # a far end that fails must not take the line with it
                log.exception("emulated far end failed", line=self.line)
                plan.outcome = plan.outcome or "far end failed"
            finally:
                plan.done.set()

    def _call_in(self, modem: Class1Modem) -> None:
        """Place the next listed call into the line: dial side A and send a fax."""
        key = calls_in_key(self.line)
        raw = self.network.r.lpop(key)
        if raw is None:
            return
        spec = json.loads(raw)
        pages = [_inbound_page(n) for n in range(1, int(spec.get("pages", 1)) + 1)]
        self._port.discard_input()
        config = Config(ident=str(spec.get("remote_id", ""))[:20], timers=self.timers)
        try:
            result = send_fax(modem, self.pair.numbers[0], pages, config)
        except AtError:
            log.exception("emulated far end could not call in", line=self.line)
            return
        if result.cause is Cause.BUSY:  # the line was on a call of its own: try again
            self.network.r.rpush(key, raw)
        log.info("emulated call in", line=self.line, ok=result.ok, cause=result.cause)

    def _take(self, modem: Class1Modem, plan: Plan) -> None:
        deadline = time.monotonic() + self.timers.t1 + 10
        while self._port.wait_for(["RING"], 0.1) is None:
            if plan.abandoned.is_set() or time.monotonic() > deadline:
                plan.outcome = "never rang"
                return
        if plan.kind == "not_a_fax":
            self._off_hook_in_silence(modem)
            plan.outcome = "answered by a voice"
            self._record(plan)
            return
        hooks = _FarHooks(plan.call.first_page)
        config = Config(ident=plan.call.number[-20:], timers=self.timers)
        trouble = _Trouble(
            modem,
            plan,
            hooks,
            self.pair,
            lambda page: self.network.page_confirmed(plan.call, page, site=self.site),
        )
        result = receive_fax(trouble, config, hooks)  # type: ignore[arg-type]
        first = plan.call.first_page
        plan.pages = list(range(first, first + len(result.received)))
        plan.outcome = self._outcome(plan, result)
        self._record(plan, result.received)

    def _off_hook_in_silence(self, modem: Class1Modem) -> None:
        """Answer like a person would: off hook, no fax tones, until the caller gives up."""
        status = modem.answer(timeout=10)
        if status is CallStatus.OK:
            self._port.wait_for(["NO CARRIER", "ERROR", "OK"], self.timers.t1 * 2 + 10)
        modem.hangup()

    @staticmethod
    def _outcome(plan: Plan, result: SessionResult) -> str:
        if result.ok:
            return "complete"
        target = plan.target
        if plan.kind == "drop" and target is not None and target not in plan.pages:
            return f"carrier lost on page {target}"
        if plan.kind == "rtn" and target is not None and target not in plan.pages:
            return f"page {target} rejected"
        return f"{result.cause}: {result.detail}" if result.cause else result.detail

    def _record(self, plan: Plan, received: Sequence[bytes] = ()) -> None:
        self.network.record_call(
            plan.call,
            site=self.site,
            line=self.line,
            pages=plan.pages,
            outcome=plan.outcome,
            page_hashes=[page_image_hash(p) for p in received],
        )


class EmulatedLine:
    """A fleet line: :class:`Class1ModemLine` on side A of an emulated pair, a scripted
    far end on side B."""

    def __init__(
        self,
        name: str,
        site: str,
        network: SimulatedNetwork,
        *,
        time_scale: float = 100.0,
        local_id: str = "",
        answer: bool = False,
    ) -> None:
        """``answer``: the far end also calls in (see :func:`calls_in_key`)."""
        self.name = name
        self.site = site
        self.network = network
        self.time_scale = time_scale
        self.pair = EmulatorPair(("1000001", "1000002"), time_scale=time_scale)
        self.pair.start()
        timers = scaled_timers(time_scale)
        self.modem_line = Class1ModemLine(
            name=name,
            url=self.pair.urls[0],
            local_id=local_id,
            timers=timers,
            dial_timeout=max(120.0 / time_scale, 10.0),
            answer_timeout=max(30.0 / time_scale, 5.0),
        )
        self.far_end = FarEnd(self.pair, network, site, name, timers, calls_in=answer)

    @property
    def broken(self) -> str | None:
        return self.modem_line.broken

    def probe(self) -> str:
        return self.modem_line.probe()

    def close(self) -> None:
        self.far_end.stop()
        self.modem_line.close()
        self.pair.stop()

    def send(self, call: Call, pages: Sequence[bytes], hooks: CallHooks) -> SendReport:
        outcome = self.network.next_outcome(call.number)
        kind, _, arg = outcome.partition(":")
        digits = re.sub(r"[^0-9*#]", "", call.dial_string)
        faults = Faults(**vars(_FAULTS[kind])) if kind in _FAULTS else Faults()
        if kind == "silent":  # this line's own modem stops answering as it dials
            faults = Faults.parse(f"silent:{arg or '3600:dead'}")
        plan = Plan(call, kind, arg, faults)
        switch = self.pair.switch
        with switch.cond:
            switch.faults[digits] = faults
        try:
            answers = kind not in _FAULTS and kind != "silent"
            if answers:
                self.far_end.expect(plan)
            report = self.modem_line.send(call, pages, hooks)
            if answers:
                if not report.connected:
                    plan.abandoned.set()
                plan.done.wait(self.modem_line.timers.t1 * 2 + 30)
        finally:
            with switch.cond:
                switch.faults.pop(digits, None)
        return report
