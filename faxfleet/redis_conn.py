"""One way to open Redis connections, so every service parses the URL the same way."""

from __future__ import annotations

import redis

from faxfleet.settings import Settings, get_settings


def connect(settings: Settings | None = None) -> redis.Redis:
    """A client returning ``bytes`` (blobs and JSON alike; callers decode)."""
    s = settings or get_settings()
    return redis.Redis.from_url(s.redis_url, socket_timeout=10, health_check_interval=30)
