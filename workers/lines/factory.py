"""Build a site's lines from its settings, for each line kind.

* ``simulated``: ``lines`` sleep-based lines (:mod:`workers.lines.simulated`);
* ``emulated``: ``lines`` emulated modem pairs, our driver against a scripted far end
  (:mod:`workers.lines.emulated`);
* ``modem``: one line per entry of ``modems``: Class 1/1.0 lines on our T.30 engine
  (:mod:`workers.lines.class1`), Class 2.0 lines on the modem's (:mod:`workers.lines.class2`).

The first two follow the line count an administrator sets (:meth:`LineFactory.make` adds
line number ``i``); a modem site has exactly the modems it is configured with.
"""

from __future__ import annotations

from faxfleet.modems import ModemLine
from faxfleet.settings import Settings
from workers.lines.base import Line
from workers.lines.class1 import Class1ModemLine
from workers.lines.class2 import Class2ModemLine
from workers.lines.emulated import EmulatedLine
from workers.lines.simulated import SimulatedLine, SimulatedNetwork


def modem_line(cfg: ModemLine) -> Class1ModemLine | Class2ModemLine:
    """The line for one configured modem, by its fax class."""
    if cfg.fax_class == "2.0":
        return Class2ModemLine.from_config(cfg)
    line = Class1ModemLine.from_config(cfg)
    return line


class LineFactory:
    def __init__(self, settings: Settings, network: SimulatedNetwork) -> None:
        self.settings = settings
        self.network = network

    @property
    def resizable(self) -> bool:
        """Whether the line count an administrator sets applies (not to modem sites)."""
        return self.settings.line_kind != "modem"

    def initial(self) -> list[Line]:
        s = self.settings
        if s.line_kind == "modem":
            return [modem_line(cfg) for cfg in s.modems]
        return [self.make(i) for i in range(s.lines)]

    def make(self, index: int) -> Line:
        """Line number ``index`` (0-based) of a simulated or emulated site."""
        s = self.settings
        name = f"{s.line_prefix or s.site}-{index + 1}"
        if s.line_kind == "emulated":
            return EmulatedLine(
                name,
                s.site,
                self.network,
                time_scale=s.emulator_time_scale,
                answer=s.emulator_answer,
            )
        if s.line_kind == "simulated":
            return SimulatedLine(
                name=name,
                site=s.site,
                network=self.network,
                dial_seconds=s.sim_dial_seconds,
                page_seconds=s.sim_page_seconds,
            )
        raise ValueError(f"a {s.line_kind} site has no numbered lines")
