"""Software Class 1 fax modems for tests, the demo and benchmarks: a pair of emulated
modems joined by an emulated telephone line, each on a pty (and optionally a TCP port),
with line time and per-number fault injection. ``python -m workers.fax.emulator`` runs a
pair as a command."""

from workers.fax.emulator.faults import Faults, format_faults, parse_faults
from workers.fax.emulator.pair import EmulatorPair

__all__ = ["EmulatorPair", "Faults", "format_faults", "parse_faults"]
