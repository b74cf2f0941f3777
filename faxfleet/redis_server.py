"""Start a private ``redis-server`` on a free loopback port (demo, tests, benchmarks).

The fleet never relies on a Redis it did not start: a machine's shared Redis (6379) is
left alone.

Redis holds the fleet's accepted faxes (the job store) as well as its queues, so the
server runs with the append-only file on by default, fsynced every second: a restart
(SIGTERM: Redis writes and fsyncs the AOF before it exits) loses nothing, while a SIGKILL
or a power cut can lose up to about the last second of writes (docs/reliability.md).
RDB snapshots stay off: they would only add a fork every few minutes to what the AOF
already keeps.

With ``password`` the server requires it (``requirepass``) and :attr:`RedisServer.url`
carries it; with ``tls`` (:func:`make_tls_files`: a throwaway CA and certificates) it
listens only for TLS, asks clients for a certificate, and the URL is ``rediss://``. The
password goes to ``redis-server`` in a configuration file only its owner can read, never
on its command line (which every local user can see).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import redis

from faxfleet.redis_conn import RedisAccess, connect_url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class TlsFiles:
    """A CA, a certificate for the server(s) (127.0.0.1 and localhost) and one for
    clients, all signed by the CA (PEM files)."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path

    def access(self) -> RedisAccess:
        """What a client needs to connect (CA to verify the server, its certificate)."""
        return RedisAccess(
            tls_ca=str(self.ca), tls_cert=str(self.client_cert), tls_key=str(self.client_key)
        )

    def server_config(self) -> list[str]:
        """``redis-server`` configuration lines: TLS only, client certificates required,
        TLS between replicas and masters (and from sentinels) too."""
        return [
            f"tls-cert-file {self.cert}",
            f"tls-key-file {self.key}",
            f"tls-ca-cert-file {self.ca}",
            "tls-auth-clients yes",
            "tls-replication yes",
        ]


def make_tls_files(directory: Path, days: int = 2) -> TlsFiles:
    """A throwaway CA and certificates in ``directory``, made with ``openssl`` (tests,
    drills: a real deployment has its own CA)."""
    exe = shutil.which("openssl")
    if exe is None:
        raise RuntimeError("openssl is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    d = directory.resolve()
    key_args = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([exe, *args], check=True, capture_output=True)

    run(
        "req", "-x509", *key_args, "-days", str(days), "-subj", "/CN=faxfleet throwaway CA",
        "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"),
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    for name, usage in (("redis", "serverAuth,clientAuth"), ("client", "clientAuth")):
        ext = d / f"{name}.ext"
        ext.write_text(
            "basicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage={usage}\n"
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid\n"
        )
        run(
            "req", "-new", *key_args, "-subj", f"/CN=faxfleet {name}",
            "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"),
        )  # fmt: skip
        run(
            "x509", "-req", "-in", str(d / f"{name}.csr"), "-days", str(days),
            "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"), "-CAcreateserial",
            "-extfile", str(ext), "-out", str(d / f"{name}.crt"),
        )  # fmt: skip
    for key in d.glob("*.key"):
        key.chmod(0o600)
    return TlsFiles(
        ca=d / "ca.crt",
        cert=d / "redis.crt",
        key=d / "redis.key",
        client_cert=d / "client.crt",
        client_key=d / "client.key",
    )


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to a file only its owner can read (created so: never readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def conf_quote(value: str) -> str:
    """A string as a quoted ``redis.conf`` argument (any character allowed)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def redis_url(
    port: int, *, password: str | None = None, tls: bool = False, host: str = "127.0.0.1"
) -> str:
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"{'rediss' if tls else 'redis'}://{auth}{host}:{port}/0"


@dataclass
class RedisServer:
    directory: Path
    port: int = 0
    appendonly: bool = True
    appendfsync: str = "everysec"
    """``always``, ``everysec`` or ``no`` (Redis's own setting)."""
    password: str | None = field(default=None, repr=False)
    """Required of every client (``requirepass``); in :attr:`url`."""
    tls: TlsFiles | None = None
    """Listen for TLS only (``rediss://``), clients presenting a certificate."""
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return redis_url(self.port, password=self.password, tls=self.tls is not None)

    @property
    def access(self) -> RedisAccess:
        """What a client needs beyond :attr:`url` (the TLS files)."""
        return self.tls.access() if self.tls else RedisAccess()

    @property
    def env(self) -> dict[str, str]:
        """The settings that point a fleet at this server."""
        return {"FAXFLEET_REDIS_URL": self.url, **self.access.env()}

    def client(self, **kwargs: float) -> redis.Redis:
        return connect_url(self.url, access=self.access, **kwargs)

    def start(self, timeout: float = 10.0) -> RedisServer:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.directory = self.directory.resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        config = []
        if self.password:
            config.append(f"requirepass {conf_quote(self.password)}")
        if self.tls:
            config += self.tls.server_config()
        conf = write_private(self.directory / "access.conf", "\n".join(config) + "\n")
        port = str(self.port)
        listen = ["--port", "0", "--tls-port", port] if self.tls else ["--port", port]
        args = [
            exe,
            str(conf),
            *listen,
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
        client = self.client(socket_timeout=2.0)
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
