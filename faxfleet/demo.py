"""The demo: a local two-site fleet doing real work, watched live.

It starts a private Redis, an SMTP server that collects the notifications, and a fleet
(``paris`` and ``newyork``, emulated modem lines, time-scaled) with the API, the
router, the renderer, the timer loop and Flower; submits a realistic batch of faxes with
mixed priorities, documents and destinations (some numbers busy, one dropping the call
mid-fax, one never answering); shows progress live and ends with a summary. With
``keep`` it leaves the fleet running until Ctrl-C.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from aiosmtpd.controller import Controller
from rich.console import Console
from rich.live import Live
from rich.table import Table

from faxfleet import keys
from faxfleet.admin_client import AdminClient
from faxfleet.cli import fax_table
from faxfleet.client import FaxClient
from faxfleet.fleet import Fleet, SiteSpec
from faxfleet.messages import SETTLED_STATES, FaxStatus
from faxfleet.redact import redact_url
from faxfleet.redis_server import RedisServer, free_port
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
}

BATCH = [
    DemoFax(["+33142685300"], 1, "invoice.pdf", "paris", "billing"),
    DemoFax(["+33142685301"], 1, "invoice.pdf", "paris", "billing"),
    DemoFax(["+33142685302"], 1, "purchase-order.txt", "paris", "purchasing"),
    DemoFax(["+33142685310"], 5, "invoice.pdf", "paris", "billing"),
    DemoFax(["+12125550147"], 5, "delivery-note.txt", "newyork", "logistics"),
    DemoFax(["+12125550148", "+12125550149"], 5, "purchase-order.txt", "newyork", "purchasing"),
    DemoFax(["+442079460000"], 5, "delivery-note.txt", "paris", "logistics"),
    DemoFax(["+12125550150"], 1, "invoice.pdf", "newyork", "billing"),
    DemoFax(["+4930901820"], 5, "delivery-note.txt", "paris", "logistics"),
    DemoFax(["+12125550151"], 9, "lab-results.pdf", "newyork", "lab"),
    DemoFax(["+33142685303"], 9, "lab-results.pdf", "paris", "lab"),
    DemoFax(["+12125550152"], 1, "purchase-order.txt", "newyork", "purchasing"),
    DemoFax(["+33142685304"], 5, "invoice.pdf", "paris", "billing"),
    DemoFax(["+12125550153"], 9, "lab-results.pdf", "newyork", "lab"),
    DemoFax(["+16465550101"], 1, "invoice.pdf", "newyork", "billing"),
    DemoFax(["+16465550102"], 1, "invoice.pdf", "newyork", "billing"),
    DemoFax(["+12125550154"], 9, "lab-results.pdf", "paris", "lab"),
    DemoFax(["+12125550155"], 9, "lab-results.pdf", "paris", "lab"),
]


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


def summary_table(faxes: list[FaxStatus]) -> Table:
    table = Table(title="Summary")
    columns = (
        "fax",
        "prio",
        "home",
        "to",
        "site",
        "est. cost",
        "pages",
        "attempts",
        "result",
        "notified by",
    )
    for col in columns:
        table.add_column(col)
    for fax in faxes:
        for r in fax.recipients:
            result = r.state.value + (f" ({r.cause.value})" if r.cause else "")
            cost = f"{float(r.cost_estimate):.3f} {r.currency}" if r.cost_estimate else "-"
            table.add_row(
                fax.id,
                str(fax.priority),
                fax.home_site,
                r.number,
                r.site or "-",
                cost,
                f"{r.pages_confirmed}/{fax.pages or 0}",
                str(r.attempt),
                result,
                fax.notified_by or "-",
            )
    return table


def run_demo(*, keep: bool = True, faxes: int | None = None, run_dir: Path | None = None) -> int:
    run_dir = (run_dir or Path(".fleet")).resolve()
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
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        console.print(f"[bold]Starting a two-site fleet[/] (logs in {run_dir / 'logs'}) ...")
        fleet.start()
        fleet.wait_ready(timeout=90)
        with AdminClient(fleet.api_url, admin_key="admin-key") as admin:
            declare(admin, {s.name: s.lines for s in fleet.sites})
        console.print(
            "Group [bold]global[/]: paris and newyork with their cost tables "
            "(each cheap for its own country)."
        )
        r = server.client()
        for number, script in SCRIPTS.items():
            r.rpush(keys.sim_script(number), *script)
        with FaxClient(fleet.api_url, api_key="demo-key") as client:
            ids = []
            for item in BATCH[: faxes or len(BATCH)]:
                fax = client.send(
                    (item.document, _document(item.document)),
                    item.to,
                    priority=item.priority,
                    home_site=item.home_site,
                    user=item.user,
                    sender="ACME Supplies",
                    notify_email=f"{item.user}@acme.example",
                )
                ids.append(fax.id)
            console.print(f"Submitted {len(ids)} faxes. Sending ...")
            final = _follow(client, ids, stop)
        console.print(summary_table(final))
        done = sum(1 for f in final for rc in f.recipients if rc.state.value == "done")
        total = sum(len(f.recipients) for f in final)
        time.sleep(1.0)  # let the last notifications land
        by_site = {
            s: sum(1 for f in final for rc in f.recipients if rc.site == s)
            for s in ("paris", "newyork")
        }
        console.print(
            f"{done}/{total} recipients done; sent by paris {by_site['paris']}, "
            f"newyork {by_site['newyork']}; {mails.count} notification mails received."
        )
        if keep and not stop.is_set():
            console.print(
                f"\nThe fleet is running. API {fleet.api_url} (docs: {fleet.api_url}/docs, "
                f"key demo-key; metrics: {fleet.api_url}/metrics)"
                f"\nFlower http://127.0.0.1:{flower_port} "
                f"(user:password {fleet.flower_auth})   "
                f"Redis {redact_url(server.url)} (password in {server.directory}/access.conf)"
                f"\nTry: FAXFLEET_API_URLS={fleet.api_url} "
                f"FAXFLEET_API_KEY=demo-key .venv/bin/faxfleet status\nCtrl-C stops everything."
            )
            stop.wait()
        return 0 if done > 0 else 1
    finally:
        console.print("Stopping the fleet ...")
        fleet.stop()
        smtp.stop()
        server.stop()


def _follow(client: FaxClient, ids: list[str], stop: threading.Event) -> list[FaxStatus]:
    faxes: list[FaxStatus] = []
    with Live(console=console, refresh_per_second=4) as live:
        while not stop.is_set():
            faxes = [client.get(i) for i in ids]
            live.update(fax_table(faxes, title="Live progress"))
            if all(f.state in SETTLED_STATES for f in faxes):
                break
            time.sleep(0.3)
    return faxes
