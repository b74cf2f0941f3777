"""A fleet line on one Class 1 (or 1.0) fax modem, driven by faxfleet's own T.30 engine.

The send task sees a plain :class:`~workers.lines.base.Line`. Underneath, the call is the
production driver end to end: :class:`~workers.fax.modem.at.AtPort` for the serial
dialogue, :class:`~workers.fax.modem.class1.Class1Modem` for the Class 1 moves and
:func:`workers.fax.session.send_fax` running the T.30 engine. The emulated line
(:mod:`workers.lines.emulated`) uses this very class, so the fleet's tests exercise what
production runs.

Reports count pages over the whole fax (a resumed call adds the pages of earlier
attempts) and say where a failure happened: ``no carrier on page 3 (phase C): the line
dropped in phase C``. A call that lost its carrier after connecting is ``no_carrier``,
as a real fax server reports a carrier loss; ``remote_disconnected`` is kept for a far
end that hung up properly (DCN). A modem that stops answering AT commands during a call
ends it as ``modem_not_responding`` and marks the line broken, for the pool to take it
out of service.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from faxfleet.messages import Cause
from faxfleet.modems import ModemLine
from workers.fax.modem.at import AtPort, Flow
from workers.fax.modem.class1 import Class1Modem, ModemInfo, Modulation
from workers.fax.session import Hooks, SessionResult, receive_fax, send_fax
from workers.fax.t30.engine import Config, Timers
from workers.fax.t30.frames import FALLBACK, Rate
from workers.fax.t30.negotiate import Wishes
from workers.lines.base import Call, CallHooks, SendReport
from workers.lines.modem import LineBroken, ModemPort, log, phase_detail

_NOT_CONNECTED_PHASES = ("A",)


def rates_up_to(max_rate: int) -> tuple[Rate, ...]:
    """The fallback rates no faster than ``max_rate`` bit/s, fastest first."""
    return tuple(r for r in FALLBACK if Modulation(r.modulation).bit_rate <= max_rate)


class _CallHooks(Hooks):
    """The session's hooks in terms of the whole fax: page numbers are absolute."""

    def __init__(self, hooks: CallHooks, first_page: int) -> None:
        self.hooks = hooks
        self.offset = first_page - 1
        self.page: int | None = None
        """The page on the wire when the call ended (absolute), if any."""

    def connected(self, remote_id: str) -> None:
        self.hooks.connected(remote_id or None)

    def page_started(self, number: int) -> None:
        self.page = self.offset + number
        self.hooks.page_started(self.page)

    def should_stop(self) -> bool:
        return self.hooks.should_stop()


@dataclass
class Class1ModemLine:
    """One Class 1 modem line. ``timers`` and ``dial_timeout`` are wall seconds (an
    emulated line running faster than real time shortens them)."""

    name: str
    url: str
    local_id: str = ""
    wishes: Wishes = field(default_factory=Wishes)
    timers: Timers = field(default_factory=Timers)
    baudrate: int = 115200
    flow: Flow = "xonxoff"
    dial_timeout: float = 90.0
    answer_timeout: float = 30.0
    modem: ModemPort = field(init=False)
    info: ModemInfo | None = None
    """What the last probe found."""

    def __post_init__(self) -> None:
        self.modem = ModemPort(self.name, self.url, self.baudrate, self.flow)
        self._fax_class = "1"

    @classmethod
    def from_config(cls, cfg: ModemLine, **overrides: object) -> Class1ModemLine:
        wishes = Wishes(rates=rates_up_to(cfg.max_rate), ecm=cfg.ecm)
        args: dict[str, object] = {
            "name": cfg.name,
            "url": cfg.url,
            "local_id": cfg.local_id,
            "wishes": wishes,
            "baudrate": cfg.baudrate,
            "flow": cfg.flow,
        }
        args.update(overrides)
        return cls(**args)  # type: ignore[arg-type]

    @property
    def broken(self) -> str | None:
        return self.modem.broken

    def _class1(self, port: AtPort) -> Class1Modem:
        return Class1Modem(port, fax_class=self._fax_class)

    def probe(self) -> str:
        """Identify the modem (``ATI``, ``AT+FCLASS=?``, modulations); raises
        :class:`LineBroken` when it is silent, missing or has no Class 1."""

        def check(port: AtPort) -> str:
            modem = self._class1(port)
            info = modem.probe()
            if not info.class1:
                raise LineBroken(f"no fax Class 1 (AT+FCLASS=? gave {','.join(info.classes)})")
            self._fax_class = modem.fax_class
            self.info = info
            return " ".join(info.identity) or info.model or "class 1 modem"

        return self.modem.probe(check)

    def close(self) -> None:
        with self.modem.lock:
            self.modem.close()

    def _config(self, local_id: str | None) -> Config:
        return Config(
            ident=(local_id or self.local_id)[:20], wishes=self.wishes, timers=self.timers
        )

    def send(self, call: Call, pages: Sequence[bytes], hooks: CallHooks) -> SendReport:
        before = call.first_page - 1
        adapter = _CallHooks(hooks, call.first_page)
        with self.modem.lock:
            if self.modem.broken is not None:
                return SendReport(
                    False, before, False, Cause.MODEM_NOT_RESPONDING, self.modem.broken
                )
            try:
                port = self.modem.port()
            except (OSError, ValueError) as error:
                reason = f"cannot open {self.url}: {error}"
                self.modem.mark_broken(reason)
                return SendReport(False, before, False, Cause.MODEM_NOT_RESPONDING, reason)
            port.discard_input()
            result = send_fax(
                self._class1(port),
                call.dial_string,
                pages,
                self._config(call.local_id),
                adapter,
                dial_timeout=self.dial_timeout,
            )
            if not result.ok and not self.modem.alive():
                self.modem.mark_broken(f"modem stopped responding ({result.detail})")
                return SendReport(
                    False,
                    before + result.pages,
                    result.phase not in _NOT_CONNECTED_PHASES,
                    Cause.MODEM_NOT_RESPONDING,
                    phase_detail("modem_not_responding", result.detail, result.phase, adapter.page),
                    result.remote_id or None,
                )
        return report_of(result, before, adapter.page)

    def receive(self, hooks: Hooks | None = None) -> SessionResult:
        """Answer the ringing line and receive a fax (the caller holds ``modem.lock``)."""
        port = self.modem.port()
        result = receive_fax(
            self._class1(port), self._config(None), hooks, answer_timeout=self.answer_timeout
        )
        if not result.ok and not self.modem.alive():
            self.modem.mark_broken(f"modem stopped responding ({result.detail})")
        return result


def report_of(result: SessionResult, before: int, page: int | None) -> SendReport:
    """A sending session's result as the fleet's report, counted over the whole fax."""
    cause = result.cause
    if cause is Cause.REMOTE_DISCONNECTED and "dropped" in result.detail:
        cause = Cause.NO_CARRIER  # the carrier was lost, not a DCN
    connected = result.phase not in _NOT_CONNECTED_PHASES or bool(result.remote_id)
    if result.ok:
        log.info("fax sent", pages=result.pages, rate=result.bit_rate, ecm=result.ecm)
    return SendReport(
        ok=result.ok,
        pages_confirmed=before + result.pages,
        connected=connected,
        cause=None if result.ok else (cause or Cause.PROTOCOL_ERROR),
        detail=None if result.ok else phase_detail(cause, result.detail, result.phase, page),
        remote_id=result.remote_id or None,
    )
