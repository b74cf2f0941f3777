"""Events a site worker could not send, kept on local disk until Redis is back.

A site cut off from Redis in the middle of a call finishes the call (its telephone line
does not need Redis); the progress and the result it cannot send go to an append-only
file, one JSON line each, and are sent in order once Redis answers again. The file is
fsynced on every line: a result must survive the worker being restarted while cut off.
Replaying is idempotent on the scheduler's side (events carry attempt and sequence).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Journal:
    """Parameter: ``path``, the journal file (its directory is created)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, home_site: str, event: dict[str, Any]) -> None:
        line = json.dumps({"home_site": home_site, "event": event}) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())

    def pending(self) -> int:
        with self._lock:
            if not self.path.exists():
                return 0
            return sum(1 for line in self.path.read_text(encoding="utf-8").splitlines() if line)

    def replay(self, send: Callable[[str, dict[str, Any]], None]) -> int:
        """Send every kept event in order; stop at the first that fails (kept with those
        after it). Returns how many were sent."""
        with self._lock:
            if not self.path.exists():
                return 0
            lines = [x for x in self.path.read_text(encoding="utf-8").splitlines() if x]
            sent = 0
            try:
                for line in lines:
                    entry = json.loads(line)
                    send(entry["home_site"], entry["event"])
                    sent += 1
            finally:
                rest = lines[sent:]
                if rest:
                    tmp = self.path.with_suffix(".tmp")
                    tmp.write_text("".join(x + "\n" for x in rest), encoding="utf-8")
                    os.replace(tmp, self.path)
                else:
                    self.path.unlink(missing_ok=True)
            return sent
