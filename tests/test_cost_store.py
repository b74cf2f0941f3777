"""Versioned cost tables on a real Redis: versions, all-or-nothing imports, rollback,
export round trip, the retention limit, and bands in the site's current time zone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis

from faxfleet.sample_group import SITES
from routing.cost_store import KEEP_VERSIONS, CostStore, UnknownVersion, current_key, table_key
from routing.costs import CostTableError, parse_csv
from routing.sites import CONFIG_VERSION, Registry, SiteConfig

HEADER = (
    "prefix,price_per_minute,connection_fee,first_increment,next_increment,currency,"
    "days,start,end,description\n"
)
PARIS = HEADER + (
    "33,0.02,0,60,60,EUR,mon-fri,08:00,19:00,France daytime\n"
    "33,0.01,0,60,60,EUR,mon-fri,00:00,08:00,France night\n"
    "33,0.01,0,60,60,EUR,mon-fri,19:00,24:00,France evening\n"
    '33,0.01,0,60,60,EUR,"sat,sun",,,France weekend\n'
    "*,0.25,0.05,60,30,EUR,mon-fri,08:00,19:00,Elsewhere daytime\n"
    "*,0.18,0.05,60,30,EUR,mon-fri,00:00,08:00,Elsewhere night\n"
    "*,0.18,0.05,60,30,EUR,mon-fri,19:00,24:00,Elsewhere evening\n"
    '*,0.18,0.05,60,30,EUR,"sat,sun",,,Elsewhere weekend\n'
)
BAD = HEADER + (
    "33,0.02,0,60,60,EUR,mon-fri,,,fine\n"
    '44,"1,2",0,60,60,EUR,mon-fri,,,bad price\n'
    "49,0.10,0,60,60,EUR,fri-mon,,,bad days\n"
)
TZ = "Europe/Paris"


def flat(price: str) -> str:
    return HEADER + f"*,{price},0,60,60,EUR,*,,,flat\n"


def test_imports_are_versioned_and_routers_are_told(r: redis.Redis) -> None:
    store = CostStore(r)
    assert store.current("paris") is None and store.version("paris") == 0
    first = store.import_csv("paris", PARIS, TZ)
    assert (first.version, len(first.tariffs), first.currency) == (1, 8, "EUR")
    config_version = int(r.get(CONFIG_VERSION))
    second = store.import_csv("paris", flat("0.30"), TZ)
    assert second.version == 2
    assert int(r.get(CONFIG_VERSION)) == config_version + 1
    assert store.versions("paris") == [1, 2] and store.version("paris") == 2
    assert store.current("paris") == second
    assert int(r.get(current_key("paris"))) == 2
    assert set(r.hkeys(table_key("paris"))) == {b"1", b"2"}
    assert [v["rows"] for v in store.info("paris")] == [8, 1]
    assert store.current("newyork") is None  # tables are per site


def test_a_bad_file_changes_nothing(r: redis.Redis) -> None:
    store = CostStore(r)
    store.import_csv("paris", PARIS, TZ)
    before = {k: r.dump(k) for k in r.keys("*")}
    with pytest.raises(CostTableError) as caught:
        store.import_csv("paris", BAD, TZ)
    errors = caught.value.errors
    assert len(errors) == 2
    assert errors[0].startswith("line 3: price_per_minute '1,2'")
    assert errors[1].startswith("line 4: days 'fri-mon'")
    assert {k: r.dump(k) for k in r.keys("*")} == before
    with pytest.raises(CostTableError):  # a first table that is bad leaves no trace either
        store.import_csv("lyon", BAD, TZ)
    assert not r.exists(table_key("lyon"), current_key("lyon"))


def test_rollback_makes_an_older_version_current(r: redis.Redis) -> None:
    store = CostStore(r)
    store.import_csv("paris", PARIS, TZ)
    store.import_csv("paris", flat("0.30"), TZ)
    config_version = int(r.get(CONFIG_VERSION))
    back = store.rollback("paris", 1)
    assert back.version == 1 and store.version("paris") == 1
    assert len(store.current("paris").tariffs) == 8
    assert int(r.get(CONFIG_VERSION)) == config_version + 1
    with pytest.raises(UnknownVersion):
        store.rollback("paris", 7)
    assert store.version("paris") == 1
    # The next import still gets a new number.
    assert store.import_csv("paris", flat("0.40"), TZ).version == 3


def test_export_round_trips(r: redis.Redis) -> None:
    store = CostStore(r)
    table = store.import_csv("paris", PARIS, TZ)
    store.import_csv("paris", flat("0.30"), TZ)
    text = store.export_csv("paris", 1)
    assert parse_csv(text, site="paris", timezone=TZ) == table
    assert store.export_csv("paris").count("\n") == 2  # header + one row of version 2
    again = store.import_csv("paris", text, TZ)
    assert again.tariffs == table.tariffs and again.version == 3
    with pytest.raises(UnknownVersion):
        store.export_csv("paris", 99)
    with pytest.raises(UnknownVersion):
        store.export_csv("newyork")


def test_keeps_the_newest_versions_only(r: redis.Redis) -> None:
    store = CostStore(r)
    for i in range(KEEP_VERSIONS + 5):
        store.import_csv("paris", flat(f"0.{i + 10}"), TZ)
    kept = store.versions("paris")
    assert kept == list(range(6, KEEP_VERSIONS + 6))
    assert store.version("paris") == KEEP_VERSIONS + 5
    assert [v["version"] for v in store.info("paris")] == kept
    with pytest.raises(UnknownVersion):
        store.rollback("paris", 5)
    store.drop("paris")
    assert store.versions("paris") == [] and store.current("paris") is None


def test_bands_follow_the_sites_current_timezone(r: redis.Redis) -> None:
    """Changing a site's time zone moves its bands at once: no new import, same version;
    the zone the version was imported in stays on record."""
    registry = Registry(r)
    site = SiteConfig(name="paris", lines=2, **SITES["paris"])
    assert site.timezone == TZ
    registry.put_site(site, create=True)
    store = CostStore(r)
    imported = store.import_csv("paris", PARIS)  # recorded in the site's zone
    assert imported.timezone == TZ
    # 18:30 UTC on Wednesday 14 January 2026: 19:30 in Paris, 13:30 in New York
    at = datetime(2026, 1, 14, 18, 30, tzinfo=UTC)
    assert store.current("paris").lookup("+33491000000", at).description == "France evening"

    config_version = int(r.get(CONFIG_VERSION))
    registry.put_site(site.model_copy(update={"timezone": "America/New_York"}), create=False)
    assert int(r.get(CONFIG_VERSION)) == config_version + 1  # routers reload
    now_table = store.current("paris")
    assert now_table.timezone == "America/New_York" and now_table.version == 1
    assert now_table.lookup("+33491000000", at).description == "France daytime"
    assert store.get("paris", 1).lookup("+33491000000", at).description == "France daytime"
    # a caller holding the configuration says the zone itself
    assert store.current("paris", TZ).lookup("+33491000000", at).description == "France evening"
    # the stored version and its record keep the zone at import
    assert store.info("paris")[0]["timezone_at_import"] == TZ
    assert b'"timezone":"Europe/Paris"' in r.hget(table_key("paris"), "1")
    assert store.export_csv("paris") == PARIS

    # imports and rollbacks answer in the current zone too
    second = store.import_csv("paris", flat("0.30"), TZ)
    assert second.timezone == "America/New_York" and second == store.current("paris")
    assert store.info("paris")[1]["timezone_at_import"] == TZ
    back = store.rollback("paris", 1)
    assert back.lookup("+33491000000", at).description == "France daytime"
    # a site that is not declared keeps the zone its table was imported in
    registry.remove_site("paris")
    assert store.current("paris").timezone == TZ
