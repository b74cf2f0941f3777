"""An emulated Class 2.0 fax modem (ITU-T T.32) on a pty, with simulated far ends.

No software Class 2 modem exists to test a Class 2.0 driver against, so this one speaks
the command set from the standard and plays the far end itself: each dialled number gets
a :class:`FarEnd` (a fax machine that accepts pages, a busy line, a voice, a machine that
rejects or drops a page, one that never trains, a modem that falls silent). Line time is
simulated and scaled, so a test runs a multi-page call in milliseconds.
"""

from workers.fax.emulator.class2.farend import Behaviour, CallRecord, FarEnd
from workers.fax.emulator.class2.modem import Class2Emulator

__all__ = ["Behaviour", "CallRecord", "Class2Emulator", "FarEnd"]
