"""Run an emulated Class 2.0 modem until interrupted, for a demo or a hand-driven session.

    python -m workers.fax.emulator.class2 --scale 10 --far-end 200=busy --far-end 500=reject_page:2

prints the pty path to open (with a line site, minicom, efax -d ...) and serves calls until
SIGINT or SIGTERM; every call is printed when the modem stops. Numbers without a
``--far-end`` answer as fax machines that accept every page.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from workers.fax.emulator.class2.farend import Behaviour, FarEnd
from workers.fax.emulator.class2.modem import Class2Emulator


def far_end(spec: str) -> tuple[str, FarEnd]:
    """``NUMBER=BEHAVIOUR[:PAGE]``, e.g. ``500=reject_page:2``."""
    number, sep, rest = spec.partition("=")
    behaviour, _, page = rest.partition(":")
    if not sep or not number:
        raise argparse.ArgumentTypeError(f"expected NUMBER=BEHAVIOUR[:PAGE], got {spec!r}")
    try:
        return number, FarEnd(Behaviour(behaviour), page=int(page or 0))
    except ValueError as exc:
        choices = ", ".join(b.value for b in Behaviour)
        raise argparse.ArgumentTypeError(f"{spec!r}: behaviours are {choices}") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.fax.emulator.class2")
    parser.add_argument("--scale", type=float, default=1.0, help="line time divisor")
    parser.add_argument("--far-end", type=far_end, action="append", default=[])
    args = parser.parse_args(argv)
    modem = Class2Emulator(dict(args.far_end), scale=args.scale)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    print(modem.start(), flush=True)
    try:
        done.wait()
    finally:
        modem.stop()
        for call in modem.calls:
            print(
                f"call {call.number}: pages {len(call.pages)} {call.responses} "
                f"hangup {call.hangup if call.hangup is None else f'{call.hangup:02X}'}",
                file=sys.stderr,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
