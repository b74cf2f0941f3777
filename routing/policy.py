"""Where a fax goes: a pure decision from the sites' published state.

Rules, in order:

1. Only sites that are up (their status is fresh) with at least one line in service.
2. Prefer the site with the lowest load, where load is (busy lines + faxes waiting at
   the site) / lines in service: a site with free lines beats one with a backlog.
3. On equal load, prefer the fax's home site (its notifications stay local), then the
   site with more lines in service, then the name (so the choice is deterministic).

Cost tables and priority promises refine this in the routing policy proper; the shape
stays the same: candidates in, one decision out.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    site: str
    lines_up: int
    lines_busy: int
    waiting: int

    @property
    def load(self) -> float:
        return (self.lines_busy + self.waiting) / self.lines_up


@dataclass(frozen=True)
class Placement:
    site: str | None
    reason: str


def place(candidates: list[Candidate], home_site: str) -> Placement:
    """Pick the site for one recipient, or say why none can take it."""
    usable = [c for c in candidates if c.lines_up > 0]
    if not usable:
        if candidates:
            return Placement(None, "no site has a line in service")
        return Placement(None, "no site is up")
    best = min(usable, key=lambda c: (c.load, c.site != home_site, -c.lines_up, c.site))
    return Placement(best.site, f"load {best.load:.2f} over {len(usable)} site(s)")
