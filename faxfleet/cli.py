"""The ``faxfleet`` command: send and follow faxes, look at sites, run a local fleet,
administer sites, groups and cost tables.

Every fax command goes through the HTTP API (``FAXFLEET_API_URLS``, ``FAXFLEET_API_KEY``)
with the same client business applications use; ``site``, ``group`` and ``costs`` go
through the same API with the admin key (``--admin-key`` / ``FAXFLEET_ADMIN_KEY``).
``keys`` mints API keys and prints the hashed entries the services are configured with.
"""

from __future__ import annotations

import getpass
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from faxfleet.admin_client import AdminClient
from faxfleet.cli_reports import report
from faxfleet.client import FaxClient, FaxError
from faxfleet.credentials import (
    ADMIN_KEYS_VAR,
    API_KEYS_VAR,
    DEMO_VAR,
    FLOWER_AUTH_VAR,
    WEBHOOK_SECRET_VAR,
    entry,
    mint,
)
from faxfleet.messages import FaxStatus, InboundFax, PendingChange
from faxfleet.settings import get_settings

console = Console()


def _client(ctx: click.Context) -> FaxClient:
    return FaxClient(ctx.obj.get("urls"), ctx.obj.get("api_key"))


def _acting(ctx: click.Context, admin: bool) -> FaxClient:
    """The client with the admin key (``admin``: any tenant's faxes) or the tenant's."""
    key = (ctx.obj.get("admin_key") or get_settings().admin_key) if admin else None
    return FaxClient(ctx.obj.get("urls"), key or ctx.obj.get("api_key"))


def describe_pending(pending: PendingChange) -> str:
    parts = []
    if pending.number:
        parts.append(f"number {pending.number}")
    if pending.send_after:
        parts.append(f"after {pending.send_after:%Y-%m-%d %H:%M:%S} UTC")
    return ", ".join(parts) or "taken back"


def recipient_line(fax: FaxStatus) -> list[tuple[str, str, str, str, str, str]]:
    rows = []
    pages = fax.pages or 0
    for r in fax.recipients:
        progress = f"{r.pages_confirmed}/{pages}" if pages else "-"
        if r.state.value == "sending" and r.page:
            progress = f"page {r.page}/{pages}"
        cause = r.cause.value if r.cause else ""
        if r.detail and r.state.value in ("failed", "retry_scheduled", "outcome_uncertain"):
            cause = f"{cause}: {r.detail}" if cause else r.detail
        if r.pending is not None:
            cause = f"{cause}  (pending: {describe_pending(r.pending)})".strip()
        rows.append(
            (
                r.number,
                r.state.value,
                r.site or "",
                r.line or "",
                progress,
                f"{r.dials}/{r.tries}  {cause}".strip(),
            )
        )
    return rows


def fax_table(faxes: list[FaxStatus], title: str | None = None, *, tenants: bool = False) -> Table:
    """One row per recipient (``tenants``: with each fax's tenant, for admin listings)."""
    table = Table(title=title, expand=False)
    columns = ("fax", "prio", "to", "state", "site", "line", "pages", "dials/tries, cause")
    if tenants:
        table.add_column("tenant")
    for col in columns:
        table.add_column(col)
    for fax in faxes:
        for i, row in enumerate(recipient_line(fax)):
            ident = (fax.id, str(fax.priority)) if i == 0 else ("", "")
            owner = (fax.tenant if i == 0 else "",) if tenants else ()
            table.add_row(*owner, *ident, *row)
    return table


@click.group()
@click.option("--api", "urls", help="API base URL(s), comma-separated (FAXFLEET_API_URLS).")
@click.option("--api-key", help="Tenant API key (FAXFLEET_API_KEY).")
@click.option("--admin-key", help="Admin key for site, group, costs (FAXFLEET_ADMIN_KEY).")
@click.pass_context
def cli(ctx: click.Context, urls: str | None, api_key: str | None, admin_key: str | None) -> None:
    """faxfleet: a fax server fleet."""
    ctx.ensure_object(dict)
    ctx.obj.update(urls=urls, api_key=api_key, admin_key=admin_key)


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--to", "to", multiple=True, required=True, help="Destination number (repeatable).")
@click.option(
    "--priority",
    type=click.IntRange(0, 9),
    default=5,
    show_default=True,
    help="0 bulk .. 9 most urgent.",
)
@click.option("--sender", help="Sender name / station id.")
@click.option("--user", help="Submitting user.")
@click.option("--home-site", help="Site that notifies the user.")
@click.option("--notify-email", help="E-mail address to notify.")
@click.option("--callback-url", help="URL to POST the signed result to.")
@click.option("--idempotency-key", help="Submitting twice with the same key sends once.")
@click.option("--resolution", type=click.Choice(["standard", "fine"]), default="fine")
@click.option("--cover", is_flag=True, help="Put a cover page first.")
@click.option("--subject", help="Cover page subject.")
@click.option("--comment", help="Cover page message.")
@click.option("--recipient-name", help="Cover page recipient name (one for all numbers).")
@click.option("--sender-company", help="Cover page company (name; more lines with \\n).")
@click.option("--sender-fax", help="Cover page reply fax number.")
@click.option("--header/--no-header", default=True, help="Stamp the header line on each page.")
@click.option("--wait", is_flag=True, help="Show live progress until the fax is settled.")
@click.pass_context
def send(
    ctx: click.Context,
    files: tuple[str, ...],
    to: tuple[str, ...],
    priority: int,
    sender: str | None,
    user: str | None,
    home_site: str | None,
    notify_email: str | None,
    callback_url: str | None,
    idempotency_key: str | None,
    resolution: str,
    cover: bool,
    subject: str | None,
    comment: str | None,
    recipient_name: str | None,
    sender_company: str | None,
    sender_fax: str | None,
    header: bool,
    wait: bool,
) -> None:
    """Send FILES (PDF, text, PNG, JPEG, TIFF) as one fax."""
    with _client(ctx) as client:
        try:
            fax = client.send(
                [Path(f) for f in files],
                list(to),
                priority=priority,
                sender=sender,
                user=user,
                home_site=home_site,
                notify_email=notify_email,
                callback_url=callback_url,
                idempotency_key=idempotency_key,
                resolution=resolution,
                cover=cover,
                subject=subject,
                comment=comment.replace("\\n", "\n") if comment else None,
                recipient_name=recipient_name,
                sender_company=sender_company.replace("\\n", "\n") if sender_company else None,
                sender_fax=sender_fax,
                header=header,
            )
        except FaxError as exc:
            raise click.ClickException(f"refused ({exc.status}): {exc.reason}") from None
        console.print(f"[bold]{fax.id}[/] {fax.state.value} ({len(fax.recipients)} recipient(s))")
        if wait:
            final = _watch(client, fax.id)
            sys.exit(0 if final.state.value == "done" else 1)


def _watch(client: FaxClient, fax_id: str) -> FaxStatus:
    with Live(console=console, refresh_per_second=4) as live:
        return client.wait(fax_id, on_update=lambda f: live.update(fax_table([f])))


@cli.command()
@click.argument("fax_id", required=False)
@click.option("--state", help="Filter the list by state.")
@click.option("--site", help="Filter the list by sending site.")
@click.option("--user", help="Filter the list by user.")
@click.option("--limit", default=20, show_default=True)
@click.option("--wait", is_flag=True, help="Follow FAX_ID live until it is settled.")
@click.option("--history", is_flag=True, help="Show FAX_ID's transitions.")
@click.option(
    "--all",
    "all_tenants",
    is_flag=True,
    help="Every tenant's faxes (with the admin key, FAXFLEET_ADMIN_KEY).",
)
@click.option("--tenant", help="One tenant's faxes (with the admin key).")
@click.option("--admin", is_flag=True, help="Act with the admin key (any tenant's fax).")
@click.pass_context
def status(
    ctx: click.Context,
    fax_id: str | None,
    state: str | None,
    site: str | None,
    user: str | None,
    limit: int,
    wait: bool,
    history: bool,
    all_tenants: bool,
    tenant: str | None,
    admin: bool,
) -> None:
    """Show one fax (with FAX_ID) or the most recent ones (--all: every tenant's)."""
    as_admin = admin or all_tenants or tenant is not None
    with _acting(ctx, as_admin) as client:
        try:
            if fax_id is None:
                faxes = client.list(
                    state=state,
                    site=site,
                    user=user,
                    limit=limit,
                    all_tenants=all_tenants,
                    tenant=tenant,
                )
                console.print(fax_table(faxes, tenants=as_admin))
                return
            fax = _watch(client, fax_id) if wait else client.get(fax_id)
        except FaxError as exc:
            raise click.ClickException(f"{exc.status}: {exc.reason}") from None
        console.print(fax_table([fax], title=f"{fax.id}: {fax.state.value}"))
        if history:
            table = Table(title="history")
            for col in ("at", "rcpt", "from", "to", "site", "line", "cause", "detail"):
                table.add_column(col)
            for t in fax.history:
                table.add_row(
                    t.at.strftime("%H:%M:%S.%f")[:-3],
                    "" if t.recipient is None else str(t.recipient),
                    t.from_state.value if t.from_state else "",
                    t.to_state.value,
                    t.site or "",
                    t.line or "",
                    t.cause.value if t.cause else "",
                    t.detail or "",
                )
            console.print(table)


@cli.command()
@click.argument("fax_id")
@click.option("--page", "-p", type=click.IntRange(1), default=1, show_default=True)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="PNG file (default <id>-p<n>.png)."
)
@click.option(
    "--header/--no-header",
    default=True,
    help="With the header line the sending site stamps (default), or the page as rendered.",
)
@click.pass_context
def preview(ctx: click.Context, fax_id: str, page: int, output: str | None, header: bool) -> None:
    """Save page N of a rendered fax as a PNG, as the recipient will see it (with the
    header line: sender, date and time, page n/N)."""
    with _client(ctx) as client:
        try:
            png = client.preview(fax_id, page, header=header)
        except FaxError as exc:
            raise click.ClickException(f"no preview ({exc.status}): {exc.reason}") from None
    target = Path(output or f"{fax_id}-p{page}.png")
    target.write_bytes(png)
    console.print(f"page {page} of {fax_id} -> {target}")


@cli.command()
@click.argument("fax_id")
@click.pass_context
def cancel(ctx: click.Context, fax_id: str) -> None:
    """Cancel a fax (recipients on a line hang up at the next page)."""
    with _client(ctx) as client:
        try:
            fax = client.cancel(fax_id)
        except FaxError as exc:
            raise click.ClickException(f"{exc.status}: {exc.reason}") from None
        console.print(f"{fax.id}: {fax.state.value}")


def _login_name() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None


@cli.command()
@click.argument("fax_id")
@click.option("--sent", "outcome", flag_value="sent", help="The far end got the whole fax.")
@click.option(
    "--resend", "outcome", flag_value="resend", help="Send it again (first unconfirmed page)."
)
@click.option("--from-start", is_flag=True, help="With --resend: from page 1.")
@click.option("--recipient", type=click.IntRange(0), help="Recipient index (default: all).")
@click.option("--note", help="Why (kept in the fax's history).")
@click.option(
    "--user",
    envvar="FAXFLEET_USER",
    default=lambda: _login_name(),
    show_default="FAXFLEET_USER or your login name",
    help="Who decides (kept in the fax's history).",
)
@click.option(
    "--admin", is_flag=True, help="Act with the admin key (any tenant's fax; FAXFLEET_ADMIN_KEY)."
)
@click.pass_context
def resolve(
    ctx: click.Context,
    fax_id: str,
    outcome: str | None,
    from_start: bool,
    recipient: int | None,
    note: str | None,
    user: str | None,
    admin: bool,
) -> None:
    """Settle a fax whose outcome is uncertain: --sent or --resend."""
    if outcome is None:
        raise click.UsageError("say --sent or --resend")
    if from_start and outcome != "resend":
        raise click.UsageError("--from-start goes with --resend")
    with _acting(ctx, admin) as client, _refusals():
        fax = client.resolve(
            fax_id,
            outcome,
            recipient=recipient,
            note=note,
            user=user or None,
            from_start=from_start,
        )
    console.print(fax_table([fax], title=f"{fax.id}: {fax.state.value}"))


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``3h``, ``2d`` -> seconds."""
    text = text.strip().lower()
    unit = _UNITS.get(text[-1:])
    number = text[:-1] if unit else text
    try:
        value = float(number) * (unit or 1)
    except ValueError:
        raise click.BadParameter(f"{text!r}: seconds, or a number with s, m, h or d") from None
    if value <= 0:
        raise click.BadParameter(f"{text!r}: more than 0")
    return value


def _when(text: str) -> datetime | Literal["now"]:
    """``now``, ``+30m`` (from now), or an ISO 8601 time with its zone."""
    text = text.strip()
    if text.lower() == "now":
        return "now"
    if text.startswith("+"):
        return datetime.now(UTC) + timedelta(seconds=_seconds(text[1:]))
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: now, +30m / +2h, or a time like 2030-01-01T09:00+01:00"
        ) from None
    if at.utcoffset() is None:
        raise click.BadParameter(f"{text!r}: give its zone (Z or +01:00)")
    return at


def _pair(text: str) -> tuple[str, str]:
    old, sep, new = text.partition("=")
    if not sep or not old.strip() or not new.strip():
        raise click.BadParameter(f"{text!r}: OLD=NEW, e.g. +33142685300=+33142685301")
    return old.strip(), new.strip()


USER_OPTION = click.option(
    "--user",
    envvar="FAXFLEET_USER",
    default=lambda: _login_name(),
    show_default="FAXFLEET_USER or your login name",
    help="Who acts (kept in the fax's history).",
)
ADMIN_FLAG = click.option(
    "--admin", is_flag=True, help="Act with the admin key (any tenant's fax; FAXFLEET_ADMIN_KEY)."
)


@cli.command()
@click.argument("fax_id")
@click.option("--priority", type=click.IntRange(0, 9), help="0 bulk .. 9 most urgent.")
@click.option("--send-after", help="now, +30m / +2h, or an ISO 8601 time with its zone.")
@click.option("--kill-after", help="Give up this long after the fax's start: 3600, 90m, 3h.")
@click.option(
    "--number",
    "numbers",
    multiple=True,
    help="OLD=NEW: a recipient's new number (repeatable).",
)
@click.option("--to", "to", help="The new number of a fax with one recipient.")
@click.option("--note", help="Why (kept in the fax's history).")
@USER_OPTION
@ADMIN_FLAG
@click.option("--override-policy", is_flag=True, help="With --admin: past the destination policy.")
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait for a change that needs the fax taken back from routing.",
)
@click.pass_context
def alter(
    ctx: click.Context,
    fax_id: str,
    priority: int | None,
    send_after: str | None,
    kill_after: str | None,
    numbers: tuple[str, ...],
    to: str | None,
    note: str | None,
    user: str | None,
    admin: bool,
    override_policy: bool,
    wait: bool,
) -> None:
    """Change a fax not yet on a line: priority, send time, kill time, numbers."""
    changes = dict(_pair(n) for n in numbers)
    if to and changes:
        raise click.UsageError("--to and --number exclude each other")
    if priority is None and send_after is None and kill_after is None and not (to or changes):
        raise click.UsageError(
            "say what to change: --priority, --send-after, --kill-after, --number or --to"
        )
    with _acting(ctx, admin) as client, _refusals():
        if to:
            current = client.get(fax_id)
            if len(current.recipients) != 1:
                raise click.UsageError(
                    f"fax {fax_id} has {len(current.recipients)} recipients: use --number OLD=NEW"
                )
            changes = {current.recipients[0].number: to}
        fax = client.alter(
            fax_id,
            priority=priority,
            send_after=_when(send_after) if send_after else None,
            kill_after_seconds=_seconds(kill_after) if kill_after else None,
            numbers=changes or None,
            override_policy=override_policy,
            note=note,
            user=user or None,
        )
        pending = any(r.pending for r in fax.recipients)
        if pending and wait:
            deadline = time.monotonic() + 30
            while pending and time.monotonic() < deadline:
                time.sleep(0.2)
                fax = client.get(fax_id)
                pending = any(r.pending for r in fax.recipients)
    console.print(fax_table([fax], title=f"{fax.id}: {fax.state.value}"))
    for line in _latest_changes(fax):
        console.print(line)
    if pending:
        console.print("waiting for routing to take it back: `faxfleet status ID --history`")


def _latest_changes(fax: FaxStatus) -> list[str]:
    """The history's lines from the latest alteration on."""
    lines = [t.detail or "" for t in fax.history]
    starts = [i for i, text in enumerate(lines) if text.startswith("altered by ")]
    return [text for text in lines[starts[-1] :] if text] if starts else []


@cli.command()
@click.argument("fax_id")
@click.option("--recipient", type=click.IntRange(0), help="Recipient index (default: all).")
@click.option("--from-start", is_flag=True, help="From page 1, not the first unconfirmed page.")
@click.option("--kill-after", help="Keep trying at least this long from now: 3600, 90m, 3h.")
@click.option("--note", help="Why (kept in the fax's history).")
@USER_OPTION
@ADMIN_FLAG
@click.pass_context
def requeue(
    ctx: click.Context,
    fax_id: str,
    recipient: int | None,
    from_start: bool,
    kill_after: str | None,
    note: str | None,
    user: str | None,
    admin: bool,
) -> None:
    """Send again a failed or outcome-uncertain fax (a new attempt, fresh counters)."""
    with _acting(ctx, admin) as client, _refusals():
        fax = client.requeue(
            fax_id,
            recipient=recipient,
            from_start=from_start,
            kill_after_seconds=_seconds(kill_after) if kill_after else None,
            note=note,
            user=user or None,
        )
    console.print(fax_table([fax], title=f"{fax.id}: {fax.state.value}"))


@cli.command()
@click.pass_context
def sites(ctx: click.Context) -> None:
    """Sites (declared or publishing their state) with their lines."""
    with _client(ctx) as client:
        table = Table()
        for col in ("site", "lines up", "busy", "waiting", "lines"):
            table.add_column(col)
        fleet = client.fleet()
        snap = fleet["snapshot"]
        held = {h["name"]: h for h in snap["sites"]}
        table.add_column("held / leased")
        for s in client.sites():
            status = s.get("status") or {"lines": []}
            lines = " ".join(f"{ln['name']}:{ln['state']}" for ln in status["lines"])
            h = held.get(s["name"])
            table.add_row(
                s["name"],
                str(s["lines_up"]),
                str(s["lines_busy"]),
                str(s["waiting"]),
                lines,
                f"{h['held']} / {h['leased']}" if h else "-",
            )
        console.print(table)
        console.print(fleet_lines(fleet))


def fleet_lines(fleet: dict[str, Any]) -> str:
    """The fleet's health under the site table: processes alive by kind, what waits
    and what is overdue, and each problem."""
    snap = fleet["snapshot"]
    procs = ", ".join(f"{k} {n}" for k, n in snap["processes"].items()) or "none"
    out = [f"processes alive: {procs}"]
    d = snap.get("dispatch")
    if d:
        waiting = sum(d["waiting"].values())
        out.append(
            f"waiting: {waiting} (overdue {d['overdue']}, oldest {d['oldest_wait_seconds']:.0f} s),"
            f" free lines: {d['free_lines']}"
        )
    acct = snap.get("accounting")
    if acct:
        why = f" (database: {acct['error']})" if acct.get("error") else ""
        out.append(f"call records not yet in the database: {acct['backlog']}{why}")
    out.append("health: ok" if fleet["ok"] else "health: FAILING")
    out += [f"  - {p}" for p in fleet["problems"]]
    return "\n".join(out)


@cli.command()
@click.option("--keep/--no-keep", default=True, help="Keep the fleet running after the batch.")
@click.option("--faxes", default=0, help="Send only the first N faxes of the batch (0: all).")
def demo(keep: bool, faxes: int) -> None:
    """Start a local two-site fleet, send a realistic batch, show progress and a summary."""
    from faxfleet.demo import run_demo

    sys.exit(run_demo(keep=keep, faxes=faxes or None))


@cli.command("demo-line")
@click.option(
    "--far-end",
    type=click.Choice(["efax", "hylafax"]),
    default="efax",
    show_default=True,
    help="The fax software that receives on the far end of the line.",
)
def demo_line(far_end: str) -> None:
    """Send one real fax from a one-site fleet over a software fax line (iaxmodem) and
    write the sent and received pages side by side as a PNG (run it as root, so that the
    line gets a private network namespace and HylaFAX can change to its uucp user)."""
    from faxfleet.demo_line import run_demo_line

    sys.exit(run_demo_line(far_end="hylafax" if far_end == "hylafax" else "efax"))


@cli.command()
def compose() -> None:
    """Print compose.yaml for the fleet topology (the same one the launcher starts)."""
    from faxfleet.compose import render_compose

    click.echo(render_compose(), nl=False)


@cli.command()
@click.option(
    "--site",
    "sites",
    multiple=True,
    default=["paris:3", "newyork:3"],
    show_default=True,
    help="NAME:LINES (repeatable).",
)
@click.option("--api-port", default=8040, show_default=True)
@click.option("--flower-port", default=5555, show_default=True)
@click.option(
    "--replicas",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Run every process kind this many times (site workers once per site).",
)
@click.option("--cluster", is_flag=True, help="The cluster topology: --replicas 2.")
def up(
    sites: tuple[str, ...], api_port: int, flower_port: int, replicas: int, cluster: bool
) -> None:
    """Run a supervised local fleet against FAXFLEET_REDIS_URL until Ctrl-C (no demo
    batch); a process that exits is restarted, and each restart is logged."""
    import logging
    import signal
    import threading

    from faxfleet.fleet import Fleet, SiteSpec
    from faxfleet.log import setup_logging

    specs = []
    for item in sites:
        name, _, lines = item.partition(":")
        specs.append(SiteSpec(name, int(lines or 2)))
    settings = get_settings()
    # Restarts are logged; no secret in a line.
    setup_logging(settings.log_level, settings.log_format, settings.secret_values())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not every readiness probe
    env = {"FAXFLEET_REDIS_URL": settings.redis_url}
    if DEMO_VAR not in os.environ:
        # A local fleet on loopback: the demo's keys are accepted. FAXFLEET_DEMO=0 makes it
        # refuse them as a deployment does.
        env[DEMO_VAR] = "1"
        console.print(f"demo mode: the demo's keys are accepted ({DEMO_VAR}=0 to refuse them)")
    fleet = Fleet(
        specs,
        env,
        Path(".fleet/logs").resolve(),
        api_port=api_port,
        flower_port=flower_port,
        replicas=max(replicas, 2) if cluster else replicas,
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        fleet.start()
        try:
            fleet.wait_ready(timeout=90)
        except (RuntimeError, TimeoutError) as exc:
            raise click.ClickException(f"the fleet did not start: {exc}") from None
        console.print(
            f"fleet up: {len(fleet.processes)} processes, API {', '.join(fleet.api_urls)}, "
            f"Flower http://127.0.0.1:{flower_port} (user:password {fleet.flower_auth})"
        )
        console.print(
            f"metrics: {fleet.api_url}/metrics (the fleet's), each process's listed for "
            f"Prometheus in {fleet.log_dir / 'metrics-targets.json'}"
        )
        stop.wait()
    finally:
        fleet.stop()
        if fleet.restarts:
            counts = ", ".join(f"{n} {c}" for n, c in sorted(fleet.restarts.items()))
            console.print(f"restarts: {counts}")


# -- keys and secrets ---------------------------------------------------------------------

MIN_HASHED_KEY = 20


@cli.group("keys")
def keys_group() -> None:
    """Mint API keys and give the configuration their hashes only (a key is shown once
    and stored nowhere). docs/administration.md#keys-and-secrets"""


def _who(tenant: str | None, admin: bool) -> tuple[str, str]:
    """(variable, prefix of the entry) for a tenant or an admin key."""
    if bool(tenant) == admin:
        raise click.UsageError("give --tenant NAME or --admin")
    if tenant and ("=" in tenant or "," in tenant or tenant != tenant.strip()):
        raise click.UsageError("a tenant name has no '=', ',' or surrounding spaces")
    return (ADMIN_KEYS_VAR, "") if admin else (API_KEYS_VAR, f"{tenant}=")


@keys_group.command("new")
@click.option("--tenant", help="The tenant the key acts for.")
@click.option("--admin", is_flag=True, help="An admin key (sites, groups, costs, any fax).")
def keys_new(tenant: str | None, admin: bool) -> None:
    """Mint a key: print it once, and the entry (its hash) for the configuration."""
    var, prefix = _who(tenant, admin)
    key = mint()
    click.echo(f"key (shown once, stored nowhere): {key}")
    click.echo(f"add to {var} (comma-separated; keep the old entry while clients move):")
    click.echo(f"{prefix}{entry(key)}")


@keys_group.command("hash")
@click.option("--tenant", help="The tenant the key acts for.")
@click.option("--admin", is_flag=True, help="An admin key.")
def keys_hash(tenant: str | None, admin: bool) -> None:
    """The configuration entry of an existing key, read from standard input (so it stays
    out of the shell's history)."""
    _, prefix = _who(tenant, admin)
    key = sys.stdin.readline().strip()
    if len(key) < MIN_HASHED_KEY:
        raise click.ClickException(
            f"a key of fewer than {MIN_HASHED_KEY} characters can be guessed from its hash: "
            "mint one (faxfleet keys new)"
        )
    click.echo(f"{prefix}{entry(key)}")


@keys_group.command("init")
@click.option("--tenant", "tenants", multiple=True, required=True, help="Repeatable.")
def keys_init(tenants: tuple[str, ...]) -> None:
    """A new environment file for a deployment (compose's faxfleet.env): hashed keys for
    each tenant and one admin, a webhook secret and Flower credentials on standard
    output; the keys themselves on standard error, once."""
    api, shown = [], []
    for tenant in tenants:
        _who(tenant, False)
        key = mint()
        api.append(f"{tenant}={entry(key)}")
        shown.append(f"key of tenant {tenant}: {key}")
    admin_key = mint()
    shown.append(f"admin key: {admin_key}")
    flower = f"admin:{secrets.token_urlsafe(18)}"
    click.echo("# faxfleet secrets: keep this file private (chmod 600), out of version control.")
    click.echo(f"{API_KEYS_VAR}={','.join(api)}")
    click.echo(f"{ADMIN_KEYS_VAR}={entry(admin_key)}")
    click.echo(f"{WEBHOOK_SECRET_VAR}={secrets.token_urlsafe(32)}")
    click.echo(f"{FLOWER_AUTH_VAR}={flower}")
    for line in shown:
        click.echo(line, err=True)
    click.echo(f"Flower: {flower} (also in the file)", err=True)


# -- received faxes ------------------------------------------------------------------------


@cli.group()
def inbound() -> None:
    """Faxes received on the sites' lines for your tenant (admin key: unrouted ones)."""


def _inbound_row(fax: InboundFax) -> tuple[str, ...]:
    outcome = "ok" if fax.ok else f"partial: {fax.cause.value if fax.cause else '?'}"
    return (
        fax.id,
        fax.received_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
        fax.remote_id or "-",
        fax.called or "-",
        f"{fax.site}/{fax.line}",
        str(fax.pages),
        outcome,
    )


def _inbound_table(faxes: list[InboundFax], title: str | None = None) -> Table:
    table = Table(title=title)
    for col in ("fax", "received", "from", "to", "line", "pages", "outcome"):
        table.add_column(col)
    for fax in faxes:
        table.add_row(*_inbound_row(fax))
    return table


@inbound.command("list")
@click.option("--limit", default=20, show_default=True)
@click.pass_context
def inbound_list(ctx: click.Context, limit: int) -> None:
    """The most recent received faxes, newest first."""
    with _client(ctx) as client, _refusals():
        faxes = client.inbound_list(limit=limit)
    console.print(_inbound_table(faxes))


@inbound.command("show")
@click.argument("inbound_id")
@click.pass_context
def inbound_show(ctx: click.Context, inbound_id: str) -> None:
    """One received fax, with its route and notifications."""
    with _client(ctx) as client, _refusals():
        fax = client.inbound_get(inbound_id)
    console.print(_inbound_table([fax], title=f"{fax.id}: {fax.pages} page(s)"))
    console.print(f"route: {fax.route or 'unrouted'} (tenant {fax.tenant or '-'})")
    if fax.detail:
        console.print(f"detail: {fax.detail}")
    for note in fax.notifications:
        console.print(f"notification: {note}")


@inbound.command("get")
@click.argument("inbound_id")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="TIFF file (default <id>.tiff)."
)
@click.pass_context
def inbound_get(ctx: click.Context, inbound_id: str, output: str | None) -> None:
    """Save a received fax as one multi-page TIFF."""
    with _client(ctx) as client, _refusals():
        document = client.inbound_document(inbound_id)
    target = Path(output or f"{inbound_id}.tiff")
    target.write_bytes(document)
    console.print(f"{inbound_id} -> {target} ({len(document)} bytes)")


# -- administration: sites, groups, cost tables -------------------------------------------

ADMIN_KEY_OPTION = click.option(
    "--admin-key", help="Admin key (FAXFLEET_ADMIN_KEY); may also be given before the command."
)


def _admin(ctx: click.Context) -> AdminClient:
    return AdminClient(ctx.obj.get("urls"), ctx.obj.get("admin_key"))


def _keep_admin_key(ctx: click.Context, admin_key: str | None) -> None:
    ctx.ensure_object(dict)
    if admin_key:
        ctx.obj["admin_key"] = admin_key


@contextmanager
def _refusals() -> Iterator[None]:
    """An API refusal becomes a one-line error (exit 1) instead of a traceback."""
    try:
        yield
    except FaxError as exc:
        raise click.ClickException(f"{exc.status}: {exc.reason}") from None


def _error_line(error: Any) -> str:
    if isinstance(error, dict):
        where = f"line {error['line']}: " if error.get("line") is not None else ""
        return where + str(error.get("message") or error.get("msg") or error)
    return str(error)


def _dialing_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--country", help="ISO 3166 region of the site's call zone, e.g. FR."),
        click.option("--area-code", help="The site's own area code, e.g. 1 (Paris)."),
        click.option("--outside-prefix", help="Digits for an outside line (PBX), e.g. 9."),
        click.option("--national-prefix", help="Trunk prefix for national calls, e.g. 0."),
        click.option("--international-prefix", help="Prefix for international calls, e.g. 00."),
        click.option(
            "--local-area-code",
            "local_area_codes",
            multiple=True,
            help="Another area code dialled as a local call (repeatable).",
        ),
        click.option(
            "--local-format",
            type=click.Choice(["national", "subscriber"]),
            help="Local calls with the national number or the subscriber number only.",
        ),
        click.option("--lines", type=click.IntRange(0, 1000), help="Number of lines."),
        click.option("--timezone", help="IANA time zone, e.g. Europe/Paris."),
        click.option("--address", help="Where the site is reached (HOST:PORT or URL)."),
        click.option("--group", help="Group the site belongs to (standalone without)."),
        ADMIN_KEY_OPTION,
    ]
    for option in reversed(options):
        f = option(f)
    return f


_DIALING_FIELDS = (
    "area_code",
    "outside_prefix",
    "national_prefix",
    "international_prefix",
    "local_format",
)


def _site_fields(values: dict[str, Any]) -> dict[str, Any]:
    """The SiteConfig fields the options give (``dialing`` holds only the given rules)."""
    fields = {
        k: values[k]
        for k in ("country", "lines", "timezone", "address", "group")
        if values.get(k) is not None
    }
    dialing = {k: values[k] for k in _DIALING_FIELDS if values.get(k) is not None}
    if values.get("local_area_codes"):
        dialing["local_area_codes"] = list(values["local_area_codes"])
    if dialing:
        fields["dialing"] = dialing
    return fields


@cli.group()
@ADMIN_KEY_OPTION
@click.pass_context
def site(ctx: click.Context, admin_key: str | None) -> None:
    """Declare, change, list and remove sites (admin)."""
    _keep_admin_key(ctx, admin_key)


@site.command("add")
@click.argument("name")
@_dialing_options
@click.pass_context
def site_add(ctx: click.Context, name: str, admin_key: str | None, **values: Any) -> None:
    """Declare site NAME (country, dialing rules, lines, time zone; optionally a group)."""
    _keep_admin_key(ctx, admin_key)
    missing = [
        f"--{k.replace('_', '-')}"
        for k in ("country", "national_prefix", "international_prefix", "lines")
        if values.get(k) is None
    ]
    if missing:
        raise click.UsageError(f"site add needs {', '.join(missing)}")
    config = {"name": name, **_site_fields(values)}
    with _admin(ctx) as admin, _refusals():
        created = admin.create_site(config)
    group_text = f"group {created['group']}" if created.get("group") else "standalone"
    console.print(f"site {created['name']} added: {created['lines']} line(s), {group_text}")


@site.command("set")
@click.argument("name")
@_dialing_options
@click.option("--standalone", is_flag=True, help="Leave the site's group.")
@click.pass_context
def site_set(
    ctx: click.Context, name: str, admin_key: str | None, standalone: bool, **values: Any
) -> None:
    """Change some of site NAME's settings; the rest stay (takes effect at once)."""
    _keep_admin_key(ctx, admin_key)
    if standalone and values.get("group"):
        raise click.UsageError("--group and --standalone exclude each other")
    changes = _site_fields(values)
    if standalone:
        changes["group"] = None
    if not changes:
        raise click.UsageError("nothing to change")
    with _admin(ctx) as admin, _refusals():
        updated = admin.update_site(name, changes)
    group_text = f"group {updated['group']}" if updated.get("group") else "standalone"
    console.print(f"site {updated['name']}: {updated['lines']} line(s), {group_text}")


@site.command("list")
@ADMIN_KEY_OPTION
@click.pass_context
def site_list(ctx: click.Context, admin_key: str | None) -> None:
    """Declared and live sites with their configuration and live state."""
    _keep_admin_key(ctx, admin_key)
    with _admin(ctx) as admin, _refusals():
        views = admin.sites()
    table = Table()
    for col in (
        "site",
        "group",
        "zone",
        "tz",
        "lines",
        "up",
        "busy",
        "waiting",
        "inflight",
        "costs",
    ):
        table.add_column(col)
    for v in views:
        config = v.get("config") or {}
        dialing = config.get("dialing") or {}
        zone = f"{config['country']} {dialing.get('area_code', '')}".strip() if config else "-"
        table.add_row(
            v["name"] + ("" if v.get("managed", True) else " (unmanaged)"),
            v.get("group") or "standalone",
            zone,
            config.get("timezone", "-"),
            str(config["lines"]) if config else "-",
            str(v["lines_up"]) if v["up"] else "down",
            str(v["lines_busy"]),
            str(v["waiting"]),
            str(v.get("inflight", 0)),
            f"v{v['cost_table_version']}" if v.get("cost_table_version") else "-",
        )
    console.print(table)


@site.command("remove")
@click.argument("name")
@ADMIN_KEY_OPTION
@click.pass_context
def site_remove(ctx: click.Context, name: str, admin_key: str | None) -> None:
    """Remove site NAME's declaration (and its cost tables)."""
    _keep_admin_key(ctx, admin_key)
    with _admin(ctx) as admin, _refusals():
        admin.remove_site(name)
    console.print(f"site {name} removed")


@cli.group()
@ADMIN_KEY_OPTION
@click.pass_context
def group(ctx: click.Context, admin_key: str | None) -> None:
    """Create groups and make sites members (admin)."""
    _keep_admin_key(ctx, admin_key)


@group.command("create")
@click.argument("name")
@click.option("--description", default="", help="What the group is for.")
@ADMIN_KEY_OPTION
@click.pass_context
def group_create(ctx: click.Context, name: str, description: str, admin_key: str | None) -> None:
    """Create group NAME (sites of a group route to one another)."""
    _keep_admin_key(ctx, admin_key)
    with _admin(ctx) as admin, _refusals():
        admin.create_group(name, description)
    console.print(f"group {name} created")


@group.command("add")
@click.argument("group_name", metavar="GROUP")
@click.argument("site_name", metavar="SITE")
@ADMIN_KEY_OPTION
@click.pass_context
def group_add(ctx: click.Context, group_name: str, site_name: str, admin_key: str | None) -> None:
    """Make SITE a member of GROUP (it leaves any other group)."""
    _keep_admin_key(ctx, admin_key)
    with _admin(ctx) as admin, _refusals():
        admin.add_to_group(group_name, site_name)
    console.print(f"site {site_name} is in group {group_name}")


@group.command("remove")
@click.argument("group_name", metavar="GROUP")
@click.argument("site_name", metavar="SITE")
@ADMIN_KEY_OPTION
@click.pass_context
def group_remove(
    ctx: click.Context, group_name: str, site_name: str, admin_key: str | None
) -> None:
    """Take SITE out of GROUP: it becomes standalone."""
    _keep_admin_key(ctx, admin_key)
    with _admin(ctx) as admin, _refusals():
        admin.remove_from_group(group_name, site_name)
    console.print(f"site {site_name} is standalone")


@group.command("list")
@ADMIN_KEY_OPTION
@click.pass_context
def group_list(ctx: click.Context, admin_key: str | None) -> None:
    """Groups and their member sites."""
    _keep_admin_key(ctx, admin_key)
    with _admin(ctx) as admin, _refusals():
        groups = admin.groups()
    table = Table()
    for col in ("group", "sites", "description"):
        table.add_column(col)
    for g in groups:
        table.add_row(g["name"], " ".join(g["sites"]) or "-", g.get("description", ""))
    console.print(table)


@group.command("delete")
@click.argument("name")
@ADMIN_KEY_OPTION
@click.pass_context
def group_delete(ctx: click.Context, name: str, admin_key: str | None) -> None:
    """Delete group NAME (refused while it has sites)."""
    _keep_admin_key(ctx, admin_key)
    with _admin(ctx) as admin, _refusals():
        admin.delete_group(name)
    console.print(f"group {name} deleted")


@cli.group()
@ADMIN_KEY_OPTION
@click.pass_context
def costs(ctx: click.Context, admin_key: str | None) -> None:
    """Import, export and roll back sites' cost tables (admin)."""
    _keep_admin_key(ctx, admin_key)


@costs.command("import")
@click.argument("site_name", metavar="SITE")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@ADMIN_KEY_OPTION
@click.pass_context
def costs_import(ctx: click.Context, site_name: str, file: str, admin_key: str | None) -> None:
    """Import FILE (CSV) as SITE's new cost table. A file with errors changes nothing:
    each error is printed with its line number and the exit code is 1."""
    _keep_admin_key(ctx, admin_key)
    with click.open_file(file, encoding="utf-8-sig") as fh:
        text = fh.read()
    with _admin(ctx) as admin:
        try:
            result = admin.import_costs(site_name, text)
        except FaxError as exc:
            errors = exc.body.get("errors") if isinstance(exc.body, dict) else None
            if not errors:
                raise click.ClickException(f"{exc.status}: {exc.reason}") from None
            click.echo(f"{file}: {exc.reason}; nothing was changed", err=True)
            for error in errors:
                click.echo(f"{file}: {_error_line(error)}", err=True)
            sys.exit(1)
    console.print(
        f"site {site_name}: cost table version {result['version']} "
        f"({result['rows']} row(s), {result['currency']})"
    )


@costs.command("export")
@click.argument("site_name", metavar="SITE")
@click.option("--version", "version", type=int, help="An older version (default: current).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="File (default: stdout).")
@ADMIN_KEY_OPTION
@click.pass_context
def costs_export(
    ctx: click.Context,
    site_name: str,
    version: int | None,
    output: str | None,
    admin_key: str | None,
) -> None:
    """Write SITE's cost table as CSV (the format import reads)."""
    _keep_admin_key(ctx, admin_key)
    with _admin(ctx) as admin, _refusals():
        text = admin.export_costs(site_name, version)
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


@costs.command("versions")
@click.argument("site_name", metavar="SITE")
@ADMIN_KEY_OPTION
@click.pass_context
def costs_versions(ctx: click.Context, site_name: str, admin_key: str | None) -> None:
    """The kept versions of SITE's cost table (the current one is marked)."""
    _keep_admin_key(ctx, admin_key)
    with _admin(ctx) as admin, _refusals():
        info = admin.cost_versions(site_name)
    table = Table(title=f"{site_name}: cost tables")
    for col in ("version", "current", "imported", "rows", "currency"):
        table.add_column(col)
    for v in info["versions"]:
        table.add_row(
            str(v["version"]),
            "*" if v["version"] == info["current"] else "",
            v.get("imported_at") or "",
            str(v.get("rows", "")),
            v.get("currency") or "",
        )
    console.print(table)


@costs.command("rollback")
@click.argument("site_name", metavar="SITE")
@click.argument("version", type=int)
@ADMIN_KEY_OPTION
@click.pass_context
def costs_rollback(ctx: click.Context, site_name: str, version: int, admin_key: str | None) -> None:
    """Make an older VERSION of SITE's cost table current again."""
    _keep_admin_key(ctx, admin_key)
    with _admin(ctx) as admin, _refusals():
        info = admin.rollback_costs(site_name, version)
    console.print(f"site {site_name}: cost table version {info['current']} is current")


cli.add_command(report)


def main() -> None:
    cli(obj={})


if __name__ == "__main__":
    main()
