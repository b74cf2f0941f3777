"""The fleet folder (routing/declared.py): checked as a whole with file and line, applied
idempotently by routing admin at start, and the folder compose.yaml mounts matches the
fleet compose starts."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import redis

from faxfleet.compose import COMPOSE_SITES
from faxfleet.redis_server import RedisServer, free_port
from faxfleet.sample_group import GROUP, SITES, cost_csv
from routing.cost_store import CostStore
from routing.costs import parse_csv, to_csv
from routing.declared import DeclarationError, apply_folder, load, plan
from routing.sites import Registry
from tests.uvicorn_apps import ROUTING_ADMIN, start

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "fleet-config"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A writable copy of the folder compose.yaml mounts."""
    return Path(shutil.copytree(FOLDER, tmp_path / "fleet"))


def test_the_compose_folder_declares_the_sample_group_and_the_compose_sites() -> None:
    wanted = load(FOLDER)
    assert list(wanted.groups) == [GROUP]
    assert {s.name: s.lines for s in COMPOSE_SITES} == {
        name: site.lines for name, site in wanted.sites.items()
    }
    for name, site in wanted.sites.items():
        assert site.group == GROUP
        assert site.country == SITES[name]["country"]
        assert site.timezone == SITES[name]["timezone"]
        expected = parse_csv(cost_csv(name), site=name, timezone=site.timezone)
        assert to_csv(wanted.costs[name]) == to_csv(expected)


def test_every_error_of_the_folder_is_named_by_file_and_line(folder: Path) -> None:
    toml = (folder / "fleet.toml").read_text()
    toml = toml.replace("lines = 3", "lines = -1", 1).replace(
        'group = "global"\nlines = 3', 'group = "nowhere"\nlines = 3', 1
    )
    (folder / "fleet.toml").write_text(toml)
    costs = (folder / "costs" / "paris.csv").read_text().splitlines()
    costs[1] = costs[1].replace("0.015", "0.01x")
    (folder / "costs" / "paris.csv").write_text("\n".join(costs) + "\n")
    with pytest.raises(DeclarationError) as caught:
        load(folder)
    errors = caught.value.errors
    assert any(e.startswith("fleet.toml: sites.paris.lines:") for e in errors), errors
    assert any("sites.newyork.group: no group 'nowhere'" in e for e in errors), errors
    # paris's table is not read (its site is invalid); newyork's is, and is fine.
    assert not any(e.startswith("costs/") for e in errors), errors

    (folder / "fleet.toml").write_text((FOLDER / "fleet.toml").read_text())
    with pytest.raises(DeclarationError) as caught:
        load(folder)
    assert caught.value.errors == [
        "costs/paris.csv: line 2: price_per_minute '0.01x' is not a decimal (write e.g. 0.12)"
    ]


def test_syntax_errors_missing_files_and_escapes_are_refused(folder: Path) -> None:
    (folder / "fleet.toml").write_text("[groups]\nglobal = \n")
    with pytest.raises(DeclarationError, match=r"fleet.toml: .*line 2"):
        load(folder)
    (folder / "fleet.toml").write_text(
        (FOLDER / "fleet.toml")
        .read_text()
        .replace("costs/paris.csv", "../../etc/passwd")
        .replace("costs/newyork.csv", "costs/missing.csv")
    )
    with pytest.raises(DeclarationError) as caught:
        load(folder)
    text = str(caught.value)
    assert "sites.paris.costs: '../../etc/passwd' is outside the folder" in text
    assert "sites.newyork.costs: cannot read costs/missing.csv" in text
    with pytest.raises(DeclarationError, match="cannot read"):
        load(folder / "absent")


def test_a_plan_against_what_the_fleet_already_holds_is_empty() -> None:
    wanted = load(FOLDER)
    current = {name: to_csv(table) for name, table in wanted.costs.items()}
    assert plan(wanted, wanted.groups, wanted.sites, current).empty
    changed = {**wanted.sites, "paris": wanted.sites["paris"].model_copy(update={"lines": 1})}
    todo = plan(wanted, wanted.groups, changed, {**current, "newyork": None})
    assert [s.name for s in todo.sites] == ["paris"]
    assert todo.costs == ["newyork"] and todo.groups == []


def test_applying_twice_changes_the_fleet_once_and_takes_back_drift(
    r: redis.Redis, folder: Path
) -> None:
    first = apply_folder(r, folder)
    assert [g.name for g in first.groups] == [GROUP]
    assert sorted(first.costs) == ["newyork", "paris"]
    registry, store = Registry(r), CostStore(r)
    assert registry.site("paris").lines == 3
    assert store.version("paris") == 1

    assert apply_folder(r, folder).empty
    assert store.version("paris") == 1 and store.version("newyork") == 1

    # Lines changed through the admin API go back to the folder's value at the next start;
    # a changed table becomes the next version; a site the folder does not name stays.
    registry.put_site(registry.site("paris").model_copy(update={"lines": 7}), create=False)
    extra = registry.site("newyork").model_copy(update={"name": "tokyo", "group": None})
    registry.put_site(extra, create=True)
    csv_path = folder / "costs" / "newyork.csv"
    csv_path.write_text(csv_path.read_text().replace("0.009", "0.011"))
    again = apply_folder(r, folder)
    assert [s.name for s in again.sites] == ["paris"] and again.costs == ["newyork"]
    assert registry.site("paris").lines == 3
    assert registry.site("tokyo") is not None
    assert store.version("newyork") == 2 and store.version("paris") == 1


def test_a_folder_with_errors_writes_nothing(r: redis.Redis, folder: Path) -> None:
    (folder / "costs" / "newyork.csv").write_text("prefix,price\n1,2\n")
    with pytest.raises(DeclarationError):
        apply_folder(r, folder)
    assert Registry(r).sites() == {} and Registry(r).groups() == {}


def _admin(redis_url: str, folder: Path, port: int, logs: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "FAXFLEET_REDIS_URL": redis_url,
        "FAXFLEET_FLEET_DIR": str(folder),
        "FAXFLEET_DEMO": "1",
        "PYTHONUNBUFFERED": "1",
    }
    return start(f"admin-{port}", ROUTING_ADMIN, port, env, logs)


def test_routing_admin_nodes_apply_the_folder_at_start_or_refuse_to_start(
    redis_server: RedisServer, r: redis.Redis, folder: Path, tmp_path: Path
) -> None:
    ports = [free_port(), free_port()]
    procs = [_admin(redis_server.url, folder, p, tmp_path) for p in ports]
    try:
        deadline = time.monotonic() + 30
        for port in ports:
            while True:
                assert time.monotonic() < deadline, "routing admin did not start"
                try:
                    sites = httpx.get(
                        f"http://127.0.0.1:{port}/v1/sites",
                        headers={"X-API-Key": "admin-key"},
                        timeout=2,
                    )
                    if sites.status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            assert {s["name"] for s in sites.json()} == {"paris", "newyork"}
        # Two nodes started together: one table version each, not two.
        assert CostStore(r).version("paris") == 1
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)

    (folder / "fleet.toml").write_text("[sites.x]\nlines = 2\n")
    port = free_port()
    proc = _admin(redis_server.url, folder, port, tmp_path)
    assert proc.wait(30) != 0
    log = tmp_path / f"admin-{port}.log"
    assert "fleet.toml: sites.x.country: Field required" in log.read_text()
