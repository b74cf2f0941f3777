"""``python -m workers.fax.emulator``: run an emulated modem pair until interrupted.

Prints one line per modem (``A 5551001 /dev/pts/7 socket://127.0.0.1:40123``), then a
line ``ready``, so a script can read the URLs and start using them.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from workers.fax.emulator.faults import parse_faults
from workers.fax.emulator.pair import EmulatorPair


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.fax.emulator", description=__doc__)
    parser.add_argument("--numbers", nargs=2, default=["5551001", "5551002"], metavar="NUMBER")
    parser.add_argument(
        "--faults", default="", help='per-number faults, e.g. "5551003=busy; 5551004=noisy_page:1"'
    )
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--tcp", action="store_true", help="also listen on TCP (socket:// URLs)")
    parser.add_argument("--tcp-ports", nargs=2, type=int, default=[0, 0], metavar="PORT")
    args = parser.parse_args(argv)
    try:
        faults = parse_faults(args.faults)
    except ValueError as exc:
        parser.error(str(exc))
    pair = EmulatorPair(
        args.numbers,
        faults=faults,
        time_scale=args.time_scale,
        tcp=args.tcp,
        tcp_ports=args.tcp_ports,
    )
    pair.start()
    for modem in pair.modems:
        print(modem.name, modem.number, modem.url, modem.tcp_url or "-", flush=True)
    print("ready", flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    pair.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
