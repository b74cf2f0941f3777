"""The web console in headless Chromium on a real fleet: an admin searches and opens a
fax; a tenant sends a fax from the browser, watches it reach ``done`` on the page without
reloading it and opens a page preview; another tenant sees none of it and no admin page,
and a post without the CSRF token is refused. Screenshots of each page are kept
(tests/console_browser.py says where)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis
from playwright.sync_api import Page, expect

from faxfleet import keys
from faxfleet.fleet import Fleet
from tests import console_browser
from tests.console_browser import ROOT
from tests.fleet_api import ACME, wait_fax

pytestmark = pytest.mark.fleet

# The shared fixtures (tests/console_browser.py), made this module's.
browser = console_browser.browser
console_fleet = console_browser.console_fleet
console_page = console_browser.console_page
shots = console_browser.shots

INVOICE = ROOT / "faxfleet" / "samples" / "invoice.pdf"
ConsolePage = Callable[[str], Page]
Shots = Callable[[Page, str], Path]


def _post(fleet: Fleet, number: str, **fields: str) -> str:
    """Send the invoice to ``number`` as tenant acme through the API; the fax id."""
    with httpx.Client(base_url=fleet.api_url, timeout=30) as api:
        sent = api.post(
            "/v1/faxes",
            headers=ACME,
            data={"to": number, **fields},
            files=[("documents", ("invoice.pdf", INVOICE.read_bytes(), "application/pdf"))],
        )
        assert sent.status_code == 201, sent.text
        return str(sent.json()["id"])


def _submit(fleet: Fleet, number: str, user: str) -> str:
    fax_id = _post(fleet, number, user=user, priority="3")
    with httpx.Client(base_url=fleet.api_url, timeout=30) as api:
        wait_fax(api, fax_id, lambda f: f["state"] == "done")
    return fax_id


@pytest.fixture(scope="module")
def acme_fax(console_fleet: Fleet) -> str:
    """A fax of tenant acme, sent (by the API) before the browser looks."""
    return _submit(console_fleet, "+33142685311", "carol")


def test_admin_searches_the_faxes_and_opens_one(
    console_page: ConsolePage, shots: Shots, acme_fax: str
) -> None:
    page = console_page("admin")
    # The admin's navigation has the fleet pages.
    for section in ("admin/overview", "admin/sites", "admin/costs", "report"):
        expect(page.locator(f"header nav a[href='/console/{section}']")).to_be_visible()
    page.select_option("select[name=tenant]", "acme")
    page.select_option("select[name=state]", "done")
    page.fill("input[name=user]", "carol")
    page.fill("input[name=number]", "+33142685311")
    page.click("form.filters button[type=submit]")
    page.wait_for_url(re.compile(r".*/console/faxes\?.*tenant=acme.*"))
    rows = page.locator("#fax-rows tr[data-fax]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-fax", acme_fax)
    shots(page, "admin-faxes")
    # A search that matches nothing says so.
    page.goto("/console/faxes?tenant=acme&user=nobody")
    expect(page.locator("#fax-rows td.empty")).to_have_text("No fax matches.")

    page.goto("/console/faxes?tenant=acme&user=carol")
    page.click(f"a[href='/console/faxes/{acme_fax}']")
    page.wait_for_url(f"**/console/faxes/{acme_fax}")
    expect(page.locator("#fax-state-value")).to_have_text("done")
    recipient = page.locator("table.recipients tbody tr").first
    expect(recipient).to_contain_text("+33142685311")
    expect(recipient).to_contain_text("paris")
    expect(recipient).to_contain_text("2 / 2")  # pages confirmed / pages
    history = page.locator("table.history tbody")
    expect(history).to_contain_text("sending")
    expect(history).to_contain_text("done")
    # Settled: the state part no longer polls.
    assert page.locator("#fax-state").get_attribute("hx-get") is None
    expect(page.locator("dl.facts")).to_contain_text("invoice.pdf (application/pdf")
    shots(page, "admin-fax")


def test_a_tenant_sends_a_fax_and_watches_it_live(
    console_page: ConsolePage, shots: Shots, console_fleet: Fleet
) -> None:
    number = "+33142685312"
    rc = redis.Redis.from_url(console_fleet.env["FAXFLEET_REDIS_URL"])
    rc.rpush(keys.sim_script(number), "stall:3")  # the call lasts a few seconds
    page = console_page("acme")
    expect(page.locator("header nav a[data-admin]")).to_have_count(0)
    page.click("header nav a[href='/console/send']")
    page.wait_for_url("**/console/send")
    # A number the API refuses: its reason, next to the form, which keeps what was typed.
    page.set_input_files("input[name=documents]", str(INVOICE))
    page.fill("input[name=to]", "12")
    page.click("form.stack button[type=submit]")
    expect(page.locator("#send-error")).to_contain_text("to[0]")
    expect(page.locator("input[name=to]")).to_have_value("12")
    shots(page, "tenant-send-refused")

    page.set_input_files("input[name=documents]", str(INVOICE))
    page.fill("input[name=to]", number)
    page.select_option("select[name=priority]", "7")
    page.fill("input[name=notify_email]", "dave@example.com")
    page.fill("input[name=user]", "dave")
    shots(page, "tenant-send")
    page.click("form.stack button[type=submit]")
    page.wait_for_url(re.compile(r".*/console/faxes/fx_[0-9a-f]+\?done=sent$"))
    fax_id = page.url.split("/console/faxes/")[1].split("?")[0]
    expect(page.locator(".notice")).to_have_text("Fax submitted.")
    # Record every state the page shows, and mark the document: a reload would lose both.
    page.evaluate(
        """() => {
            window.__stay = true;
            window.__seen = [document.querySelector('#fax-state-value').textContent];
            new MutationObserver(() => {
                const s = document.querySelector('#fax-state-value');
                if (s && window.__seen[window.__seen.length - 1] !== s.textContent)
                    window.__seen.push(s.textContent);
            }).observe(document.body, {subtree: true, childList: true, characterData: true});
        }"""
    )
    expect(page.locator("#fax-state-value")).to_have_text("sending", timeout=30_000)
    shots(page, "tenant-fax-sending")
    expect(page.locator("#fax-state-value")).to_have_text("done", timeout=60_000)
    assert page.evaluate("window.__stay") is True, "the page was reloaded"
    seen = page.evaluate("window.__seen")
    assert seen[-1] == "done" and "sending" in seen, seen
    expect(page.locator("table.recipients tbody tr").first).to_contain_text("2 / 2")
    # Its expected cost, by paris's table, rounded to the cent.
    cost = page.locator("table.recipients tbody tr").first.locator("td").last
    expect(cost).to_have_text(re.compile(r"^\d+\.\d\d EUR$"))
    assert page.locator("#fax-state").get_attribute("hx-get") is None  # polling stopped
    shots(page, "tenant-fax-done")

    # The fax is the tenant's, as the API sees it: priority, user, notification.
    with httpx.Client(base_url=console_fleet.api_url) as api:
        fax = api.get(f"/v1/faxes/{fax_id}", headers=ACME).json()
    assert (fax["priority"], fax["user"], fax["tenant"]) == (7, "dave", "acme")
    assert fax["notify"]["email"] == "dave@example.com"

    # The page previews: images in the page, and one opened on its own.
    preview = page.locator(".previews img").first
    expect(preview).to_be_visible()
    page.wait_for_function("() => document.querySelector('.previews img').complete")
    assert preview.evaluate("img => img.naturalWidth") == 1728
    page.goto(f"/console/faxes/{fax_id}/pages/1.png")
    shots(page, "tenant-preview")
    png = page.request.get(f"/console/faxes/{fax_id}/pages/2.png")
    assert png.status == 200 and png.body()[:4] == b"\x89PNG"
    assert png.headers["content-type"] == "image/png"

    # The list shows it, settled.
    page.goto("/console/faxes")
    expect(page.locator(f"#fax-rows tr[data-fax='{fax_id}'] .state")).to_have_text("done")
    shots(page, "tenant-faxes")

    # Its call in the costs report, priced from paris's table, charted.
    page.click("header nav a[href='/console/report']")
    expect(page.locator("#report-table tbody tr").first).to_contain_text("paris")
    calls = int(page.locator("#report-table tbody tr").first.locator("td").nth(1).inner_text())
    assert calls >= 1
    expect(page.locator("svg.chart[aria-label='Cost by site (EUR)'] rect.bar")).to_have_count(1)
    expect(page.locator("#report-table thead")).to_contain_text("cost EUR")
    shots(page, "tenant-report")


def test_a_refused_change_shows_the_api_reason_and_cancel_reaches_the_line(
    console_page: ConsolePage, shots: Shots, console_fleet: Fleet
) -> None:
    number = "+33142685313"
    rc = redis.Redis.from_url(console_fleet.env["FAXFLEET_REDIS_URL"])
    rc.rpush(keys.sim_script(number), "stall:8")
    fax_id = _post(console_fleet, number)
    page = console_page("acme")
    # The list follows the fax live too.
    page.evaluate("window.__stay = true")
    row_state = page.locator(f"#fax-rows tr[data-fax='{fax_id}'] .state")
    expect(row_state).to_have_text("sending", timeout=30_000)
    assert page.evaluate("window.__stay") is True, "the list was reloaded"

    page.click(f"a[href='/console/faxes/{fax_id}']")
    expect(page.locator("#fax-state-value")).to_have_text("sending")
    page.select_option("form[action$='/alter'] select[name=priority]", "9")
    page.click("form[action$='/alter'] button[type=submit]")
    expect(page.locator("#action-error")).to_have_text(
        f"fax {fax_id} is sending: only a fax not yet on a line can be altered"
    )
    # The previews stay while the state part refreshes (hx-preserve): loaded once.
    page.wait_for_function(
        "() => [...document.querySelectorAll('.previews img')].every(i => i.naturalWidth)"
    )
    page.evaluate(
        """() => {
            window.__img = document.querySelector('.previews img');
            window.__swaps = 0;
            document.body.addEventListener('htmx:afterSwap', () => window.__swaps++);
        }"""
    )
    page.wait_for_function("() => window.__swaps >= 2")
    assert page.evaluate("document.contains(window.__img) && window.__img.naturalWidth") == 1728
    shots(page, "tenant-change-refused")
    page.click("form[action$='/cancel'] button[type=submit]")
    page.wait_for_url(f"**/console/faxes/{fax_id}?done=cancelled")
    expect(page.locator("#fax-state-value")).to_have_text("cancelled", timeout=30_000)
    with httpx.Client(base_url=console_fleet.api_url) as api:
        fax = api.get(f"/v1/faxes/{fax_id}", headers=ACME).json()
    assert fax["recipients"][0]["state"] == "cancelled"
    assert fax["recipients"][0]["pages_confirmed"] < 2


def test_a_failed_fax_is_requeued_from_its_page(
    console_page: ConsolePage, shots: Shots, console_fleet: Fleet
) -> None:
    number = "+33142685314"
    rc = redis.Redis.from_url(console_fleet.env["FAXFLEET_REDIS_URL"])
    rc.rpush(keys.sim_script(number), *(["no_answer"] * 4))  # FAXFLEET_MAX_DIALS
    fax_id = _post(console_fleet, number)
    page = console_page("acme")
    page.goto(f"/console/faxes/{fax_id}")
    expect(page.locator("#fax-state-value")).to_have_text("failed", timeout=60_000)
    expect(page.locator("table.recipients tbody tr").first).to_contain_text("too_many_dials")
    # Settled: the Requeue button arrives with the refresh, no Cancel any more.
    expect(page.locator("form[action$='/cancel']")).to_have_count(0)
    shots(page, "tenant-fax-failed")
    page.click("form[action$='/retry'] button[type=submit]")
    page.wait_for_url(f"**/console/faxes/{fax_id}?done=requeued")
    expect(page.locator("#fax-state-value")).to_have_text("done", timeout=60_000)
    expect(page.locator("table.history tbody")).to_contain_text("requeued")
    with httpx.Client(base_url=console_fleet.api_url) as api:
        fax = api.get(f"/v1/faxes/{fax_id}", headers=ACME).json()
    assert fax["recipients"][0]["attempt"] == 5
    assert any("tenant acme" in (t["detail"] or "") for t in fax["history"]), fax["history"]


def test_another_tenant_sees_nothing_of_it(
    console_page: ConsolePage, shots: Shots, acme_fax: str
) -> None:
    page = console_page("globex")
    expect(page.locator(f"#fax-rows tr[data-fax='{acme_fax}']")).to_have_count(0)
    # Its tenant filter is not offered, and naming acme's fax in the URL shows nothing.
    expect(page.locator("select[name=tenant]")).to_have_count(0)
    page.goto("/console/faxes?tenant=acme")
    expect(page.locator(f"#fax-rows tr[data-fax='{acme_fax}']")).to_have_count(0)

    response = page.goto(f"/console/faxes/{acme_fax}")
    assert response is not None and response.status == 404
    expect(page.locator("p.error")).to_have_text(f"no fax {acme_fax}")
    shots(page, "tenant-other-fax")
    for path in (f"/console/faxes/{acme_fax}/pages/1.png", f"/console/faxes/{acme_fax}/state"):
        response = page.goto(path)
        assert response is not None and response.status == 404, path

    for path in ("/console/admin/overview", "/console/admin/sites", "/console/admin/costs"):
        response = page.goto(path)
        assert response is not None and response.status == 403, path
    expect(page.locator("p.error")).to_contain_text("for administrators")
    shots(page, "tenant-admin-refused")

    # A post without the page's CSRF token (as another site would make it) is refused,
    # and the fax is untouched.
    refused = page.request.post(f"/console/faxes/{acme_fax}/cancel", form={"x": "1"})
    assert refused.status == 403
    assert "CSRF" in refused.text()
    refused = page.request.post("/console/signout", form={"csrf": "forged"})
    assert refused.status == 403
    page.goto("/console/faxes")
    expect(page.locator("header .who")).to_have_text("tenant globex")


def test_sign_in_page_and_sign_out(console_page: ConsolePage, shots: Shots) -> None:
    page = console_page("acme")
    page.click("header form.signout button")
    page.wait_for_url("**/console/signin")
    shots(page, "signin")
    page.fill("input[name=api_key]", "wrong-key")
    page.click("button[type=submit]")
    expect(page.locator("p.error")).to_contain_text("unknown API key")
    shots(page, "signin-wrong-key")
    response = page.goto("/console/faxes")
    assert response is not None
    assert "/console/signin" in page.url
