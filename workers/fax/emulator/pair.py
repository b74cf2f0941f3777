"""Two emulated Class 1 modems on one emulated line, run in background threads.

>>> with EmulatorPair(("5551001", "5551002"), time_scale=100) as pair:
...     url_a, url_b = pair.urls           # pty paths for pyserial
...     # ATDT5551002 on url_a rings url_b

Every number that no fault refuses rings the other modem, so per-number faults (a noisy
page, a dropped carrier) apply to real calls between the two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from workers.fax.emulator.faults import Faults, parse_faults
from workers.fax.emulator.line import Clock, Switch
from workers.fax.emulator.modem import EmulatedModem


class EmulatorPair:
    def __init__(
        self,
        numbers: Sequence[str] = ("5551001", "5551002"),
        *,
        faults: Mapping[str, Faults] | str | None = None,
        time_scale: float = 1.0,
        tcp: bool = False,
        tcp_ports: Sequence[int] = (0, 0),
        tolerance: float = 0.3,
        min_tolerance: float = 0.15,
        fcs_to_host: bool = True,
        carrier_tail: bool = True,
    ) -> None:
        """``time_scale`` divides every line time (50 runs a call 50 times faster than
        real time). ``tolerance`` (line seconds, never less than ``min_tolerance`` wall
        seconds) is how late a receiver may start listening and still catch a carrier.
        ``fcs_to_host`` and ``carrier_tail`` behave as iaxmodem does: each received frame
        is followed by its FCS, each high-speed reception ends with some junk."""
        if len(numbers) != 2:
            raise ValueError("an emulator pair has exactly two numbers")
        parsed = parse_faults(faults) if isinstance(faults, str) else dict(faults or {})
        self.switch = Switch(Clock(time_scale, tolerance, min_tolerance), parsed)
        self.numbers = tuple(numbers)
        self._tcp = tcp
        self._tcp_ports = tuple(tcp_ports)
        self.modems: tuple[EmulatedModem, ...] = ()
        self._options = {"fcs_to_host": fcs_to_host, "carrier_tail": carrier_tail}

    @property
    def a(self) -> EmulatedModem:
        return self.modems[0]

    @property
    def b(self) -> EmulatedModem:
        return self.modems[1]

    @property
    def urls(self) -> tuple[str, str]:
        return (self.a.url, self.b.url)

    @property
    def tcp_urls(self) -> tuple[str | None, str | None]:
        return (self.a.tcp_url, self.b.tcp_url)

    def start(self) -> tuple[str, str]:
        """Start both modems; returns their pyserial URLs (pty paths)."""
        modems = []
        for i, number in enumerate(self.numbers):
            port = self._tcp_ports[i] if self._tcp else None
            modem = EmulatedModem(
                chr(ord("A") + i), number, self.switch, tcp_port=port, **self._options
            )
            self.switch.modems[number] = modem
            modems.append(modem)
        self.modems = tuple(modems)
        for modem in self.modems:
            modem.start()
        return self.urls

    def stop(self) -> None:
        self.switch.stop()
        for modem in self.modems:
            modem.join()

    def __enter__(self) -> EmulatorPair:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
