"""Fax metrics (faxfleet/metrics.py) against a real Redis, the per-process counters of a
forked pool, the dispatcher's reasons, the documented dashboard and metric list, and the
offline API docs."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from faxfleet import keys, metrics
from faxfleet.messages import DispatchSummary, JobState, LineStatus, SiteStatus
from faxfleet.redis_server import free_port
from routing.dispatcher import dispatch_reason
from routing.policy import Action, Decision, SiteState
from scheduler.store import Draft, JobStore
from tests.test_store import make_fax

ROOT = Path(__file__).resolve().parent.parent
S = JobState


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of an exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def scrape(r: redis.Redis, retention: float = 3600) -> dict:
    collector = metrics.FleetCollector(lambda: r, retention)
    return samples(metrics.exposition(collector).decode())


# -- fleet-wide gauges from Redis -----------------------------------------------------------


def _deliver(d: Draft) -> None:
    d.set(pages=1)
    for state in (S.RENDERING, S.ROUTING, S.QUEUED, S.DIALING, S.SENDING):
        d.move(0, state)
    d.move(0, S.DONE, pages_confirmed=1)


def test_faxes_by_state_follow_the_store(r: redis.Redis) -> None:
    store = JobStore(r, retention_seconds=3600)
    for i in range(3):
        store.create(make_fax(f"f{i}"), None, min_replicas=0)
    store.update("f0", _deliver)
    store.update("f1", lambda d: d.move(0, S.RENDERING))
    store.update("f1", lambda d: d.set(pages=2))  # no state change: nothing moves
    # A fax settled longer ago than the retention is no longer kept, nor counted.
    r.zadd(keys.fax_state(S.DONE), {"ancient": time.time() - 7200})
    found = scrape(r)
    assert value(found, "faxfleet_up") == 1
    assert value(found, "faxfleet_faxes", state="done") == 1
    assert value(found, "faxfleet_faxes", state="rendering") == 1
    assert value(found, "faxfleet_faxes", state="submitted") == 1
    assert value(found, "faxfleet_faxes", state="queued") == 0
    assert value(found, "faxfleet_faxes_entered_total", state="submitted") == 3
    assert value(found, "faxfleet_faxes_entered_total", state="done") == 1
    assert value(found, "faxfleet_faxes_entered_total", state="failed") == 0
    assert 0 <= value(found, "faxfleet_faxes_oldest_seconds", state="submitted") < 60
    assert value(found, "faxfleet_faxes_oldest_seconds", state="queued") == 0


def test_waiting_faxes_per_priority_and_sites(r: redis.Redis) -> None:
    at = time.time()
    r.zadd(
        keys.WAITING,
        {
            "a:0:1": keys.waiting_score(9, at - 30),
            "b:0:1": keys.waiting_score(9, at - 5),
            "c:0:1": keys.waiting_score(0, at - 600),
        },
    )
    summary = DispatchSummary(at=datetime.now(UTC), waiting={9: 2, 0: 1}, overdue=1)
    r.set(keys.DISPATCH_SUMMARY, summary.model_dump_json())
    lines = [
        LineStatus(name="p1", state="busy"),
        LineStatus(name="p2", state="idle"),
        LineStatus(name="p3", state="out_of_service"),
    ]
    status = SiteStatus(name="paris", lines=lines, worker="w", updated_at=datetime.now(UTC))
    r.set(keys.site_status("paris"), status.model_dump_json())
    r.zadd(keys.SITES_SEEN, {"paris": at, "newyork": at - 60, "gone": at - 2 * 86400})
    held = {"order": {"priority": 7}, "token": "t"}
    r.hset(keys.site_inflight("paris"), mapping={"x:0:1": json.dumps(held)})
    found = scrape(r)
    assert value(found, "faxfleet_waiting", priority="9") == 2
    assert value(found, "faxfleet_waiting", priority="0") == 1
    assert value(found, "faxfleet_waiting", priority="5") == 0
    assert 29 < value(found, "faxfleet_waiting_oldest_seconds", priority="9") < 60
    assert 599 < value(found, "faxfleet_waiting_oldest_seconds", priority="0") < 700
    assert value(found, "faxfleet_waiting_overdue") == 1
    assert value(found, "faxfleet_site_up", site="paris") == 1
    assert value(found, "faxfleet_site_up", site="newyork") == 0  # silent: down
    assert ("faxfleet_site_up", (("site", "gone"),)) not in found  # silent for a day
    assert value(found, "faxfleet_site_lines", site="paris", state="busy") == 1
    assert value(found, "faxfleet_site_lines", site="paris", state="out_of_service") == 1
    assert value(found, "faxfleet_site_lines", site="newyork", state="idle") == 0
    assert value(found, "faxfleet_site_inflight", site="paris", priority="7") == 1
    assert value(found, "faxfleet_render_queue") == 0


def test_a_silent_redis_is_a_zero_not_an_error() -> None:
    down = redis.Redis(port=free_port(), socket_connect_timeout=0.2)
    found = samples(metrics.exposition(metrics.FleetCollector(lambda: down, 60)).decode())
    assert value(found, "faxfleet_up") == 0


# -- per process ---------------------------------------------------------------------------

_FORKED_POOL = textwrap.dedent(
    """
    import os, sys, urllib.request
    import prometheus_client  # first, as the celery command does (Flower's plugin)
    from faxfleet import metrics
    assert metrics.counting_in_files()
    for _ in range(2):  # two pool children, as a prefork renderer has
        pid = os.fork()
        if pid == 0:
            metrics.RENDER_SECONDS.labels("ok").observe(0.3)
            metrics.RENDERED_PAGES.labels("fine").inc(3)
            os._exit(0)
        os.waitpid(pid, 0)
    metrics.serve("render", int(sys.argv[1]))
    print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics").read().decode())
    """
)


def test_a_prefork_pool_is_counted_by_its_parent(tmp_path: Path) -> None:
    """What a forked child counts (the renderer's pool) is served by its parent."""
    port = free_port()
    env = {**os.environ, "FAXFLEET_METRICS_PORT": str(port), "PYTHONPATH": str(ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    run = subprocess.run(
        [sys.executable, "-c", _FORKED_POOL, str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    found = samples(run.stdout)
    assert value(found, "faxfleet_render_seconds_count", outcome="ok") == 2
    assert value(found, "faxfleet_rendered_pages_total", resolution="fine") == 6


def _site(name: str, lines: int, busy: int) -> SiteState:
    return SiteState(name=name, group="eu", lines_up=lines, busy=busy)


def test_dispatch_reasons() -> None:
    cheapest = Decision("k", Action.DISPATCH, "lyon", "cheapest able to start within 60s")
    assert dispatch_reason(cheapest, "paris", _site("paris", 2, 2), False) == "overflow"
    assert dispatch_reason(cheapest, "paris", _site("paris", 2, 1), False) == "cheapest"
    assert dispatch_reason(cheapest, "paris", _site("paris", 0, 0), False) == "cheapest"
    assert dispatch_reason(cheapest, "paris", None, True) == "band"
    swapped = Decision("k", Action.DISPATCH, "lyon", "cheapest for the fleet: exchanged ...")
    assert dispatch_reason(swapped, "paris", _site("paris", 2, 2), False) == "exchanged"
    late = Decision("k", Action.DISPATCH, "paris", "earliest start (no site keeps the promise)")
    assert dispatch_reason(late, "paris", _site("paris", 2, 0), False) == "earliest"


# -- the documented dashboard and list ------------------------------------------------------

_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def _family(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _exposed_families(r: redis.Redis) -> set[str]:
    """Every family /metrics can show: the fleet's, and each process kind's (declared in
    faxfleet.metrics, so every process lists them)."""
    text = metrics.exposition(metrics.FleetCollector(lambda: r, 60)).decode()
    return {f.name for f in text_string_to_metric_families(text)}


def test_every_metric_of_the_dashboard_is_exposed(r: redis.Redis) -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    assert len(exprs) >= 10
    used = {_family(m) for e in exprs for m in re.findall(r"\bfaxfleet_[a-z_]+", e)}
    exposed = _exposed_families(r)
    assert used - exposed == set(), "the dashboard queries metrics nobody exposes"
    assert len(used) >= 15


def test_every_exposed_metric_is_documented(r: redis.Redis) -> None:
    doc = (ROOT / "docs" / "metrics.md").read_text()
    documented = {_family(m) for m in re.findall(r"`(faxfleet_[a-z_]+)", doc)}
    faxfleet = {f for f in _exposed_families(r) if f.startswith("faxfleet_")}
    assert faxfleet - documented == set(), "add them to docs/metrics.md"
    assert documented - faxfleet == set(), "docs/metrics.md lists metrics that do not exist"


# -- offline API docs -----------------------------------------------------------------------

_ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


@pytest.mark.parametrize("module", ["scheduler.api", "routing.admin"])
def test_api_docs_need_no_internet(module: str) -> None:
    """/docs and /redoc, and every script, style sheet and icon they load, come from the
    service itself; neither page names another host."""
    app = __import__(module, fromlist=["app"]).app

    async def check() -> None:
        transport = httpx.ASGITransport(app=app)  # no lifespan: nothing starts
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            for page in ("/docs", "/redoc"):
                html = await client.get(page)
                assert html.status_code == 200, page
                assert not re.search(r"https?://", html.text), html.text
                assets = _ASSET.findall(html.text)
                assert len(assets) >= 2, html.text
                for url in assets:
                    parts = urlsplit(url)
                    assert not parts.scheme and not parts.netloc and url.startswith("/"), url
                    got = await client.get(url)
                    assert got.status_code == 200 and len(got.content) > 1000, url
            spec = (await client.get("/openapi.json")).json()
            assert spec["info"]["title"].startswith("faxfleet")

    asyncio.run(check())


# -- where each process serves ------------------------------------------------------------


def test_every_process_has_a_metrics_port() -> None:
    from faxfleet.topology import SiteSpec, topology

    sites = [SiteSpec("paris", 2)]
    shared = {s.name: s for s in topology(sites, bind="0.0.0.0", metrics_port=9464)}
    assert shared["api"].metrics_port == 8040 and "FAXFLEET_METRICS_PORT" not in shared["api"].env
    assert shared["routing-admin"].metrics_port is None
    for name in ("site-paris", "render", "dispatcher", "timers", "routing", "events-paris"):
        assert shared[name].env["FAXFLEET_METRICS_PORT"] == "9464", name
        assert shared[name].env["FAXFLEET_METRICS_ADDRESS"] == "0.0.0.0"
    ports = iter(range(9000, 9100))
    own = [s for s in topology(sites, metrics_port=lambda _: next(ports)) if s.kind != "api"]
    served = [s.metrics_port for s in own if s.metrics_port]
    assert len(served) == len(set(served)) == len(own) - 1  # all but routing-admin
    assert not any("FAXFLEET_METRICS_PORT" in s.env for s in topology(sites))
