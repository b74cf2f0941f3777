"""A Class 2.0 modem line with the health checks the pool needs.

Sending is :class:`workers.fax.class2.line.Class2Line` (the modem runs T.30; the driver
opens the port for each call). This wrapper adds what every modem line has: a probe
(``ATI``, ``AT+FCLASS=?`` must offer 2.0) and, after a call the modem did not answer, a
check that marks the line broken so the pool takes it out of service.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from faxfleet.messages import Cause
from faxfleet.modems import ModemLine
from workers.fax.class2.driver import SENDER_CAPABILITIES, Class2Config
from workers.fax.class2.line import Class2Line
from workers.fax.modem.at import AtPort
from workers.lines.base import Call, CallHooks, SendReport
from workers.lines.modem import LineBroken, ModemPort, classes_offered

_BR = {2400: 0, 4800: 1, 7200: 2, 9600: 3, 12000: 4, 14400: 5}
"""T.32 BR codes of the bit rates a line may be limited to."""


@dataclass
class Class2ModemLine:
    line: Class2Line
    local_id: str = ""
    modem: ModemPort = field(init=False)

    def __post_init__(self) -> None:
        self.modem = ModemPort(self.line.name, self.line.url, self.line.baudrate, self.line.flow)

    @classmethod
    def from_config(cls, cfg: ModemLine) -> Class2ModemLine:
        caps = replace(SENDER_CAPABILITIES, br=_BR[cfg.max_rate])
        line = Class2Line(
            name=cfg.name,
            url=cfg.url,
            config=Class2Config(capabilities=caps),
            baudrate=cfg.baudrate,
            flow=cfg.flow,
        )
        return cls(line, cfg.local_id)

    @property
    def name(self) -> str:
        return self.line.name

    @property
    def broken(self) -> str | None:
        return self.modem.broken

    def probe(self) -> str:
        def check(port: AtPort) -> str:
            identity, classes = classes_offered(port)
            if "2.0" not in classes:
                raise LineBroken(f"no fax Class 2.0 (AT+FCLASS=? gave {','.join(classes)})")
            return " ".join(identity) or "class 2.0 modem"

        try:
            return self.modem.probe(check)
        finally:
            self.close()  # the driver opens the port for each call

    def close(self) -> None:
        with self.modem.lock:
            self.modem.close()

    def send(self, call: Call, pages: Sequence[bytes], hooks: CallHooks) -> SendReport:
        with self.modem.lock:
            if self.modem.broken is not None:
                before = call.first_page - 1
                return SendReport(
                    False, before, False, Cause.MODEM_NOT_RESPONDING, self.modem.broken
                )
            if call.local_id is None and self.local_id:
                call = replace(call, local_id=self.local_id)
            try:
                report = self.line.send(call, pages, hooks)
            except (OSError, ValueError) as error:
                reason = f"cannot open {self.line.url}: {error}"
                self.modem.mark_broken(reason)
                return SendReport(
                    False, call.first_page - 1, False, Cause.MODEM_NOT_RESPONDING, reason
                )
            if report.cause in (Cause.MODEM_NOT_RESPONDING, Cause.MODEM_ERROR):
                alive = self.modem.alive()
                self.modem.close()
                if not alive:
                    self.modem.mark_broken(f"modem stopped responding ({report.detail})")
            return report
