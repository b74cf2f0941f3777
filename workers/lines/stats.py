"""What a site has seen recently, published for routing: time per page and success rate
per destination prefix.

A sliding window of the last ``window`` connected calls per prefix (the first
``prefix_digits`` digits of the E.164 number), so a route that starts failing shows
within a few calls, and one that recovers is trusted again as soon.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field


@dataclass
class LineStats:
    prefix_digits: int = 4
    window: int = 50
    min_calls: int = 3
    _calls: dict[str, deque[bool]] = field(default_factory=lambda: defaultdict(deque))
    _pages: deque[tuple[int, float]] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, number: str, *, connected: bool, ok: bool, pages: int, seconds: float) -> None:
        """One ended call. Calls that never connected (busy, no answer) say nothing about
        the route's quality and are not counted."""
        if not connected:
            return
        prefix = number.lstrip("+")[: self.prefix_digits]
        with self._lock:
            calls = self._calls[prefix]
            calls.append(ok)
            if len(calls) > self.window:
                calls.popleft()
            if pages > 0:
                self._pages.append((pages, seconds))
                if len(self._pages) > self.window:
                    self._pages.popleft()

    def seconds_per_page(self) -> float | None:
        with self._lock:
            pages = sum(p for p, _ in self._pages)
            return sum(s for _, s in self._pages) / pages if pages else None

    def mean_call_seconds(self) -> float | None:
        with self._lock:
            if not self._pages:
                return None
            return sum(s for _, s in self._pages) / len(self._pages)

    def success(self) -> dict[str, float]:
        with self._lock:
            return {
                prefix: round(sum(calls) / len(calls), 3)
                for prefix, calls in self._calls.items()
                if len(calls) >= self.min_calls
            }
