"""The main job: `faxfleet demo` runs a two-site fleet, sends a batch and summarises it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fleet


def test_demo_sends_a_batch_through_two_sites(tmp_path: Path) -> None:
    # Without FAXFLEET_DEMO from the test run: the demo says it is one by itself. Piped
    # (not a terminal), in 80 columns.
    env = {**{k: v for k, v in os.environ.items() if k != "FAXFLEET_DEMO"}, "COLUMNS": "80"}
    run = subprocess.run(
        [sys.executable, "-m", "faxfleet.cli", "demo", "--no-keep", "--faxes", "8"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert "\x1b[" not in run.stdout  # no colours or live redraws in a pipe
    table = run.stdout[run.stdout.index("Summary") :]
    assert max(len(line) for line in table.splitlines()) <= 80, table
    rows = {line.split()[0]: line for line in table.splitlines() if line.startswith(" +")}
    # The story the batch is built for: New York's two lines are taken, so the urgent +1
    # fax overflows to Paris and the bulk one waits for a New York line.
    assert rows["+12125550151"].split()[1] == "paris", table
    assert "overflow: cheaper busy" in rows["+12125550151"], table
    assert rows["+16465550101"].split()[1] == "newyork", table
    assert "waited for cheap line" in rows["+16465550101"], table
    assert "overflowed to paris" in table and "+16465550101 (priority 1) waited" in table
    # Busy twice, then through: three calls, one reaching the fax; the history agrees
    # with the fleet's counters (no "!").
    assert re.search(r" 3/1 +done$", rows["+12125550147"]), table
    assert "!" not in "".join(rows.values())
    # Eight faxes, nine recipients; the number that never answers fails after 4 dials.
    assert re.search(r" 4/0 +failed$", rows["+442079460000"]), table
    assert "too_many_dials" in table
    assert re.search(r"8/9 recipients done, 1 failed; 8 mails; calls: paris \d+, newyork \d+", out)
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z]{3}", table)  # date, time, zone
