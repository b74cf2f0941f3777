"""Start a private Redis Sentinel group on free loopback ports (tests, benchmarks, demos).

A group is a master, its replica(s) and three sentinels, each its own ``redis-server``
process with its own directory (``redis-<n>/``, ``sentinel-<n>/``). Redis nodes run with
AOF on (``appendfsync everysec``). :attr:`SentinelGroup.url` is the one setting that points
a fleet at it (``FAXFLEET_REDIS_URL``).

The sentinels are tuned to fail over fast: ``down-after-milliseconds`` 1000 (a master
silent for 1 s is subjectively down; two sentinels agreeing make it objectively down) and
``failover-timeout`` 5000 (how long a started failover may take, and how long before the
same master is failed over again). Production groups use larger values (docs/reliability.md).

Failure drills: :meth:`SentinelGroup.kill_master` (SIGKILL), :meth:`wait_for_promotion`
(until the sentinels name another master), :meth:`rejoin` (the old master back, as a
replica of the new one). Nothing here touches a Redis it did not start.

Access control: with ``password`` every Redis node requires it (``requirepass``) and
replicas and sentinels present it to the master (``masterauth``, ``sentinel auth-pass``);
with ``sentinel_password`` the sentinels require theirs (``requirepass``, which they also
present to each other); with ``tls`` (:func:`~faxfleet.redis_server.make_tls_files`)
every node and sentinel listens for TLS only, replication and sentinel links included.
Secrets go into configuration files only their owner can read, never on a command line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import redis

from faxfleet.redis_conn import RedisAccess
from faxfleet.redis_server import TlsFiles, conf_quote, free_port, write_private

MASTER_NAME = "faxfleet"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000

Address = tuple[str, int]
HOST = "127.0.0.1"


def _redis_server() -> str:
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    return exe


def _listen(port: int, tls: TlsFiles | None) -> list[str]:
    """Configuration lines: where to listen, and the TLS files."""
    if tls is None:
        return [f"port {port}"]
    return ["port 0", f"tls-port {port}", *tls.server_config()]


def _client(port: int, password: str | None, tls: TlsFiles | None, **kwargs: object) -> redis.Redis:
    if tls is not None:
        kwargs.update(ssl=True, **tls.access().ssl_options())
    return redis.Redis(host=HOST, port=port, password=password, **kwargs)  # type: ignore[arg-type]


@dataclass
class RedisNode:
    """One ``redis-server`` of the group (master or replica: roles change on failover)."""

    name: str
    directory: Path
    port: int
    password: str | None = field(default=None, repr=False)
    tls: TlsFiles | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def address(self) -> Address:
        return (HOST, self.port)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self, **kwargs: object) -> redis.Redis:
        return _client(self.port, self.password, self.tls, socket_timeout=5, **kwargs)

    def start(self, replicaof: Address | None = None, timeout: float = 10.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = _listen(self.port, self.tls)
        if self.password:
            # Every node may become the master, or a replica of another one.
            pw = conf_quote(self.password)
            config += [f"requirepass {pw}", f"masterauth {pw}"]
        conf = write_private(self.directory / "access.conf", "\n".join(config) + "\n")
        args = [
            _redis_server(),
            str(conf),
            "--bind",
            HOST,
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            # A (re)joining replica syncs at once instead of waiting for others to join.
            "--repl-diskless-sync-delay",
            "0",
            "--daemonize",
            "no",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        if replicaof is not None:
            args += ["--replicaof", replicaof[0], str(replicaof[1])]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait_ping(self.client(), self.process, f"redis {self.name} on {self.port}", timeout)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last AOF flush (a crash)."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.running:
            assert self.process is not None
            _terminate(self.process)

    def link_up(self) -> bool:
        """A replica whose link to its master is up (a full sync done)."""
        try:
            info = self.client().info("replication")
        except redis.RedisError:
            return False
        return info.get("role") == "slave" and info.get("master_link_status") == "up"


@dataclass
class SentinelProcess:
    name: str
    directory: Path
    port: int
    myid: str = field(default_factory=lambda: secrets.token_hex(20))
    password: str | None = field(default=None, repr=False)
    """What this sentinel requires of its clients (and presents to other sentinels)."""
    tls: TlsFiles | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self) -> redis.Redis:
        return _client(self.port, self.password, self.tls, socket_timeout=2, decode_responses=True)

    def start(self, config: str, timeout: float = 10.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        # The sentinel rewrites it: keep it its own; it may hold passwords: keep it private.
        conf = write_private(self.directory / "sentinel.conf", config)
        self.process = subprocess.Popen(
            [_redis_server(), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _wait_ping(self.client(), self.process, f"sentinel {self.name} on {self.port}", timeout)

    def stop(self) -> None:
        if self.running:
            assert self.process is not None
            _terminate(self.process)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_ping(
    client: redis.Redis, process: subprocess.Popen[bytes], what: str, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.ping()
            return
        except redis.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                err = process.stderr.read().decode() if process.stderr else ""
                raise RuntimeError(f"{what} did not start: {err}") from None
            time.sleep(0.05)


@dataclass
class SentinelGroup:
    """A master, ``replicas`` replicas and ``sentinels`` sentinels, all on loopback."""

    directory: Path
    replicas: int = 1
    sentinels: int = 3
    master_name: str = MASTER_NAME
    down_after_ms: int = DOWN_AFTER_MS
    failover_timeout_ms: int = FAILOVER_TIMEOUT_MS
    password: str | None = field(default=None, repr=False)
    """Required by every Redis node (in :attr:`url`)."""
    sentinel_password: str | None = field(default=None, repr=False)
    """Required by every sentinel (``FAXFLEET_REDIS_SENTINEL_PASSWORD``)."""
    tls: TlsFiles | None = None
    """TLS only, everywhere (``?tls=yes`` in :attr:`url`)."""
    nodes: list[RedisNode] = field(default_factory=list, init=False)
    watchers: list[SentinelProcess] = field(default_factory=list, init=False)

    @property
    def quorum(self) -> int:
        return self.sentinels // 2 + 1

    @property
    def url(self) -> str:
        """``FAXFLEET_REDIS_URL`` for this group."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        parts = [f"sentinel://{auth}{HOST}:{s.port}" for s in self.watchers]
        tls = "&tls=yes" if self.tls else ""
        return ";".join(parts) + f"/0?master={self.master_name}{tls}"

    @property
    def access(self) -> RedisAccess:
        """What a client needs beyond :attr:`url` (the sentinels' password, TLS files)."""
        files = self.tls.access() if self.tls else RedisAccess()
        return dataclasses.replace(files, sentinel_password=self.sentinel_password)

    @property
    def env(self) -> dict[str, str]:
        """The settings that point a fleet at this group."""
        return {"FAXFLEET_REDIS_URL": self.url, **self.access.env()}

    # -- starting and stopping -------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> SentinelGroup:
        self.directory = self.directory.resolve()
        self.nodes = [
            RedisNode(
                f"redis-{i}", self.directory / f"redis-{i}", free_port(), self.password, self.tls
            )
            for i in range(1 + self.replicas)
        ]
        self.watchers = [
            SentinelProcess(
                f"sentinel-{i}",
                self.directory / f"sentinel-{i}",
                free_port(),
                password=self.sentinel_password,
                tls=self.tls,
            )
            for i in range(self.sentinels)
        ]
        try:
            master, *replicas = self.nodes
            master.start()
            for node in replicas:
                node.start(replicaof=master.address)
            _until(lambda: all(n.link_up() for n in replicas), timeout, "replicas in sync")
            for watcher in self.watchers:
                watcher.start(self._sentinel_config(watcher, master.address))
            _until(self._sentinels_agree, timeout, "sentinels that know each other")
        except BaseException:
            self.stop()
            raise
        return self

    def _sentinel_config(self, me: SentinelProcess, master: Address) -> str:
        name = self.master_name
        lines = [
            *_listen(me.port, self.tls),
            f"bind {HOST}",
            f"dir {me.directory}",
            f"logfile {me.directory / 'sentinel.log'}",
            "daemonize no",
            f"sentinel myid {me.myid}",
            f"sentinel monitor {name} {master[0]} {master[1]} {self.quorum}",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
        ]
        if self.password:
            lines.append(f"sentinel auth-pass {name} {conf_quote(self.password)}")
        if self.sentinel_password:
            lines.append(f"requirepass {conf_quote(self.sentinel_password)}")
        # Known from the start rather than discovered (hello messages every 2 s, INFO
        # every 10 s): a failover right after start has its quorum and its replica.
        lines += [f"sentinel known-replica {name} {HOST} {n.port}" for n in self.nodes[1:]]
        lines += [
            f"sentinel known-sentinel {name} {HOST} {other.port} {other.myid}"
            for other in self.watchers
            if other is not me
        ]
        return "\n".join(lines) + "\n"

    def _sentinels_agree(self) -> bool:
        for watcher in self.watchers:
            if not watcher.running:
                continue
            try:
                state = _master_state(watcher.client(), self.master_name)
            except redis.RedisError:
                return False
            if "master" not in state.get("flags", "").split(","):
                return False
            if int(state.get("num-other-sentinels", 0)) < self.sentinels - 1:
                return False
            if int(state.get("num-slaves", 0)) < self.replicas:
                return False
        return True

    def stop(self) -> None:
        for watcher in self.watchers:
            with contextlib.suppress(Exception):
                watcher.stop()
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()

    def __enter__(self) -> SentinelGroup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- who is the master -------------------------------------------------------------------

    def master_address(self) -> Address:
        """The master as the first sentinel that answers names it."""
        errors = []
        for watcher in self.watchers:
            if not watcher.running:
                continue
            try:
                host, port = watcher.client().sentinel_get_master_addr_by_name(self.master_name)
                return (str(host), int(port))
            except (redis.RedisError, TypeError) as exc:
                errors.append(f"{watcher.name}: {exc}")
        raise RuntimeError(f"no sentinel names a master: {errors}")

    def addresses_by_sentinel(self) -> list[Address | None]:
        found: list[Address | None] = []
        for watcher in self.watchers:
            try:
                host, port = watcher.client().sentinel_get_master_addr_by_name(self.master_name)
                found.append((str(host), int(port)))
            except (redis.RedisError, TypeError):
                found.append(None)
        return found

    def node(self, address: Address) -> RedisNode:
        for node in self.nodes:
            if node.address == address:
                return node
        raise KeyError(address)

    def master(self) -> RedisNode:
        return self.node(self.master_address())

    def replica_nodes(self) -> list[RedisNode]:
        master = self.master_address()
        return [n for n in self.nodes if n.address != master]

    # -- failure drills ---------------------------------------------------------------------

    def kill_master(self) -> RedisNode:
        """SIGKILL the current master; returns it (to :meth:`rejoin` later)."""
        node = self.master()
        node.kill()
        return node

    def wait_for_promotion(self, old: Address, timeout: float = 30.0) -> Address:
        """Until every running sentinel names a master other than ``old``, and that master
        says it is one (``ROLE``). Returns the new master's address."""

        def promoted() -> Address | None:
            seen = {a for a in self.addresses_by_sentinel() if a is not None}
            if len(seen) != 1 or old in seen:
                return None
            (new,) = seen
            try:
                role = self.node(new).client().execute_command("ROLE")
            except (redis.RedisError, KeyError):
                return None
            return new if role and role[0] in (b"master", "master") else None

        return _until(promoted, timeout, f"a master other than {old[0]}:{old[1]}")

    def rejoin(self, node: RedisNode, timeout: float = 30.0) -> None:
        """Start ``node`` again (its directory and AOF kept) as a replica of the current
        master, and wait until it is in sync. Started as a replica from the first moment,
        so there is never a second master the sentinels would have to demote."""
        node.start(replicaof=self.master_address())
        _until(node.link_up, timeout, f"{node.name} in sync as a replica")


def _master_state(client: redis.Redis, name: str) -> dict[str, str]:
    raw = client.execute_command("SENTINEL", "MASTER", name)
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    return {str(raw[i]): str(raw[i + 1]) for i in range(0, len(raw), 2)}


def _until(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.05)
