"""Sites, groups and cost tables declared in a folder, applied when routing admin starts.

A deployment keeps its fleet's shape in files next to its compose file (or in a config
map) and mounts them read-only; ``FAXFLEET_FLEET_DIR`` names the folder. Every routing
admin node applies it at start, before it serves, so a fleet comes up with its sites,
groups and prices without anybody calling the admin API.

The folder::

    fleet.toml            groups and sites
    costs/paris.csv       a site's cost table (path given by the site's ``costs``)

``fleet.toml``::

    [groups]
    global = "Paris and New York"        # name = description

    [sites.paris]
    group = "global"                     # optional: standalone without it
    lines = 3
    country = "FR"
    timezone = "Europe/Paris"
    address = "paris.fax.example:8040"   # optional
    costs = "costs/paris.csv"            # optional, relative to the folder
    [sites.paris.dialing]
    area_code = "1"
    national_prefix = "0"
    international_prefix = "00"

Rules:

* The folder is checked as a whole first (:func:`load`): every error of every file is
  reported at once, named by file and line (TOML syntax, site fields, cost table rows),
  and nothing is applied if there is any. Routing admin then refuses to start, with the
  errors in its log, rather than serve a fleet half declared.
* Applying is idempotent (:func:`plan` then :func:`apply`): a group or site that already
  matches is left alone, a cost table whose rows equal the current version's makes no
  new version. Starting ten times changes the fleet once.
* What the folder names, it owns: a site's lines or group changed through the admin API
  are set back to the folder's values at the next start. Sites, groups and tables it
  does not name are left alone (it never deletes).
* Several admin nodes start together: one applies under a Redis lock, the others wait
  for it and then find nothing left to do.
"""

from __future__ import annotations

import logging
import secrets
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from pydantic import ValidationError

from routing.cost_store import CostStore
from routing.costs import CostTable, CostTableError, parse_csv, to_csv
from routing.sites import GroupConfig, Registry, SiteConfig

log = logging.getLogger("faxfleet.routing.declared")

FLEET_FILE = "fleet.toml"
LOCK = "ff:rt:declare-lock"
LOCK_SECONDS = 60


class DeclarationError(ValueError):
    """The folder cannot be applied; ``errors`` lists every problem, file and line first."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("the fleet folder has errors:\n  " + "\n  ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class Declaration:
    groups: dict[str, GroupConfig] = field(default_factory=dict)
    sites: dict[str, SiteConfig] = field(default_factory=dict)
    costs: dict[str, CostTable] = field(default_factory=dict)


def _pydantic_errors(where: str, exc: ValidationError) -> list[str]:
    out = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error.get("loc", ()))
        msg = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        out.append(f"{where}{'.' + loc if loc else ''}: {msg}")
    return out


def _groups(raw: object, errors: list[str]) -> dict[str, GroupConfig]:
    if not isinstance(raw, dict):
        errors.append(f"{FLEET_FILE}: [groups] must be a table of name = description")
        return {}
    groups = {}
    for name, description in raw.items():
        if not isinstance(description, str):
            errors.append(f"{FLEET_FILE}: groups.{name}: the description must be a string")
            continue
        try:
            groups[name] = GroupConfig(name=name, description=description)
        except ValidationError as exc:
            errors += _pydantic_errors(f"{FLEET_FILE}: groups.{name}", exc)
    return groups


def _site(
    folder: Path, name: str, raw: object, groups: dict[str, GroupConfig], errors: list[str]
) -> tuple[SiteConfig | None, CostTable | None]:
    where = f"{FLEET_FILE}: sites.{name}"
    if not isinstance(raw, dict):
        errors.append(f"{where}: must be a table")
        return None, None
    fields: dict[str, Any] = dict(raw)
    costs_path = fields.pop("costs", None)
    try:
        site = SiteConfig.model_validate({**fields, "name": name})
    except ValidationError as exc:
        errors += _pydantic_errors(where, exc)
        return None, None
    if site.group is not None and site.group not in groups:
        errors.append(f"{where}.group: no group {site.group!r} in [groups]")
    if costs_path is None:
        return site, None
    if not isinstance(costs_path, str):
        errors.append(f"{where}.costs: must be a path relative to the folder")
        return site, None
    path = (folder / costs_path).resolve()
    if not path.is_relative_to(folder.resolve()):
        errors.append(f"{where}.costs: {costs_path!r} is outside the folder")
        return site, None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(f"{where}.costs: cannot read {costs_path}: {exc}")
        return site, None
    try:
        return site, parse_csv(text, site=name, timezone=site.timezone)
    except CostTableError as exc:
        errors += [f"{costs_path}: {e}" for e in exc.errors]
        return site, None


def load(folder: Path) -> Declaration:
    """Read and check the whole folder; :class:`DeclarationError` lists every problem."""
    path = folder / FLEET_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DeclarationError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DeclarationError([f"{FLEET_FILE}: {exc}"]) from None
    errors: list[str] = []
    unknown = sorted(set(data) - {"groups", "sites"})
    if unknown:
        errors.append(f"{FLEET_FILE}: unknown section(s) {', '.join(unknown)}")
    groups = _groups(data.get("groups", {}), errors)
    sites: dict[str, SiteConfig] = {}
    costs: dict[str, CostTable] = {}
    raw_sites = data.get("sites", {})
    if not isinstance(raw_sites, dict):
        errors.append(f"{FLEET_FILE}: [sites] must be a table of site tables")
        raw_sites = {}
    for name, raw in raw_sites.items():
        site, table = _site(folder, name, raw, groups, errors)
        if site is not None:
            sites[name] = site
        if table is not None:
            costs[name] = table
    if errors:
        raise DeclarationError(errors)
    return Declaration(groups=groups, sites=sites, costs=costs)


@dataclass(frozen=True)
class Plan:
    """What applying a declaration changes, given what the fleet holds now."""

    groups: list[GroupConfig]
    sites: list[SiteConfig]
    costs: list[str]
    """Sites whose declared table differs from their current one."""

    @property
    def empty(self) -> bool:
        return not (self.groups or self.sites or self.costs)


def plan(
    wanted: Declaration,
    groups: dict[str, GroupConfig],
    sites: dict[str, SiteConfig],
    current_costs: dict[str, str | None],
) -> Plan:
    """Pure: the groups, sites and tables to write. ``current_costs`` maps each declared
    table's site to its current table as canonical CSV (None: none yet)."""
    return Plan(
        groups=[g for name, g in wanted.groups.items() if groups.get(name) != g],
        sites=[s for name, s in wanted.sites.items() if sites.get(name) != s],
        costs=[
            name for name, table in wanted.costs.items() if current_costs.get(name) != to_csv(table)
        ],
    )


def _current_costs(store: CostStore, names: list[str]) -> dict[str, str | None]:
    return {name: to_csv(t) if (t := store.current(name)) else None for name in names}


def _lock(r: redis.Redis) -> str:
    token = secrets.token_hex(8)
    deadline = time.monotonic() + 2 * LOCK_SECONDS
    while not r.set(LOCK, token, nx=True, ex=LOCK_SECONDS):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{LOCK} held for over {2 * LOCK_SECONDS} s")
        time.sleep(0.2)
    return token


_UNLOCK = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"


def apply(r: redis.Redis, wanted: Declaration) -> Plan:
    """Bring the fleet to ``wanted`` (idempotent, one node at a time); the plan applied."""
    registry, store = Registry(r), CostStore(r)
    token = _lock(r)
    try:
        todo = plan(
            wanted, registry.groups(), registry.sites(), _current_costs(store, [*wanted.costs])
        )
        for group in todo.groups:
            registry.put_group(group, create=group.name not in registry.groups())
        for site in todo.sites:
            registry.put_site(site, create=registry.site(site.name) is None)
        for name in todo.costs:
            store.import_csv(name, to_csv(wanted.costs[name]))
    finally:
        r.eval(_UNLOCK, 1, LOCK, token)
    log.info(
        "fleet folder applied",
        extra={
            "groups": [g.name for g in todo.groups],
            "sites": [s.name for s in todo.sites],
            "costs": todo.costs,
        },
    )
    return todo


def apply_folder(r: redis.Redis, folder: Path) -> Plan:
    """Check the folder, then apply it: nothing is written when it has any error."""
    return apply(r, load(folder))


def main(argv: list[str] | None = None) -> int:
    """``python -m routing.declared --check FOLDER``: check a folder without a fleet."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "--check":
        print("usage: python -m routing.declared --check FOLDER", file=sys.stderr)
        return 2
    try:
        wanted = load(Path(args[1]))
    except DeclarationError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(
        f"ok: {len(wanted.groups)} group(s), {len(wanted.sites)} site(s), "
        f"{len(wanted.costs)} cost table(s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
