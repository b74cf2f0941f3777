"""Faults the emulated line can inject, chosen per dialled number.

A call to a number with faults behaves like a call that meets that trouble in the field.
The text form is what the command line and the benchmarks use::

    5551003=busy; 5551004=drop_after:20000; 5551005=noisy_page:1,bad_fcs:3

Each ``NUMBER=FAULT[,FAULT...]`` item separated by ``;``; each fault is a name with an
optional ``:argument``:

==================  =====================================================================
``busy``            the number is busy
``no_answer``       it rings, nobody answers (NO ANSWER after S7 seconds of line time)
``no_dialtone``     the calling modem finds no dial tone
``voice``           a person answers: no V.21 ever, the caller gets NO CARRIER after S7
``drop_after:N``    the carrier (and the call) is lost after N bytes of page data
``noisy_page:N``    page N (counting data transmissions that are not all zeros, i.e. not
                    the training check) arrives with bit errors: one flipped bit every
                    ``noise_every:K`` bytes (default 97), enough for the receiver to see
                    bad lines and answer RTN
``bad_fcs:N``       the Nth HDLC frame of the call (either direction) arrives with a bad FCS
``silent:S``        the calling modem stops answering AT commands as it dials, for S
                    seconds (wall clock), then recovers; ``silent:S:dead`` never recovers
``slow_xoff:S``     during the first page the transmitting modem holds XOFF for S seconds
                    (wall clock) after 1 KiB; bytes the host sends meanwhile, beyond a small
                    slack, are lost as they would be on a real modem
==================  =====================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class Faults:
    busy: bool = False
    no_answer: bool = False
    no_dialtone: bool = False
    voice: bool = False
    drop_after: int | None = None
    noisy_page: int | None = None
    noise_every: int = 97
    bad_fcs: int | None = None
    silent: float | None = None
    silent_recovers: bool = True
    slow_xoff: float | None = None

    @classmethod
    def parse(cls, text: str) -> Faults:
        """``busy`` or ``drop_after:20000,noisy_page:1`` into Faults; ValueError if unknown."""
        faults = cls()
        names = {f.name for f in fields(cls)}
        for item in (p.strip() for p in text.split(",")):
            if not item:
                continue
            name, _, arg = item.partition(":")
            name = name.strip().replace("-", "_")
            if name not in names or name == "silent_recovers":
                raise ValueError(f"unknown fault {name!r}")
            if name in ("busy", "no_answer", "no_dialtone", "voice"):
                if arg:
                    raise ValueError(f"fault {name!r} takes no argument")
                setattr(faults, name, True)
            elif name in ("silent", "slow_xoff"):
                seconds, _, mode = arg.partition(":")
                setattr(faults, name, float(seconds))
                if name == "silent":
                    if mode not in ("", "recover", "dead"):
                        raise ValueError(f"silent:{arg}: expected recover or dead")
                    faults.silent_recovers = mode != "dead"
            else:
                value = int(arg)
                if value < 1:
                    raise ValueError(f"{name}:{arg}: must be at least 1")
                setattr(faults, name, value)
        return faults

    def __str__(self) -> str:
        parts: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("silent_recovers", "noise_every") or value in (None, False):
                continue
            if value is True:
                parts.append(f.name)
            elif f.name == "silent":
                parts.append(f"silent:{value:g}" + ("" if self.silent_recovers else ":dead"))
            elif f.name == "noisy_page" and self.noise_every != 97:
                parts.append(f"noisy_page:{value},noise_every:{self.noise_every}")
            else:
                parts.append(
                    f"{f.name}:{value:g}" if isinstance(value, float) else f"{f.name}:{value}"
                )
        return ",".join(parts)


def parse_faults(text: str) -> dict[str, Faults]:
    """``NUMBER=FAULTS; NUMBER=FAULTS`` into a mapping from number to :class:`Faults`."""
    out: dict[str, Faults] = {}
    for item in (p.strip() for p in text.split(";")):
        if not item:
            continue
        number, sep, spec = item.partition("=")
        if not sep or not number.strip():
            raise ValueError(f"expected NUMBER=FAULTS, got {item!r}")
        out[number.strip()] = Faults.parse(spec)
    return out


def format_faults(faults: dict[str, Faults]) -> str:
    return "; ".join(f"{number}={f}" for number, f in faults.items())
