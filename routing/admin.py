"""The routing service's admin API: sites, groups and cost tables.

Run: ``uvicorn routing.admin:app --port 8041``. The public API (``scheduler.api``) relays
``/v1/sites`` and ``/v1/groups`` here, so users only ever know the public URL.

Rules:

* Every request carries a key in ``X-API-Key``. Changes need an admin key
  (``FAXFLEET_ADMIN_KEYS``): none is 401, a tenant key is 403. Tenant keys may read the
  site and group listings. Keys are configured as hashes and compared in constant time
  (``faxfleet/credentials.py``).
* Changes take effect at once, without restarting anything: the registry bumps
  ``ff:rt:config-version`` (routers reload) and writes a site's line count where its
  worker reads it (:func:`faxfleet.keys.site_lines`).
* A cost table is imported as a whole: a file with any error answers 422 with every
  error, line-numbered, and changes nothing. Good files become the next version;
  older versions can be exported and made current again.
* Invalid input answers 422 with ``detail`` naming the field and saying what is wrong.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import redis
from fastapi import Body, Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from faxfleet import keys
from faxfleet.apidocs import serve_docs
from faxfleet.credentials import require_deployable
from faxfleet.messages import SiteStatus, TariffTerms
from faxfleet.numbers import InvalidNumber, to_e164
from faxfleet.redis_conn import connect
from faxfleet.settings import get_settings
from routing.cost_store import CostStore, UnknownVersion
from routing.costs import CostTable, CostTableError, parse_csv
from routing.declared import apply_folder
from routing.sites import (
    GroupConfig,
    Registry,
    RegistryError,
    SiteConfig,
    group_of,
)

app = FastAPI(
    docs_url=None,  # served from local files below (faxfleet/apidocs.py)
    redoc_url=None,
    title="faxfleet routing admin",
    version="0.1.0",
    summary="Sites, groups and cost tables of a faxfleet.",
    description=(
        "Declare sites (call zone, dialing rules, lines, time zone), put them in groups, "
        "import and export their cost tables as CSV. Reading needs any key in "
        "`X-API-Key`; changes need an admin key. Changes take effect without a restart."
    ),
)
serve_docs(app)


@cache
def _redis() -> redis.Redis:
    return connect(get_settings())


def registry() -> Registry:
    return Registry(_redis())


def cost_store() -> CostStore:
    return CostStore(_redis())


# -- errors ---------------------------------------------------------------------------


class ErrorBody(BaseModel):
    detail: str


class CostErrors(BaseModel):
    detail: str
    errors: list[str]


def _validation_message(errors: list[Any]) -> str:
    parts = []
    for error in errors:
        if error.get("type") == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "")
            parts.append(f"the request body is not valid JSON ({reason})".replace(" ()", ""))
            continue
        loc = [str(p) for p in error.get("loc", ()) if p != "body"]
        msg = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{'.'.join(loc) or 'request body'}: {msg}")
    return "; ".join(parts) or "invalid request"


@app.exception_handler(RequestValidationError)
async def _request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": _validation_message(list(exc.errors()))}, status_code=422)


@app.exception_handler(ValidationError)
async def _model_invalid(_: Request, exc: ValidationError) -> JSONResponse:
    return JSONResponse({"detail": _validation_message(list(exc.errors()))}, status_code=422)


@app.exception_handler(RegistryError)
async def _registry_error(_: Request, exc: RegistryError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=exc.status)


@app.exception_handler(UnknownVersion)
async def _unknown_version(_: Request, exc: UnknownVersion) -> JSONResponse:
    return JSONResponse({"detail": str(exc.args[0])}, status_code=404)


# -- keys -----------------------------------------------------------------------------


def caller(x_api_key: Annotated[str | None, Header()] = None) -> str:
    """``admin`` or ``tenant``; 401 without a known key."""
    if not x_api_key:
        raise HTTPException(401, "missing X-API-Key header")
    key = get_settings().keys.match(x_api_key)  # hashed, compared in constant time
    if key is None:
        raise HTTPException(401, "unknown API key")
    return "admin" if key.admin else "tenant"


def admin_only(role: Annotated[str, Depends(caller)]) -> None:
    if role != "admin":
        raise HTTPException(403, "admin key required")


Reader = Depends(caller)
Admin = Depends(admin_only)
_AUTH = {401: {"model": ErrorBody}}
_ADMIN = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}}


# -- sites ----------------------------------------------------------------------------


class SiteView(BaseModel):
    """A site as declared, merged with what it publishes about itself."""

    name: str
    managed: bool
    """Declared by an administrator (False: it only publishes its state)."""
    config: SiteConfig | None
    group: str | None
    """Its group; None when standalone; ``default`` for unmanaged sites."""
    up: bool
    """Publishing its state, with at least one line in service."""
    lines_up: int
    lines_busy: int
    waiting: int
    inflight: int
    """Attempts handed to the site and not yet ended."""
    cost_table_version: int | None
    updated_at: datetime | None
    status: SiteStatus | None


def _live_status(r: redis.Redis) -> dict[str, SiteStatus]:
    found = {}
    for key in r.scan_iter(match=keys.SITE_STATUS_PATTERN, count=500):
        raw = r.get(key)
        if raw is None:
            continue  # expired between SCAN and GET
        status = SiteStatus.model_validate_json(raw)
        found[status.name] = status
    return found


def _view(
    name: str,
    configs: dict[str, SiteConfig],
    status: SiteStatus | None,
    r: redis.Redis,
    store: CostStore,
) -> SiteView:
    config = configs.get(name)
    lines_up = status.lines_up if status else 0
    return SiteView(
        name=name,
        managed=config is not None,
        config=config,
        group=group_of(name, configs),
        up=lines_up > 0,
        lines_up=lines_up,
        lines_busy=status.lines_busy if status else 0,
        waiting=status.waiting if status else 0,
        inflight=int(r.hlen(keys.site_inflight(name))),
        cost_table_version=(store.version(name) or None) if config else None,
        updated_at=status.updated_at if status else None,
        status=status,
    )


def _site_or_404(name: str) -> SiteConfig:
    site = registry().site(name)
    if site is None:
        raise HTTPException(404, f"no site {name!r}")
    return site


@app.get("/v1/sites", response_model=list[SiteView], responses=_AUTH, dependencies=[Reader])
def list_sites() -> list[SiteView]:
    """Every declared site with its live state, and live sites nobody declared
    (``managed: false``), by name."""
    r = _redis()
    configs = registry().sites()
    live = _live_status(r)
    store = cost_store()
    return [_view(n, configs, live.get(n), r, store) for n in sorted(set(configs) | set(live))]


@app.get(
    "/v1/sites/{name}",
    response_model=SiteView,
    responses={**_AUTH, 404: {"model": ErrorBody}},
    dependencies=[Reader],
)
def get_site(name: str) -> SiteView:
    r = _redis()
    configs = registry().sites()
    raw = r.get(keys.site_status(name))
    status = SiteStatus.model_validate_json(raw) if raw else None
    if name not in configs and status is None:
        raise HTTPException(404, f"no site {name!r}")
    return _view(name, configs, status, r, cost_store())


@app.post(
    "/v1/sites",
    status_code=201,
    response_model=SiteConfig,
    responses={**_ADMIN, 409: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    dependencies=[Admin],
)
def create_site(site: SiteConfig) -> SiteConfig:
    """Declare a site. ``dialing.country_code`` may be left out (it follows ``country``).
    Its line count reaches its worker at once."""
    return registry().put_site(site, create=True)


@app.put(
    "/v1/sites/{name}",
    response_model=SiteConfig,
    responses={**_ADMIN, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    dependencies=[Admin],
)
def replace_site(
    name: str, body: Annotated[dict[str, Any], Body(description="A whole SiteConfig")]
) -> SiteConfig:
    """Replace a site's configuration (``name`` may be left out of the body)."""
    if body.setdefault("name", name) != name:
        raise HTTPException(422, f"name: {body['name']!r} differs from the URL's {name!r}")
    _site_or_404(name)
    return registry().put_site(SiteConfig.model_validate(body), create=False)


@app.patch(
    "/v1/sites/{name}",
    response_model=SiteConfig,
    responses={**_ADMIN, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    dependencies=[Admin],
)
def update_site(
    name: str,
    changes: Annotated[
        dict[str, Any],
        Body(description='Some SiteConfig fields, e.g. {"lines": 6} or {"group": null}'),
    ],
) -> SiteConfig:
    """Change some fields; ``dialing`` merges with the current rules field by field."""
    if changes.get("name", name) != name:
        raise HTTPException(422, "name: a site cannot be renamed (remove it and add it)")
    current = _site_or_404(name).model_dump()
    merged = {**current, **changes}
    if isinstance(changes.get("dialing"), dict):
        merged["dialing"] = {**current["dialing"], **changes["dialing"]}
    if "country" in changes and "country_code" not in (changes.get("dialing") or {}):
        merged["dialing"] = {
            k: v for k, v in merged["dialing"].items() if k != "country_code"
        }  # re-derived from the new country
    return registry().put_site(SiteConfig.model_validate(merged), create=False)


@app.delete(
    "/v1/sites/{name}",
    status_code=204,
    responses={**_ADMIN, 404: {"model": ErrorBody}},
    dependencies=[Admin],
)
def remove_site(name: str) -> Response:
    """Forget a site's declaration and its cost tables. If it still publishes its
    state it shows as unmanaged (group ``default``)."""
    registry().remove_site(name)
    cost_store().drop(name)
    return Response(status_code=204)


# -- groups ---------------------------------------------------------------------------


class GroupView(BaseModel):
    name: str
    description: str
    sites: list[str]


def _group_views() -> list[GroupView]:
    reg = registry()
    sites = reg.sites()
    return [
        GroupView(
            name=g.name,
            description=g.description,
            sites=sorted(s.name for s in sites.values() if s.group == g.name),
        )
        for g in sorted(reg.groups().values(), key=lambda g: g.name)
    ]


@app.get("/v1/groups", response_model=list[GroupView], responses=_AUTH, dependencies=[Reader])
def list_groups() -> list[GroupView]:
    """Declared groups with their member sites. Sites of a group route to one another;
    standalone sites only to themselves."""
    return _group_views()


@app.get(
    "/v1/groups/{name}",
    response_model=GroupView,
    responses={**_AUTH, 404: {"model": ErrorBody}},
    dependencies=[Reader],
)
def get_group(name: str) -> GroupView:
    for view in _group_views():
        if view.name == name:
            return view
    raise HTTPException(404, f"no group {name!r}")


@app.post(
    "/v1/groups",
    status_code=201,
    response_model=GroupView,
    responses={**_ADMIN, 409: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    dependencies=[Admin],
)
def create_group(group: GroupConfig) -> GroupView:
    registry().put_group(group, create=True)
    return GroupView(name=group.name, description=group.description, sites=[])


@app.delete(
    "/v1/groups/{name}",
    status_code=204,
    responses={**_ADMIN, 404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
    dependencies=[Admin],
)
def delete_group(name: str) -> Response:
    """Delete an empty group (409 while it has sites)."""
    registry().remove_group(name)
    return Response(status_code=204)


@app.put(
    "/v1/groups/{name}/sites/{site}",
    response_model=SiteConfig,
    responses={**_ADMIN, 404: {"model": ErrorBody}},
    dependencies=[Admin],
)
def add_member(name: str, site: str) -> SiteConfig:
    """Make ``site`` a member of group ``name`` (it leaves any other group)."""
    reg = registry()
    if name not in reg.groups():
        raise HTTPException(404, f"no group {name!r}")
    return reg.set_membership(site, name)


@app.delete(
    "/v1/groups/{name}/sites/{site}",
    response_model=SiteConfig,
    responses={**_ADMIN, 404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
    dependencies=[Admin],
)
def remove_member(name: str, site: str) -> SiteConfig:
    """Take ``site`` out of group ``name``: it becomes standalone."""
    reg = registry()
    if name not in reg.groups():
        raise HTTPException(404, f"no group {name!r}")
    config = _site_or_404(site)
    if config.group != name:
        raise HTTPException(409, f"site {site!r} is not in group {name!r}")
    return reg.set_membership(site, None)


# -- cost tables ----------------------------------------------------------------------


class CostImport(BaseModel):
    site: str
    version: int
    rows: int
    currency: str


class CostVersions(BaseModel):
    site: str
    current: int | None
    versions: list[dict[str, Any]]
    """Kept versions, oldest first: version, imported_at, rows, currency."""


_CSV_BODY = {
    "requestBody": {
        "required": True,
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}


def _import_checked(site: SiteConfig, text: str) -> CostTable:
    """Import after checking the table's currency against the site's group: placement
    compares costs as numbers, so a group prices in one currency."""
    table = parse_csv(text, site=site.name, timezone=site.timezone)
    if site.group is not None:
        for peer in registry().sites().values():
            if peer.group != site.group or peer.name == site.name:
                continue
            other = cost_store().current(peer.name, peer.timezone)
            if other is not None and other.currency != table.currency:
                raise CostTableError(
                    [
                        f"currency {table.currency} differs from {other.currency}, the currency "
                        f"of site {peer.name!r} in group {site.group!r}: a group prices in one "
                        "currency"
                    ]
                )
    return cost_store().import_csv(site.name, text, site.timezone)


@app.put(
    "/v1/sites/{name}/costs",
    response_model=CostImport,
    responses={**_ADMIN, 404: {"model": ErrorBody}, 422: {"model": CostErrors}},
    openapi_extra=_CSV_BODY,
    dependencies=[Admin],
)
async def import_costs(name: str, request: Request) -> Any:
    """Import a cost table (the body is the CSV file). A file with any error is refused
    whole with every error, line-numbered, and changes nothing; a good one becomes the
    site's next version and is used at once."""
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPException(422, f"the cost table is not UTF-8 text ({exc})") from None
    site = await run_in_threadpool(_site_or_404, name)
    try:
        table = await run_in_threadpool(_import_checked, site, text)
    except CostTableError as exc:
        return JSONResponse(
            {"detail": f"cost table has {len(exc.errors)} errors", "errors": exc.errors},
            status_code=422,
        )
    return CostImport(
        site=name, version=table.version, rows=len(table.tariffs), currency=table.currency
    )


@app.get(
    "/v1/sites/{name}/costs",
    response_class=PlainTextResponse,
    responses={
        **_ADMIN,
        200: {"content": {"text/csv": {}}, "description": "The table as CSV"},
        404: {"model": ErrorBody},
    },
    dependencies=[Admin],
)
def export_costs(name: str, version: Annotated[int | None, Query(ge=1)] = None) -> Response:
    """The current cost table (or ``version``) as CSV, in the form the import reads."""
    _site_or_404(name)
    text = cost_store().export_csv(name, version)
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}-costs.csv"'},
    )


@app.get(
    "/v1/sites/{name}/costs/versions",
    response_model=CostVersions,
    responses={**_ADMIN, 404: {"model": ErrorBody}},
    dependencies=[Admin],
)
def cost_versions(name: str) -> CostVersions:
    _site_or_404(name)
    store = cost_store()
    return CostVersions(site=name, current=store.version(name) or None, versions=store.info(name))


@app.post(
    "/v1/sites/{name}/costs/rollback/{version}",
    response_model=CostVersions,
    responses={**_ADMIN, 404: {"model": ErrorBody}},
    dependencies=[Admin],
)
def rollback_costs(name: str, version: int) -> CostVersions:
    """Make a kept older version current again (used at once)."""
    _site_or_404(name)
    store = cost_store()
    store.rollback(name, version)
    return CostVersions(site=name, current=store.version(name) or None, versions=store.info(name))


# -- price comparison ---------------------------------------------------------------


class QuoteTariff(TariffTerms):
    """The cost table row in force: its prices (as calls carry them) and its band."""

    days: str
    band: str
    """``HH:MM-HH:MM`` in the site's local time (``00:00-24:00``: all day)."""


class QuoteRow(BaseModel):
    site: str
    group: str | None
    timezone: str
    cost_table_version: int
    local_time: str
    """``at`` in the site's time zone (``YYYY-MM-DD HH:MM``, weekday)."""
    tariff: QuoteTariff | None
    """None: the table has rows for the number, but none in force at that time."""
    billed_seconds: int | None
    cost: str | None
    """What a call of ``seconds`` starting at ``at`` costs (decimal, 6 places)."""
    currency: str


class Quote(BaseModel):
    number: str
    """The number as E.164."""
    at: datetime
    seconds: float
    sites: list[QuoteRow]
    """One row per declared site whose current cost table can dial the number, cheapest
    first (sites without a tariff in force at ``at`` last), then by name."""


def _tariff_view(t: Any) -> QuoteTariff:
    return QuoteTariff(**t.terms().model_dump(), days=t.days_text, band=t.band)


@app.get(
    "/v1/costs/quote",
    response_model=Quote,
    responses={**_ADMIN, 422: {"model": ErrorBody}},
    dependencies=[Admin],
)
def quote(
    number: Annotated[str, Query(max_length=40, description="E.164, or national")],
    at: Annotated[
        datetime | None, Query(description="When the call starts (ISO 8601; default now)")
    ] = None,
    seconds: Annotated[
        float, Query(gt=0, le=86400, description="The call's length (default 60: ~1 page)")
    ] = 60,
    sites: Annotated[
        str | None, Query(description="Comma-separated site names (default: every site)")
    ] = None,
) -> Quote:
    """Compare the sites' prices for one number: each site's tariff in force at ``at``
    (its own local time band) and the cost of a call of ``seconds`` starting then."""
    try:
        e164 = to_e164(number, get_settings().default_region)
    except InvalidNumber as exc:
        raise HTTPException(422, f"number: {exc}") from None
    when = at or datetime.now(UTC)
    if when.utcoffset() is None:
        when = when.replace(tzinfo=UTC)  # a time without an offset is UTC
    configs = registry().sites()
    wanted = [n.strip() for n in sites.split(",") if n.strip()] if sites else sorted(configs)
    for name in wanted:
        if name not in configs:
            raise HTTPException(422, f"sites: no site {name!r}")
    store = cost_store()
    rows: list[QuoteRow] = []
    for name in wanted:
        site = configs[name]
        table = store.current(name, site.timezone)
        if table is None or not table.can_dial(e164):
            continue
        tariff = table.lookup(e164, when)
        local = when.astimezone(ZoneInfo(site.timezone))
        rows.append(
            QuoteRow(
                site=name,
                group=site.group,
                timezone=site.timezone,
                cost_table_version=table.version,
                local_time=local.strftime("%Y-%m-%d %H:%M %a"),
                tariff=_tariff_view(tariff) if tariff else None,
                billed_seconds=tariff.billed_seconds(seconds) if tariff else None,
                cost=format(tariff.cost(seconds), "f") if tariff else None,
                currency=table.currency,
            )
        )
    rows.sort(key=lambda q: (q.cost is None, Decimal(q.cost or 0), q.site))
    return Quote(number=e164, at=when, seconds=seconds, sites=rows)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    _redis().ping()
    return {"status": "ok", "service": "routing-admin"}


def _deployable() -> None:
    """Outside the demo, refuse to serve on the demo's keys or on plain ones."""
    require_deployable(get_settings(), "keys")


def _declare() -> None:
    """Apply the fleet folder (``FAXFLEET_FLEET_DIR``) before serving; a folder with
    errors stops the start, every error in the log (routing/declared.py)."""
    folder = get_settings().fleet_dir
    if folder is not None:
        apply_folder(_redis(), folder)


app.router.on_startup.append(_deployable)
app.router.on_startup.append(_declare)


__all__ = ["app"]
