"""A run's writes, as part of its store: the permit checked before every write request,
the chunks' done markers, removals and failures, and the breaker on server errors."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import redis
from redis.client import Pipeline
from redis.commands.core import Script

from cxsweep.redisconn import text
from cxsweep.runs import keys, scripts
from cxsweep.runs.lock import lock_ttl
from cxsweep.runs.model import DATA_TTL


class WriteState:
    """``RunStore``'s write state (a mixin: the store holds the client and the keys)."""

    redis: redis.Redis
    run_id: str
    keys: keys.RunKeys
    #: ``scripts.WRITE_PERMIT``, registered by the store
    _write_permit: Script

    if TYPE_CHECKING:

        def set_meta(self, **fields: Any) -> None: ...

    def chunk_done(self, kind: str, index: int) -> bool:
        return bool(self.redis.exists(self.keys.done(kind, index)))

    def commit_update_chunk(self, index: int, updated: int) -> bool:
        """Count a PATCHed chunk once, however often its task ran."""
        marker = self.keys.done("update", index)

        def apply(pipe: Pipeline) -> bool:
            if pipe.exists(marker):
                return False
            pipe.multi()
            pipe.set(marker, 1, ex=DATA_TTL)
            pipe.hincrby(self.keys.counts, keys.UPDATED, updated)
            pipe.hincrby(self.keys.counts, keys.CHUNKS_DONE, 1)
            return True

        # redis-py's stubs type the callable as returning None; value_from_callable says otherwise.
        return bool(self.redis.transaction(apply, marker, value_from_callable=True))  # type: ignore[arg-type]

    def permit_write(self, list_id: str, writer: str) -> str:
        """Right before a write request: "" when it may be sent, else why not (the run
        lost its list, was halted or failed). One round trip that also renews the lock
        and notes ``writer`` (the task's token) as writing until ``writer_done``."""
        return self._permit(self.redis.pipeline(transaction=False), list_id, writer)

    def _permit(self, pipe: Pipeline, list_id: str, writer: str) -> str:
        ttl_ms = int(lock_ttl() * 1000)
        # Sent by its SHA (redis-py loads it once): this runs before every write request.
        self._write_permit(
            keys=[keys.list_lock(list_id), self.keys.meta, self.keys.writers],
            args=[self.run_id, ttl_ms, list_id, writer, time.time()],
            client=pipe,
        )
        return text(pipe.execute()[-1])

    def writer_done(self, writer: str) -> None:
        """The task's outcomes are recorded: nothing of it is in flight any more."""
        self.redis.zrem(self.keys.writers, writer)

    def writers_active(self, within: float) -> int:
        """Tasks permitted a write in the last ``within`` seconds and not done yet."""
        return int(self.redis.zcount(self.keys.writers, time.time() - within, "+inf"))

    def record_removed(
        self, removed: list[str], already_gone: list[str], list_id: str, writer: str
    ) -> str:
        """Count removals (a set: a removal repeated by a redelivered task counts once),
        end the run's streak of server errors, and tell whether the next request may go
        (``permit_write``): all in one round trip, as it happens after every removal."""
        pipe = self.redis.pipeline(transaction=False)
        if removed or already_gone:
            pipe.sadd(self.keys.removed, *removed, *already_gone)
            pipe.expire(self.keys.removed, DATA_TTL)
        if already_gone:
            pipe.sadd(self.keys.already_gone, *already_gone)
            pipe.expire(self.keys.already_gone, DATA_TTL)
        pipe.set(self.keys.server_error_streak, 0, ex=DATA_TTL)
        return self._permit(pipe, list_id, writer)

    def removed_ids_among(self, contact_ids: list[str]) -> set[str]:
        if not contact_ids:
            return set()
        flags = self.redis.smismember(self.keys.removed, contact_ids)
        return {cid for cid, flag in zip(contact_ids, flags, strict=True) if flag}

    def record_failures(self, failures: Mapping[str, str]) -> None:
        if failures:
            pipe = self.redis.pipeline()
            pipe.hset(self.keys.failures, mapping={k: v for k, v in failures.items()})
            pipe.expire(self.keys.failures, DATA_TTL)
            pipe.execute()

    def failure_count(self) -> int:
        return int(self.redis.hlen(self.keys.failures))

    def failures(self) -> dict[str, str]:
        return {text(k): text(v) for k, v in self.redis.hgetall(self.keys.failures).items()}

    def removed_count(self) -> int:
        return int(self.redis.scard(self.keys.removed))

    def mark_chunk_done(self, kind: str, index: int) -> None:
        """Mark a chunk written; counted once, however often its task ran."""
        marker = self.keys.done(kind, index)
        self.redis.eval(scripts.MARK_DONE, 2, marker, self.keys.counts, DATA_TTL)

    # --- the breaker ----------------------------------------------------------------

    def halted(self) -> bool:
        """Whether writes must stop: the breaker tripped, or an operator cancelled."""
        return any(v is not None for v in self.redis.hmget(self.keys.meta, "halted", "cancelled"))

    def cancel(self, message: str) -> bool:
        """Ask the run to stop: no write starts after this (``halted``); the writes in
        flight finish. False when it was cancelled already."""
        return bool(self.redis.hsetnx(self.keys.meta, "cancelled", message[:500]))

    def note_write_outcome(self, server_error: bool, threshold: int) -> bool:
        """Track consecutive 5xx answers to this run's writes; True once it trips."""
        key = self.keys.server_error_streak
        if not server_error:
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(key, 0, ex=DATA_TTL)
            pipe.hget(self.keys.meta, "halted")
            return pipe.execute()[-1] is not None
        streak = int(self.redis.incr(key))
        self.redis.expire(key, DATA_TTL)
        if streak >= threshold:
            self.redis.hsetnx(
                self.keys.meta,
                "halted",
                f"{streak} consecutive server errors on writes: halted for manual review",
            )
            return True
        return False

    # --- what the writes leave for the run's end ---------------------------------------

    def keep_write_results(self, results: list[Any]) -> None:
        """The write chord's unsuccessful results, for the run's end after the confirm."""
        self.set_meta(write_results=json.dumps(results), writes_done_at=time.time())

    def write_results(self) -> list[Any]:
        raw = self.redis.hget(self.keys.meta, "write_results")
        return json.loads(raw) if raw else []

    def failures_sample(self, limit: int = 20) -> dict[str, str]:
        """Some failed contacts and why, for the audit line (the hash may be large)."""
        _, found = self.redis.hscan(self.keys.failures, 0, count=limit)
        return dict(sorted((text(k), text(v)) for k, v in cast(dict, found).items())[:limit])
