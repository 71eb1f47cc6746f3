"""A run's state in Redis: its metadata, counters, the plan, and the markers that make
every step safe to run twice.

Everything a worker needs lives under ``cxsweep:run:{run_id}:*`` (``keys.RunKeys``) so
any worker on any machine can pick up any step. Counters only move inside the same
transaction as the marker that says a step is done, so a redelivered task never counts
twice. The store is written in parts: this module (metadata, counters, pages, the plan,
apply and restore), ``writestate`` (the write permit, chunks, the breaker) and
``freshness`` (the re-reads); the list lock is in ``lock``, the Lua in ``scripts``.
"""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import redis

from cxsweep import jsoncodec
from cxsweep.errors import ListBusy
from cxsweep.phone.numbers import Reason
from cxsweep.redisconn import text
from cxsweep.runs import keys, scripts
from cxsweep.runs.freshness import Freshness
from cxsweep.runs.keys import RUN_INDEX
from cxsweep.runs.lock import ListLock, persistence_problem
from cxsweep.runs.model import (
    ACTIVE,
    ARCHIVE_TTL,
    DATA_TTL,
    FINAL,
    KINDS,
    STILL_PRESENT,
    PlanEntry,
    kind_of,
    new_run_id,
    run_kind,
)
from cxsweep.runs.writestate import WriteState

# The names importers have always taken from here.
__all__ = [
    "ACTIVE",
    "ARCHIVE_TTL",
    "DATA_TTL",
    "FINAL",
    "KINDS",
    "RUN_INDEX",
    "STILL_PRESENT",
    "ListLock",
    "PlanEntry",
    "RunStore",
    "kind_of",
    "new_run_id",
    "overdue_runs",
    "persistence_problem",
    "prepare_run",
    "run_kind",
]


class RunStore(WriteState, Freshness):
    """One run's state; its write and re-read parts are the ``WriteState`` and ``Freshness``
    mixins."""

    def __init__(self, client: redis.Redis, run_id: str) -> None:
        self.redis = client
        self.run_id = run_id
        self.keys = keys.RunKeys(run_id)
        # The two keys read outside the store (signals, reports, benches).
        self.meta_key = self.keys.meta
        self.counts_key = self.keys.counts
        self._write_permit = client.register_script(scripts.WRITE_PERMIT)
        self._mark_done = client.register_script(scripts.MARK_DONE)
        self._note_server_error = client.register_script(scripts.NOTE_SERVER_ERROR)

    # --- metadata -------------------------------------------------------------------

    def create(
        self,
        list_id: str,
        *,
        dry_run: bool,
        options: Mapping[str, Any],
        deadline_seconds: float = 6 * 3600,
    ) -> None:
        now = time.time()
        pipe = self.redis.pipeline()
        pipe.hset(
            self.keys.meta,
            mapping={
                "run_id": self.run_id,
                "list_id": list_id,
                "dry_run": int(dry_run),
                "kind": run_kind(dry_run, options),
                "status": "reading",
                "started_at": now,
                "deadline": now + deadline_seconds,
                "options": json.dumps(dict(options)),
            },
        )
        pipe.expire(self.keys.meta, DATA_TTL)
        pipe.zadd(RUN_INDEX, {self.run_id: now})
        pipe.execute()

    def meta(self) -> dict[str, str]:
        return {text(k): text(v) for k, v in self.redis.hgetall(self.keys.meta).items()}

    def exists(self) -> bool:
        return bool(self.redis.exists(self.keys.meta))

    def set_meta(self, **fields: Any) -> None:
        self.redis.hset(self.keys.meta, mapping={k: v for k, v in fields.items()})

    def options(self) -> dict[str, Any]:
        return _options(self.redis.hget(self.keys.meta, "options"))

    def meta_and_options(self) -> tuple[dict[str, str], dict[str, Any]]:
        """``meta()`` and ``options()`` (a field of it) in one read."""
        meta = self.meta()
        return meta, _options(meta.get("options"))

    def fail(self, message: str) -> None:
        """Remember why the run cannot complete; the first reason is kept."""
        self.redis.hsetnx(self.keys.meta, "error", message[:500])

    # --- counters -------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return {text(k): int(v) for k, v in self.redis.hgetall(self.keys.counts).items()}

    def incr(self, field: str, amount: int = 1) -> None:
        self.redis.hincrby(self.keys.counts, field, amount)

    # --- phase 1: pages and the plan ------------------------------------------------

    def claim(self, step: str, task_id: str) -> bool:
        """Whether this task (or a redelivery of it, same id) may perform ``step``.

        A duplicate sent by a crashed predecessor has another id and is turned away.
        """
        key = self.keys.claim(step)
        if self.redis.set(key, task_id, nx=True, ex=DATA_TTL):
            return True
        return text(self.redis.get(key)) == task_id

    def once(self, step: str) -> bool:
        """True for the first caller only. A step marked before it acts, and a crash in
        between, leaves the run for the watchdog: better than doing the step twice."""
        return bool(self.redis.set(self.keys.once(step), 1, nx=True, ex=DATA_TTL))

    def begun(self) -> bool:
        """Whether a worker has taken the run up (its first step ran)."""
        return bool(self.redis.exists(self.keys.once("begin")))

    def note_read_pause(self) -> None:
        """Reading waited for sanitizing. Kept out of the counters: a run whose reading
        only waits (its sanitizer gone) must still look stalled to the watchdog."""
        self.redis.hincrby(self.keys.meta, "read_pauses", 1)

    def claimed(self, step: str) -> bool:
        return bool(self.redis.exists(self.keys.claim(step)))

    def hand_off(self, step: str, from_task: str, to_task: str) -> bool:
        """Pass this task's claim of ``step`` to the task it sends to carry on with it."""
        key = self.keys.claim(step)
        return bool(self.redis.eval(scripts.HAND_OFF, 1, key, from_task, to_task, DATA_TTL))

    def note_cursor(self, page_no: int, cursor: str) -> int | None:
        """Keep the cursor of ``page_no`` for the task that reads it (cursors are platform
        input and may carry tokens: they stay in Redis, never in task arguments). Returns
        the earlier page announced with the same cursor, if any: the paging loops."""
        digest = hashlib.sha256(cursor.encode()).hexdigest()
        names = (self.keys.cursors, self.keys.seen_cursors)
        held = int(
            self.redis.eval(scripts.NOTE_CURSOR, 2, *names, page_no, cursor, digest, DATA_TTL)
        )
        return None if held < 0 else held

    def cursor(self, page_no: int) -> str | None:
        """The cursor of ``page_no``; None for the first page (the list's own URL)."""
        raw = self.redis.hget(self.keys.cursors, str(page_no))
        return text(raw) if raw is not None else None

    def claim_ids(self, page_no: int, contact_ids: list[str]) -> set[str]:
        """Claim a page's contact ids for it; returns those another page claimed first (a
        contact that offset paging showed twice, as the list shifted under it)."""
        if not contact_ids:
            return set()
        key = self.keys.contact_ids
        repeated = self.redis.eval(scripts.CLAIM_IDS, 1, key, DATA_TTL, page_no, *contact_ids)
        return {text(cid) for cid in cast(list[bytes], repeated)}

    def pages_missing(self, pages_total: int) -> list[int]:
        """Pages among 0..pages_total-1 whose plan was never committed."""
        pipe = self.redis.pipeline(transaction=False)
        for page_no in range(pages_total):
            pipe.exists(self.keys.done("page", page_no))
        return [n for n, found in enumerate(pipe.execute()) if not found]

    def store_page(self, page_no: int, contacts: list[dict[str, Any]]) -> None:
        self.redis.set(self.keys.page(page_no), jsoncodec.dumps(contacts), ex=DATA_TTL)

    def page_committed(self, page_no: int) -> bool:
        return bool(self.redis.exists(self.keys.done("page", page_no)))

    def note_page_read(self, page_no: int, contacts: int) -> None:
        """Count a page read once (a redelivered fetch reads it again)."""
        if self.redis.set(self.keys.page_read(page_no), 1, nx=True, ex=DATA_TTL):
            pipe = self.redis.pipeline(transaction=False)
            pipe.hincrby(self.keys.counts, keys.PAGES_READ, 1)
            pipe.hincrby(self.keys.counts, keys.READ, contacts)
            pipe.execute()

    def load_page(self, page_no: int) -> list[dict[str, Any]] | None:
        raw = self.redis.get(self.keys.page(page_no))
        return None if raw is None else jsoncodec.loads(raw)

    def commit_page(
        self,
        page_no: int,
        updates: Iterable[PlanEntry],
        removes: Iterable[PlanEntry],
        counts: Mapping[str, int],
        archive: list[dict[str, Any]] | None = None,
        numbers: list[tuple[str, int, str]] | None = None,
    ) -> bool:
        """Add one page's plan, counters and archive exactly once; False when already
        committed. ``archive`` holds the records about to change, as read, kept
        compressed (one hash field a page) so that a run can be undone."""
        marker = self.keys.done("page", page_no)
        update_rows = [entry.to_json() for entry in updates]
        remove_rows = [entry.to_json() for entry in removes]
        blob = zlib.compress(jsoncodec.dumps(archive), 6) if archive else None

        def apply(pipe: redis.client.Pipeline) -> bool:
            if pipe.exists(marker):
                return False
            pipe.multi()
            pipe.set(marker, 1, ex=DATA_TTL)
            if update_rows:
                pipe.rpush(self.keys.updates, *update_rows)
                pipe.expire(self.keys.updates, DATA_TTL)
            if remove_rows:
                pipe.rpush(self.keys.removes, *remove_rows)
                pipe.expire(self.keys.removes, DATA_TTL)
            for field, amount in counts.items():
                if amount:
                    pipe.hincrby(self.keys.counts, field, amount)
            if numbers:
                args: list[Any] = [DATA_TTL]
                for e164, position, row in numbers:
                    args += [e164, position, row]
                claims = (self.keys.number_claims, self.keys.duplicates)
                pipe.eval(scripts.CLAIM_NUMBERS, 2, *claims, *args)
            if blob is not None:
                pipe.hset(self.keys.archive, str(page_no), blob)
                pipe.expire(self.keys.archive, ARCHIVE_TTL)
            pipe.hincrby(self.keys.counts, keys.PAGES_SANITIZED, 1)
            pipe.delete(self.keys.page(page_no))
            return True

        # redis-py's stubs type the callable as returning None; value_from_callable says otherwise.
        return bool(self.redis.transaction(apply, marker, value_from_callable=True))  # type: ignore[arg-type]

    def resolve_duplicates(self) -> int:
        """Once the plan is whole: every contact that lost its number's claim is removed
        (reason ``duplicate``) instead of updated or kept. Runs once per run."""
        marker = self.keys.duplicates_done

        def apply(pipe: redis.client.Pipeline) -> int:
            if pipe.exists(marker):
                return 0
            rows = [json.loads(r) for r in pipe.lrange(self.keys.duplicates, 0, -1)]
            # Removed duplicates that were to stay unchanged are archived here (the others
            # are in their page's archive), so that a restore re-creates them too.
            unchanged = [row[3] for row in rows if len(row) > 3 and row[3]]
            pipe.multi()
            pipe.set(marker, 1, ex=DATA_TTL)
            if unchanged:
                blob = zlib.compress(json.dumps(unchanged).encode(), 6)
                pipe.hset(self.keys.archive, str(keys.DUPLICATES_ARCHIVE_PAGE), blob)
                pipe.expire(self.keys.archive, ARCHIVE_TTL)
            for contact_id, category, before, *_ in rows:
                pipe.sadd(self.keys.duplicate_ids, contact_id)
                pipe.rpush(
                    self.keys.removes,
                    PlanEntry(contact_id, before, None, Reason.DUPLICATE).to_json(),
                )
                pipe.hincrby(self.keys.counts, category, -1)
                pipe.hincrby(self.keys.counts, keys.TO_REMOVE, 1)
                filled = sum(1 for v in before.values() if isinstance(v, str) and v.strip())
                pipe.hincrby(self.keys.counts, keys.VALUES_DESTROYED, filled)
                pipe.hincrby(self.keys.counts, keys.reason_counter(Reason.DUPLICATE), 1)
            if rows:
                pipe.expire(self.keys.duplicate_ids, DATA_TTL)
                pipe.expire(self.keys.removes, DATA_TTL)
            return len(rows)

        return int(self.redis.transaction(apply, marker, value_from_callable=True))  # type: ignore[arg-type]

    def duplicates_among(self, contact_ids: list[str]) -> set[str]:
        if not contact_ids:
            return set()
        flags = self.redis.smismember(self.keys.duplicate_ids, contact_ids)
        return {cid for cid, flag in zip(contact_ids, flags, strict=True) if flag}

    def plan_sizes(self) -> tuple[int, int]:
        pipe = self.redis.pipeline()
        pipe.llen(self.keys.updates)
        pipe.llen(self.keys.removes)
        updates, removes = pipe.execute()
        return int(updates), int(removes)

    def archive_pages(self) -> list[int]:
        return sorted(int(text(k)) for k in self.redis.hkeys(self.keys.archive))

    def archive_page(self, page_no: int) -> list[dict[str, Any]]:
        blob = self.redis.hget(self.keys.archive, str(page_no))
        return json.loads(zlib.decompress(blob)) if isinstance(blob, bytes) else []

    def iter_archive(self) -> Iterable[dict[str, Any]]:
        for page_no in self.archive_pages():
            yield from self.archive_page(page_no)

    # --- apply: a reviewed plan, checked against the list as it is now ---------------

    def load_planned(self, entries: Iterable[PlanEntry], batch: int = 1000) -> int:
        count = 0
        key = self.keys.planned
        rows: dict[str, str] = {}
        for entry in entries:
            rows[entry.contact_id] = entry.to_json()
            count += 1
            if len(rows) >= batch:
                self.redis.hset(key, mapping=rows)  # type: ignore[arg-type]
                rows = {}
        if rows:
            self.redis.hset(key, mapping=rows)  # type: ignore[arg-type]
        self.redis.expire(key, DATA_TTL)
        return count

    def planned_among(self, contact_ids: list[str]) -> dict[str, PlanEntry]:
        if not contact_ids:
            return {}
        rows = self.redis.hmget(self.keys.planned, contact_ids)
        found = [(cid, row) for cid, row in zip(contact_ids, rows, strict=True) if row is not None]
        entries = PlanEntry.many_from_json([row for _, row in found])
        return {cid: entry for (cid, _), entry in zip(found, entries, strict=True)}

    def note_stale(self, contact_ids: list[str]) -> None:
        if contact_ids:
            pipe = self.redis.pipeline()
            pipe.rpush(self.keys.stale, *contact_ids)
            pipe.expire(self.keys.stale, DATA_TTL)
            pipe.execute()

    def add_warnings(self, warnings: Iterable[str]) -> None:
        """Warnings the platform gave while the run read it; each kept once."""
        shown = list(warnings)
        if shown:
            pipe = self.redis.pipeline()
            pipe.sadd(self.keys.warnings, *shown)
            pipe.expire(self.keys.warnings, DATA_TTL)
            pipe.execute()

    def warnings(self) -> list[str]:
        return sorted(text(w) for w in cast(set[bytes], self.redis.smembers(self.keys.warnings)))

    def stale_ids(self, limit: int = 20) -> list[str]:
        return [text(x) for x in self.redis.lrange(self.keys.stale, 0, limit - 1)]

    # --- restore ----------------------------------------------------------------------

    def restored_among(self, contact_ids: list[str]) -> set[str]:
        if not contact_ids:
            return set()
        flags = self.redis.smismember(self.keys.restored, contact_ids)
        return {cid for cid, flag in zip(contact_ids, flags, strict=True) if flag}

    def record_restored(self, contact_ids: list[str], kind: str) -> None:
        if contact_ids:
            pipe = self.redis.pipeline()
            pipe.sadd(self.keys.restored, *contact_ids)
            pipe.expire(self.keys.restored, DATA_TTL)
            pipe.hincrby(self.keys.counts, keys.restored_counter(kind), len(contact_ids))
            pipe.execute()

    def plan_slice(self, kind: str, start: int, stop: int) -> list[PlanEntry]:
        key = self.keys.updates if kind == "update" else self.keys.removes
        return PlanEntry.many_from_json(self.redis.lrange(key, start, stop - 1))

    def iter_plan(self, kind: str, batch: int = 1000) -> Iterable[PlanEntry]:
        key = self.keys.updates if kind == "update" else self.keys.removes
        start = 0
        while True:
            rows = self.redis.lrange(key, start, start + batch - 1)
            if not rows:
                return
            yield from PlanEntry.many_from_json(rows)
            start += batch


def _options(raw: bytes | str | None) -> dict[str, Any]:
    """A run's options, stored as JSON in its metadata (none: {})."""
    return json.loads(raw) if raw else {}


def prepare_run(
    client: redis.Redis,
    list_id: str,
    *,
    dry_run: bool,
    options: Mapping[str, Any] | None = None,
    deadline_seconds: float = 6 * 3600,
) -> str:
    """Take the list's lock and store a new run's metadata; returns the run id.

    Raises ``ListBusy`` naming the run that holds the list.
    """
    run_id = new_run_id()
    lock = ListLock(client, list_id)
    if not lock.acquire(run_id):
        raise ListBusy(f"list {list_id} is being swept by run {lock.holder()}: not starting")
    RunStore(client, run_id).create(
        list_id, dry_run=dry_run, options=options or {}, deadline_seconds=deadline_seconds
    )
    return run_id


def overdue_runs(
    client: redis.Redis,
    *,
    stall_seconds: float,
    now: float | None = None,
    awaiting_redelivery: Callable[[str], bool] = lambda run_id: False,
) -> list[tuple[RunStore, str]]:
    """Active runs past their deadline, or whose counters have not moved for
    ``stall_seconds`` (a chord that lost a member to a Redis restart, a lost callback),
    with why. A run for which ``awaiting_redelivery`` holds (its messages wait for the
    broker to deliver them again), or one of whose write tasks was permitted a request
    within ``stall_seconds``, is not stalled: its stall is counted from the last time
    they were seen. Every call notes each active run's progress."""
    now = time.time() if now is None else now
    found = []
    for raw in cast(list[bytes], client.zrangebyscore(RUN_INDEX, now - DATA_TTL, now)):
        store = RunStore(client, text(raw))
        meta = store.meta()
        if meta.get("status") not in ACTIVE:
            continue
        if float(meta.get("deadline") or now) < now:
            found.append((store, "the run passed its deadline without finishing"))
            continue
        progress = str(sum(store.counts().values()))
        if progress != meta.get("progress"):
            store.set_meta(progress=progress, progress_at=now)
        elif now - float(meta.get("progress_at") or now) > stall_seconds:
            # A write task's counters move when it ends; until then, the permit it takes
            # before each request (throttled, a task of 100 removals may take minutes)
            # says it goes on.
            if awaiting_redelivery(store.run_id) or store.writers_active(stall_seconds, now):
                store.set_meta(progress_at=now)
                continue
            minutes = stall_seconds / 60
            found.append((store, f"the run made no progress for {minutes:.0f} minutes"))
    return found
