"""Start a private ``redis-server`` on a free loopback port (demo, tests, benchmarks).

The fleet never relies on a Redis it did not start: a machine's shared Redis (6379) is
left alone.

Redis holds the fleet's accepted faxes (the job store) as well as its queues, so the
server runs with the append-only file on by default, fsynced every second: a restart
(SIGTERM: Redis writes and fsyncs the AOF before it exits) loses nothing, while a SIGKILL
or a power cut can lose up to about the last second of writes (docs/reliability.md).
RDB snapshots stay off: they would only add a fork every few minutes to what the AOF
already keeps.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    directory: Path
    port: int = 0
    appendonly: bool = True
    appendfsync: str = "everysec"
    """``always``, ``everysec`` or ``no`` (Redis's own setting)."""
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.directory = self.directory.resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        args = [
            exe,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            self.appendfsync,
            "--daemonize",
            "no",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    # PING answers while the AOF is still loading; DBSIZE waits for it.
                    client.dbsize()
                    return self
                except (redis.ConnectionError, redis.BusyLoadingError):
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        err = self.process.stderr.read().decode() if self.process.stderr else ""
                        raise RuntimeError(
                            f"redis-server did not start on {self.port}: {err}"
                        ) from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self, *, kill: bool = False, timeout: float = 10.0) -> None:
        """SIGTERM (Redis flushes the AOF and exits), or SIGKILL with ``kill`` (what a
        crash would do: the last second of writes may be lost)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self, kill: bool = False, down: float = 0.0) -> RedisServer:
        """Stop (SIGTERM, or SIGKILL with ``kill``) and start the same server again, on
        the same port and directory, so it replays its AOF; ``down`` seconds between."""
        self.stop(kill=kill)
        if down:
            time.sleep(down)
        return self.start()
