"""The main job: `faxfleet demo` runs a two-site fleet, sends a batch and summarises it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fleet


def test_demo_sends_a_batch_through_two_sites(tmp_path: Path) -> None:
    # Without FAXFLEET_DEMO from the test run: the demo says it is one by itself.
    env = {**{k: v for k, v in os.environ.items() if k != "FAXFLEET_DEMO"}, "COLUMNS": "200"}
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
    assert "Summary" in out
    # Eight faxes, nine recipients; the voice-less number fails after 4 dials.
    assert "8/9 recipients done" in out
    assert "too_many_dials" in out
    assert "8 notification mails received" in out
