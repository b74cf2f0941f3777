"""The ``faxfleet`` command: send and follow faxes, look at sites, run a local fleet.

Every fax command goes through the HTTP API (``FAXFLEET_API_URLS``, ``FAXFLEET_API_KEY``)
with the same client business applications use.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from faxfleet.client import FaxClient, FaxError
from faxfleet.messages import FaxStatus

console = Console()


def _client(ctx: click.Context) -> FaxClient:
    return FaxClient(ctx.obj.get("urls"), ctx.obj.get("api_key"))


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


def fax_table(faxes: list[FaxStatus], title: str | None = None) -> Table:
    table = Table(title=title, expand=False)
    for col in ("fax", "prio", "to", "state", "site", "line", "pages", "dials/tries, cause"):
        table.add_column(col)
    for fax in faxes:
        for i, row in enumerate(recipient_line(fax)):
            ident = (fax.id, str(fax.priority)) if i == 0 else ("", "")
            table.add_row(*ident, *row)
    return table


@click.group()
@click.option("--api", "urls", help="API base URL(s), comma-separated (FAXFLEET_API_URLS).")
@click.option("--api-key", help="Tenant API key (FAXFLEET_API_KEY).")
@click.pass_context
def cli(ctx: click.Context, urls: str | None, api_key: str | None) -> None:
    """faxfleet: a fax server fleet."""
    ctx.ensure_object(dict)
    ctx.obj.update(urls=urls, api_key=api_key)


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
) -> None:
    """Show one fax (with FAX_ID) or the most recent ones."""
    with _client(ctx) as client:
        try:
            if fax_id is None:
                console.print(
                    fax_table(client.list(state=state, site=site, user=user, limit=limit))
                )
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
@click.pass_context
def cancel(ctx: click.Context, fax_id: str) -> None:
    """Cancel a fax (recipients on a line hang up at the next page)."""
    with _client(ctx) as client:
        try:
            fax = client.cancel(fax_id)
        except FaxError as exc:
            raise click.ClickException(f"{exc.status}: {exc.reason}") from None
        console.print(f"{fax.id}: {fax.state.value}")


@cli.command()
@click.pass_context
def sites(ctx: click.Context) -> None:
    """Sites that are up, with their lines."""
    with _client(ctx) as client:
        table = Table()
        for col in ("site", "lines up", "busy", "waiting", "lines"):
            table.add_column(col)
        for s in client.sites():
            lines = " ".join(f"{ln['name']}:{ln['state']}" for ln in s["status"]["lines"])
            table.add_row(
                s["name"], str(s["lines_up"]), str(s["lines_busy"]), str(s["waiting"]), lines
            )
        console.print(table)


@cli.command()
@click.option("--keep/--no-keep", default=True, help="Keep the fleet running after the batch.")
@click.option("--faxes", default=14, show_default=True, help="How many faxes the batch has.")
def demo(keep: bool, faxes: int) -> None:
    """Start a local two-site fleet, send a realistic batch, show progress and a summary."""
    from faxfleet.demo import run_demo

    sys.exit(run_demo(keep=keep, faxes=faxes))


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
def up(sites: tuple[str, ...], api_port: int, flower_port: int) -> None:
    """Run a local fleet against FAXFLEET_REDIS_URL until Ctrl-C (no demo batch)."""
    import signal
    import threading

    from faxfleet.fleet import Fleet, SiteSpec
    from faxfleet.settings import get_settings

    specs = []
    for item in sites:
        name, _, lines = item.partition(":")
        specs.append(SiteSpec(name, int(lines or 2)))
    env = {"FAXFLEET_REDIS_URL": get_settings().redis_url}
    fleet = Fleet(
        specs, env, Path(".fleet/logs").resolve(), api_port=api_port, flower_port=flower_port
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        fleet.start()
        fleet.wait_ready(timeout=90)
        console.print(f"fleet up: API {fleet.api_url}, Flower http://127.0.0.1:{flower_port}")
        stop.wait()
    finally:
        fleet.stop()


def main() -> None:
    cli(obj={})


if __name__ == "__main__":
    main()
