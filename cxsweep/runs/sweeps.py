"""A scheduled sweep's state in Redis: which lists wait, which runs it started and
which lists it skipped, all under ``cxsweep:sweep:{sweep_id}`` (``keys.SweepKeys``).

``meta`` (status, limits, counts), ``pending`` (list ids, in order), ``active`` (run
ids started and not yet final), ``runs`` (list id -> run id) and ``skipped`` (list id
-> why it was not run). The tasks that drive a sweep are in ``tasks/schedule.py``.
"""

from __future__ import annotations

import time

import redis

from cxsweep.redisconn import text
from cxsweep.runs.keys import SWEEP_INDEX, SweepKeys
from cxsweep.runs.model import DATA_TTL


class SweepStore:
    def __init__(self, client: redis.Redis, sweep_id: str) -> None:
        self.redis = client
        self.sweep_id = sweep_id
        self.keys = keys = SweepKeys(sweep_id)
        self.meta_key = keys.meta
        self.pending_key = keys.pending
        self.active_key = keys.active
        self.runs_key = keys.runs
        self.skipped_key = keys.skipped
        self.lock_key = keys.advance_lock

    def create(
        self, list_ids: list[str], *, max_runs: int, poll_seconds: float, dry_run: bool
    ) -> None:
        now = time.time()
        pipe = self.redis.pipeline()
        pipe.hset(
            self.meta_key,
            mapping={
                "sweep_id": self.sweep_id,
                "status": "running",
                "started_at": now,
                "updated_at": now,
                "max_concurrent_runs": max_runs,
                "poll_seconds": poll_seconds,
                "dry_run": int(dry_run),
                "queued": len(list_ids),
            },
        )
        if list_ids:
            pipe.rpush(self.pending_key, *list_ids)
        for key in (self.meta_key, self.pending_key):
            pipe.expire(key, DATA_TTL)
        pipe.zadd(SWEEP_INDEX, {self.sweep_id: now})
        pipe.execute()

    def meta(self) -> dict[str, str]:
        return {text(k): text(v) for k, v in self.redis.hgetall(self.meta_key).items()}

    def set_meta(self, **fields: str | int | float) -> None:
        # Built inline so that mypy checks it against redis-py's (invariant) mapping type.
        self.redis.hset(self.meta_key, mapping={k: v for k, v in fields.items()})

    def count(self, field: str, amount: int = 1) -> None:
        if amount:
            self.redis.hincrby(self.meta_key, field, amount)

    def pending(self) -> list[str]:
        return [text(v) for v in self.redis.lrange(self.pending_key, 0, -1)]

    def next_pending(self) -> str | None:
        raw = self.redis.lindex(self.pending_key, 0)
        return None if raw is None else text(raw)

    def drop_pending(self, list_id: str) -> None:
        self.redis.lrem(self.pending_key, 1, list_id)

    def started(self, list_id: str, run_id: str) -> None:
        pipe = self.redis.pipeline()
        pipe.lrem(self.pending_key, 1, list_id)
        pipe.sadd(self.active_key, run_id)
        pipe.hset(self.runs_key, list_id, run_id)
        pipe.hincrby(self.meta_key, "started", 1)
        pipe.expire(self.active_key, DATA_TTL)
        pipe.expire(self.runs_key, DATA_TTL)
        pipe.execute()

    def active(self) -> list[str]:
        return sorted(text(v) for v in self.redis.smembers(self.active_key))

    def runs(self) -> dict[str, str]:
        return {text(k): text(v) for k, v in self.redis.hgetall(self.runs_key).items()}

    def skip(self, list_id: str, why: str) -> None:
        """Remember a list the sweep dropped, and why: the sweep's report lists it."""
        pipe = self.redis.pipeline()
        pipe.hset(self.skipped_key, list_id, why[:300])
        pipe.expire(self.skipped_key, DATA_TTL)
        pipe.execute()

    def skipped(self) -> dict[str, str]:
        return {text(k): text(v) for k, v in self.redis.hgetall(self.skipped_key).items()}
