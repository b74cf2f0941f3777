"""Destination policy and daily page quotas through the public API: two real API processes
on the test's private Redis, tenant and admin keys, concurrent submissions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
import redis

from faxfleet import keys
from faxfleet.redis_server import RedisServer
from scheduler.allowance import day_key, utc_day
from tests.conftest import paged_text
from tests.uvicorn_apps import PUBLIC_API, ROOT, running, running_api

ACME = {"X-API-Key": "acme-key"}
GLOBEX = {"X-API-Key": "globex-key"}
ADMIN = {"X-API-Key": "admin-key"}
FLEET_QUOTA = 30


@dataclass
class Apis:
    urls: list[str]
    env: dict[str, str]


@pytest.fixture(scope="module")
def apis(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apis]:
    logs = tmp_path_factory.mktemp("policy-logs")
    env = {
        **os.environ,
        "FAXFLEET_REDIS_URL": redis_server.url,
        "FAXFLEET_API_KEYS": "acme=acme-key,globex=globex-key",
        "FAXFLEET_ADMIN_KEYS": "admin-key",
        "FAXFLEET_DAILY_PAGE_QUOTA": str(FLEET_QUOTA),
        "PYTHONUNBUFFERED": "1",
    }
    with running([(f"api{i}", PUBLIC_API, env) for i in range(2)], logs) as apps:
        yield Apis([app.url for app in apps], env)


@pytest.fixture
def api(apis: Apis, r: redis.Redis) -> Iterator[httpx.Client]:
    """The first API node, on a clean Redis with the home site registered."""
    r.sadd(keys.HOME_SITES, "paris")
    with httpx.Client(base_url=apis.urls[0], timeout=30) as client:
        yield client


def post(
    client: httpx.Client,
    to: list[str],
    headers: dict[str, str] = ACME,
    documents: int = 1,
    **fields: str,
) -> httpx.Response:
    files = [("documents", (f"d{i}.txt", paged_text(2), "text/plain")) for i in range(documents)]
    return client.post(
        "/v1/faxes", headers=headers, data={"to": to, **fields}, files=files, timeout=30
    )


def used(r: redis.Redis, tenant: str = "acme") -> int:
    return int(r.get(day_key(tenant, utc_day())) or 0)


def stored_faxes(r: redis.Redis) -> int:
    return sum(1 for k in r.scan_iter("ff:job:*") if not k.endswith(b":log"))


# -- destinations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "words"),
    [
        ("+33899123456", "(premium-rate, FR)"),
        ("+33 8 91 12 34 56", "(premium-rate, FR)"),
        ("0899123456", "(premium-rate, FR)"),  # national format, default region FR
        ("+449012345678", "(premium-rate, GB)"),
        ("+1 900 555 1234", "(premium-rate, US)"),
        ("+447012345678", "(personal, GB)"),
        ("+881612345678", "(mobile, 001)"),
    ],
)
def test_barred_destinations_are_a_422_naming_number_type_and_rule(
    api: httpx.Client, r: redis.Redis, number: str, words: str
) -> None:
    resp = post(api, [number])
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert detail.startswith("to[0]: +")
    assert words in detail
    assert "FAXFLEET_DESTINATION_BARRED_" in detail
    assert stored_faxes(r) == 0
    assert not list(r.scan_iter("ff:doc*"))
    assert used(r) == 0


def test_every_barred_recipient_is_named(api: httpx.Client, r: redis.Redis) -> None:
    resp = post(api, ["+33142685300", "+19005551234", "+33 8 20 12 34 56"])
    assert resp.status_code == 422
    detail = resp.json()["detail"]
    assert "to[1]: +19005551234 (premium-rate, US): premium-rate numbers are barred" in detail
    assert "to[2]: +33820123456 (shared-cost, FR)" in detail
    assert "to[0]" not in detail
    # The same fax to the ordinary number alone goes through.
    assert post(api, ["+33142685300"]).status_code == 201


def test_tenant_policy_through_the_admin_api(api: httpx.Client) -> None:
    grant = {"allow_types": ["premium_rate"], "bar_types": ["mobile"], "note": "ticket 42"}
    assert api.put("/v1/tenants/acme/policy", json=grant, headers=ACME).status_code == 403
    assert api.delete("/v1/tenants/acme/policy", headers=ACME).status_code == 403
    assert api.get("/v1/tenants/acme/policy").status_code == 401
    resp = api.put("/v1/tenants/acme/policy", json=grant, headers=ADMIN)
    assert resp.status_code == 200, resp.text
    view = resp.json()
    assert view["policy"]["allow_types"] == ["premium_rate"]
    assert "premium_rate" not in view["effective"]["barred_types"]
    assert "mobile" in view["effective"]["barred_types"]
    assert view["effective"]["daily_pages"] == FLEET_QUOTA

    # A tenant reads its own policy, not another's.
    assert api.get("/v1/tenants/acme/policy", headers=ACME).json()["policy"] == view["policy"]
    assert api.get("/v1/tenants/acme/policy", headers=GLOBEX).status_code == 403
    bad = api.put("/v1/tenants/acme/policy", json={"bar_types": ["premium"]}, headers=ADMIN)
    assert bad.status_code == 422
    assert "premium" in bad.text
    bad_name = api.put("/v1/tenants/a%20b/policy", json={}, headers=ADMIN)
    assert bad_name.status_code == 422

    # The grant applies at once, on every API node, to acme only.
    assert post(api, ["+33899123456"]).status_code == 201
    refused = post(api, ["+33612345678"])
    assert refused.status_code == 422
    assert "mobile numbers are barred for tenant acme (tenant policy bar_types)" in refused.text
    assert post(api, ["+33899123456"], headers=GLOBEX).status_code == 422

    assert api.delete("/v1/tenants/acme/policy", headers=ADMIN).status_code == 204
    assert post(api, ["+33899123456"]).status_code == 422
    assert post(api, ["+33612345678"]).status_code == 201


def test_fleet_regions_from_the_settings(apis: Apis, r: redis.Redis, tmp_path) -> None:
    """A node started with an allowed-region list refuses the rest; a tenant may be granted
    a region."""
    env = {**apis.env, "FAXFLEET_DESTINATION_ALLOWED_REGIONS": "FR,BE"}
    with running_api(env, tmp_path, "regions") as app:
        url = app.url
        r.sadd(keys.HOME_SITES, "paris")
        with httpx.Client(base_url=url, timeout=30) as client:
            assert post(client, ["+33142685300"]).status_code == 201
            resp = post(client, ["+442079460000"])
            assert resp.status_code == 422
            assert resp.json()["detail"] == (
                "to[0]: +442079460000 (fixed-line, GB): the fleet faxes only to BE, FR "
                "(FAXFLEET_DESTINATION_ALLOWED_REGIONS)"
            )
            granted = {"allow_regions": ["GB"]}
            client.put("/v1/tenants/acme/policy", json=granted, headers=ADMIN)
            assert post(client, ["+442079460000"]).status_code == 201
            assert post(client, ["+442079460000"], headers=GLOBEX).status_code == 422


# -- quotas ------------------------------------------------------------------------------------


def test_quota_is_a_429_with_quota_and_use(api: httpx.Client, r: redis.Redis) -> None:
    api.put("/v1/tenants/acme/policy", json={"daily_pages": 5}, headers=ADMIN)
    ok = post(api, ["+33142685300", "+33142685301"], documents=2)  # at least 4 pages
    assert ok.status_code == 201, ok.text
    assert used(r) == 4
    over = post(api, ["+33142685300", "+33142685301"])
    assert over.status_code == 429
    assert over.json()["detail"] == (
        "daily page quota of tenant acme exceeded: 4 of 5 pages used today (UTC), this fax "
        "needs at least 2 (pages times recipients)"
    )
    retry_after = int(over.headers["Retry-After"])
    now = datetime.now(UTC)
    assert 0 < retry_after <= 86401 - (now.hour * 3600 + now.minute * 60) + 60
    assert used(r) == 4
    assert post(api, ["+33142685300"]).status_code == 201
    assert used(r) == 5
    view = api.get("/v1/tenants/acme/policy", headers=ACME).json()
    assert (view["pages_used"], view["effective"]["daily_pages"]) == (5, 5)
    # Another tenant has the fleet's quota, counted on its own.
    assert post(api, ["+33142685300"], headers=GLOBEX).status_code == 201
    assert used(r, "globex") == 1


def test_the_fleet_quota_applies_without_a_tenant_policy(api: httpx.Client, r: redis.Redis) -> None:
    r.set(day_key("globex", utc_day()), FLEET_QUOTA - 1)
    assert post(api, ["+33142685300"], headers=GLOBEX).status_code == 201
    resp = post(api, ["+33142685300"], headers=GLOBEX)
    assert resp.status_code == 429
    assert f"{FLEET_QUOTA} of {FLEET_QUOTA} pages used" in resp.json()["detail"]


def test_refused_submissions_are_not_charged(api: httpx.Client, r: redis.Redis) -> None:
    api.put("/v1/tenants/acme/policy", json={"daily_pages": 3}, headers=ADMIN)
    assert post(api, ["+33142685300", "+33899123456"]).status_code == 422  # barred
    assert post(api, ["not a number"]).status_code == 422
    assert post(api, ["+33142685300"], home_site="nowhere").status_code == 422
    bad_doc = api.post(
        "/v1/faxes",
        headers=ACME,
        data={"to": ["+33142685300"]},
        files=[("documents", ("x.bin", b"\x00\x01\x02\x03" * 50, "application/octet-stream"))],
    )
    assert bad_doc.status_code == 415
    assert used(r) == 0
    # An idempotent replay returns the original and is not charged again.
    first = post(api, ["+33142685300"], idempotency_key="k1")
    assert first.status_code == 201
    again = post(api, ["+33142685300"], idempotency_key="k1")
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    assert used(r) == 1
    assert post(api, ["+33142685300", "+33142685301"]).status_code == 201
    assert used(r) == 3
    # Used up: a replay of a stored fax still answers with the fax, not a 429.
    assert post(api, ["+33142685300"], idempotency_key="k1").status_code == 200
    assert post(api, ["+33142685300"]).status_code == 429
    assert used(r) == 3
    assert stored_faxes(r) == 2


def test_concurrent_submissions_are_counted_exactly(apis: Apis, api: httpx.Client, r) -> None:
    """40 submissions of 2 pages at least (2 recipients), 20 at a time over two API nodes,
    against a quota of 25: exactly 12 fit (24 pages), the others are a 429."""
    api.put("/v1/tenants/acme/policy", json={"daily_pages": 25}, headers=ADMIN)
    clients = [httpx.Client(base_url=u, timeout=60) for u in apis.urls]
    try:

        def one(i: int) -> int:
            return post(clients[i % 2], ["+33142685300", "+33142685301"]).status_code

        with ThreadPoolExecutor(20) as pool:
            codes = list(pool.map(one, range(40)))
    finally:
        for c in clients:
            c.close()
    assert sorted(set(codes)) == [201, 429]
    assert codes.count(201) == 12
    assert used(r) == 24
    assert stored_faxes(r) == 12


# -- admin override ----------------------------------------------------------------------------


def test_an_admin_overrides_the_policy_and_the_history_says_who(
    api: httpx.Client, r: redis.Redis
) -> None:
    api.put("/v1/tenants/acme/policy", json={"daily_pages": 1}, headers=ADMIN)
    # Without the flag an admin is held to the tenant's policy too.
    plain = post(api, ["+33899123456"], headers=ADMIN, tenant="acme")
    assert plain.status_code == 422
    resp = post(
        api,
        ["+33899123456", "+33142685300"],
        headers=ADMIN,
        tenant="acme",
        override_policy="true",
        user="ops-bob",
    )
    assert resp.status_code == 201, resp.text
    fax_id = resp.json()["id"]
    assert resp.json()["tenant"] == "acme"
    assert used(r) == 2  # counted, past the quota of 1

    # The tenant sees the fax and who decided; the override is its first history entry.
    seen = api.get(f"/v1/faxes/{fax_id}", headers=ACME)
    assert seen.status_code == 200
    first = seen.json()["history"][0]
    assert first["to_state"] == "submitted"
    detail = first["detail"]
    assert detail.startswith("override_policy by admin (user ops-bob, key ")
    assert "to[0]: +33899123456 (premium-rate, FR)" in detail
    assert "FAXFLEET_DESTINATION_BARRED_TYPES" in detail
    assert "daily page quota of 1 passed (2 pages used today)" in detail
    assert api.get(f"/v1/faxes/{fax_id}", headers=GLOBEX).status_code == 404

    # As a JSON ``fax`` field too.
    body = {"to": ["+19005551234"], "tenant": "globex", "override_policy": True}
    files = [("documents", ("d.txt", b"hello", "text/plain"))]
    ok = api.post("/v1/faxes", headers=ADMIN, data={"fax": json.dumps(body)}, files=files)
    assert ok.status_code == 201, ok.text
    assert ok.json()["tenant"] == "globex"


def test_tenant_keys_may_not_override(api: httpx.Client, r: redis.Redis) -> None:
    resp = post(api, ["+33899123456"], override_policy="true")
    assert resp.status_code == 403
    assert resp.json()["detail"] == "override_policy needs an admin key"
    body = {"to": ["+33899123456"], "override_policy": True}
    files = [("documents", ("d.txt", b"hello", "text/plain"))]
    as_json = api.post("/v1/faxes", headers=ACME, data={"fax": json.dumps(body)}, files=files)
    assert as_json.status_code == 403
    other = post(api, ["+33142685300"], tenant="globex")
    assert other.status_code == 403
    assert post(api, ["+33142685300"], tenant="acme").status_code == 201  # its own: fine
    assert post(api, ["+33142685300"], override_policy="false").status_code == 201
    assert stored_faxes(r) == 2
    # An admin names a tenant that exists.
    assert post(api, ["+33142685300"], headers=ADMIN).status_code == 422
    assert post(api, ["+33142685300"], headers=ADMIN, tenant="nobody").status_code == 422


# -- the rest of a fax's size, once rendered ---------------------------------------------------


def _render_done(env: dict[str, str], job_id: str, pages: int) -> None:
    """Apply a renderer's ``render_done`` the way the home site's event worker does (the
    scheduler's task, run in a process of its own with the fleet's environment)."""
    code = (
        "import sys; from datetime import UTC, datetime\n"
        "from faxfleet.messages import EventEnvelope, RenderDone\n"
        "from scheduler import tasks\n"
        "ev = RenderDone(job_id=sys.argv[1], pages=int(sys.argv[2]), at=datetime.now(UTC))\n"
        "tasks.event(EventEnvelope(event=ev).model_dump(mode='json'))\n"
    )
    subprocess.run([sys.executable, "-c", code, job_id, str(pages)], cwd=ROOT, env=env, check=True)


def test_a_fax_bigger_than_what_is_left_fails_once_rendered(
    apis: Apis, api: httpx.Client, r: redis.Redis
) -> None:
    api.put("/v1/tenants/acme/policy", json={"daily_pages": 10}, headers=ADMIN)
    small = post(api, ["+33142685300"]).json()["id"]
    big = post(api, ["+33142685300", "+33142685301"]).json()["id"]
    assert used(r) == 3
    _render_done(apis.env, small, 4)  # 4 pages: 3 more
    _render_done(apis.env, big, 4)  # 8 pages: 6 more, only 3 left
    assert used(r) == 4  # the big one's reservation given back
    failed = api.get(f"/v1/faxes/{big}", headers=ACME).json()
    assert failed["state"] == "failed"
    assert failed["cause"] == "quota_exceeded"
    assert [rc["cause"] for rc in failed["recipients"]] == ["quota_exceeded"] * 2
    assert failed["detail"] == (
        "daily page quota of tenant acme exceeded: 4 of 10 pages used today (UTC), this fax "
        "needs 8 (pages times recipients)"
    )
    sent = api.get(f"/v1/faxes/{small}", headers=ACME).json()
    assert sent["state"] == "routing" and sent["pages"] == 4
    _render_done(apis.env, small, 4)  # applied again: charged once
    assert used(r) == 4
