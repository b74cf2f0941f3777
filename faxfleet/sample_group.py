"""A realistic two-site group: Paris and New York, each cheap for its own country.

The demo and the routing tests declare it through the admin API exactly as an
administrator would (``faxfleet group create`` / ``site add`` / ``costs import``).
"""

from __future__ import annotations

from importlib import resources

from faxfleet.admin_client import AdminClient

GROUP = "global"

SITES = {
    "paris": {
        "country": "FR",
        "timezone": "Europe/Paris",
        "address": "paris.fax.example:8040",
        "dialing": {"area_code": "1", "national_prefix": "0", "international_prefix": "00"},
    },
    "newyork": {
        "country": "US",
        "timezone": "America/New_York",
        "address": "newyork.fax.example:8040",
        "dialing": {
            "area_code": "212",
            "national_prefix": "1",
            "international_prefix": "011",
            "local_area_codes": ["646", "917"],
            "local_format": "subscriber",
        },
    },
}


def cost_csv(site: str) -> str:
    return resources.files("faxfleet.samples").joinpath(f"costs-{site}.csv").read_text()


def declare(admin: AdminClient, lines: dict[str, int]) -> None:
    """Create the group, declare its sites with ``lines`` each and import their tables."""
    admin.create_group(GROUP, "Paris and New York")
    for name, lines_count in lines.items():
        config = {"name": name, "lines": lines_count, "group": GROUP, **SITES[name]}
        admin.create_site(config)
        admin.import_costs(name, cost_csv(name))
