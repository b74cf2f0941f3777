"""``make demo-line``: one real fax, sent by a faxfleet site over a software fax line.

It brings up the software fax line (two iaxmodems, efax or HylaFAX answering on modem B;
docs/softline.md) and a one-site fleet whose only line is modem A, submits a one-page
sample through the HTTP API, follows it live, and once the far end has stored the page,
writes the page faxfleet rendered and the page the far end received side by side into one
PNG. It prints the PNG's path and the call's figures, then stops everything it started.

The point is evidence a person can look at: the far end is fax software we did not write,
and the right half of the picture is what it decoded from the line.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from aiosmtpd.controller import Controller
from PIL import Image, ImageDraw, ImageFont, ImageOps
from rich.console import Console
from rich.live import Live

from faxfleet.cli import fax_table
from faxfleet.client import FaxClient
from faxfleet.fleet import Fleet, SiteSpec
from faxfleet.messages import SETTLED_STATES, FaxStatus, JobState
from faxfleet.redis_server import RedisServer, free_port
from faxfleet.softline import ReceivedFax, SoftLine
from faxfleet.softline.line import FarEndKind, LineError

console = Console()

SAMPLE = "lab-results.pdf"
"""A one-page sample shipped with faxfleet."""
DESTINATION = "+33142685399"
"""Any number: modem A rings modem B whatever it dials."""
LINE_NAME = "paris-a"
LINE_ID = "+33 1 42 68 53 00"

DEMO_LINE_ENV = {
    "FAXFLEET_TIME_SCALE": "1",  # a real call takes real time: no scaled watchdogs
    "FAXFLEET_STUCK_AFTER_SECONDS": "600",
    "FAXFLEET_API_KEYS": "demo=demo-key",
    "FAXFLEET_API_KEY": "demo-key",
    "FAXFLEET_WEBHOOK_SECRET": "demo-secret",
    "FAXFLEET_LINE_KIND": "modem",
}

_SENT_LINE = re.compile(r"fax sent pages=(\d+) rate=(\d+) ecm=(\w+)")


@dataclass(frozen=True)
class CallFigures:
    """What one demo call measured."""

    seconds: float | None
    """From the site's dialling to the fax being done (the scheduler's own timestamps)."""
    pages_sent: int
    pages_received: int
    bad_lines: tuple[int | None, ...]
    """Per page, as the far end counted them."""
    bit_rate: int | None
    """The page-data rate the call ran at, as the site worker logged it."""
    ecm: bool | None

    def describe(self) -> str:
        took = f"{self.seconds:.0f} s" if self.seconds is not None else "?"
        rate = f"{self.bit_rate} bit/s" if self.bit_rate else "rate not logged"
        ecm = "" if self.ecm is None else (", ECM" if self.ecm else ", no ECM")
        bad = ", ".join("?" if b is None else str(b) for b in self.bad_lines)
        if not bad:  # with ECM a page arrives whole or not at all: nothing to count
            bad = "none counted (ECM)" if self.ecm else "not reported"
        return (
            f"call {took}, {self.pages_sent} page(s) sent, {self.pages_received} received, "
            f"bad lines per page: {bad}, {rate}{ecm}"
        )


def modem_env(line: SoftLine) -> dict[str, str]:
    """The site settings that make modem A of ``line`` the site's one line."""
    modem = {"name": LINE_NAME, "url": str(line.modem_a), "fax_class": "1", "local_id": LINE_ID}
    return {**DEMO_LINE_ENV, "FAXFLEET_MODEMS": json.dumps([modem])}


def call_seconds(fax: FaxStatus) -> float | None:
    """Dialling to done, from the fax's history."""
    dialing = [t.at for t in fax.history if t.to_state == JobState.DIALING]
    done = [t.at for t in fax.history if t.to_state == JobState.DONE and t.recipient == 0]
    if not dialing or not done:
        return None
    return (done[-1] - dialing[-1]).total_seconds()


def logged_rate(site_log: str) -> tuple[int | None, bool | None]:
    """The bit rate and ECM of the last fax the site worker logged as sent."""
    found = _SENT_LINE.findall(site_log)
    if not found:
        return None, None
    _, rate, ecm = found[-1]
    return int(rate), ecm == "True"


# -- the picture --------------------------------------------------------------------------


def square_pixels(image: Image.Image) -> Image.Image:
    """A fax page with each row repeated as the API's previews do it: standard pages
    (204 x 98 dpi) get their rows doubled, fine ones (204 x 196) stay as they are."""
    x_dpi, y_dpi = (float(v) for v in image.info.get("dpi", (204, 196)))
    image = image.convert("L")
    repeat = max(1, round(x_dpi / y_dpi)) if y_dpi else 1
    if repeat > 1:
        image = image.resize((image.width, image.height * repeat), Image.Resampling.NEAREST)
    return image


def received_page(fax: ReceivedFax, page: int = 0) -> Image.Image:
    """Page ``page`` of what the far end stored (efax: a file per page; HylaFAX: one
    multi-page file), with square pixels."""
    if len(fax.files) > 1:
        image = Image.open(fax.files[page])
    else:
        image = Image.open(fax.files[0])
        image.seek(page)
    image.load()
    return square_pixels(image)


def side_by_side(left: Image.Image, right: Image.Image, captions: tuple[str, str]) -> Image.Image:
    """Two pages next to each other on white, each with a caption above it."""
    font = ImageFont.load_default(size=36)
    gap, band = 48, 80
    pages = [ImageOps.expand(p.convert("L"), border=2, fill=128) for p in (left, right)]
    width = sum(p.width for p in pages) + 3 * gap
    height = max(p.height for p in pages) + band + gap
    sheet = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(sheet)
    x = gap
    for page, caption in zip(pages, captions, strict=True):
        draw.text((x, gap // 2), caption, fill=0, font=font)
        sheet.paste(page, (x, band))
        x += page.width + gap
    return sheet


# -- the run ------------------------------------------------------------------------------


class _Mails:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        return "250 OK"


def run_demo_line(*, far_end: FarEndKind = "efax", run_dir: Path | None = None) -> int:
    """Send one real fax through a one-site fleet to ``far_end``; 0 when it arrived."""
    run_dir = (run_dir or Path(".fleet") / "line").resolve()
    missing = [p for p in ("iaxmodem", "efax") if shutil.which(p) is None]
    if far_end == "hylafax" and shutil.which("faxgetty") is None:
        missing.append("faxgetty (hylafax-server)")
    if missing:
        console.print(f"[red]missing: {', '.join(missing)}[/] (make system installs them)")
        return 2
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    console.print(f"[bold]Bringing up the software fax line[/] ({far_end} answers on modem B)")
    with SoftLine(far_end=far_end) as line:
        where = f"namespace {line.namespace.name}" if line.namespace else "host loopback"
        console.print(f"modem A {line.modem_a} (faxfleet), modem B {line.modem_b}, {where}")
        server = RedisServer(run_dir / "redis", password=secrets.token_hex(16)).start()
        mails = _Mails()
        smtp = Controller(mails, hostname="127.0.0.1", port=free_port())
        smtp.start()
        api_port = free_port()
        env = {
            **modem_env(line),
            "FAXFLEET_DEMO": "1",  # a local demo: the demo's keys are accepted
            "FAXFLEET_REDIS_URL": server.url,
            "FAXFLEET_SMTP_PORT": str(smtp.port),
            "FAXFLEET_API_URLS": f"http://127.0.0.1:{api_port}",
        }
        fleet = Fleet([SiteSpec("paris", 1)], env, run_dir / "logs", api_port=api_port)
        try:
            console.print(f"[bold]Starting a one-site fleet[/] (logs in {run_dir / 'logs'})")
            fleet.start()
            fleet.wait_ready(timeout=90)
            line.wait_ready()
            return _send_and_show(fleet, line, run_dir, stop)
        except (LineError, TimeoutError, RuntimeError) as exc:
            console.print(f"[red]demo-line failed:[/] {exc}")
            return 1
        finally:
            console.print("Stopping the fleet and the line ...")
            fleet.stop()
            smtp.stop()
            server.stop()


def _send_and_show(fleet: Fleet, line: SoftLine, run_dir: Path, stop: threading.Event) -> int:
    document = resources.files("faxfleet.samples").joinpath(SAMPLE).read_bytes()
    with FaxClient(fleet.api_url, api_key="demo-key") as client:
        fax = client.send(
            (SAMPLE, document),
            [DESTINATION],
            sender="faxfleet demo",
            user="demo",
            notify_email="demo@example.com",
        )
        console.print(f"Submitted {fax.id}: {SAMPLE} to {DESTINATION} (modem B)")
        fax = _follow(client, fax.id, line, stop)
        if fax.state != JobState.DONE:
            console.print(f"[red]{fax.id} ended {fax.state.value}[/]: {fax.recipients[0].detail}")
            return 1
        (received,) = line.wait_received(1, timeout=60)
        sent = Image.open(io.BytesIO(client.preview(fax.id, 1)))
    site_log = (fleet.log_dir / "site-paris.log").read_text(errors="replace")
    rate, ecm = logged_rate(site_log)
    figures = CallFigures(
        seconds=call_seconds(fax),
        pages_sent=fax.recipients[0].pages_confirmed,
        pages_received=received.pages,
        bad_lines=received.bad_lines,
        bit_rate=rate,
        ecm=ecm,
    )
    picture = side_by_side(
        sent,
        received_page(received),
        (
            "sent: page 1 as faxfleet rendered it (header line added on the call)",
            f"received by {received.receiver} on modem B",
        ),
    )
    target = run_dir / "demo-line.png"
    picture.save(target, optimize=True)
    kept = _keep(received, run_dir / "far-end")
    console.print(f"[bold green]{fax.id} delivered[/]: {figures.describe()}")
    console.print(f"what the far end stored and logged: {kept}")
    console.print(f"sent and received pages side by side: [bold]{target}[/]")
    return 0


def _keep(received: ReceivedFax, target: Path) -> Path:
    """Copy the far end's files out of the line's directory, which goes with the line."""
    target.mkdir(parents=True, exist_ok=True)
    for path in (*received.files, received.log):
        shutil.copy2(path, target / path.name)
    return target


def _follow(client: FaxClient, fax_id: str, line: SoftLine, stop: threading.Event) -> FaxStatus:
    fax = client.get(fax_id)
    with Live(console=console, refresh_per_second=2) as live:
        while not stop.is_set():
            line.check()
            fax = client.get(fax_id)
            live.update(fax_table([fax], title="Live progress (a page takes 30-60 s)"))
            if fax.state in SETTLED_STATES:
                break
            time.sleep(0.5)
    return fax
