"""The fleet's process description: the single-node names every test relies on, the
cluster topology's replicas, and the health checks compose.yaml derives from it."""

from __future__ import annotations

from collections import Counter

import pytest

from faxfleet.compose import COMPOSE_REPLICAS, COMPOSE_SITES, health_check
from faxfleet.topology import SiteSpec, topology

SITES = [SiteSpec("paris", 3), SiteSpec("newyork", 2)]


def test_one_replica_keeps_the_plain_names() -> None:
    names = [s.name for s in topology(SITES, flower_port=5555)]
    assert names == [
        "events-paris",
        "notify-paris",
        "site-paris",
        "events-newyork",
        "notify-newyork",
        "site-newyork",
        "timers",
        "routing",
        "dispatcher",
        "routing-admin",
        "render",
        "api",
        "flower",
    ]


def test_cluster_runs_every_kind_twice_but_one_site_worker_per_site() -> None:
    specs = topology(SITES, replicas=2, flower_port=5555)
    names = [s.name for s in specs]
    assert len(set(names)) == len(names)
    kinds = Counter(s.kind for s in specs)
    assert kinds == {
        "events": 4,
        "notify": 4,
        "site": 2,
        "timers": 2,
        "routing": 2,
        "dispatcher": 2,
        "routing-admin": 2,
        "render": 2,
        "api": 2,
        "flower": 1,
    }
    assert {"dispatcher-1", "dispatcher-2", "events-paris-2", "site-paris"} <= set(names)
    nodes = [s.node for s in specs if s.node]
    assert len(set(nodes)) == len(nodes)  # Celery node names are unique too
    for spec in specs:
        if spec.node:
            assert f"{spec.node}@%h" in spec.argv


def test_cluster_api_nodes_have_their_own_ports_and_admin() -> None:
    specs = {s.name: s for s in topology(SITES, replicas=3)}
    assert [specs[f"api-{i}"].port for i in (1, 2, 3)] == [8040, 8042, 8044]
    assert [specs[f"routing-admin-{i}"].port for i in (1, 2, 3)] == [8041, 8043, 8045]
    assert specs["api-2"].env["FAXFLEET_ROUTING_ADMIN_URL"] == "http://routing-admin-2:8043"
    local = {s.name: s for s in topology(SITES, replicas=2, admin_host="127.0.0.1")}
    assert local["api-2"].env["FAXFLEET_ROUTING_ADMIN_URL"] == "http://127.0.0.1:8043"
    explicit = {s.name: s for s in topology(SITES, replicas=2, api_port=[9000, 9100])}
    assert "9100" in explicit["api-2"].argv
    with pytest.raises(ValueError):
        topology(SITES, replicas=2, api_port=[9000])


def test_every_compose_service_has_a_health_check_that_fits_its_kind() -> None:
    specs = topology(COMPOSE_SITES, replicas=COMPOSE_REPLICAS, flower_port=5555)
    checks = {s.name: " ".join(health_check(s)) for s in specs}
    assert "127.0.0.1:8042/readyz" in checks["api-2"]
    assert "127.0.0.1:8041/healthz" in checks["routing-admin-1"]
    assert "/healthcheck" in checks["flower"]
    assert "ff:site:" in checks["site-paris"] and "gethostname" in checks["site-paris"]
    assert "ping(['events-paris-2@'" in checks["events-paris-2"]
    assert "ping(['render-1@'" in checks["render-1"]
    assert "ff:proc:dispatcher:" in checks["dispatcher-1"]
    assert "ff:proc:timers:" in checks["timers-2"]
    for spec in specs:  # each one-liner at least compiles
        compile(health_check(spec)[-1], spec.name, "exec")
