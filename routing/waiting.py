"""The central waiting set: where faxes wait for a line, most urgent first.

``ff:rt:waiting`` orders attempt ids by :func:`urgency_score` (priority band, then the
time the fax started waiting); ``ff:rt:orders`` holds each one's route order and that
time, from which its priority promise runs. A fax given back by a site keeps both.
"""

from __future__ import annotations

import json
import time
from datetime import datetime

from faxfleet import keys
from faxfleet.messages import RouteOrder

WAITING = keys.WAITING  # sorted set: attempt id, by urgency (shared: metrics count it)
ORDERS = "ff:rt:orders"  # hash: attempt id -> {"order": RouteOrder, "enqueued_at": ts}


def placed_key(attempt_id: str) -> str:
    """Which site an attempt was handed to (so a repeated routing order is ignored)."""
    return f"ff:rt:placed:{attempt_id}"


def urgency_score(priority: int, enqueued_at: float) -> float:
    """Lower is first: priority band, then arrival (milliseconds)."""
    return keys.waiting_score(priority, enqueued_at)


def since(order: RouteOrder) -> float:
    """When ``order`` started waiting: its ``queued_since``, else now."""
    when: datetime | None = order.queued_since
    return when.timestamp() if when else time.time()


def waiting_record(order: RouteOrder, enqueued_at: float | None = None) -> str:
    at = enqueued_at if enqueued_at is not None else since(order)
    return json.dumps({"order": order.model_dump(mode="json"), "enqueued_at": at})
