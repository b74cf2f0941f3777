"""The demo: a local two-site fleet doing real work, watched live.

It starts a private Redis, an SMTP server that collects the notifications, and a fleet
(``paris`` and ``newyork``, emulated modem lines, time-scaled) with the API, the
router, the renderer, the timer loop and Flower; submits a realistic batch of faxes with
mixed priorities, documents and destinations (some numbers busy, one dropping the call
mid-fax, one never answering); shows progress live and ends with a summary. With
``keep`` it leaves the fleet running until Ctrl-C.

The batch is staged so its routing stories happen every run, not by luck: a manifest for
two New York numbers goes first, and the rest only once it holds both New York lines, so
the urgent +1 fax that follows overflows to Paris and the bulk +1 one waits for New York.
The summary (:mod:`faxfleet.summary`) shows what the fleet recorded for each recipient.
:func:`demo_fleet` starts the same fleet for the README tour's test.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from aiosmtpd.controller import Controller
from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table

from faxfleet import keys, reports, summary
from faxfleet.admin_client import AdminClient
from faxfleet.client import FaxClient
from faxfleet.fleet import Fleet, SiteSpec
from faxfleet.messages import SETTLED_STATES, FaxStatus, JobState, RouteChoice, now
from faxfleet.redact import redact_url
from faxfleet.redis_server import RedisServer, free_port
from faxfleet.reports import CostReport
from faxfleet.sample_group import declare

console = Console()

DEMO_ENV = {
    # A local demo: its well-known keys are accepted (a deployment refuses them).
    "FAXFLEET_DEMO": "1",
    "FAXFLEET_TIME_SCALE": "0.02",  # a 3-minute busy retry takes 3.6 s
    # Real fax calls on emulated modems (docs/lines.md), 20 times faster than a line.
    "FAXFLEET_LINE_KIND": "emulated",
    "FAXFLEET_EMULATOR_TIME_SCALE": "20",
    "FAXFLEET_MAX_DIALS": "4",
    "FAXFLEET_STUCK_AFTER_SECONDS": "3000",
    # Bulk faxes wait up to an hour (72 s here) for the cheap site's line rather than
    # take a dearer free one (the default patience, 15 min, is 18 s at this scale).
    "FAXFLEET_ROUTING_PATIENCE_SECONDS": "3600",
    "FAXFLEET_API_KEYS": "demo=demo-key",
    "FAXFLEET_API_KEY": "demo-key",
    "FAXFLEET_WEBHOOK_SECRET": "demo-secret",
}

# Far ends with a story: scripted outcomes, one per call.
SCRIPTS = {
    "+12125550147": ["busy", "busy"],  # busy twice, then answers
    "+33142685310": ["drop:2"],  # carrier lost on page 2; the retry resumes there
    "+442079460000": ["no_answer"] * 10,  # never answers: fails after 4 dials
}


@dataclass(frozen=True)
class DemoFax:
    to: list[str]
    priority: int
    document: str
    home_site: str
    user: str


def _text(title: str, lines: int) -> bytes:
    body = [title, "=" * len(title), ""]
    body += [f"{i + 1:3d}. Shipment line {i + 1}: 12 units, pallet {400 + i}" for i in range(lines)]
    return "\n".join(body).encode()


DOCUMENTS: dict[str, bytes | None] = {
    "invoice.pdf": None,  # shipped samples, loaded lazily
    "lab-results.pdf": None,
    "purchase-order.txt": _text("Purchase order PO-88231", 40),
    "delivery-note.txt": _text("Delivery note DN-5512", 12),
    "manifest.txt": _text("Shipping manifest SM-2207", 150),
}

OPENING = [
    # Two three-page manifests take both New York lines first ...
    DemoFax(["+12125550148", "+12125550149"], 5, "manifest.txt", "newyork", "logistics"),
]
"""Submitted first; the rest follows once both New York lines are on these calls."""

STORY = [
    # ... so this urgent +1 fax (its promise: start now) overflows to Paris, dearer ...
    DemoFax(["+12125550151"], 9, "lab-results.pdf", "newyork", "lab"),
    # ... while this bulk one, from Paris, waits for a New York line, far cheaper.
    DemoFax(["+16465550101"], 1, "delivery-note.txt", "paris", "billing"),
]

REST = [
    DemoFax(["+33142685300"], 1, "invoice.pdf", "paris", "billing"),
    DemoFax(["+33142685310"], 5, "invoice.pdf", "paris", "billing"),
    DemoFax(["+442079460000"], 5, "delivery-note.txt", "paris", "logistics"),
    DemoFax(["+12125550147"], 5, "delivery-note.txt", "newyork", "logistics"),
    DemoFax(["+33142685301"], 1, "invoice.pdf", "paris", "billing"),
    DemoFax(["+33142685302"], 1, "purchase-order.txt", "paris", "purchasing"),
    DemoFax(["+12125550150"], 1, "invoice.pdf", "newyork", "billing"),
    DemoFax(["+4930901820"], 5, "delivery-note.txt", "paris", "logistics"),
    DemoFax(["+33142685303"], 9, "lab-results.pdf", "paris", "lab"),
    DemoFax(["+12125550152"], 1, "purchase-order.txt", "newyork", "purchasing"),
    DemoFax(["+33142685304"], 5, "invoice.pdf", "paris", "billing"),
    DemoFax(["+12125550153"], 9, "lab-results.pdf", "newyork", "lab"),
    DemoFax(["+16465550102"], 1, "invoice.pdf", "newyork", "billing"),
    DemoFax(["+12125550154"], 5, "lab-results.pdf", "paris", "lab"),
    DemoFax(["+12125550155"], 9, "lab-results.pdf", "paris", "lab"),
]

BATCH = OPENING + STORY + REST
"""18 faxes, 19 recipients: invoices, orders and lab results; priorities 1, 5 and 9;
French, US, UK and German numbers."""

FILLERS_ON_LINE_TIMEOUT = 60.0
PROGRESS_EVERY = 5.0
"""Seconds between plain progress lines when the output is not a terminal."""


def say(text: str) -> None:
    """A line of the demo's story (styled on a terminal, plain in a pipe)."""
    console.print(text, highlight=False)


def _document(name: str) -> bytes:
    data = DOCUMENTS[name]
    if data is None:
        data = resources.files("faxfleet.samples").joinpath(name).read_bytes()
        DOCUMENTS[name] = data
    return data


class _MailCounter:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        return "250 OK"


@dataclass
class DemoFleet:
    """A running demo fleet: its Redis, its SMTP sink and the fleet itself."""

    fleet: Fleet
    server: RedisServer
    mails: _MailCounter

    @property
    def api_url(self) -> str:
        return self.fleet.api_url


@contextmanager
def demo_fleet(run_dir: Path, overrides: dict[str, str] | None = None) -> Iterator[DemoFleet]:
    """Start the demo's fleet (a private Redis, an SMTP sink, ``paris`` with 3 emulated
    lines and ``newyork`` with 2, declared in group ``global`` with their cost tables,
    the far ends' scripts loaded) and stop it all on leaving. ``overrides`` replace settings
    of :data:`DEMO_ENV`."""
    shutil.rmtree(run_dir / "redis", ignore_errors=True)  # every demo starts empty
    # A password of its own each run: other users of the machine cannot reach its Redis.
    password = secrets.token_hex(16)
    server = RedisServer(run_dir / "redis", appendonly=True, password=password).start()
    mails = _MailCounter()
    smtp_port = free_port()
    smtp = Controller(mails, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    api_port, flower_port = free_port(), free_port()
    env = {
        **DEMO_ENV,
        **(overrides or {}),
        "FAXFLEET_REDIS_URL": server.url,
        "FAXFLEET_SMTP_PORT": str(smtp_port),
        "FAXFLEET_API_URLS": f"http://127.0.0.1:{api_port}",
    }
    fleet = Fleet(
        [SiteSpec("paris", 3), SiteSpec("newyork", 2)],
        env,
        run_dir / "logs",
        api_port=api_port,
        flower_port=flower_port,
    )
    try:
        say(f"[bold]Starting a two-site fleet[/] (logs in {run_dir / 'logs'}) ...")
        fleet.start()
        fleet.wait_ready(timeout=90)
        with AdminClient(fleet.api_url, admin_key="admin-key") as admin:
            declare(admin, {s.name: s.lines for s in fleet.sites})
        say(
            "Group [bold]global[/]: paris (3 lines) and newyork (2) with their cost tables "
            "(each cheap for its own country)."
        )
        r = server.client()
        for number, script in SCRIPTS.items():
            r.rpush(keys.sim_script(number), *script)
        yield DemoFleet(fleet, server, mails)
    finally:
        say("Stopping the fleet ...")
        fleet.stop()
        smtp.stop()
        server.stop()


def run_demo(*, keep: bool = True, faxes: int | None = None, run_dir: Path | None = None) -> int:
    run_dir = (run_dir or Path(".fleet")).resolve()
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with demo_fleet(run_dir) as demo:
        fleet, server = demo.fleet, demo.server
        with FaxClient(fleet.api_url, api_key="demo-key") as client:
            batch = BATCH[: faxes or len(BATCH)]
            opening, later = batch[: len(OPENING)], batch[len(OPENING) :]
            ids = [_submit(client, item) for item in opening]
            say("Submitted a manifest for two New York numbers: it takes both New York lines.")
            if not _on_lines(client, ids, "newyork", stop):
                say("(New York's lines did not both start in time: the story may differ)")
            ids += [_submit(client, item) for item in later]
            say(f"Submitted {len(ids)} faxes in all. Sending ...")
            _follow(client, ids, stop)
            time.sleep(1.0)  # let the last notifications land
            final = [client.get(i) for i in ids]
        print(summary.summary(final), flush=True)
        for line in stories(final):
            print(textwrap.fill(line, summary.WIDTH, subsequent_indent="  "), flush=True)
        sites = [s.name for s in fleet.sites]
        print(summary.final_line(final, demo.mails.count, sites), flush=True)
        with FaxClient(fleet.api_url, api_key="demo-key") as client:
            print(costs_text(client.cost_report("site")), flush=True)
        if keep and not stop.is_set():
            flower = f"http://127.0.0.1:{fleet.flower_port}  (user:password {fleet.flower_auth})"
            redis_at = (
                f"{redact_url(server.url)}\n           (password in {server.directory}/access.conf)"
            )
            print(running_banner(fleet.api_url, flower, redis_at), flush=True)
            stop.wait()
        return 0 if summary.totals(final).done > 0 else 1


def running_banner(api: str, flower: str, redis_at: str) -> str:
    """What the demo prints once its batch is done and it keeps running: where things
    are, and the lines to paste for the README's tour (they set ``$API`` and what the
    CLI reads)."""
    return (
        "\nThe fleet is running."
        f"\n  API      {api}  (key demo-key)"
        f"\n  console  {api}/console  (sign in with demo-key, or admin-key for the fleet)"
        f"\n  docs     {api}/docs"
        f"\n  metrics  {api}/metrics"
        f"\n  Flower   {flower}"
        f"\n  Redis    {redis_at}"
        "\nFor the README's tour, from the repository's directory, in another shell:"
        f"\n  export API={api}"
        "\n  export FAXFLEET_API_URLS=$API FAXFLEET_API_KEY=demo-key"
        "\nCtrl-C stops everything."
    )


def costs_text(report: CostReport) -> str:
    """The calls' real costs by site, as recorded per call (what ``faxfleet report costs
    --by site`` prints), in plain aligned columns."""
    head, *rows = reports.table(report)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "-" * len(line(head))
    out = ["Calls and their real cost, recorded per call (faxfleet report costs --by site):"]
    out += [line(head), rule, *(line(r) for r in rows[:-1]), rule, line(rows[-1])]
    return "\n".join(out)


def _submit(client: FaxClient, item: DemoFax) -> str:
    fax = client.send(
        (item.document, _document(item.document)),
        item.to,
        priority=item.priority,
        home_site=item.home_site,
        user=item.user,
        sender="ACME Supplies",
        notify_email=f"{item.user}@acme.example",
    )
    return fax.id


def _on_lines(client: FaxClient, ids: list[str], site: str, stop: threading.Event) -> bool:
    """Wait until every recipient of ``ids`` is on a call at ``site``."""
    deadline = time.monotonic() + FILLERS_ON_LINE_TIMEOUT
    on_call = (JobState.DIALING, JobState.SENDING)
    while not stop.is_set() and time.monotonic() < deadline:
        faxes = [client.get(i) for i in ids]
        recipients = [r for f in faxes for r in f.recipients]
        if all(r.state in on_call and r.site == site for r in recipients):
            return True
        if any(f.state in SETTLED_STATES for f in faxes):
            return False
        time.sleep(0.05)
    return False


def stories(faxes: list[FaxStatus]) -> list[str]:
    """The routing stories of the run, in words, from what the fleet recorded."""
    out = []
    for fax in faxes:
        for r in fax.recipients:
            wait = summary.wait_of(r)
            if r.route_choice == RouteChoice.OVERFLOW:
                out.append(
                    f"* {r.number} (priority {fax.priority}) overflowed to {r.site}: "
                    f"the cheaper site's lines were busy (waited {wait})."
                )
            elif r.route_choice == RouteChoice.WAITED:
                out.append(
                    f"* {r.number} (priority {fax.priority}) waited {wait} for a line "
                    f"at {r.site}, the cheaper site, rather than take a dearer free one."
                )
            elif r.route_choice == RouteChoice.BAND:
                out.append(
                    f"* {r.number} (priority {fax.priority}) waited {wait} for a cheaper "
                    f"tariff band at {r.site}."
                )
    return out


def live_table(faxes: list[FaxStatus]) -> Table:
    """The live view on a terminal: one row per recipient, within 80 columns."""
    table = Table(title="Live progress", box=box.SIMPLE_HEAD, padding=(0, 1), expand=False)
    for name, justify in (
        ("fax", "left"),
        ("p", "right"),
        ("to", "left"),
        ("state", "left"),
        ("line", "left"),
        ("pages", "right"),
        ("d/t", "right"),
    ):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for fax in faxes:
        for i, r in enumerate(fax.recipients):
            pages = f"{r.pages_confirmed}/{fax.pages}" if fax.pages else "-"
            if r.state == JobState.SENDING and r.page:
                pages = f"p.{r.page}/{fax.pages}"
            made = summary.calls(fax, r.index)
            table.add_row(
                fax.id[:11] if i == 0 else "",
                str(fax.priority) if i == 0 else "",
                r.number,
                r.state.value,
                r.line or r.site or "",
                pages,
                f"{made.dials}/{made.tries}",
            )
    return table


def _follow(client: FaxClient, ids: list[str], stop: threading.Event) -> list[FaxStatus]:
    """Live progress until every fax is settled: a live table on a terminal, a plain
    progress line every few seconds otherwise (a pipe, a log)."""
    faxes: list[FaxStatus] = []
    if not console.is_terminal:
        last = 0.0
        while not stop.is_set():
            faxes = [client.get(i) for i in ids]
            settled = all(f.state in SETTLED_STATES for f in faxes)
            if settled or time.monotonic() - last >= PROGRESS_EVERY:
                print(summary.progress_line(faxes, now()), flush=True)
                last = time.monotonic()
            if settled:
                break
            time.sleep(0.3)
        return faxes
    with Live(console=console, refresh_per_second=4) as live:
        while not stop.is_set():
            faxes = [client.get(i) for i in ids]
            live.update(live_table(faxes))
            if all(f.state in SETTLED_STATES for f in faxes):
                break
            time.sleep(0.3)
    return faxes
