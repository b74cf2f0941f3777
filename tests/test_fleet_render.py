"""Cover pages, header line and page previews on a real one-site fleet (real Redis,
Celery render and site workers, HTTP API; simulated, time-scaled lines)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from click.testing import CliRunner
from PIL import Image

from faxfleet import keys
from faxfleet.cli import cli
from faxfleet.fleet import Fleet, SiteSpec
from tests.conftest import paged_text, running_fleet

pytestmark = pytest.mark.fleet

ACME = {"X-API-Key": "acme-key"}
GLOBEX = {"X-API-Key": "globex-key"}
CUSTOM = "= ACME CUSTOM COVER\n# {{ subject }}\n| Pages | {{ pages }}\n"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("render-fleet")
    templates = tmp / "covers"
    templates.mkdir()
    (templates / "acme.j2").write_text(CUSTOM)
    env = {"FAXFLEET_COVER_TEMPLATE_DIR": str(templates)}
    with running_fleet(tmp, [SiteSpec("paris", 2)], env) as fleet:
        yield fleet


@pytest.fixture(scope="module")
def rc(fleet: Fleet) -> redis.Redis:
    return redis.Redis.from_url(fleet.env["FAXFLEET_REDIS_URL"])


@pytest.fixture(scope="module")
def api(fleet: Fleet) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fleet.api_url, timeout=30) as client:
        yield client


def submit(api: httpx.Client, number: str, pages: int, headers: dict, **fields: str) -> str:
    resp = api.post(
        "/v1/faxes",
        headers=headers,
        files=[("documents", ("doc.txt", paged_text(pages), "text/plain"))],
        data={"to": [number], **fields},
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def wait_state(api: httpx.Client, fax_id: str, states: set[str], headers: dict) -> dict:
    deadline = time.monotonic() + 60
    while True:
        fax = api.get(f"/v1/faxes/{fax_id}", headers=headers).json()
        if fax["state"] in states:
            return fax
        assert time.monotonic() < deadline, json.dumps(fax, indent=1)[:3000]
        time.sleep(0.1)


def png(resp: httpx.Response) -> Image.Image:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(resp.content))
    image.load()
    return image


def pages_received(rc: redis.Redis, number: str, job: str) -> list[int]:
    records = [json.loads(x) for x in rc.lrange(keys.sim_received(number), 0, -1)]
    return [p for rec in records if rec["job"] == job for p in rec["pages"]]


def test_cover_page_counts_and_previews(fleet: Fleet, api: httpx.Client, rc: redis.Redis) -> None:
    number = "+33142685310"
    fax_id = submit(
        api,
        number,
        2,
        GLOBEX,
        cover="true",
        subject="Quarterly report",
        comment="Two pages follow.",
        recipient_name="Jane Smith",
        sender="Globex Paris",
        sender_company="Globex Corporation\n1 Main Street",
        resolution="standard",
    )
    fax = wait_state(api, fax_id, {"done", "failed", "outcome_uncertain"}, GLOBEX)
    assert fax["state"] == "done", fax
    assert fax["pages"] == 3  # cover + two document pages
    assert fax["cover"]["subject"] == "Quarterly report"
    assert fax["cover"]["recipient_numbers"] == [number]
    assert fax["recipients"][0]["pages_confirmed"] == 3
    assert sorted(pages_received(rc, number, fax_id)) == [1, 2, 3]
    # The site stamped the header line on every page it sent (it logs pages it could not).
    site_log = (fleet.log_dir / "site-paris.log").read_text(errors="replace")
    assert "no header on page" not in site_log
    # The stored pages are as rendered (the site stamps headers on its copy while sending).
    stored = Image.open(io.BytesIO(rc.hget(keys.pages(fax_id), "1")))
    assert stored.size == (1728, 1146)
    assert stored.convert("L").crop((0, 0, 1728, 15)).getextrema() == (255, 255)

    cover = png(api.get(f"/v1/faxes/{fax_id}/pages/1.png", headers=GLOBEX))
    assert cover.size == (1728, 2292)  # standard rows doubled: square pixels
    assert cover.convert("L").getextrema() == (0, 255)
    last = png(api.get(f"/v1/faxes/{fax_id}/pages/3.png", headers=GLOBEX))
    assert last.size == (1728, 2292)
    # The preview carries the header line the site stamped on the page it sent (the
    # sender, the time, page 3/3); as rendered (header=false) its band is blank.
    assert last.convert("L").crop((0, 0, 1728, 32)).getextrema()[0] == 0
    rendered = api.get(f"/v1/faxes/{fax_id}/pages/3.png?header=false", headers=GLOBEX)
    assert png(rendered).convert("L").crop((0, 0, 1728, 32)).getextrema() == (255, 255)

    # the cover has far more ink than the one-line text page
    def ink(image: Image.Image) -> int:
        return image.convert("L").histogram()[0]

    assert ink(cover) > 5 * ink(last)

    for missing in (0, 4, 99):
        resp = api.get(f"/v1/faxes/{fax_id}/pages/{missing}.png", headers=GLOBEX)
        assert resp.status_code == 404, resp.text
    assert api.get(f"/v1/faxes/{fax_id}/pages/1.png", headers=ACME).status_code == 404
    assert api.get("/v1/faxes/fx_nope/pages/1.png", headers=GLOBEX).status_code == 404


def test_tenant_template_and_no_cover(api: httpx.Client) -> None:
    custom = submit(api, "+33142685311", 1, ACME, cover="true", subject="Custom")
    plain = submit(api, "+33142685312", 1, ACME, header="false")
    custom_fax = wait_state(api, custom, {"done"}, ACME)
    plain_fax = wait_state(api, plain, {"done"}, ACME)
    assert custom_fax["pages"] == 2
    assert plain_fax["pages"] == 1 and plain_fax["cover"] is None
    assert plain_fax["header"] is False
    # Sent without a header line: none in its preview either.
    bare = png(api.get(f"/v1/faxes/{plain}/pages/1.png", headers=ACME)).convert("L")
    assert bare.crop((0, 0, 1728, 32)).getextrema() == (255, 255)
    page = png(api.get(f"/v1/faxes/{custom}/pages/1.png", headers=ACME))
    assert page.size == (1728, 2292)  # fine resolution: already square
    gray = page.convert("L")
    # The custom template has a band, a title and one row: nothing in the lower half.
    assert gray.crop((0, 0, 1728, 600)).getextrema()[0] == 0
    assert gray.crop((0, 1146, 1728, 2292)).getextrema() == (255, 255)


def test_preview_conflict_while_rendering_and_cli(
    fleet: Fleet, api: httpx.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet.stop_service("render")
    try:
        fax_id = submit(api, "+33142685313", 2, ACME, cover="true")
        resp = api.get(f"/v1/faxes/{fax_id}/pages/1.png", headers=ACME)
        assert resp.status_code == 409, resp.text
        assert "not rendered yet" in resp.json()["detail"]
        runner = CliRunner()
        base = ["--api", fleet.api_url, "--api-key", "acme-key"]
        refused = runner.invoke(cli, [*base, "preview", fax_id], obj={})
        assert refused.exit_code != 0
        assert "409" in refused.output and "not rendered yet" in refused.output
    finally:
        fleet.start_service(fleet.spec("render"))
    fax = wait_state(api, fax_id, {"done"}, ACME)
    assert fax["pages"] == 3
    out = tmp_path / "page2.png"
    result = runner.invoke(cli, [*base, "preview", fax_id, "--page", "2", "-o", str(out)], obj={})
    assert result.exit_code == 0, result.output
    image = Image.open(out)
    assert image.format == "PNG" and image.size == (1728, 2292)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, [*base, "preview", fax_id], obj={})
    assert result.exit_code == 0, result.output
    assert (tmp_path / f"{fax_id}-p1.png").stat().st_size > 1000
    missing = runner.invoke(cli, [*base, "preview", fax_id, "--page", "9"], obj={})
    assert missing.exit_code != 0 and "404" in missing.output
