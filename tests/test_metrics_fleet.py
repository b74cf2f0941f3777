"""``/metrics`` on a running fleet: the API shows the fleet's faxes, each worker what it
did (docs/metrics.md)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from faxfleet.fleet import Fleet, SiteSpec
from tests.conftest import paged_text, running_fleet

pytestmark = pytest.mark.fleet

ACME = {"X-API-Key": "acme-key"}


def total(fleet: Fleet, url: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    text = httpx.get(url, timeout=10).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


def eventually(check: Callable[[], float], at_least: float, timeout: float = 10) -> float:
    deadline = time.monotonic() + timeout
    while (got := check()) < at_least and time.monotonic() < deadline:
        time.sleep(0.2)
    return got


def test_metrics_of_a_running_fleet(tmp_path: Path) -> None:
    with running_fleet(tmp_path, [SiteSpec("paris", 1)]) as fleet:
        listed = json.loads((fleet.log_dir / "metrics-targets.json").read_text())
        by_service = {t["labels"]["service"]: t["targets"][0] for t in listed}
        assert set(by_service) == {s.name for s in fleet.topology() if s.kind != "routing-admin"}
        api = httpx.Client(base_url=fleet.api_url, timeout=30)
        sent = api.post(
            "/v1/faxes",
            headers=ACME,
            files=[("documents", ("two.txt", paged_text(2), "text/plain"))],
            data={"to": "+33142685300"},
        )
        assert sent.status_code == 201, sent.text
        fax_id = sent.json()["id"]
        deadline = time.monotonic() + 30
        while api.get(f"/v1/faxes/{fax_id}", headers=ACME).json()["state"] != "done":
            assert time.monotonic() < deadline, api.get(f"/v1/faxes/{fax_id}", headers=ACME).text
            time.sleep(0.1)

        fleet_wide = f"{fleet.api_url}/metrics"
        assert total(fleet, fleet_wide, "faxfleet_up") == 1
        assert total(fleet, fleet_wide, "faxfleet_faxes", state="done") == 1
        assert total(fleet, fleet_wide, "faxfleet_faxes_entered_total", state="done") == 1
        assert total(fleet, fleet_wide, "faxfleet_site_up", site="paris") == 1
        assert total(fleet, fleet_wide, "faxfleet_site_lines", site="paris") == 1

        site = fleet.metrics_url("site-paris")
        assert by_service["site-paris"] in site
        pages = lambda: total(fleet, site, "faxfleet_pages_sent_total", site="paris")  # noqa: E731
        assert eventually(pages, 2) == 2
        calls = lambda: total(fleet, site, "faxfleet_calls_total", cause="ok")  # noqa: E731
        assert eventually(calls, 1) == 1
        render = fleet.metrics_url("render")  # a prefork pool: counted by its children
        assert total(fleet, render, "faxfleet_render_seconds_count", outcome="ok") == 1
        assert total(fleet, render, "faxfleet_rendered_pages_total") == 2
        dispatcher = fleet.metrics_url("dispatcher")
        assert total(fleet, dispatcher, "faxfleet_dispatch_decisions_total", site="paris") == 1
        events = fleet.metrics_url("events-paris")
        assert total(fleet, events, "faxfleet_events_total", kind="result") == 1
        router = fleet.metrics_url("routing")
        assert total(fleet, router, "faxfleet_route_orders_total", result="added") == 1
