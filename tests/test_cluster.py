"""The cluster topology as local processes: every kind twice (one site worker per site),
each replica able to carry the fleet alone, and all of them supervised."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from faxfleet.fleet import Fleet, SiteSpec
from faxfleet.redis_server import RedisServer, free_port
from tests.conftest import FAST_FLEET_ENV, paged_text

pytestmark = pytest.mark.fleet

ACME = {"X-API-Key": "acme-key"}
SETTLED = {"done", "failed", "cancelled", "outcome_uncertain"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("cluster")
    server = RedisServer(tmp / "redis").start()
    api_port = free_port()
    env = {
        **FAST_FLEET_ENV,
        "FAXFLEET_REDIS_URL": server.url,
        "FAXFLEET_API_URLS": f"http://127.0.0.1:{api_port}",
    }
    fleet = Fleet([SiteSpec("paris", 2)], env, tmp / "logs", api_port=api_port, replicas=2)
    try:
        fleet.start()
        fleet.wait_ready(timeout=120)
        yield fleet
    finally:
        fleet.stop()
        server.stop()


def _send(url: str, number: str) -> dict:
    with httpx.Client(base_url=url, timeout=30) as api:
        resp = api.post(
            "/v1/faxes",
            headers=ACME,
            data={"to": [number]},
            files=[("documents", ("doc.txt", paged_text(2), "text/plain"))],
        )
        assert resp.status_code == 201, resp.text
        fax_id = resp.json()["id"]
        deadline = time.monotonic() + 60
        while True:
            fax = api.get(f"/v1/faxes/{fax_id}", headers=ACME).json()
            if fax["state"] in SETTLED:
                return fax
            assert time.monotonic() < deadline, fax
            time.sleep(0.05)


def test_cluster_runs_every_kind_twice(cluster: Fleet) -> None:
    names = set(cluster.processes)
    for base in (
        "events-paris",
        "notify-paris",
        "timers",
        "routing",
        "dispatcher",
        "routing-admin",
        "render",
        "api",
    ):
        assert {f"{base}-1", f"{base}-2"} <= names, base
    assert "site-paris" in names
    assert len(set(cluster.api_urls)) == 2
    for url in cluster.api_urls:  # each API node relays administration to its own admin
        assert httpx.get(f"{url}/v1/sites", headers=ACME, timeout=10).status_code == 200
    faxes = [_send(url, f"+3314268580{i}") for i, url in enumerate(cluster.api_urls)]
    assert [f["state"] for f in faxes] == ["done", "done"]


@pytest.mark.parametrize("down", [1, 2])
def test_either_replica_set_carries_the_fleet_alone(cluster: Fleet, down: int) -> None:
    """Replica ``down`` of every kind is stopped on purpose (so not restarted): the
    others take every step of a fax, submitted through the surviving API node."""
    stopped = [n for n in cluster.processes if n.endswith(f"-{down}")]
    for name in stopped:
        cluster.stop_service(name)
    try:
        url = cluster.api_urls[2 - down]
        fax = _send(url, f"+3314268581{down}")
        assert fax["state"] == "done", fax
    finally:
        for name in stopped:
            cluster.start_service(cluster.spec(name))
        cluster.wait_ready(timeout=120)


def test_cluster_services_killed_together_come_back(cluster: Fleet) -> None:
    victims = ["dispatcher-1", "events-paris-2", "api-1", "site-paris"]
    counts = {name: cluster.restarts[name] for name in victims}
    for name in victims:
        cluster.kill(name)
    for name in victims:
        cluster.wait_restarted(name, since=counts[name], timeout=30)
    cluster.wait_ready(timeout=120)
    assert _send(cluster.api_urls[0], "+33142685820")["state"] == "done"
