"""Priority on a real fleet: with a backlog of bulk faxes waiting at a site, a newly
submitted urgent fax is the next one a freed line starts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import redis

from faxfleet import celery_app as names
from faxfleet.fleet import Fleet, SiteSpec
from routing.dispatcher import WAITING
from tests.conftest import paged_text, running_fleet

pytestmark = pytest.mark.fleet

ACME = {"X-API-Key": "acme-key"}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(
        tmp_path_factory.mktemp("prio"),
        [SiteSpec("paris", 2)],
        {"FAXFLEET_SIM_PAGE_SECONDS": "0.25"},
    ) as fleet:
        yield fleet


def _submit(api: httpx.Client, number: str, priority: int, pages: int = 2) -> str:
    doc = paged_text(pages)
    resp = api.post(
        "/v1/faxes",
        headers=ACME,
        data={"to": [number], "priority": str(priority)},
        files=[("documents", ("doc.txt", doc, "text/plain"))],
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def _history(api: httpx.Client, fax_id: str) -> dict:
    deadline = time.monotonic() + 90
    while True:
        fax = api.get(f"/v1/faxes/{fax_id}", headers=ACME).json()
        if fax["state"] == "done":
            return fax
        assert fax["state"] not in ("failed", "cancelled"), fax
        assert time.monotonic() < deadline, fax
        time.sleep(0.1)


def _at(fax: dict, to_state: str) -> datetime:
    return datetime.fromisoformat(
        next(t["at"] for t in fax["history"] if t["to_state"] == to_state)
    )


def test_urgent_fax_is_next_on_a_freed_line(fleet: Fleet) -> None:
    """Bulk faxes wait centrally (no site holds a private backlog); once the urgent fax
    is waiting too, the next line that frees anywhere takes it."""
    r = redis.Redis.from_url(fleet.env["FAXFLEET_REDIS_URL"])
    with httpx.Client(base_url=fleet.api_url, timeout=30) as api:
        bulk = [_submit(api, f"+3314268540{i % 10}", priority=1) for i in range(12)]
        deadline = time.monotonic() + 30
        while r.zcard(WAITING) < 6:
            assert time.monotonic() < deadline, "no backlog built up"
            time.sleep(0.02)
        assert names.queue_depth(r, names.site_queue("paris")) <= 2  # none held at the site
        urgent = _submit(api, "+33142685499", priority=9)
        deadline = time.monotonic() + 30
        while r.zscore(WAITING, f"{urgent}:0:1") is None:
            assert time.monotonic() < deadline, "the urgent fax never reached the waiting set"
            time.sleep(0.001)
        waiting_since = datetime.now(UTC)
        faxes = {fid: _history(api, fid) for fid in [*bulk, urgent]}

    urgent_placed = _at(faxes[urgent], "queued")
    jumped = [fid for fid in bulk if waiting_since < _at(faxes[fid], "queued") < urgent_placed]
    assert jumped == [], "bulk faxes placed while the urgent one waited"
    # ...and it did wait: every line was busy when it arrived
    assert urgent_placed > waiting_since
    assert sum(1 for fid in bulk if _at(faxes[fid], "queued") > urgent_placed) >= 3
