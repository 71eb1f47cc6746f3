"""A run's writes, as part of its store: the permit checked before every write request,
the chunks' done markers, removals and failures, and the breaker on server errors."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import redis
from redis.client import Pipeline
from redis.commands.core import Script

from cxsweep.redisconn import text
from cxsweep.runs import keys
from cxsweep.runs.lock import lock_ttl
from cxsweep.runs.model import DATA_TTL, ChunkTally

# The run's streak of server errors on writes: a field of its meta, so that the permit
# read before every write request reads it with the rest (``scripts.WRITE_PERMIT`` names
# it too).
SERVER_ERROR_STREAK = "consecutive_5xx"


class WriteState:
    """``RunStore``'s write state (a mixin: the store holds the client and the keys)."""

    redis: redis.Redis
    run_id: str
    keys: keys.RunKeys
    #: ``scripts.WRITE_PERMIT``, ``MARK_DONE`` and ``NOTE_SERVER_ERROR``, registered by
    #: the store
    _write_permit: Script
    _mark_done: Script
    _note_server_error: Script

    if TYPE_CHECKING:

        def set_meta(self, **fields: Any) -> None: ...

    def chunk_done(self, kind: str, index: int) -> bool:
        return bool(self.redis.exists(self.keys.done(kind, index)))

    def permit_write(
        self, list_id: str, writer: str, *, answered: bool = False, renew: bool = True
    ) -> str:
        """Right before a write request: "" when it may be sent, else why not (the run
        lost its list, was halted or failed). One round trip that notes ``writer`` (the
        task's token) as writing until ``writer_done``, ends the run's streak of server
        errors when ``answered`` (the writer's previous request got an answer that was not
        one) and renews the list's lock when ``renew``."""
        ttl_ms = int(lock_ttl() * 1000) if renew else 0
        # Sent by its SHA (redis-py loads it once): this runs before every write request.
        why = self._write_permit(
            keys=[keys.list_lock(list_id), self.keys.meta, self.keys.writers],
            args=[self.run_id, ttl_ms, list_id, writer, time.time(), int(answered)],
        )
        return text(why)

    def writer_done(self, writer: str, *, answered: bool = False) -> None:
        """The task's outcomes are recorded: nothing of it is in flight any more. With
        ``answered`` (its last request got an answer that was not a server error) the
        run's streak of server errors ends, in the same round trip."""
        if not answered:
            self.redis.zrem(self.keys.writers, writer)
            return
        pipe = self.redis.pipeline(transaction=False)
        pipe.hdel(self.keys.meta, SERVER_ERROR_STREAK)
        pipe.zrem(self.keys.writers, writer)
        pipe.execute()

    def writers_active(self, within: float, now: float | None = None) -> int:
        """Tasks permitted a write in the last ``within`` seconds and not done yet."""
        since = (time.time() if now is None else now) - within
        return int(self.redis.zcount(self.keys.writers, since, "+inf"))

    def record_removed(
        self,
        removed: list[str],
        already_gone: list[str],
        writer: str,
        *,
        answered: bool,
        counts: Mapping[str, int] | None = None,
    ) -> None:
        """A removal task's removals, once it stops sending (done, stopped or retrying):
        counted as a set (a removal repeated by a redelivered task counts once), with
        what else its requests met (``counts``, added to the run's counters), the run's
        streak of server errors ended when its last request was ``answered``, and the
        writer noted done (after its removals: whoever fences the run waits for that).
        One round trip a task, not one a removal: the permit before each request is the
        only per-request command."""
        pipe = self.redis.pipeline(transaction=False)
        for field, amount in (counts or {}).items():
            if amount:
                pipe.hincrby(self.keys.counts, field, amount)
        if removed or already_gone:
            pipe.sadd(self.keys.removed, *removed, *already_gone)
            pipe.expire(self.keys.removed, DATA_TTL)
        if already_gone:
            pipe.sadd(self.keys.already_gone, *already_gone)
            pipe.expire(self.keys.already_gone, DATA_TTL)
        if answered:
            pipe.hdel(self.keys.meta, SERVER_ERROR_STREAK)
        pipe.zrem(self.keys.writers, writer)
        pipe.execute()

    def task_sizes(self) -> tuple[int | None, int | None]:
        """The run's contacts per removal task and per update task (None: planned before
        it was stored; an update size, before the update tasks were sized too)."""
        raw = self.redis.hmget(self.keys.meta, ["removals_per_task", "updates_per_task"])
        return int(raw[0]) if raw[0] else None, int(raw[1]) if raw[1] else None

    def removal_progress(self) -> tuple[int, int | None, int]:
        """(removals planned, contacts per removal task or None, removal chunks done), in
        one round trip: every removal task asks as it ends (``removals_all_done``)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.llen(self.keys.removes)
        pipe.hget(self.keys.meta, "removals_per_task")
        pipe.hget(self.keys.counts, keys.REMOVE_CHUNKS_DONE)
        removes, per_task, done = pipe.execute()
        return int(removes), int(per_task) if per_task else None, int(done or 0)

    def fix_task_sizes(self, removals: int, updates: int) -> tuple[int, int | None]:
        """Store the run's task sizes unless they are stored; the ones that hold."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hsetnx(self.keys.meta, "removals_per_task", removals)
        pipe.hsetnx(self.keys.meta, "updates_per_task", updates)
        pipe.hmget(self.keys.meta, ["removals_per_task", "updates_per_task"])
        held = pipe.execute()[-1]
        return int(held[0]), int(held[1]) if held[1] else None

    def streamed_count(self) -> int:
        """Write chunks the verify pass sent (``note_streamed``)."""
        return int(self.redis.scard(self.keys.streamed))

    def note_streamed(self, chunks: list[tuple[str, int]]) -> None:
        """Note chunks the verify pass sent: the waves after it skip them."""
        if chunks:
            pipe = self.redis.pipeline(transaction=False)
            pipe.sadd(self.keys.streamed, *(keys.chunk_tag(k, i) for k, i in chunks))
            pipe.expire(self.keys.streamed, DATA_TTL)
            pipe.execute()

    def streamed_among(self, chunks: list[tuple[str, int]]) -> set[tuple[str, int]]:
        """Those of ``chunks`` the verify pass sent."""
        if not chunks:
            return set()
        tags = [keys.chunk_tag(k, i) for k, i in chunks]
        flags = self.redis.smismember(self.keys.streamed, tags)
        return {chunk for chunk, flag in zip(chunks, flags, strict=True) if flag}

    def count_updated(self, amount: int) -> None:
        """Contacts a chunk updated before the run stopped it (it is never marked done)."""
        if amount:
            self.redis.hincrby(self.keys.counts, keys.UPDATED, amount)

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

    def mark_chunk_done(
        self, kind: str, index: int, *, updated: int = 0, tally: ChunkTally | None = None
    ) -> bool:
        """Mark a chunk written, with the contacts it ``updated`` and its ``tally`` (the
        API requests it took, added to the run's counters when it is recorded:
        ``settle_write_tallies``); counted once, however often its task ran. False when
        another attempt marked it first (its tally is then the caller's to count)."""
        marker = self.keys.done(kind, index)
        found = self._mark_done(
            keys=[marker, self.keys.counts, self.keys.write_tallies],
            args=[
                DATA_TTL,
                updated,
                json.dumps(tally, separators=(",", ":")) if tally else "",
                keys.REMOVE_CHUNKS_DONE if kind == "remove" else "",
            ],
        )
        return bool(found)

    def settle_write_tallies(self) -> None:
        """Add the tallies the write chunks kept with their done markers to the run's
        counters and latency histogram: once, at the run's record (a redelivered record
        finds none left). The chunks' own counters are then as exact as the markers that
        say each chunk was written once."""
        key = self.keys.write_tallies

        def apply(pipe: Pipeline) -> None:
            rows = pipe.lrange(key, 0, -1)
            if not rows:
                return
            counts: Counter[str] = Counter()
            latency: Counter[str] = Counter()
            for raw in rows:
                tally = json.loads(raw)
                counts.update(tally.get("counts", {}))
                latency.update(tally.get("latency", {}))
            pipe.multi()
            for field, amount in counts.items():
                pipe.hincrby(self.keys.counts, field, amount)
            for field, amount in latency.items():
                pipe.hincrby(self.keys.api_latency, field, amount)
            if latency:
                pipe.expire(self.keys.api_latency, DATA_TTL)
            pipe.delete(key)

        self.redis.transaction(apply, key)

    # --- the breaker ----------------------------------------------------------------

    def halted(self) -> bool:
        """Whether writes must stop: the breaker tripped, or an operator cancelled."""
        return any(v is not None for v in self.redis.hmget(self.keys.meta, "halted", "cancelled"))

    def cancel(self, message: str) -> bool:
        """Ask the run to stop: no write starts after this (``halted``); the writes in
        flight finish. False when it was cancelled already."""
        return bool(self.redis.hsetnx(self.keys.meta, "cancelled", message[:500]))

    def note_write_outcome(self, server_error: bool, threshold: int) -> bool:
        """Track consecutive 5xx answers to this run's writes; True once it trips (any
        other answer ends the streak; ``permit_write`` does so too, for the removals)."""
        if not server_error:
            # A no-op (nothing written) when there is no streak, the usual case.
            self.redis.hdel(self.keys.meta, SERVER_ERROR_STREAK)
            return False
        streak = self._note_server_error(
            keys=[self.keys.meta], args=[SERVER_ERROR_STREAK, threshold]
        )
        return int(streak) >= threshold

    # --- what the writes leave for the run's end ---------------------------------------

    def keep_write_results(self, results: list[Any]) -> None:
        """The write chord's unsuccessful results, for the run's end after the confirm."""
        self.set_meta(write_results=json.dumps(results), writes_done_at=time.time())

    def keep_wave_results(self, start: int, results: list[Any]) -> None:
        """The unsuccessful results of the wave of writes that began at chunk ``start``,
        for the end of the writes (all it reads of them; the counts are the run's). One
        field a wave: a redelivered callback writes it again, the same."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self.keys.wave_results, str(start), json.dumps(results))
        pipe.expire(self.keys.wave_results, DATA_TTL)
        pipe.execute()

    def wave_results(self) -> list[Any]:
        """Every wave's unsuccessful results, wave after wave."""
        waves = self.redis.hgetall(self.keys.wave_results)
        ordered = sorted((int(start), raw) for start, raw in waves.items())
        return [result for _, raw in ordered for result in json.loads(raw)]

    def keep_confirm_results(self, results: list[Any]) -> None:
        """The unsuccessful results of the re-read after the removals: it has ended."""
        self.set_meta(confirm_results=json.dumps(results))

    def confirm_results(self) -> list[Any] | None:
        """What ``keep_confirm_results`` kept; None while the re-read has not ended."""
        raw = self.redis.hget(self.keys.meta, "confirm_results")
        return json.loads(raw) if raw is not None else None

    def writes_ended(self) -> bool:
        """Whether ``keep_write_results`` kept the writes' results: they all ended."""
        return bool(self.redis.hexists(self.keys.meta, "write_results"))

    def write_results(self) -> list[Any]:
        raw = self.redis.hget(self.keys.meta, "write_results")
        return json.loads(raw) if raw else []

    def failures_sample(self, limit: int = 20) -> dict[str, str]:
        """Some failed contacts and why, for the audit line (the hash may be large)."""
        _, found = self.redis.hscan(self.keys.failures, 0, count=limit)
        return dict(sorted((text(k), text(v)) for k, v in cast(dict, found).items())[:limit])
