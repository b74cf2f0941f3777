"""A simulated line and the simulated telephone network it calls into.

The line takes real time (``dial_seconds``, ``page_seconds``; make them small to run far
faster than a modem) and its calls follow a script kept in Redis per destination number,
so a test or the demo can make a number busy twice and then answer, or drop the carrier on
page 3. Each entry of ``ff:sim:script:<number>`` is consumed by one call:

=================  ====================================================
``ok``             answer and confirm every page (also: empty script)
``busy``           busy signal
``no_answer``      rings out
``no_dialtone``    the line is dead
``no_carrier``     answered by no modem (dial failure)
``not_a_fax``      a voice answer
``drop:N``         carrier lost while sending page N
``rtn:N``          the far end rejects page N
``stall:S``        the call freezes for S seconds after connecting
=================  ====================================================

What the far end received is appended to ``ff:sim:received:<number>`` as JSON, so tests
can count pages and prove a fax was not sent twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from faxfleet import keys
from faxfleet.messages import Cause, now
from workers.lines.base import Call, CallHooks, SendReport

_DIAL_FAILURES = {
    "busy": Cause.BUSY,
    "no_answer": Cause.NO_ANSWER,
    "no_dialtone": Cause.NO_DIALTONE,
    "no_carrier": Cause.NO_CARRIER,
}


class SimulatedNetwork:
    """The far ends, as scripted in Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def next_outcome(self, number: str) -> str:
        raw = self.r.lpop(keys.sim_script(number))
        return raw.decode() if raw else "ok"

    def received(self, number: str, record: dict[str, object]) -> None:
        self._keep(keys.sim_received(number), json.dumps(record))

    def _keep(self, key: str, value: str, patience: float = 60.0) -> None:
        """Write a far-end record, riding out a Redis restart: the far end of a real line
        keeps what it received whatever happens to the fleet's Redis."""
        deadline = time.monotonic() + patience
        while True:
            try:
                self.r.rpush(key, value)
                return
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def page_confirmed(self, call: Call, page: int, *, site: str) -> None:
        """The far end confirmed ``page`` of ``call`` (written as it happens, so the
        record survives a sender that dies before the call ends)."""
        record = {"job": call.job_id, "attempt": call.attempt, "page": page, "site": site}
        self._keep(keys.sim_confirmed(call.number), json.dumps(record))

    def record_call(
        self, call: Call, *, site: str, line: str, pages: list[int], outcome: str, **extra: object
    ) -> None:
        """What the far end of ``call`` received (absolute page numbers) and how it ended."""
        self.received(
            call.number,
            {
                "job": call.job_id,
                "dialed": call.dial_string,
                "recipient": call.recipient,
                "attempt": call.attempt,
                "site": site,
                "line": line,
                "pages": pages,
                "outcome": outcome,
                **extra,
                "at": now().isoformat(),
            },
        )


@dataclass
class SimulatedLine:
    name: str
    site: str
    network: SimulatedNetwork
    dial_seconds: float = 0.5
    page_seconds: float = 1.0

    def send(self, call: Call, pages: Sequence[bytes], hooks: CallHooks) -> SendReport:
        outcome = self.network.next_outcome(call.number)
        kind, _, arg = outcome.partition(":")
        before = call.first_page - 1
        time.sleep(self.dial_seconds)
        if kind in _DIAL_FAILURES:
            return SendReport(False, before, False, _DIAL_FAILURES[kind], f"simulated {kind}")
        if kind == "not_a_fax":
            return SendReport(False, before, True, Cause.NOT_A_FAX, "answered by a voice")
        remote = f"SIM {call.number}"
        hooks.connected(remote)
        if kind == "stall":
            time.sleep(float(arg or 3600))
        confirmed = before
        delivered: list[int] = []
        for page in range(call.first_page, call.total_pages + 1):
            if hooks.should_stop():
                self._record(call, delivered, "hung up: cancelled")
                return SendReport(False, confirmed, True, Cause.CANCELLED, "cancelled", remote)
            hooks.page_started(page)
            time.sleep(self.page_seconds)
            if kind == "drop" and int(arg) == page:
                self._record(call, delivered, f"carrier lost on page {page}")
                return SendReport(
                    False,
                    confirmed,
                    True,
                    Cause.NO_CARRIER,
                    f"carrier lost on page {page}",
                    remote,
                )
            if kind == "rtn" and int(arg) == page:
                self._record(call, delivered, f"page {page} rejected")
                return SendReport(
                    False,
                    confirmed,
                    True,
                    Cause.PAGE_REJECTED,
                    f"page {page} rejected (RTN)",
                    remote,
                )
            confirmed = page
            delivered.append(page)
        self._record(call, delivered, "complete")
        return SendReport(True, confirmed, True, None, None, remote)

    def _record(self, call: Call, delivered: list[int], outcome: str) -> None:
        self.network.record_call(
            call, site=self.site, line=self.name, pages=delivered, outcome=outcome
        )
