"""A real site worker process on modem lines: one modem present (an emulated one on a
pty), one missing. The site publishes the missing one out of service with its reason and
answers an inbound call on the other, handing the fax to the inbound store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import redis

from faxfleet import keys
from faxfleet.messages import SiteStatus
from faxfleet.redis_server import RedisServer
from tests.test_lines_class1 import PAGES, TIMERS
from workers.fax.emulator import EmulatorPair
from workers.fax.modem.at import AtPort
from workers.fax.modem.class1 import Class1Modem
from workers.fax.session import send_fax
from workers.fax.t30.engine import Config


def _status(r: redis.Redis, timeout: float = 60) -> SiteStatus:
    deadline = time.monotonic() + timeout
    while (raw := r.get(keys.site_status("lyon"))) is None:
        assert time.monotonic() < deadline, "the site never published its status"
        time.sleep(0.2)
    return SiteStatus.model_validate_json(raw)


def test_modem_site_publishes_line_states_and_answers(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    r = redis.Redis.from_url(server.url)
    with EmulatorPair(("5551001", "5551002"), time_scale=20) as pair:
        modems = [
            {"name": "usb0", "url": pair.urls[0], "answer": True, "did": "+33472000001"},
            {"name": "usb1", "url": str(tmp_path / "no-such-modem")},
        ]
        env = {
            **os.environ,
            "FAXFLEET_REDIS_URL": server.url,
            "FAXFLEET_SITE": "lyon",
            "FAXFLEET_LINE_KIND": "modem",
            "FAXFLEET_MODEMS": json.dumps(modems),
            "FAXFLEET_MODEM_PROBE_SECONDS": "1",
            "FAXFLEET_LOAD_PUBLISH_INTERVAL": "0.3",
        }
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.site",
            "worker",
            "-Q",
            "site.lyon",
            "-P",
            "threads",
            "-c",
            "4",
            "-n",
            "site-lyon@%h",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ]
        log = (tmp_path / "site.log").open("wb")
        worker = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            status = _status(r)
            by_name = {line.name: line for line in status.lines}
            assert by_name["usb0"].state == "idle"
            assert by_name["usb1"].state == "out_of_service"
            assert by_name["usb1"].reason and "probe failed" in by_name["usb1"].reason
            assert status.lines_up == 1

            caller = Class1Modem(AtPort.open(pair.urls[1], name="caller"))
            caller.port.command("ATE0V1Q0")
            sent = send_fax(caller, "5551001", PAGES[:2], Config(ident="ACME", timers=TIMERS))
            caller.port.close()
            assert sent.ok, (sent, (tmp_path / "site.log").read_text()[-3000:])
            deadline = time.monotonic() + 20
            while not (stored := r.keys("ff:inbound:*:tiff")):
                assert time.monotonic() < deadline, (tmp_path / "site.log").read_text()[-3000:]
                time.sleep(0.2)
            (key,) = stored
            tiff = r.get(key)
            assert tiff is not None and tiff[:2] in (b"II", b"MM")
        finally:
            worker.terminate()
            worker.wait(30)
            log.close()
            server.stop()


def test_emulated_site_answers_calls_placed_into_its_lines(tmp_path: Path) -> None:
    from workers.lines.emulated import calls_in_key

    server = RedisServer(tmp_path / "redis").start()
    r = redis.Redis.from_url(server.url)
    env = {
        **os.environ,
        "FAXFLEET_REDIS_URL": server.url,
        "FAXFLEET_SITE": "lyon",
        "FAXFLEET_LINE_KIND": "emulated",
        "FAXFLEET_LINES": "2",
        "FAXFLEET_EMULATOR_ANSWER": "true",
        "FAXFLEET_EMULATOR_DID": "+33472000009",
        "FAXFLEET_LOAD_PUBLISH_INTERVAL": "0.3",
    }
    argv = [
        sys.executable, "-m", "celery", "-A", "workers.site", "worker", "-Q", "site.lyon",
        "-P", "threads", "-c", "4", "-n", "site-lyon@%h", "--without-gossip",
        "--without-mingle", "--loglevel", "INFO",
    ]  # fmt: skip
    log = (tmp_path / "site.log").open("wb")
    worker = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        status = _status(r)
        assert [(line.name, line.state) for line in status.lines] == [
            ("lyon-1", "idle"),
            ("lyon-2", "idle"),
        ]
        r.rpush(calls_in_key("lyon-2"), json.dumps({"remote_id": "ACME", "pages": 3}))
        deadline = time.monotonic() + 30
        while not (stored := r.keys("ff:inbound:*:tiff")):
            assert time.monotonic() < deadline, (tmp_path / "site.log").read_text()[-3000:]
            time.sleep(0.2)
        # The document is stored before the worker logs the delivery.
        while "inbound fax delivered" not in (text := (tmp_path / "site.log").read_text()):
            assert time.monotonic() < deadline, text[-3000:]
            time.sleep(0.2)
        assert "lyon-2" in text
        assert len(stored) == 1
    finally:
        worker.terminate()
        worker.wait(30)
        log.close()
        server.stop()
