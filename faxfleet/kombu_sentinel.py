"""kombu's Redis Sentinel transport, made to ride out a failover (docs/reliability.md).

Importing this module makes it the transport of every ``sentinel://`` broker URL in the
process, including the alternates kombu switches to when a connection fails (an
explicit ``broker_transport`` would be dropped at the first switch). Two changes to
kombu 5.7's ``SentinelTransport``:

* **Its connection details are kept once the connection is closed.** When a worker
  loses the broker with tasks in progress (``acks_late``), Celery closes the connection
  twice: the first close detaches the transport (``client = None``) and leaves the
  channel half closed; the second one hands the unacknowledged messages back, which
  builds a Redis pool from ``client``, and the worker died with ``AttributeError:
  'NoneType' object has no attribute 'hostname'`` in ``SentinelChannel._connparams``.
* **Commands retry through the failover.** Publishing, acknowledging and handing
  messages back retry connection errors for ``failover_seconds`` (a transport option),
  asking the sentinels for the master again, as :func:`faxfleet.redis_conn.connect`
  does. So the messages a lost worker held go back to their queue as soon as a replica
  is promoted (not after the visibility timeout), and a worker reconnects at its first
  attempt after the promotion. The blocking ``BRPOP`` connection is left as kombu has
  it: a lost one makes the worker reconnect.
* **Connections reconnect to the current master** (:class:`FollowingConnection`, or
  :class:`FollowingSSLConnection` over TLS), not to the address they had before the
  failover.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.redis import SentinelChannel as _KombuSentinelChannel
from kombu.transport.redis import SentinelTransport as _KombuSentinelTransport

from faxfleet.redis_conn import FailoverRetry, FollowingConnection, FollowingSSLConnection

DEFAULT_FAILOVER_SECONDS = 30.0


class SentinelChannel(_KombuSentinelChannel):
    connection_class = FollowingConnection
    connection_class_ssl = FollowingSSLConnection
    from_transport_options = (
        *_KombuSentinelChannel.from_transport_options,
        "failover_seconds",
    )
    failover_seconds = DEFAULT_FAILOVER_SECONDS

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        params: dict[str, Any] = super()._connparams(asynchronous)
        if not asynchronous:
            params["retry"] = FailoverRetry(float(self.failover_seconds))
        return params


class SentinelTransport(_KombuSentinelTransport):
    Channel = SentinelChannel

    @property
    def client(self) -> Any:
        return self._client

    @client.setter
    def client(self, value: Any) -> None:
        if value is not None or not hasattr(self, "_client"):
            self._client = value


TRANSPORT_ALIASES["sentinel"] = f"{__name__}:SentinelTransport"
