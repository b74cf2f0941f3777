"""The in-flight record: the one contract between the dispatcher and the site workers
about who holds a line slot.

A site's in-flight hash (``keys.site_inflight(site)``) maps an attempt id to a record
written by the dispatcher when it hands the attempt out. Its lifetime, and who ends it:

====================  ======================================  ==========================
record state          how it is recognised                    who ends it
====================  ======================================  ==========================
reserved              no claim, no lease                      the site worker claiming it;
                                                              the dispatcher giving it
                                                              back (site dead, or not
                                                              claimed within
                                                              ``dispatch_claim_seconds``)
started (leased)      claim set, lease alive                  the worker, when the call
                                                              ends (result reported first)
lease lost            claim set, lease expired                the dispatcher: frees the
                                                              slot, tells the scheduler
====================  ======================================  ==========================

Rules, each kept by a Lua script so no two parties act on one record at once:

* A send order names the record it belongs to by ``token``. A worker may start an
  attempt only if the site's record for it carries the order's token and nobody started
  it yet; a stale copy (given back, handed out again, redelivered) is refused and
  touches nothing.
* Only the holder of a record's token frees it; so a site's in-flight count is exactly
  its reserved and leased attempts, and cannot drift.
* A lease is renewed only while the record still carries the worker's token: once the
  dispatcher has declared the lease lost, the worker cannot take the attempt back.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from faxfleet.messages import SendOrder


def new_token() -> str:
    return uuid.uuid4().hex[:16]


def record(order: SendOrder, at: float | None = None) -> str:
    """The JSON stored for ``order`` (the token is also top-level, for the scripts)."""
    return json.dumps(
        {"order": order.model_dump(mode="json"), "token": order.token, "at": at or time.time()}
    )


def parse(raw: bytes | str) -> dict[str, Any]:
    return dict(json.loads(raw))


def lease_value(token: str, worker: str) -> str:
    return f"{token}|{worker}"
