"""The console's admin fleet pages (overview, sites and groups, cost tables): over HTTP
against a real API and routing admin API on a private Redis (403s for tenants, the CSRF
check, the forms and their refusals), and in headless Chromium against a running fleet
(an admin's whole round: overview with live lines, a group and a site, a refused then
an accepted cost table, a price comparison; a tenant refused everywhere), with
screenshots in ``artifacts/console/`` (``FAXFLEET_CONSOLE_ARTIFACTS`` to put them elsewhere)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis

from faxfleet import keys
from faxfleet.fleet import SiteSpec
from tests.conftest import paged_text, running_fleet
from tests.console_browser import CHROMIUM, artifacts_dir, check_screenshot
from tests.test_admin_api import (  # noqa: F401 - the servers fixture
    ADMIN,
    PARIS_SITE,
    Servers,
    servers,
)
from tests.test_cost_store import BAD, HEADER, PARIS, flat
from tests.uvicorn_apps import running_api

ROOT = Path(__file__).resolve().parent.parent
ADMIN_PAGES = [
    "/console/admin/overview",
    "/console/admin/overview/live",
    "/console/admin/sites",
    "/console/admin/costs",
    "/console/admin/costs/paris/download",
]
ADMIN_POSTS = [
    "/console/admin/sites",
    "/console/admin/sites/paris/lines",
    "/console/admin/sites/paris/group",
    "/console/admin/sites/paris/remove",
    "/console/admin/groups",
    "/console/admin/groups/europe/delete",
    "/console/admin/costs/paris/upload",
]


@contextmanager
def sign_in(base_url: str, key: str) -> Iterator[httpx.Client]:
    """A client with a console session opened with ``key`` through the sign-in form."""
    with httpx.Client(base_url=base_url, timeout=20) as client:
        yield _signed_in(client, key)


def _signed_in(client: httpx.Client, key: str) -> httpx.Client:
    form = client.get("/console/signin")
    token = re.search(r'name="signin_token" value="([^"]+)"', form.text)
    assert token, form.text
    done = client.post(
        "/console/signin",
        data={"api_key": key, "signin_token": token[1], "next": "/console/faxes"},
    )
    assert done.status_code == 303, done.text
    return client


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found[1]


@pytest.fixture
def admin(servers: Servers, r: redis.Redis) -> Iterator[httpx.Client]:  # noqa: F811
    with sign_in(servers.public_url, "admin-key") as client:
        yield client


@pytest.fixture
def routing(servers: Servers) -> Iterator[httpx.Client]:  # noqa: F811
    """The routing admin API itself (to check what the pages changed)."""
    with httpx.Client(base_url=servers.admin_url, headers=ADMIN, timeout=10) as client:
        yield client


def test_a_tenant_is_refused_every_admin_page(servers: Servers, r: redis.Redis) -> None:  # noqa: F811
    with sign_in(servers.public_url, "acme-key") as tenant:
        csrf = csrf_of(tenant.get("/console/faxes"))
        for path in ADMIN_PAGES:
            page = tenant.get(path)
            assert page.status_code == 403, (path, page.status_code)
            assert "for administrators" in page.text
        for path in ADMIN_POSTS:
            refused = tenant.post(path, data={"csrf": csrf, "name": "europe", "lines": "3"})
            assert refused.status_code == 403, (path, refused.status_code)
        assert "Overview" not in tenant.get("/console/faxes").text  # no admin entries
    assert r.hlen("ff:rt:groups") == 0  # the tenant's posts changed nothing
    with httpx.Client(base_url=servers.public_url, timeout=10) as anonymous:
        for path in ADMIN_PAGES:
            page = anonymous.get(path)
            assert page.status_code == 303 and "/console/signin" in page.headers["location"]


def test_every_post_needs_the_csrf_token(admin: httpx.Client, routing: httpx.Client) -> None:
    csrf = csrf_of(admin.get("/console/admin/sites"))
    for token in (None, "wrong-token"):
        data = {"name": "europe"} | ({"csrf": token} if token else {})
        refused = admin.post("/console/admin/groups", data=data)
        assert refused.status_code == 403 and "CSRF" in refused.text
        upload = admin.post(
            "/console/admin/costs/paris/upload",
            data={"csrf": token} if token else {},
            files={"file": ("paris.csv", PARIS.encode(), "text/csv")},
        )
        assert upload.status_code == 403
        for path in ADMIN_POSTS:
            assert admin.post(path, data=data).status_code == 403, path
    assert routing.get("/v1/groups").json() == []
    made = admin.post("/console/admin/groups", data={"csrf": csrf, "name": "europe"})
    assert made.status_code == 303
    assert made.headers["location"] == "/console/admin/sites?done=group-created&name=europe"
    by_header = admin.post(
        "/console/admin/groups", data={"name": "asia"}, headers={"X-CSRF-Token": csrf}
    )
    assert by_header.status_code == 303
    assert [g["name"] for g in routing.get("/v1/groups").json()] == ["asia", "europe"]


def test_sites_page_changes_and_refusals(admin: httpx.Client, routing: httpx.Client) -> None:
    csrf = csrf_of(admin.get("/console/admin/sites"))
    assert admin.post("/console/admin/groups", data={"csrf": csrf, "name": "europe"}).is_redirect
    site = {
        "csrf": csrf,
        "name": "paris",
        "country": "FR",
        "timezone": "Mars/Olympus",
        "lines": "4",
        "area_code": "1",
        "national_prefix": "0",
        "international_prefix": "00",
        "group": "europe",
    }
    refused = admin.post("/console/admin/sites", data=site)
    assert refused.status_code == 422
    assert "unknown time zone &#39;Mars/Olympus&#39;" in refused.text
    assert 'value="Mars/Olympus"' in refused.text  # what was typed is kept
    assert admin.post("/console/admin/sites", data={**site, "lines": "four"}).status_code == 422
    created = admin.post("/console/admin/sites", data={**site, "timezone": "Europe/Paris"})
    assert created.status_code == 303
    again = admin.post("/console/admin/sites", data={**site, "timezone": "Europe/Paris"})
    assert again.status_code == 409 and "already exists" in again.text
    paris = routing.get("/v1/sites/paris").json()["config"]
    assert (paris["group"], paris["lines"], paris["dialing"]["country_code"]) == ("europe", 4, 33)

    assert admin.post(
        "/console/admin/sites/paris/lines", data={"csrf": csrf, "lines": "6"}
    ).is_redirect
    assert routing.get("/v1/sites/paris").json()["config"]["lines"] == 6
    busy = admin.post("/console/admin/groups/europe/delete", data={"csrf": csrf})
    assert busy.status_code == 409 and "paris" in busy.text
    alone = {"csrf": csrf, "group": "", "current": "europe"}
    assert admin.post("/console/admin/sites/paris/group", data=alone).is_redirect
    assert routing.get("/v1/sites/paris").json()["group"] is None
    assert admin.post("/console/admin/groups/europe/delete", data={"csrf": csrf}).is_redirect
    page = admin.get("/console/admin/sites?done=group-deleted&name=europe")
    assert "Group europe deleted." in page.text and 'data-site="paris"' in page.text


def test_cost_tables_page(admin: httpx.Client, routing: httpx.Client) -> None:
    routing.post("/v1/sites", json=PARIS_SITE).raise_for_status()
    lyon = {**PARIS_SITE, "name": "lyon"}
    routing.post("/v1/sites", json=lyon).raise_for_status()
    page = admin.get("/console/admin/costs?site=paris")
    assert page.status_code == 200 and "has no cost table yet" in page.text
    csrf = csrf_of(page)

    def upload(site: str, text: str) -> httpx.Response:
        return admin.post(
            f"/console/admin/costs/{site}/upload",
            data={"csrf": csrf},
            files={"file": (f"{site}.csv", text.encode(), "text/csv")},
        )

    refused = upload("paris", BAD)
    assert refused.status_code == 422
    assert "cost table has 2 errors" in refused.text
    assert re.search(r"<li>line 3: price_per_minute &#39;1,2&#39;", refused.text)
    assert re.search(r"<li>line 4: days &#39;fri-mon&#39;", refused.text)
    assert routing.get("/v1/sites/paris/costs/versions").json()["current"] is None
    assert upload("paris", "").status_code == 422

    done = upload("paris", PARIS)
    assert done.status_code == 303
    shown = admin.get(done.headers["location"])
    assert "Imported version 1 of paris." in shown.text
    assert shown.text.count("<td>France daytime</td>") == 1
    assert upload("lyon", flat("0.30")).status_code == 303
    csv = admin.get("/console/admin/costs/paris/download")
    assert csv.headers["content-type"].startswith("text/csv") and csv.text == PARIS

    compared = admin.get(
        "/console/admin/costs",
        params={"number": "+33142685300", "at": "2026-12-07T10:00", "seconds": "90"},
    )
    rows = re.findall(r'<tr data-site="(\w+)">', compared.text.split('id="quote"')[1])
    assert rows == ["paris", "lyon"]
    assert "0.040000 EUR" in compared.text and "0.600000 EUR" in compared.text
    wrong = admin.get("/console/admin/costs", params={"number": "12"})
    assert 'id="quote-error"' in wrong.text and "number:" in wrong.text


def test_the_admin_key_stays_server_side(
    servers: Servers,  # noqa: F811
    r: redis.Redis,
) -> None:
    with sign_in(servers.public_url, "admin-key") as client:
        token = client.cookies.get("ff_console")
        assert token and "admin-key" not in token
        assert r.get(keys.console_admin_key(token)) == b"admin-key"
        assert r.ttl(keys.console_admin_key(token)) > 0
        assert client.get("/console/admin/sites").status_code == 200
        r.delete(keys.console_admin_key(token))  # e.g. a session older than the key's
        again = client.get("/console/admin/sites")
        assert again.status_code == 403 and "sign in" in again.text
        csrf = csrf_of(client.get("/console/faxes"))
        client.post("/console/signout", data={"csrf": csrf})
    with sign_in(servers.public_url, "acme-key") as tenant:
        assert not r.exists(keys.console_admin_key(tenant.cookies.get("ff_console")))
    with sign_in(servers.public_url, "admin-key") as client:
        token = client.cookies.get("ff_console")
        csrf = csrf_of(client.get("/console/faxes"))
        assert client.post("/console/signout", data={"csrf": csrf}).status_code == 303
        assert not r.exists(keys.console_admin_key(token))


def test_overview_without_a_fleet(admin: httpx.Client, routing: httpx.Client) -> None:
    routing.post("/v1/sites", json=PARIS_SITE).raise_for_status()
    page = admin.get("/console/admin/overview")
    assert page.status_code == 200
    assert 'hx-get="/console/admin/overview/live" hx-trigger="every 2s"' in page.text
    live = admin.get("/console/admin/overview/live", headers={"HX-Request": "true"})
    assert live.status_code == 200 and "<html" not in live.text
    assert "Fleet unhealthy" in live.text and "no live dispatcher process" in live.text
    # paris is declared but publishes nothing: its four lines show as down.
    assert live.text.count('class="line line-down"') == 4


# -- in a browser, on a running fleet --------------------------------------------------------

BERLIN = HEADER + (
    "49,0.015,0,60,60,EUR,*,,,Germany\n"
    "33,0.035,0.02,60,30,EUR,*,,,France\n"
    "*,0.20,0.05,60,30,EUR,*,,,Elsewhere\n"
)
MADRID_SITE = {
    "name": "madrid",
    "country": "ES",
    "dialing": {"national_prefix": "", "international_prefix": "00"},
    "lines": 1,
    "timezone": "Europe/Madrid",
}


@pytest.mark.fleet
def test_admin_pages_in_a_browser(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    shots = artifacts_dir()
    shots.mkdir(parents=True, exist_ok=True)
    taken: list[Path] = []
    with (
        running_fleet(tmp_path, [SiteSpec("paris", 2), SiteSpec("lyon", 1)]) as fleet,
        httpx.Client(base_url=fleet.admin_url, headers=ADMIN, timeout=10) as routing,
        sync_playwright() as pw,
    ):
        routing.post("/v1/sites", json=MADRID_SITE).raise_for_status()
        put = routing.put(
            "/v1/sites/madrid/costs",
            content=flat("0.05"),
            headers={"Content-Type": "text/csv"},
        )
        put.raise_for_status()
        base = f"{fleet.api_url}/console"
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})

        def shot(name: str) -> None:
            path = shots / f"admin-{name}.png"
            page.screenshot(path=str(path), full_page=True)
            taken.append(path)

        # Sign in on the way to the overview: both fleet sites with their lines.
        page.goto(f"{base}/admin/overview")
        page.fill('input[name="api_key"]', "admin-key")
        page.click('form[action$="/signin"] button[type="submit"]')
        page.wait_for_url("**/console/admin/overview")
        expect(page.locator('#overview-sites tr[data-site="paris"] li.line')).to_have_count(2)
        expect(page.locator('#overview-sites tr[data-site="lyon"] li.line')).to_have_count(1)
        expect(page.locator('#processes tr[data-kind="dispatcher"]')).to_have_count(1)

        # A long fax: its line shows the page being sent, refreshed by the polling.
        sent = httpx.post(
            f"{fleet.api_url}/v1/faxes",
            headers={"X-API-Key": "acme-key"},
            files=[("documents", ("long.txt", paged_text(40), "text/plain"))],
            data={"to": "+33142685300"},
            timeout=30,
        )
        assert sent.status_code == 201, sent.text
        sending = page.locator("#overview-sites li.line-sending")
        expect(sending.first).to_contain_text(re.compile(r"sending page \d+"), timeout=40_000)
        expect(sending.first.locator("a")).to_have_text(sent.json()["id"])
        shot("overview")

        # A group, then a site in it.
        page.goto(f"{base}/admin/sites")
        page.fill('#create-group input[name="name"]', "europe")
        page.click('#create-group button[type="submit"]')
        expect(page.locator("p.notice")).to_have_text("Group europe created.")
        form = page.locator("#create-site")
        form.locator('input[name="name"]').fill("berlin")
        form.locator('input[name="country"]').fill("DE")
        form.locator('input[name="timezone"]').fill("Mars/Olympus")
        form.locator('input[name="lines"]').fill("2")
        form.locator('input[name="area_code"]').fill("30")
        form.locator('select[name="group"]').select_option("europe")
        form.locator('button[type="submit"]').click()
        expect(page.locator('[data-error="create-site"]')).to_contain_text("unknown time zone")
        page.locator('#create-site input[name="timezone"]').fill("Europe/Berlin")
        page.locator('#create-site button[type="submit"]').click()
        expect(page.locator("p.notice")).to_have_text("Site berlin declared.")
        expect(page.locator('#group-list tr[data-group="europe"]')).to_contain_text("berlin")
        shot("sites")

        # A cost table with errors: every error, line-numbered; then a good one.
        page.goto(f"{base}/admin/costs?site=berlin")
        upload = page.locator("#upload-costs")
        upload.locator('input[type="file"]').set_input_files(
            files=[{"name": "berlin.csv", "mimeType": "text/csv", "buffer": BAD.encode()}]
        )
        upload.locator('button[type="submit"]').click()
        errors = page.locator("#upload-errors ol.cost-errors li")
        expect(errors).to_have_count(2)
        expect(errors.nth(0)).to_contain_text("line 3: price_per_minute '1,2'")
        expect(errors.nth(1)).to_contain_text("line 4: days 'fri-mon'")
        shot("costs-refused")
        assert routing.get("/v1/sites/berlin/costs/versions").json()["current"] is None
        page.locator('#upload-costs input[type="file"]').set_input_files(
            files=[{"name": "berlin.csv", "mimeType": "text/csv", "buffer": BERLIN.encode()}]
        )
        page.locator('#upload-costs button[type="submit"]').click()
        expect(page.locator("p.notice")).to_have_text("Imported version 1 of berlin.")
        rows = page.locator("#cost-rows tbody tr")
        expect(rows).to_have_count(3)
        expect(rows.nth(0)).to_contain_text("Germany")
        shot("costs")

        # Compare berlin and madrid for a Paris number: both, cheaper first.
        compare = page.locator("#compare")
        compare.locator('input[name="number"]').fill("+33 1 42 68 53 00")
        compare.locator('input[name="compare"][value="berlin"]').check()
        compare.locator('input[name="compare"][value="madrid"]').check()
        compare.locator('button[type="submit"]').click()
        quote = page.locator("#quote tbody tr")
        expect(quote).to_have_count(2)
        expect(quote.nth(0)).to_have_attribute("data-site", "madrid")
        expect(quote.nth(0).locator("td.cost")).to_have_text("0.050000 EUR")
        expect(quote.nth(1)).to_have_attribute("data-site", "berlin")
        expect(quote.nth(1).locator("td.cost")).to_have_text("0.055000 EUR")
        shot("compare")

        # A tenant: 403 on every admin page.
        tenant = browser.new_context().new_page()
        tenant.goto(f"{base}/signin")
        tenant.fill('input[name="api_key"]', "acme-key")
        tenant.click('form[action$="/signin"] button[type="submit"]')
        tenant.wait_for_url("**/console/faxes")
        for path in ("overview", "sites", "costs", "overview/live"):
            response = tenant.goto(f"{base}/admin/{path}")
            assert response is not None and response.status == 403, path
            expect(tenant.locator("p.error")).to_contain_text("for administrators")
        browser.close()
    for path in taken:
        check_screenshot(path)


def test_overview_lists_stuck_faxes(
    servers: Servers,  # noqa: F811
    r: redis.Redis,
    tmp_path: Path,
) -> None:
    """A fax no renderer takes stays ``submitted``: past the render watch it is listed
    as stuck, linked to its page."""
    env = {**servers.env, "FAXFLEET_RENDER_STUCK_AFTER_SECONDS": "1"}
    with running_api(env, tmp_path, "stuck-api") as app:
        url = app.url
        r.sadd(keys.HOME_SITES, "paris")
        sent = httpx.post(
            f"{url}/v1/faxes",
            headers={"X-API-Key": "acme-key"},
            files=[("documents", ("one.txt", b"hello", "text/plain"))],
            data={"to": "+33142685300"},
            timeout=20,
        )
        assert sent.status_code == 201, sent.text
        fax_id = sent.json()["id"]
        with sign_in(url, "admin-key") as admin:
            fresh = admin.get("/console/admin/overview/live").text
            assert fax_id not in fresh.split('id="stuck-faxes"')[1]
            time.sleep(1.5)
            live = admin.get("/console/admin/overview/live").text
        stuck = live.split('id="stuck-faxes"')[1].split("</table>")[0]
        assert f'<a href="/console/faxes/{fax_id}">{fax_id}</a>' in stuck
        assert "acme" in stuck and "+33142685300" in stuck
