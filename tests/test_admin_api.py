"""Site, group and cost table administration over real HTTP: the routing admin API and
the public API that relays to it, each a real uvicorn process on the test's private
Redis; and the ``faxfleet site|group|costs`` commands against them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis

from faxfleet import keys
from faxfleet.messages import LineStatus, SiteStatus
from faxfleet.redis_server import RedisServer, free_port
from routing.sites import CONFIG_VERSION
from tests.test_cost_store import BAD, HEADER, PARIS, TZ, flat
from tests.uvicorn_apps import start, stop, wait_ready

ROOT = Path(__file__).resolve().parent.parent
ADMIN = {"X-API-Key": "admin-key"}
TENANT = {"X-API-Key": "acme-key"}

PARIS_SITE = {
    "name": "paris",
    "address": "paris.fax.example:8040",
    "country": "FR",
    "dialing": {"area_code": "1", "national_prefix": "0", "international_prefix": "00"},
    "lines": 4,
    "timezone": "Europe/Paris",
}
NEWYORK_SITE = {
    "name": "newyork",
    "country": "US",
    "dialing": {
        "area_code": "212",
        "outside_prefix": "9",
        "national_prefix": "1",
        "international_prefix": "011",
        "local_area_codes": ["646", "917"],
        "local_format": "subscriber",
    },
    "lines": 2,
    "timezone": "America/New_York",
}


@dataclass
class Servers:
    admin_url: str
    public_url: str
    orphan_url: str
    """A public API whose routing admin is not running."""
    env: dict[str, str]


@pytest.fixture(scope="module")
def servers(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Servers]:
    logs = tmp_path_factory.mktemp("admin-logs")
    admin_port, public_port, orphan_port, dead_port = (free_port() for _ in range(4))
    base = {
        **os.environ,
        "FAXFLEET_REDIS_URL": redis_server.url,
        "FAXFLEET_API_KEYS": "acme=acme-key",
        "FAXFLEET_ADMIN_KEYS": "admin-key,other-admin-key",
        "FAXFLEET_ROUTING_ADMIN_URL": f"http://127.0.0.1:{admin_port}",
        "PYTHONUNBUFFERED": "1",
    }
    plan = [
        ("admin", "routing.admin:app", admin_port, base),
        ("public", "scheduler.api:app", public_port, base),
        (
            "orphan",
            "scheduler.api:app",
            orphan_port,
            {**base, "FAXFLEET_ROUTING_ADMIN_URL": f"http://127.0.0.1:{dead_port}"},
        ),
    ]
    procs = {name: start(name, app, port, env, logs) for name, app, port, env in plan}
    try:
        for name, _, port, _ in plan:
            wait_ready(f"http://127.0.0.1:{port}", procs[name], logs / f"{name}.log")
        yield Servers(
            admin_url=f"http://127.0.0.1:{admin_port}",
            public_url=f"http://127.0.0.1:{public_port}",
            orphan_url=f"http://127.0.0.1:{orphan_port}",
            env={
                **base,
                "FAXFLEET_API_URLS": f"http://127.0.0.1:{public_port}",
                "FAXFLEET_ADMIN_KEY": "admin-key",
                "COLUMNS": "200",
            },
        )
    finally:
        stop(list(procs.values()))


@pytest.fixture
def api(servers: Servers, r: redis.Redis) -> Iterator[httpx.Client]:
    """The public API, on a clean Redis."""
    with httpx.Client(base_url=servers.public_url, timeout=10) as client:
        yield client


def publish_status(r: redis.Redis, name: str, states: list[str], waiting: int = 0) -> None:
    status = SiteStatus(
        name=name,
        lines=[LineStatus(name=f"{name}-{i + 1}", state=s) for i, s in enumerate(states)],
        waiting=waiting,
        worker=f"site-{name}@test",
        updated_at=datetime.now(UTC),
    )
    r.set(keys.site_status(name), status.model_dump_json(), px=5000)


def test_groups_sites_and_live_state(api: httpx.Client, r: redis.Redis) -> None:
    assert api.post("/v1/groups", json={"name": "europe"}, headers=ADMIN).status_code == 201
    assert api.post("/v1/groups", json={"name": "europe"}, headers=ADMIN).status_code == 409
    version = int(r.get(CONFIG_VERSION))

    created = api.post("/v1/sites", json={**PARIS_SITE, "group": "europe"}, headers=ADMIN)
    assert created.status_code == 201, created.text
    assert created.json()["dialing"]["country_code"] == 33  # follows the country
    assert int(r.get(CONFIG_VERSION)) == version + 1
    assert int(r.get(keys.site_lines("paris"))) == 4
    assert api.post("/v1/sites", json=NEWYORK_SITE, headers=ADMIN).status_code == 201
    assert api.post("/v1/sites", json=PARIS_SITE, headers=ADMIN).status_code == 409

    # Live state: paris publishes, newyork does not, lyon publishes without being declared.
    publish_status(r, "paris", ["busy", "idle", "idle", "out_of_service"], waiting=3)
    publish_status(r, "lyon", ["idle"])
    r.hset(keys.site_inflight("paris"), "at_1", "{}")
    listed = api.get("/v1/sites", headers=TENANT)
    assert listed.status_code == 200, listed.text
    sites = {s["name"]: s for s in listed.json()}
    assert list(sites) == ["lyon", "newyork", "paris"]
    paris = sites["paris"]
    assert paris["managed"] and paris["group"] == "europe" and paris["up"]
    assert (paris["lines_up"], paris["lines_busy"], paris["waiting"], paris["inflight"]) == (
        3,
        1,
        3,
        1,
    )
    assert paris["config"]["timezone"] == "Europe/Paris"
    assert paris["status"]["lines"][0]["name"] == "paris-1"
    newyork = sites["newyork"]
    assert newyork["managed"] and not newyork["up"] and newyork["status"] is None
    assert newyork["group"] is None  # standalone
    lyon = sites["lyon"]
    assert not lyon["managed"] and lyon["config"] is None and lyon["group"] == "default"
    assert api.get("/v1/sites/lyon", headers=TENANT).json()["lines_up"] == 1
    assert api.get("/v1/sites/nowhere", headers=TENANT).status_code == 404

    # More lines on a running site: the worker's key follows at once.
    patched = api.patch("/v1/sites/paris", json={"lines": 6}, headers=ADMIN)
    assert patched.status_code == 200, patched.text
    assert patched.json()["lines"] == 6 and patched.json()["group"] == "europe"
    assert int(r.get(keys.site_lines("paris"))) == 6
    dialing = api.patch("/v1/sites/paris", json={"dialing": {"outside_prefix": "0"}}, headers=ADMIN)
    assert dialing.json()["dialing"] == {
        **created.json()["dialing"],
        "outside_prefix": "0",
    }

    # Groups and membership.
    assert api.put("/v1/groups/europe/sites/newyork", headers=ADMIN).json()["group"] == "europe"
    groups = api.get("/v1/groups", headers=TENANT).json()
    assert groups == [{"name": "europe", "description": "", "sites": ["newyork", "paris"]}]
    refused = api.delete("/v1/groups/europe", headers=ADMIN)
    assert refused.status_code == 409 and "newyork, paris" in refused.json()["detail"]
    assert api.delete("/v1/groups/europe/sites/newyork", headers=ADMIN).json()["group"] is None
    assert api.delete("/v1/groups/europe/sites/newyork", headers=ADMIN).status_code == 409
    assert api.patch("/v1/sites/paris", json={"group": None}, headers=ADMIN).status_code == 200
    assert api.put("/v1/groups/nope/sites/paris", headers=ADMIN).status_code == 404
    assert api.delete("/v1/groups/europe", headers=ADMIN).status_code == 204
    assert api.get("/v1/groups", headers=ADMIN).json() == []

    # Replace, then remove: a removed site that still publishes shows as unmanaged.
    replaced = api.put("/v1/sites/newyork", json={**NEWYORK_SITE, "lines": 8}, headers=ADMIN)
    assert replaced.status_code == 200 and int(r.get(keys.site_lines("newyork"))) == 8
    # (its status lives 5 s, as a site worker's does: published again, it still publishes)
    publish_status(r, "paris", ["idle"])
    assert api.delete("/v1/sites/paris", headers=ADMIN).status_code == 204
    assert not r.exists(keys.site_lines("paris"))
    assert api.get("/v1/sites/paris", headers=ADMIN).json()["managed"] is False
    assert api.delete("/v1/sites/paris", headers=ADMIN).status_code == 404


def test_keys_and_validation(api: httpx.Client) -> None:
    assert api.get("/v1/sites").status_code == 401
    assert api.get("/v1/sites", headers={"X-API-Key": "wrong"}).status_code == 401
    refused = api.post("/v1/groups", json={"name": "europe"}, headers=TENANT)
    assert (refused.status_code, refused.json()) == (403, {"detail": "admin key required"})
    assert api.post("/v1/sites", json=PARIS_SITE, headers=TENANT).status_code == 403
    assert api.put("/v1/sites/paris/costs", content=PARIS, headers=TENANT).status_code == 403
    assert api.post("/v1/sites", json=PARIS_SITE).status_code == 401
    assert api.get("/v1/groups", headers=TENANT).status_code == 200
    other = {"X-API-Key": "other-admin-key"}
    assert api.post("/v1/sites", json=PARIS_SITE, headers=other).status_code == 201

    def detail(body: dict, method: str = "post", url: str = "/v1/sites") -> str:
        response = api.request(method, url, json=body, headers=ADMIN)
        assert response.status_code == 422, response.text
        return response.json()["detail"]

    bad_prefix = {**NEWYORK_SITE, "dialing": {**NEWYORK_SITE["dialing"], "outside_prefix": "9a"}}
    assert (
        detail(bad_prefix) == "dialing.outside_prefix: outside_prefix must be digits only, got '9a'"
    )
    assert detail({**NEWYORK_SITE, "lines": -1}).startswith("lines: ")
    assert "unknown time zone 'Mars/Olympus'" in detail(
        {**NEWYORK_SITE, "timezone": "Mars/Olympus"}
    )
    assert detail({**NEWYORK_SITE, "name": "New York"}).startswith("name: ")
    assert "calling code" in detail(
        {**NEWYORK_SITE, "dialing": {**NEWYORK_SITE["dialing"], "country_code": 33}}
    )
    missing_group = api.post("/v1/sites", json={**NEWYORK_SITE, "group": "nope"}, headers=ADMIN)
    assert missing_group.status_code == 422 and "no group 'nope'" in missing_group.json()["detail"]
    assert detail({"lines": "many"}, "patch", "/v1/sites/paris").startswith("lines: ")
    assert detail({"name": "lyon"}, "patch", "/v1/sites/paris").startswith("name: ")
    assert api.patch("/v1/sites/nowhere", json={"lines": 1}, headers=ADMIN).status_code == 404


def test_cost_tables_through_the_public_api(api: httpx.Client, r: redis.Redis) -> None:
    assert api.put("/v1/sites/paris/costs", content=PARIS, headers=ADMIN).status_code == 404
    assert api.post("/v1/sites", json=PARIS_SITE, headers=ADMIN).status_code == 201
    csv_headers = {**ADMIN, "Content-Type": "text/csv"}
    good = api.put("/v1/sites/paris/costs", content=PARIS, headers=csv_headers)
    assert good.status_code == 200, good.text
    assert good.json() == {"site": "paris", "version": 1, "rows": 8, "currency": "EUR"}

    before = {k: r.dump(k) for k in r.keys("ff:rt:*")}
    bad = api.put("/v1/sites/paris/costs", content=BAD, headers=csv_headers)
    assert bad.status_code == 422
    assert bad.json()["detail"] == "cost table has 2 errors"
    assert [e.split(":")[0] for e in bad.json()["errors"]] == ["line 3", "line 4"]
    assert {k: r.dump(k) for k in r.keys("ff:rt:*")} == before  # nothing changed

    second = api.put("/v1/sites/paris/costs", content=flat("0.30"), headers=csv_headers)
    assert second.json()["version"] == 2
    exported = api.get("/v1/sites/paris/costs", params={"version": 1}, headers=ADMIN)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert exported.text == PARIS
    assert "0.30" in api.get("/v1/sites/paris/costs", headers=ADMIN).text
    assert api.get("/v1/sites/paris/costs", params={"version": 9}, headers=ADMIN).status_code == 404

    versions = api.get("/v1/sites/paris/costs/versions", headers=ADMIN).json()
    assert versions["current"] == 2
    assert [(v["version"], v["rows"]) for v in versions["versions"]] == [(1, 8), (2, 1)]
    back = api.post("/v1/sites/paris/costs/rollback/1", headers=ADMIN)
    assert back.status_code == 200 and back.json()["current"] == 1
    assert api.get("/v1/sites/paris/costs", headers=ADMIN).text == PARIS
    assert api.post("/v1/sites/paris/costs/rollback/7", headers=ADMIN).status_code == 404
    site = api.get("/v1/sites/paris", headers=TENANT).json()
    assert site["cost_table_version"] == 1
    assert api.get("/v1/sites/paris/costs", headers=TENANT).status_code == 403
    # Removing the site forgets its tables.
    assert api.delete("/v1/sites/paris", headers=ADMIN).status_code == 204
    assert not r.keys("ff:rt:costs:*")


def test_the_public_api_relays_to_the_routing_admin(servers: Servers, r: redis.Redis) -> None:
    direct = httpx.post(f"{servers.admin_url}/v1/groups", json={"name": "asia"}, headers=ADMIN)
    assert direct.status_code == 201
    relayed = httpx.get(f"{servers.public_url}/v1/groups", headers=TENANT)
    assert relayed.json() == [{"name": "asia", "description": "", "sites": []}]
    down = httpx.get(f"{servers.orphan_url}/v1/sites", headers=TENANT)
    assert (down.status_code, down.json()) == (503, {"detail": "routing admin service unavailable"})
    assert (
        httpx.put(f"{servers.orphan_url}/v1/groups/asia/sites/x", headers=ADMIN).status_code == 503
    )
    schema = httpx.get(f"{servers.public_url}/openapi.json").json()
    assert not any(p.startswith(("/v1/sites", "/v1/groups")) for p in schema["paths"])


def test_cli(servers: Servers, r: redis.Redis, tmp_path: Path) -> None:
    def faxfleet(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "faxfleet.cli", *args],
            cwd=ROOT,
            env=servers.env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    created = faxfleet("group", "create", "europe", "--description", "EU sites")
    assert created.returncode == 0, created.stderr
    added = faxfleet(
        "site", "add", "paris", "--country", "FR", "--area-code", "1",
        "--national-prefix", "0", "--international-prefix", "00", "--lines", "4",
        "--timezone", "Europe/Paris", "--group", "europe", "--address", "paris.example:8040",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "site paris added: 4 line(s), group europe" in added.stdout
    assert int(r.get(keys.site_lines("paris"))) == 4

    changed = faxfleet("site", "set", "paris", "--lines", "6", "--standalone")
    assert changed.returncode == 0, changed.stderr
    assert int(r.get(keys.site_lines("paris"))) == 6
    assert faxfleet("group", "add", "europe", "paris").returncode == 0

    good = tmp_path / "paris.csv"
    good.write_text(PARIS)
    imported = faxfleet("costs", "import", "paris", str(good))
    assert imported.returncode == 0, imported.stderr
    assert "cost table version 1 (8 row(s), EUR)" in imported.stdout

    bad = tmp_path / "bad.csv"
    bad.write_text(BAD)
    refused = faxfleet("costs", "import", "paris", str(bad))
    assert refused.returncode == 1
    assert "cost table has 2 errors; nothing was changed" in refused.stderr
    assert f"{bad}: line 3: price_per_minute '1,2' is not a decimal" in refused.stderr
    assert f"{bad}: line 4: days 'fri-mon'" in refused.stderr

    out = tmp_path / "export.csv"
    assert faxfleet("costs", "export", "paris", "-o", str(out)).returncode == 0
    assert out.read_text() == PARIS
    listing = faxfleet("site", "list")
    assert listing.returncode == 0 and "paris" in listing.stdout and "v1" in listing.stdout
    groups = faxfleet("group", "list")
    assert "europe" in groups.stdout and "paris" in groups.stdout

    assert faxfleet("costs", "import", "paris", str(good)).returncode == 0
    versions = faxfleet("costs", "versions", "paris")
    assert versions.returncode == 0 and "EUR" in versions.stdout
    rolled = faxfleet("costs", "rollback", "paris", "1")
    assert rolled.returncode == 0 and "version 1 is current" in rolled.stdout

    in_use = faxfleet("group", "delete", "europe")
    assert in_use.returncode == 1 and "409" in in_use.stderr
    tenant = faxfleet("--admin-key", "acme-key", "site", "remove", "paris")
    assert tenant.returncode == 1 and "admin key required" in tenant.stderr
    assert faxfleet("site", "remove", "paris").returncode == 0
    assert faxfleet("group", "delete", "europe").returncode == 0
    assert r.hlen("ff:rt:sites") == 0 and r.hlen("ff:rt:groups") == 0


def test_a_group_prices_in_one_currency(api: httpx.Client) -> None:
    from faxfleet.sample_group import SITES, cost_csv

    csv_headers = {**ADMIN, "Content-Type": "text/csv"}
    assert api.post("/v1/groups", json={"name": "global"}, headers=ADMIN).status_code == 201
    for name in ("paris", "newyork"):
        body = {"name": name, "lines": 2, "group": "global", **SITES[name]}
        assert api.post("/v1/sites", json=body, headers=ADMIN).status_code == 201
    assert (
        api.put("/v1/sites/paris/costs", content=cost_csv("paris"), headers=csv_headers).status_code
        == 200
    )
    in_dollars = cost_csv("newyork").replace(",EUR,", ",USD,")
    refused = api.put("/v1/sites/newyork/costs", content=in_dollars, headers=csv_headers)
    assert refused.status_code == 422
    assert "differs from EUR" in refused.json()["errors"][0]
    assert api.get("/v1/sites/newyork/costs", headers=ADMIN).status_code == 404
    assert (
        api.put(
            "/v1/sites/newyork/costs", content=cost_csv("newyork"), headers=csv_headers
        ).status_code
        == 200
    )


def test_a_new_timezone_moves_the_bands_without_a_new_import(
    api: httpx.Client, servers: Servers, r: redis.Redis, redis_server: RedisServer
) -> None:
    """Changing a site's time zone (API or CLI) moves its tariff bands at once, for the
    dispatcher and every cost look-up, with the same table version."""
    from routing.cost_store import CostStore
    from routing.dispatcher import Dispatcher
    from tests.test_dispatch import make_runtime, publish

    csv_headers = {**ADMIN, "Content-Type": "text/csv"}
    assert api.post("/v1/sites", json=PARIS_SITE, headers=ADMIN).status_code == 201
    assert (
        api.put("/v1/sites/paris/costs", content=PARIS, headers=csv_headers).json()["version"] == 1
    )
    publish(r, "paris", lines=2)
    d = Dispatcher(make_runtime(redis_server.url))
    number = "+33491000000"
    # 18:30 UTC on Wednesday 14 January 2026: 19:30 in Paris, 13:30 in New York
    at = datetime(2026, 1, 14, 18, 30, tzinfo=UTC)

    def bands() -> tuple[str, str]:
        """The band a look-up finds, and the one the dispatcher prices with."""
        d._reload()
        state = d.site_states(d._live())["paris"]
        return (
            CostStore(r).current("paris").lookup(number, at).description,
            state.costs.lookup(number, at).description,
        )

    assert bands() == ("France evening", "France evening")
    evening = d.cache.costs["paris"].call_cost(number, at, 60)

    moved = api.patch("/v1/sites/paris", json={"timezone": "America/New_York"}, headers=ADMIN)
    assert moved.status_code == 200 and moved.json()["timezone"] == "America/New_York"
    assert bands() == ("France daytime", "France daytime")
    assert d.cache.costs["paris"].call_cost(number, at, 60) == 2 * evening
    versions = api.get("/v1/sites/paris/costs/versions", headers=ADMIN).json()
    assert versions["current"] == 1 and len(versions["versions"]) == 1  # no new import
    assert versions["versions"][0]["timezone_at_import"] == "Europe/Paris"

    back = subprocess.run(
        [sys.executable, "-m", "faxfleet.cli", "site", "set", "paris", "--timezone", TZ],
        cwd=ROOT,
        env=servers.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert back.returncode == 0, back.stderr
    assert bands() == ("France evening", "France evening")


def test_quote_compares_the_sites_prices_for_a_number(api: httpx.Client) -> None:
    csv_headers = {**ADMIN, "Content-Type": "text/csv"}
    lyon = {**PARIS_SITE, "name": "lyon", "dialing": {**PARIS_SITE["dialing"], "area_code": "4"}}
    for site in (PARIS_SITE, NEWYORK_SITE, lyon):
        assert api.post("/v1/sites", json=site, headers=ADMIN).status_code == 201
    office = HEADER + "1,0.05,0.10,30,6,USD,mon-fri,09:00,17:00,US office hours\n"
    for name, table in (("paris", PARIS), ("lyon", flat("0.30")), ("newyork", office)):
        put = api.put(f"/v1/sites/{name}/costs", content=table, headers=csv_headers)
        assert put.status_code == 200, put.text

    # Monday 11:00 in Paris: paris's daytime French rate, lyon's flat rate; newyork's
    # table has no row for +33 and is left out.
    monday = "2026-12-07T10:00:00Z"
    got = api.get(
        "/v1/costs/quote",
        params={"number": "+33 1 42 68 53 00", "at": monday, "seconds": 90},
        headers=ADMIN,
    )
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["number"] == "+33142685300" and body["seconds"] == 90
    rows = {q["site"]: q for q in body["sites"]}
    assert [q["site"] for q in body["sites"]] == ["paris", "lyon"]  # cheapest first
    paris = rows["paris"]
    assert paris["tariff"]["prefix"] == "33" and paris["tariff"]["band"] == "08:00-19:00"
    assert paris["tariff"]["price_per_minute"] == "0.02" and paris["billed_seconds"] == 120
    assert paris["cost"] == "0.040000" and paris["currency"] == "EUR"
    assert paris["local_time"] == "2026-12-07 11:00 Mon"
    assert rows["lyon"]["cost"] == "0.600000" and rows["lyon"]["tariff"]["prefix"] == "*"

    # A national number (default region FR), on a Sunday: newyork can dial +1 but has no
    # row in force then, so it comes last without a tariff.
    sunday = api.get(
        "/v1/costs/quote",
        params={"number": "+1 212 555 0100", "at": "2026-12-06T15:00:00+00:00"},
        headers=ADMIN,
    ).json()
    assert [q["site"] for q in sunday["sites"]] == ["paris", "lyon", "newyork"]
    assert sunday["seconds"] == 60
    assert sunday["sites"][0]["cost"] == "0.230000"  # 0.05 + 60 s at 0.18 (weekend)
    assert sunday["sites"][2]["tariff"] is None and sunday["sites"][2]["cost"] is None
    only = api.get(
        "/v1/costs/quote",
        params={"number": "+12125550100", "at": "2026-12-07T15:00:00Z", "sites": "newyork"},
        headers=ADMIN,
    ).json()
    assert [(q["site"], q["cost"]) for q in only["sites"]] == [("newyork", "0.150000")]

    def refused(params: dict[str, str], headers: dict[str, str] = ADMIN) -> httpx.Response:
        return api.get("/v1/costs/quote", params=params, headers=headers)

    bad = refused({"number": "not a number"})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("number: ")
    assert refused({"number": "+33142685300", "sites": "paris,mars"}).json() == {
        "detail": "sites: no site 'mars'"
    }
    assert refused({"number": "+33142685300", "seconds": "0"}).status_code == 422
    assert refused({"number": "+33142685300"}, TENANT).status_code == 403
    assert refused({"number": "+33142685300"}, {}).status_code == 401


def test_admin_client_quote(servers: Servers, r: redis.Redis) -> None:
    from faxfleet.admin_client import AdminClient

    with AdminClient([servers.public_url], admin_key="admin-key") as admin:
        admin.create_site(PARIS_SITE)
        admin.import_costs("paris", flat("0.12"))
        quote = admin.quote("+33142685300", at="2026-12-07T10:00:00Z", seconds=120)
    assert [(q["site"], q["cost"]) for q in quote["sites"]] == [("paris", "0.240000")]
