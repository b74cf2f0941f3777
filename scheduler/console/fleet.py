"""Admin overview of the fleet: sites with each line's live state, groups, the backlog
per priority and per site, stuck and ``outcome_uncertain`` faxes, live processes and the
fleet's health; the live part refreshes itself every 2 s (htmx polling a fragment).

What it shows is read by the readers ``/healthz`` and ``/metrics`` use
(:func:`faxfleet.health.snapshot`, :class:`faxfleet.metrics.FleetCollector`), the sites
and groups by the routing admin API (``adminapi``), the faxes by the job store.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from faxfleet import health, metrics
from faxfleet.messages import PRIORITY_MAX, PRIORITY_MIN, FaxStatus, JobState
from scheduler import tasks
from scheduler.console import adminapi, web
from scheduler.console.web import Session, require_admin

router = APIRouter(prefix=f"{web.PREFIX}/admin")

Admin = Annotated[Session, Depends(require_admin)]

PRIORITIES = list(range(PRIORITY_MIN, PRIORITY_MAX + 1))
LISTED = 50
"""Stuck and uncertain faxes listed at most (each kind), oldest first."""


def stuck_after() -> dict[JobState, float]:
    """How long a fax may stay in a working state before it counts as stuck: the
    deadline after which the timer loop should have acted on it (docs/reliability.md)."""
    s = web.settings
    return {
        JobState.SUBMITTED: s.render_watch_seconds,
        JobState.RENDERING: s.render_watch_seconds,
        JobState.ROUTING: s.scaled(s.routing_stuck_after_seconds),
        JobState.DIALING: s.scaled(s.stuck_after_seconds),
        JobState.SENDING: s.scaled(s.stuck_after_seconds),
    }


@dataclass
class LineView:
    name: str
    state: str
    """``idle``, ``dialing``, ``sending page n``, ``busy`` or ``down``."""
    css: str
    job_id: str | None = None
    detail: str = ""


@dataclass
class SiteRow:
    name: str
    group: str | None
    managed: bool
    up: bool
    lines: list[LineView]
    configured_lines: int | None
    waiting: int
    held: int
    leased: int
    cost_table_version: int | None
    updated_at: datetime | None


@dataclass
class StuckFax:
    fax: FaxStatus
    state: str
    seconds: float


@dataclass
class Overview:
    at: datetime
    sites: list[SiteRow] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    sites_error: str | None = None
    waiting: dict[int, int] = field(default_factory=dict)
    held: dict[str, dict[int, int]] = field(default_factory=dict)
    """Faxes handed to each site and not ended, by priority."""
    faxes: dict[str, int] = field(default_factory=dict)
    render_queue: int = 0
    stuck: list[StuckFax] = field(default_factory=list)
    uncertain: list[StuckFax] = field(default_factory=list)
    processes: dict[str, int] = field(default_factory=dict)
    required: list[str] = field(default_factory=list)
    health: health.Health | None = None


def _samples(r: Any) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The fleet gauges ``/metrics`` serves, read now: family name to its samples."""
    collector = metrics.FleetCollector(lambda: r, web.settings.retention_seconds)
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in collector.collect():
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def line_view(line: dict[str, Any], faxes: dict[str, FaxStatus]) -> LineView:
    """What one line is doing, in words: from the site's published line state and, for
    a busy line, its fax's recipient (dialing, or sending which page)."""
    name, state = line["name"], line["state"]
    if state == "out_of_service":
        return LineView(name, "down", "down", detail=line.get("reason") or "")
    if state != "busy":
        return LineView(name, "idle", "idle")
    job_id, index = line.get("job_id"), line.get("recipient")
    fax = faxes.get(job_id) if job_id else None
    if fax is not None and index is not None and 0 <= index < len(fax.recipients):
        recipient = fax.recipients[index]
        if recipient.state is JobState.SENDING:
            page = f" {recipient.page}" if recipient.page is not None else ""
            return LineView(name, f"sending page{page}", "sending", job_id, recipient.number)
        if recipient.state is JobState.DIALING:
            return LineView(name, "dialing", "dialing", job_id, recipient.number)
    return LineView(name, "busy", "dialing", job_id)


def _site_rows(views: list[dict[str, Any]], snap: health.Snapshot) -> list[SiteRow]:
    busy_jobs = {
        ln["job_id"]
        for v in views
        for ln in (v.get("status") or {}).get("lines", [])
        if ln.get("state") == "busy" and ln.get("job_id")
    }
    store = tasks.store()
    faxes: dict[str, FaxStatus] = {}
    for job_id in busy_jobs:
        try:
            faxes[job_id] = store.get(job_id)
        except KeyError:
            continue
    held = {h.name: h for h in snap.sites}
    rows = []
    for v in views:
        status = v.get("status") or {}
        config = v.get("config") or {}
        lines = [line_view(ln, faxes) for ln in status.get("lines", [])]
        if not status and config:  # not publishing: every declared line is down
            lines = [
                LineView(f"{v['name']}-{i + 1}", "down", "down", detail="site not publishing")
                for i in range(int(config.get("lines", 0)))
            ]
        h = held.get(v["name"])
        updated = v.get("updated_at")
        rows.append(
            SiteRow(
                name=v["name"],
                group=v.get("group"),
                managed=bool(v.get("managed", True)),
                up=bool(v.get("up")),
                lines=lines,
                configured_lines=config.get("lines") if config else None,
                waiting=int(v.get("waiting", 0)),
                held=h.held if h else int(v.get("inflight", 0)),
                leased=h.leased if h else 0,
                cost_table_version=v.get("cost_table_version"),
                updated_at=datetime.fromisoformat(updated) if updated else None,
            )
        )
    return rows


def overview(session: Session) -> Overview:
    r = tasks.store().r
    at = datetime.now(UTC)
    snap = health.snapshot(r)
    view = Overview(at=at, health=health.assess(snap), processes=snap.processes)
    view.required = [
        *health.REQUIRED,
        *(f"{k}.{h}" for h in snap.home_sites for k in ("events", "notify")),
    ]
    try:
        with adminapi.client(session) as admin:
            site_views, view.groups = admin.sites(), admin.groups()
        view.sites = _site_rows(site_views, snap)
    except adminapi.AdminError as exc:
        view.sites_error = adminapi.refusal(exc)[0]
    if snap.redis_error is None:
        samples = _samples(r)
        view.waiting = {p: 0 for p in PRIORITIES}
        for labels, value in samples.get("faxfleet_waiting", []):
            view.waiting[int(labels["priority"])] = int(value)
        for labels, value in samples.get("faxfleet_site_inflight", []):
            per = view.held.setdefault(labels["site"], {p: 0 for p in PRIORITIES})
            per[int(labels["priority"])] = int(value)
        view.faxes = {
            labels["state"]: int(value) for labels, value in samples.get("faxfleet_faxes", [])
        }
        view.render_queue = int(sum(v for _, v in samples.get("faxfleet_render_queue", [])))
        store = tasks.store()
        now = time.time()
        for state, limit in stuck_after().items():
            for fax, entered in store.in_state(state, entered_before=now - limit, limit=LISTED):
                view.stuck.append(StuckFax(fax, state.value, now - entered))
        view.stuck.sort(key=lambda s: -s.seconds)
        del view.stuck[LISTED:]
        for fax, entered in store.in_state(JobState.OUTCOME_UNCERTAIN, limit=LISTED):
            view.uncertain.append(StuckFax(fax, fax.state.value, now - entered))
    return view


@router.get("/overview")
def overview_page(request: Request, session: Admin) -> Response:
    return web.render(request, "admin/overview.html", title="Overview", o=overview(session))


@router.get("/overview/live")
def overview_live(request: Request, session: Admin) -> Response:
    """The live part of the overview alone (htmx polls it every 2 s)."""
    return web.render(request, "admin/_overview_live.html", o=overview(session))
