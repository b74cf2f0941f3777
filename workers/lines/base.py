"""The line interface: what the send task needs from a fax line, whatever drives it.

A line sends one call at a time. It reports progress through :class:`CallHooks` and
returns a :class:`SendReport` that says how many pages the far end confirmed (counting
the whole fax, pages confirmed by earlier attempts included) and, on failure, a
:class:`~faxfleet.messages.Cause`. It never raises for telephone trouble; an exception
means the line itself is broken.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from faxfleet.messages import Cause


@dataclass(frozen=True)
class Call:
    number: str
    """E.164 destination."""
    dial_string: str
    """What the modem dials (the site's dialing rules applied)."""
    first_page: int
    """1-based page of the fax the call starts at (resume after a partial attempt)."""
    total_pages: int
    local_id: str | None = None
    """Transmitting station identifier (TSI) shown to the far end."""
    job_id: str = ""
    recipient: int = 0
    attempt: int = 0


class CallHooks(Protocol):
    def connected(self, remote_id: str | None) -> None:
        """The far end answered as a fax machine."""

    def page_started(self, page: int) -> None:
        """Page ``page`` (1-based in the whole fax) is going on the wire."""

    def should_stop(self) -> bool:
        """Checked between pages: True hangs up (the fax was cancelled)."""


@dataclass(frozen=True)
class SendReport:
    ok: bool
    pages_confirmed: int
    connected: bool
    cause: Cause | None = None
    detail: str | None = None
    remote_id: str | None = None


class Line(Protocol):
    name: str

    def send(self, call: Call, pages: Sequence[bytes], hooks: CallHooks) -> SendReport:
        """Dial and send ``pages`` (pages ``first_page``..``total_pages``)."""
