"""Flower, with credentials: ``python -m faxfleet.monitor --port=5555 --address=127.0.0.1``.

Flower lists every tenant's tasks and can revoke them or start new ones, so it never
runs open: this entry point refuses to start without ``FAXFLEET_FLOWER_BASIC_AUTH``
(``user:password``; outside the demo, no demo password and 12 characters or more), hands
it to Flower's basic auth through the environment (not the command line, which ``ps``
shows everyone) and drops the variables that would open Flower's API without it. Its
health URL, ``/healthcheck``, answers without credentials; every page and API call needs
them. What Flower shows of task arguments is redacted (``faxfleet/celery_app.py``).

This module is also the Celery app Flower and the health checks use
(``celery -A faxfleet.monitor``): it registers no tasks, so it can watch every service of
the fleet without importing any of them.
"""

from __future__ import annotations

import os
import sys

from faxfleet.celery_app import make_celery
from faxfleet.credentials import InsecureConfig, flower_credentials
from faxfleet.settings import get_settings

app = make_celery("faxfleet-monitor")

_OPENING = ("FLOWER_UNAUTHENTICATED_API", "FLOWER_BASIC_AUTH", "FLOWER_AUTH")
"""Flower's own variables that would replace or bypass the credentials given here."""


def flower_env(environ: dict[str, str], credentials: list[str]) -> dict[str, str]:
    env = {k: v for k, v in environ.items() if k not in _OPENING}
    env["FLOWER_BASIC_AUTH"] = ",".join(credentials)
    return env


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if any(a.lstrip("-").replace("-", "_").startswith(("basic_auth", "auth")) for a in args):
        sys.exit("faxfleet flower: give credentials in FAXFLEET_FLOWER_BASIC_AUTH, not argv")
    settings = get_settings()
    secret = settings.flower_basic_auth.get_secret_value() if settings.flower_basic_auth else None
    try:
        credentials = flower_credentials(secret, settings.demo)
    except InsecureConfig as exc:
        sys.exit(f"faxfleet flower: {exc}")
    argv_out = [sys.executable, "-m", "celery", "-A", "faxfleet.monitor", "flower", *args]
    os.execve(sys.executable, argv_out, flower_env(dict(os.environ), credentials))


if __name__ == "__main__":
    main()
