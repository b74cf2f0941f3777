"""``python -m faxfleet.softline up``: hold a software fax line open until Ctrl-C.

Prints modem A's pty (give it to faxfleet's driver, or any fax program) and the number
that reaches the far end on modem B, then reports every fax the far end receives.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from types import FrameType

from .line import LineError, SoftLine


def _up(args: argparse.Namespace) -> int:
    far_end = None if args.far_end == "none" else args.far_end
    stop = False

    def _request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _request_stop)
    try:
        with SoftLine(far_end=far_end, keep_files=args.keep) as line:
            where = f"namespace {line.namespace.name}" if line.namespace else "host loopback"
            print(f"modem A (ours):   {line.modem_a}", flush=True)
            print(f"modem B (far end): {line.modem_b}  [{args.far_end}, {where}]", flush=True)
            print(f"dial from A:      {line.number_b}", flush=True)
            print(f"files:            {line.workdir}", flush=True)
            line.wait_ready()
            print("ready; Ctrl-C to stop", flush=True)
            seen = 0
            while not stop:
                line.check()
                faxes = line.received()
                for fax in faxes[seen:]:
                    files = " ".join(map(str, fax.files))
                    print(
                        f"received {fax.pages} page(s), bad lines {list(fax.bad_lines)}: {files}",
                        flush=True,
                    )
                seen = len(faxes)
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    except LineError as exc:
        print(f"softline: {exc}", file=sys.stderr)
        return 1
    print("line down", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m faxfleet.softline", description="A real software fax line."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="bring the line up and hold it until Ctrl-C")
    up.add_argument("--far-end", choices=["efax", "hylafax", "none"], default="efax")
    up.add_argument("--keep", action="store_true", help="keep the line's files afterwards")
    args = parser.parse_args(argv)
    return _up(args)


if __name__ == "__main__":
    sys.exit(main())
