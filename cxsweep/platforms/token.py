"""One OAuth token shared by every worker on every machine, kept in Redis.

Refreshing happens under a Redis lock (redis-py's ``Lock``), so a fleet whose token is
about to expire sends one grant request, not one per worker. Whoever waited for the
lock re-reads the cache before asking the server: the holder has usually refreshed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from cxsweep.redisconn import text
from cxsweep.runs import keys

# Refresh this long before the server's expiry, as the contract asks.
REFRESH_MARGIN_SECONDS = 300


@dataclass(frozen=True)
class Token:
    access_token: str
    refresh_at: float

    def fresh(self, now: float | None = None) -> bool:
        return (now or time.time()) < self.refresh_at


def refresh_time(granted_at: float, expires_in: float) -> float:
    # Short-lived tokens (a simulator's, a test's) would otherwise never count as fresh.
    return granted_at + expires_in - min(REFRESH_MARGIN_SECONDS, expires_in / 2)


class TokenCache:
    """A token in Redis under a key hashed from ``identity`` (never stored as it is).

    ``grant`` is called (under the lock) to get a new token from the server; it returns
    ``(access_token, expires_in_seconds)`` and raises on refusal.
    """

    def __init__(
        self,
        client: redis.Redis,
        identity: str,
        grant: Callable[[], tuple[str, float]],
        *,
        lock_timeout: float = 60.0,
    ) -> None:
        digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
        self._redis = client
        self._key = keys.token_cache(digest)
        self._grant = grant
        self._lock = client.lock(
            keys.token_refresh_lock(digest), timeout=lock_timeout, blocking_timeout=lock_timeout
        )
        # This process's copy, so a worker asks Redis only when it is due for refresh
        # (or the server refused it): one round trip less on every request.
        self._local: Token | None = None

    def _read(self) -> Token | None:
        values = self._redis.hmget(self._key, "access_token", "refresh_at")
        access_token, refresh_at = values[0], values[1]
        if not access_token or not refresh_at:
            return None
        return Token(text(access_token), float(refresh_at))

    def get(self) -> str:
        """A fresh token: from the cache, or refreshed by exactly one worker."""
        local = self._local
        if local is not None and local.fresh():
            return local.access_token
        token = self._read()
        if token is not None and token.fresh():
            self._local = token
            return token.access_token
        return self._refresh(stale=token.access_token if token else None)

    def invalidate(self, rejected: str) -> str:
        """The server answered 401 to ``rejected``: get a new one (once for the fleet)."""
        self._local = None
        return self._refresh(stale=rejected, force=True)

    def _refresh(self, stale: str | None, force: bool = False) -> str:
        # redis-py's Lock uses a token per acquisition held in thread-local storage,
        # so one TokenCache can serve the threads of a worker.
        with self._lock:
            current = self._read()
            # Someone refreshed while we waited for the lock: theirs is the fleet's token.
            if (
                current is not None
                and current.fresh()
                and (not force or current.access_token != stale)
            ):
                self._local = current
                return current.access_token
            access_token, expires_in = self._grant()
            now = time.time()
            expires_at = now + float(expires_in)
            pipe = self._redis.pipeline()
            pipe.hset(
                self._key,
                mapping={
                    "access_token": access_token,
                    "refresh_at": refresh_time(now, float(expires_in)),
                },
            )
            pipe.expireat(self._key, int(expires_at) + 1)
            pipe.execute()
            self._local = Token(access_token, refresh_time(now, float(expires_in)))
            return access_token
