"""A fleet line backed by a Class 2.0 fax modem.

The send task sees the same :class:`~workers.lines.base.Line` as for any other line: this
one opens the modem's serial port for the call (so the port is free between calls, and a
modem that was unplugged and replugged is simply found again), hands the pages to
:class:`~workers.fax.class2.driver.Class2Driver`, and turns its result into a
:class:`~workers.lines.base.SendReport` counted over the whole fax.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from workers.fax.class2.driver import Class2Config, Class2Driver
from workers.fax.modem.at import AtPort, Flow
from workers.lines.base import Call, CallHooks, SendReport


@dataclass
class Class2Line:
    name: str
    url: str
    """The modem's serial port: a device path, ``socket://host:port`` or ``rfc2217://``."""
    config: Class2Config = field(default_factory=Class2Config)
    baudrate: int = 115200
    flow: Flow = "xonxoff"

    def send(self, call: Call, pages: Sequence[bytes], hooks: CallHooks) -> SendReport:
        before = call.first_page - 1
        port = AtPort.open(self.url, baudrate=self.baudrate, flow=self.flow, name=self.name)
        try:
            result = Class2Driver(port, self.config).send(
                call.dial_string,
                pages,
                hooks,
                local_id=call.local_id,
                first_page=call.first_page,
            )
        finally:
            port.close()
        return SendReport(
            ok=result.ok,
            pages_confirmed=before + result.pages_confirmed,
            connected=result.connected,
            cause=result.cause,
            detail=result.detail,
            remote_id=result.remote_id,
        )
