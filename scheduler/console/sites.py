"""Admin page for sites and groups: list them, declare a site (country, time zone,
lines, dialing rules, group or standalone), change its lines, move it into or out of a
group, remove it; create and delete groups.

Every change is a request to the routing admin API with the signed-in admin's key
(``adminapi``); its refusal (422 with the field at fault, 409 for a conflict) is shown
next to the form that caused it, with what was typed kept. After a change the page is
loaded again (post, redirect, get) with a notice saying what was done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import RedirectResponse

from faxfleet.admin_client import AdminClient
from scheduler.console import adminapi, web
from scheduler.console.web import Session, require_admin, require_csrf

router = APIRouter(prefix=f"{web.PREFIX}/admin")

Admin = Annotated[Session, Depends(require_admin)]
CSRF = [Depends(require_csrf)]

DONE = {
    "site-created": "Site {name} declared.",
    "lines": "Lines of site {name} changed.",
    "grouped": "Site {name} moved.",
    "site-removed": "Site {name} removed.",
    "group-created": "Group {name} created.",
    "group-deleted": "Group {name} deleted.",
}
"""Notices after a change (``?done=<key>&name=<name>``)."""

DIALING_FIELDS = ("area_code", "national_prefix", "international_prefix", "outside_prefix")


def _page(
    request: Request,
    session: Session,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    sites: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    load_error = None
    try:
        with adminapi.client(session) as admin:
            sites, groups = admin.sites(), admin.groups()
    except adminapi.AdminError as exc:
        load_error = adminapi.refusal(exc)[0]
    done = request.query_params.get("done", "")
    notice = DONE[done].format(name=request.query_params.get("name", "")) if done in DONE else None
    return web.render(
        request,
        "admin/sites.html",
        status_code=status_code,
        title="Sites & groups",
        sites=sites,
        groups=groups,
        load_error=load_error,
        errors=errors or {},
        form=form or {},
        notice=notice,
    )


def _done(what: str, name: str) -> Response:
    query = urlencode({"done": what, "name": name})
    return RedirectResponse(f"{web.PREFIX}/admin/sites?{query}", status_code=303)


def _refused(
    request: Request, session: Session, where: str, exc: adminapi.AdminError, **form: str
) -> Response:
    message = adminapi.refusal(exc)[0]
    status = exc.status if 400 <= exc.status < 500 else 502
    return _page(request, session, errors={where: message}, form=form, status_code=status)


def _act(
    request: Request,
    session: Session,
    where: str,
    action: Callable[[AdminClient], object],
    done: tuple[str, str],
    **form: str,
) -> Response:
    """Run ``action`` on the routing admin API as the signed-in admin: back to the page
    saying ``done`` (what, name), or the page with the API's refusal next to ``where``
    and the typed ``form`` kept."""
    try:
        with adminapi.client(session) as admin:
            action(admin)
    except adminapi.AdminError as exc:
        return _refused(request, session, where, exc, **form)
    return _done(*done)


@router.get("/sites")
def sites_page(request: Request, session: Admin) -> Response:
    return _page(request, session)


@router.post("/sites", dependencies=CSRF)
def create_site(
    request: Request,
    session: Admin,
    name: Annotated[str, Form()] = "",
    country: Annotated[str, Form()] = "",
    timezone: Annotated[str, Form()] = "UTC",
    lines: Annotated[str, Form()] = "",
    address: Annotated[str, Form()] = "",
    area_code: Annotated[str, Form()] = "",
    national_prefix: Annotated[str, Form()] = "",
    international_prefix: Annotated[str, Form()] = "",
    outside_prefix: Annotated[str, Form()] = "",
    local_area_codes: Annotated[str, Form()] = "",
    local_format: Annotated[str, Form()] = "national",
    group: Annotated[str, Form()] = "",
) -> Response:
    typed = {
        "name": name,
        "country": country,
        "timezone": timezone,
        "lines": lines,
        "address": address,
        "area_code": area_code,
        "national_prefix": national_prefix,
        "international_prefix": international_prefix,
        "outside_prefix": outside_prefix,
        "local_area_codes": local_area_codes,
        "local_format": local_format,
        "group": group,
    }
    try:
        count = int(lines.strip())
    except ValueError:
        return _page(
            request,
            session,
            errors={"create-site": f"lines: {lines.strip()!r} is not a whole number"},
            form=typed,
            status_code=422,
        )
    dialing: dict[str, Any] = {k: typed[k].strip() for k in DIALING_FIELDS}
    dialing["local_area_codes"] = [c.strip() for c in local_area_codes.split(",") if c.strip()]
    dialing["local_format"] = local_format
    config = {
        "name": name.strip(),
        "country": country.strip(),
        "timezone": timezone.strip() or "UTC",
        "lines": count,
        "address": address.strip(),
        "dialing": dialing,
        "group": group or None,
    }
    return _act(
        request,
        session,
        "create-site",
        lambda admin: admin.create_site(config),
        ("site-created", config["name"]),
        **typed,
    )


@router.post("/sites/{name}/lines", dependencies=CSRF)
def change_lines(
    request: Request, session: Admin, name: str, lines: Annotated[str, Form()] = ""
) -> Response:
    try:
        count = int(lines.strip())
    except ValueError:
        return _page(
            request,
            session,
            errors={f"site-{name}": f"lines: {lines.strip()!r} is not a whole number"},
            status_code=422,
        )
    return _act(
        request,
        session,
        f"site-{name}",
        lambda admin: admin.update_site(name, {"lines": count}),
        ("lines", name),
    )


@router.post("/sites/{name}/group", dependencies=CSRF)
def change_group(
    request: Request,
    session: Admin,
    name: str,
    group: Annotated[str, Form()] = "",
    current: Annotated[str, Form()] = "",
) -> Response:
    """Into ``group`` (leaving any other), or standalone when ``group`` is empty."""

    def move(admin: AdminClient) -> None:
        if group:
            admin.add_to_group(group, name)
        elif current:
            admin.remove_from_group(current, name)

    return _act(request, session, f"site-{name}", move, ("grouped", name))


@router.post("/sites/{name}/remove", dependencies=CSRF)
def remove_site(request: Request, session: Admin, name: str) -> Response:
    return _act(
        request,
        session,
        f"site-{name}",
        lambda admin: admin.remove_site(name),
        ("site-removed", name),
    )


@router.post("/groups", dependencies=CSRF)
def create_group(
    request: Request,
    session: Admin,
    name: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
) -> Response:
    return _act(
        request,
        session,
        "create-group",
        lambda admin: admin.create_group(name.strip(), description.strip()),
        ("group-created", name.strip()),
        group_name=name,
        description=description,
    )


@router.post("/groups/{name}/delete", dependencies=CSRF)
def delete_group(request: Request, session: Admin, name: str) -> Response:
    return _act(
        request,
        session,
        f"group-{name}",
        lambda admin: admin.delete_group(name),
        ("group-deleted", name),
    )
