"""A run's state in Redis: its metadata, counters, the plan, and the markers that make
every step safe to run twice.

Everything a worker needs lives under ``cxsweep:run:{run_id}:*`` so any worker on any
machine can pick up any step. Counters only move inside the same transaction as the
marker that says a step is done, so a redelivered task never counts twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import redis
from redis.lock import Lock

from cxsweep.errors import ListBusy
from cxsweep.phone.numbers import Reason
from cxsweep.redisconn import text

# Bulky keys (pages, the plan) expire on their own; a week covers any review of a dry run.
DATA_TTL = 7 * 24 * 3600
# What a run changed must outlive the run long enough to be restored.
ARCHIVE_TTL = 30 * 24 * 3600
RUN_INDEX = "cxsweep:runs"
# Why a contact counted as removed is a failure after all.
STILL_PRESENT = "still present after DELETE"

ACTIVE = ("reading", "writing")
FINAL = ("completed", "halted", "failed", "cancelled")


# What a run does, stored in its metadata when it is created: the progress, the summary,
# the report and `cxsweep status` word each kind for what it does.
KINDS = ("sweep", "dry_run", "apply", "restore")


def run_kind(dry_run: bool, options: Mapping[str, Any]) -> str:
    if options.get("restore_of"):
        return "restore"
    if options.get("apply"):
        return "apply"
    return "dry_run" if dry_run else "sweep"


def kind_of(meta: Mapping[str, str]) -> str:
    """The kind stored in a run's metadata (derived for runs stored before it was)."""
    kind = meta.get("kind", "")
    if kind in KINDS:
        return kind
    return run_kind(meta.get("dry_run") == "1", json.loads(meta.get("options") or "{}"))


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)


@dataclass(frozen=True)
class PlanEntry:
    """One intended write: the phone fields as read, and the new values of those that
    change (an update; "" blanks a bad secondary number) or None (a removal)."""

    contact_id: str
    before: dict[str, str | None]
    after: dict[str, str] | None
    reason: str | None
    #: the whole record, only for backends that rewrite whole records
    record: dict[str, Any] | None = None

    def to_json(self) -> str:
        row: list[Any] = [self.contact_id, self.before, self.after, self.reason]
        if self.record is not None:
            row.append(self.record)
        return json.dumps(row, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> PlanEntry:
        return cls(*json.loads(raw))


# One page's kept numbers claim their E.164 in the run's hash; the lowest list position
# wins. Whoever loses (this row, or the holder it displaces) is pushed to the run's
# duplicates. KEYS: claims hash, duplicates list. ARGV: ttl, then (e164, position, row)
# triples where row is the JSON the duplicates list keeps.
_CLAIM_NUMBERS = """
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV, 3 do
  local e164, pos, row = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local held = redis.call('HGET', KEYS[1], e164)
  if not held then
    redis.call('HSET', KEYS[1], e164, pos .. '|' .. row)
  else
    local sep = string.find(held, '|', 1, true)
    local held_pos = tonumber(string.sub(held, 1, sep - 1))
    if pos < held_pos then
      redis.call('HSET', KEYS[1], e164, pos .. '|' .. row)
      redis.call('RPUSH', KEYS[2], string.sub(held, sep + 1))
    elseif pos > held_pos then
      redis.call('RPUSH', KEYS[2], row)
    end
  end
end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
return 1
"""

# Set a chunk's done marker and count the chunk, once. KEYS: marker, counts. ARGV: ttl.
_MARK_DONE = """
if redis.call('SET', KEYS[1], 1, 'NX', 'EX', tonumber(ARGV[1])) then
  redis.call('HINCRBY', KEYS[2], 'chunks_done', 1)
end
return 1
"""

# Pass a step's claim from one task to the task that continues it (back-pressure sends the
# same page again under a new id). KEYS: the claim. ARGV: from id, to id, ttl.
_HAND_OFF = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
"""

# Keep the cursor of page n, unless the platform announced it before for another page
# (its paging loops). KEYS: cursors hash, seen-cursors hash. ARGV: page, cursor, digest,
# ttl. Returns -1, or the page that had this cursor first.
_NOTE_CURSOR = """
local held = redis.call('HGET', KEYS[2], ARGV[3])
if held and held ~= ARGV[1] then return tonumber(held) end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
return -1
"""

# Each contact id belongs to the first page that claims it; a redelivered page finds its
# own ids. KEYS: ids hash. ARGV: ttl, page, ids... Returns the ids another page holds.
_CLAIM_IDS = """
local page, repeated = ARGV[2], {}
for i = 3, #ARGV do
  redis.call('HSETNX', KEYS[1], ARGV[i], page)
  if redis.call('HGET', KEYS[1], ARGV[i]) ~= page then repeated[#repeated + 1] = ARGV[i] end
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return repeated
"""

# Whether a run may send one more write request, read right before it is sent: the run
# must still hold its list (its lock renewed as it goes), not be halted by the breaker,
# and not be failed (by the watchdog, say). A run found without its lock is failed here,
# so every other task of it stops at its next check. A permitted task is noted in the
# run's writers (a sorted set by time of its last permit) until its outcomes are
# recorded: whoever fails the run waits for those before writing its audit line.
# KEYS: list lock, run meta, writers. ARGV: run id, lock ttl (ms), list id, writer
# token, now. Returns "" or why not.
_WRITE_PERMIT = """
local halted = redis.call('HGET', KEYS[2], 'halted')
if halted then return 'halted: ' .. halted end
local cancelled = redis.call('HGET', KEYS[2], 'cancelled')
if cancelled then return 'cancelled: ' .. cancelled end
local failed = redis.call('HGET', KEYS[2], 'error')
if failed then return 'failed: ' .. failed end
local holder = redis.call('GET', KEYS[1])
if holder ~= ARGV[1] then
  local who = holder and ('run ' .. holder) or 'nobody (it expired)'
  local why = 'lost the lock of list ' .. ARGV[3] .. ' to ' .. who .. ': stopped writing'
  redis.call('HSETNX', KEYS[2], 'error', why)
  return 'failed: ' .. redis.call('HGET', KEYS[2], 'error')
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
redis.call('ZADD', KEYS[3], tonumber(ARGV[5]), ARGV[4])
redis.call('EXPIRE', KEYS[3], 86400)
return ''
"""


# The list lock must outlive any message of the run the broker may still deliver: a dead
# worker's task comes back after the visibility timeout, and may then wait out a retry
# countdown (at most 300 s, tasks/_deps.py) and run up to its hard time limit (660 s).
LOCK_MARGIN = 300 + 660 + 240


def lock_ttl() -> float:
    from cxsweep.settings import get_settings

    return float(get_settings().visibility_timeout + LOCK_MARGIN)


def lock_key(list_id: str) -> str:
    return f"cxsweep:list-lock:{list_id}"


# The freshness index: a row a planned write, id -> [before, after, reason] with ``after``
# shrunk to {} (an update) or null (a removal): what the re-read compares and un-counts.
# A later row for the same id (a duplicate's removal, indexed after the updates) wins.
# KEYS: plan list, index hash. ARGV: ttl, first, last.
_INDEX_PLAN = """
for _, raw in ipairs(redis.call('LRANGE', KEYS[1], ARGV[2], ARGV[3])) do
  local row = cjson.decode(raw)
  local after = row[3]
  if after ~= cjson.null then after = {} end
  redis.call('HSET', KEYS[2], row[1], cjson.encode({row[2], after, row[4]}))
end
redis.call('EXPIRE', KEYS[2], ARGV[1])
return 1
"""

# Each planned contact is judged once: its index row becomes "fresh", "stale" (changed on
# the platform since our read) or "gone" (absent from the re-read list). A contact found
# stale or gone leaves the plan's counts for ``stale``, so it is neither written nor a
# failure. With ARGV[3] = "1" the caller is a write: the re-read must have ended (else it
# gets an error, never a write on an unchecked plan). Returns each contact's state.
# KEYS: index hash, counts hash, stale list, meta hash. ARGV: ttl, reason prefix,
# need_verified, then (id, state) pairs.
_MARK_FRESHNESS = """
if ARGV[3] == '1' and redis.call('HGET', KEYS[4], 'verified') ~= '1' then
  return redis.error_reply('the list was not re-read before this write')
end
local states, stale = {}, 0
for i = 4, #ARGV, 2 do
  local id, state = ARGV[i], ARGV[i + 1]
  local row = redis.call('HGET', KEYS[1], id)
  if not row then
    state = 'unplanned'
  elseif string.sub(row, 1, 1) ~= '[' then
    state = row
  else
    redis.call('HSET', KEYS[1], id, state)
    if state ~= 'fresh' then
      local entry = cjson.decode(row)
      if entry[2] == cjson.null then
        redis.call('HINCRBY', KEYS[2], 'to_remove', -1)
        redis.call('HINCRBY', KEYS[2], ARGV[2] .. tostring(entry[3]), -1)
      else
        redis.call('HINCRBY', KEYS[2], 'to_update', -1)
      end
      redis.call('HINCRBY', KEYS[2], 'stale', 1)
      redis.call('HINCRBY', KEYS[2], 'stale_' .. state, 1)
      redis.call('RPUSH', KEYS[3], id)
      stale = stale + 1
    end
  end
  states[#states + 1] = state
end
if stale > 0 then redis.call('EXPIRE', KEYS[3], ARGV[1]) end
return states
"""

# After the removals: a contact the list still holds was not removed, whatever its DELETE
# was answered. KEYS: removed set, failures hash, counts hash. ARGV: ttl, why, ids.
_STILL_PRESENT = """
local found = {}
for i = 3, #ARGV do
  if redis.call('SREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[2])
    found[#found + 1] = ARGV[i]
  end
end
if #found > 0 then
  redis.call('HINCRBY', KEYS[3], 'still_present', #found)
  redis.call('EXPIRE', KEYS[2], ARGV[1])
end
return found
"""


class ListLock:
    """One run per list, across machines: redis-py's Lock with the run id as its token,
    so any worker of the run can renew or release it and nobody else can."""

    def __init__(self, client: redis.Redis, list_id: str, ttl: float | None = None) -> None:
        self.key = lock_key(list_id)
        self.ttl = lock_ttl() if ttl is None else ttl
        self._lock = Lock(client, self.key, timeout=self.ttl, thread_local=False)
        self._client = client

    def acquire(self, run_id: str) -> bool:
        return bool(self._lock.acquire(blocking=False, token=run_id))

    def holder(self) -> str | None:
        return text(self._client.get(self.key)) or None

    def _as(self, run_id: str) -> Lock:
        self._lock.local.token = run_id.encode()
        return self._lock

    def renew(self, run_id: str) -> bool:
        try:
            return bool(self._as(run_id).reacquire())
        except redis.exceptions.LockError:
            return False

    def release(self, run_id: str) -> None:
        # Expired or taken over: nothing of ours to release.
        with contextlib.suppress(redis.exceptions.LockError):
            self._as(run_id).release()


class RunStore:
    def __init__(self, client: redis.Redis, run_id: str) -> None:
        self.redis = client
        self.run_id = run_id
        self.prefix = f"cxsweep:run:{run_id}"
        self.meta_key = f"{self.prefix}:meta"
        self.counts_key = f"{self.prefix}:counts"
        self.updates_key = f"{self.prefix}:updates"
        self.removes_key = f"{self.prefix}:removes"
        self.removed_key = f"{self.prefix}:removed"
        self.archive_key = f"{self.prefix}:archive"
        self.failures_key = f"{self.prefix}:write-failures"
        self.claims_key = f"{self.prefix}:number-claims"
        self.streak_key = f"{self.prefix}:consecutive-5xx"
        self.duplicates_key = f"{self.prefix}:duplicates"
        self.duplicate_ids_key = f"{self.prefix}:duplicate-ids"
        self.writers_key = f"{self.prefix}:writers"
        self._write_permit = client.register_script(_WRITE_PERMIT)

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
            self.meta_key,
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
        pipe.expire(self.meta_key, DATA_TTL)
        pipe.zadd(RUN_INDEX, {self.run_id: now})
        pipe.execute()

    def meta(self) -> dict[str, str]:
        return {text(k): text(v) for k, v in self.redis.hgetall(self.meta_key).items()}

    def exists(self) -> bool:
        return bool(self.redis.exists(self.meta_key))

    def set_meta(self, **fields: Any) -> None:
        self.redis.hset(self.meta_key, mapping={k: v for k, v in fields.items()})

    def options(self) -> dict[str, Any]:
        raw = self.redis.hget(self.meta_key, "options")
        return json.loads(raw) if raw else {}

    def fail(self, message: str) -> None:
        """Remember why the run cannot complete; the first reason is kept."""
        self.redis.hsetnx(self.meta_key, "error", message[:500])

    # --- counters -------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return {text(k): int(v) for k, v in self.redis.hgetall(self.counts_key).items()}

    def incr(self, field: str, amount: int = 1) -> None:
        self.redis.hincrby(self.counts_key, field, amount)

    # --- phase 1: pages and the plan ------------------------------------------------

    def claim(self, step: str, task_id: str) -> bool:
        """Whether this task (or a redelivery of it, same id) may perform ``step``.

        A duplicate sent by a crashed predecessor has another id and is turned away.
        """
        key = f"{self.prefix}:claim:{step}"
        if self.redis.set(key, task_id, nx=True, ex=DATA_TTL):
            return True
        return text(self.redis.get(key)) == task_id

    def once(self, step: str) -> bool:
        """True for the first caller only. A step marked before it acts, and a crash in
        between, leaves the run for the watchdog: better than doing the step twice."""
        return bool(self.redis.set(f"{self.prefix}:once:{step}", 1, nx=True, ex=DATA_TTL))

    def begun(self) -> bool:
        """Whether a worker has taken the run up (its first step ran)."""
        return bool(self.redis.exists(f"{self.prefix}:once:begin"))

    def note_read_pause(self) -> None:
        """Reading waited for sanitizing. Kept out of the counters: a run whose reading
        only waits (its sanitizer gone) must still look stalled to the watchdog."""
        self.redis.hincrby(self.meta_key, "read_pauses", 1)

    def claimed(self, step: str) -> bool:
        return bool(self.redis.exists(f"{self.prefix}:claim:{step}"))

    def hand_off(self, step: str, from_task: str, to_task: str) -> bool:
        """Pass this task's claim of ``step`` to the task it sends to carry on with it."""
        key = f"{self.prefix}:claim:{step}"
        return bool(self.redis.eval(_HAND_OFF, 1, key, from_task, to_task, DATA_TTL))

    def note_cursor(self, page_no: int, cursor: str) -> int | None:
        """Keep the cursor of ``page_no`` for the task that reads it (cursors are platform
        input and may carry tokens: they stay in Redis, never in task arguments). Returns
        the earlier page announced with the same cursor, if any: the paging loops."""
        digest = hashlib.sha256(cursor.encode()).hexdigest()
        keys = (f"{self.prefix}:cursors", f"{self.prefix}:seen-cursors")
        held = int(self.redis.eval(_NOTE_CURSOR, 2, *keys, page_no, cursor, digest, DATA_TTL))
        return None if held < 0 else held

    def cursor(self, page_no: int) -> str | None:
        """The cursor of ``page_no``; None for the first page (the list's own URL)."""
        raw = self.redis.hget(f"{self.prefix}:cursors", str(page_no))
        return text(raw) if raw is not None else None

    def claim_ids(self, page_no: int, contact_ids: list[str]) -> set[str]:
        """Claim a page's contact ids for it; returns those another page claimed first (a
        contact that offset paging showed twice, as the list shifted under it)."""
        if not contact_ids:
            return set()
        key = f"{self.prefix}:contact-ids"
        repeated = self.redis.eval(_CLAIM_IDS, 1, key, DATA_TTL, page_no, *contact_ids)
        return {text(cid) for cid in cast(list[bytes], repeated)}

    def pages_missing(self, pages_total: int) -> list[int]:
        """Pages among 0..pages_total-1 whose plan was never committed."""
        pipe = self.redis.pipeline(transaction=False)
        for page_no in range(pages_total):
            pipe.exists(f"{self.prefix}:done:page:{page_no}")
        return [n for n, found in enumerate(pipe.execute()) if not found]

    def store_page(self, page_no: int, contacts: list[dict[str, Any]]) -> None:
        self.redis.set(f"{self.prefix}:page:{page_no}", json.dumps(contacts), ex=DATA_TTL)

    def page_committed(self, page_no: int) -> bool:
        return bool(self.redis.exists(f"{self.prefix}:done:page:{page_no}"))

    def note_page_read(self, page_no: int, contacts: int) -> None:
        """Count a page read once (a redelivered fetch reads it again)."""
        if self.redis.set(f"{self.prefix}:read:{page_no}", 1, nx=True, ex=DATA_TTL):
            pipe = self.redis.pipeline(transaction=False)
            pipe.hincrby(self.counts_key, "pages_read", 1)
            pipe.hincrby(self.counts_key, "read", contacts)
            pipe.execute()

    def load_page(self, page_no: int) -> list[dict[str, Any]] | None:
        raw = self.redis.get(f"{self.prefix}:page:{page_no}")
        return None if raw is None else json.loads(raw)

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
        marker = f"{self.prefix}:done:page:{page_no}"
        update_rows = [entry.to_json() for entry in updates]
        remove_rows = [entry.to_json() for entry in removes]
        blob = zlib.compress(json.dumps(archive).encode(), 6) if archive else None

        def apply(pipe: redis.client.Pipeline) -> bool:
            if pipe.exists(marker):
                return False
            pipe.multi()
            pipe.set(marker, 1, ex=DATA_TTL)
            if update_rows:
                pipe.rpush(self.updates_key, *update_rows)
                pipe.expire(self.updates_key, DATA_TTL)
            if remove_rows:
                pipe.rpush(self.removes_key, *remove_rows)
                pipe.expire(self.removes_key, DATA_TTL)
            for field, amount in counts.items():
                if amount:
                    pipe.hincrby(self.counts_key, field, amount)
            if numbers:
                args: list[Any] = [DATA_TTL]
                for e164, position, row in numbers:
                    args += [e164, position, row]
                pipe.eval(_CLAIM_NUMBERS, 2, self.claims_key, self.duplicates_key, *args)
            if blob is not None:
                pipe.hset(self.archive_key, str(page_no), blob)
                pipe.expire(self.archive_key, ARCHIVE_TTL)
            pipe.hincrby(self.counts_key, "pages_sanitized", 1)
            pipe.delete(f"{self.prefix}:page:{page_no}")
            return True

        # redis-py's stubs type the callable as returning None; value_from_callable says otherwise.
        return bool(self.redis.transaction(apply, marker, value_from_callable=True))  # type: ignore[arg-type]

    def resolve_duplicates(self) -> int:
        """Once the plan is whole: every contact that lost its number's claim is removed
        (reason ``duplicate``) instead of updated or kept. Runs once per run."""
        marker = f"{self.prefix}:done:duplicates"

        def apply(pipe: redis.client.Pipeline) -> int:
            if pipe.exists(marker):
                return 0
            rows = [json.loads(r) for r in pipe.lrange(self.duplicates_key, 0, -1)]
            pipe.multi()
            pipe.set(marker, 1, ex=DATA_TTL)
            for contact_id, category, before in rows:
                pipe.sadd(self.duplicate_ids_key, contact_id)
                pipe.rpush(
                    self.removes_key,
                    PlanEntry(contact_id, before, None, Reason.DUPLICATE).to_json(),
                )
                pipe.hincrby(self.counts_key, category, -1)
                pipe.hincrby(self.counts_key, "to_remove", 1)
                filled = sum(1 for v in before.values() if isinstance(v, str) and v.strip())
                pipe.hincrby(self.counts_key, "values_destroyed", filled)
                pipe.hincrby(self.counts_key, f"reason:{Reason.DUPLICATE}", 1)
            if rows:
                pipe.expire(self.duplicate_ids_key, DATA_TTL)
                pipe.expire(self.removes_key, DATA_TTL)
            return len(rows)

        return int(self.redis.transaction(apply, marker, value_from_callable=True))  # type: ignore[arg-type]

    def duplicates_among(self, contact_ids: list[str]) -> set[str]:
        if not contact_ids:
            return set()
        flags = self.redis.smismember(self.duplicate_ids_key, contact_ids)
        return {cid for cid, flag in zip(contact_ids, flags, strict=True) if flag}

    def plan_sizes(self) -> tuple[int, int]:
        pipe = self.redis.pipeline()
        pipe.llen(self.updates_key)
        pipe.llen(self.removes_key)
        updates, removes = pipe.execute()
        return int(updates), int(removes)

    def archive_pages(self) -> list[int]:
        return sorted(int(text(k)) for k in self.redis.hkeys(self.archive_key))

    def archive_page(self, page_no: int) -> list[dict[str, Any]]:
        blob = self.redis.hget(self.archive_key, str(page_no))
        return json.loads(zlib.decompress(blob)) if isinstance(blob, bytes) else []

    def iter_archive(self) -> Iterable[dict[str, Any]]:
        for page_no in self.archive_pages():
            yield from self.archive_page(page_no)

    # --- apply: a reviewed plan, checked against the list as it is now ---------------

    def load_planned(self, entries: Iterable[PlanEntry], batch: int = 1000) -> int:
        count = 0
        key = f"{self.prefix}:planned"
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
        rows = self.redis.hmget(f"{self.prefix}:planned", contact_ids)
        return {
            cid: PlanEntry.from_json(row)
            for cid, row in zip(contact_ids, rows, strict=True)
            if row is not None
        }

    def note_stale(self, contact_ids: list[str]) -> None:
        if contact_ids:
            pipe = self.redis.pipeline()
            pipe.rpush(f"{self.prefix}:stale", *contact_ids)
            pipe.expire(f"{self.prefix}:stale", DATA_TTL)
            pipe.execute()

    def stale_ids(self, limit: int = 20) -> list[str]:
        return [text(x) for x in self.redis.lrange(f"{self.prefix}:stale", 0, limit - 1)]

    # --- restore ----------------------------------------------------------------------

    def restored_among(self, contact_ids: list[str]) -> set[str]:
        if not contact_ids:
            return set()
        flags = self.redis.smismember(f"{self.prefix}:restored", contact_ids)
        return {cid for cid, flag in zip(contact_ids, flags, strict=True) if flag}

    def record_restored(self, contact_ids: list[str], kind: str) -> None:
        if contact_ids:
            pipe = self.redis.pipeline()
            pipe.sadd(f"{self.prefix}:restored", *contact_ids)
            pipe.expire(f"{self.prefix}:restored", DATA_TTL)
            pipe.hincrby(self.counts_key, f"restored_{kind}", len(contact_ids))
            pipe.execute()

    def plan_slice(self, kind: str, start: int, stop: int) -> list[PlanEntry]:
        key = self.updates_key if kind == "update" else self.removes_key
        return [PlanEntry.from_json(raw) for raw in self.redis.lrange(key, start, stop - 1)]

    def iter_plan(self, kind: str, batch: int = 1000) -> Iterable[PlanEntry]:
        key = self.updates_key if kind == "update" else self.removes_key
        start = 0
        while True:
            rows = self.redis.lrange(key, start, start + batch - 1)
            if not rows:
                return
            for raw in rows:
                yield PlanEntry.from_json(raw)
            start += batch

    # --- phase 2: writes ------------------------------------------------------------

    def chunk_done(self, kind: str, index: int) -> bool:
        return bool(self.redis.exists(f"{self.prefix}:done:{kind}:{index}"))

    def commit_update_chunk(self, index: int, updated: int) -> bool:
        """Count a PATCHed chunk once, however often its task ran."""
        marker = f"{self.prefix}:done:update:{index}"

        def apply(pipe: redis.client.Pipeline) -> bool:
            if pipe.exists(marker):
                return False
            pipe.multi()
            pipe.set(marker, 1, ex=DATA_TTL)
            pipe.hincrby(self.counts_key, "updated", updated)
            pipe.hincrby(self.counts_key, "chunks_done", 1)
            return True

        # redis-py's stubs type the callable as returning None; value_from_callable says otherwise.
        return bool(self.redis.transaction(apply, marker, value_from_callable=True))  # type: ignore[arg-type]

    def permit_write(self, list_id: str, writer: str) -> str:
        """Right before a write request: "" when it may be sent, else why not (the run
        lost its list, was halted or failed). One round trip that also renews the lock
        and notes ``writer`` (the task's token) as writing until ``writer_done``."""
        return self._permit(self.redis.pipeline(transaction=False), list_id, writer)

    def _permit(self, pipe: redis.client.Pipeline, list_id: str, writer: str) -> str:
        ttl_ms = int(lock_ttl() * 1000)
        # Sent by its SHA (redis-py loads it once): this runs before every write request.
        self._write_permit(
            keys=[lock_key(list_id), self.meta_key, self.writers_key],
            args=[self.run_id, ttl_ms, list_id, writer, time.time()],
            client=pipe,
        )
        return text(pipe.execute()[-1])

    def writer_done(self, writer: str) -> None:
        """The task's outcomes are recorded: nothing of it is in flight any more."""
        self.redis.zrem(self.writers_key, writer)

    def writers_active(self, within: float) -> int:
        """Tasks permitted a write in the last ``within`` seconds and not done yet."""
        return int(self.redis.zcount(self.writers_key, time.time() - within, "+inf"))

    def record_removed(
        self, removed: list[str], already_gone: list[str], list_id: str, writer: str
    ) -> str:
        """Count removals (a set: a removal repeated by a redelivered task counts once),
        end the run's streak of server errors, and tell whether the next request may go
        (``permit_write``): all in one round trip, as it happens after every removal."""
        pipe = self.redis.pipeline(transaction=False)
        if removed or already_gone:
            pipe.sadd(self.removed_key, *removed, *already_gone)
            pipe.expire(self.removed_key, DATA_TTL)
        if already_gone:
            pipe.sadd(f"{self.prefix}:already-gone", *already_gone)
            pipe.expire(f"{self.prefix}:already-gone", DATA_TTL)
        pipe.set(self.streak_key, 0, ex=DATA_TTL)
        return self._permit(pipe, list_id, writer)

    def removed_ids_among(self, contact_ids: list[str]) -> set[str]:
        if not contact_ids:
            return set()
        flags = self.redis.smismember(self.removed_key, contact_ids)
        return {cid for cid, flag in zip(contact_ids, flags, strict=True) if flag}

    def record_failures(self, failures: Mapping[str, str]) -> None:
        if failures:
            pipe = self.redis.pipeline()
            pipe.hset(self.failures_key, mapping={k: v for k, v in failures.items()})
            pipe.expire(self.failures_key, DATA_TTL)
            pipe.execute()

    def failure_count(self) -> int:
        return int(self.redis.hlen(self.failures_key))

    def failures(self) -> dict[str, str]:
        return {text(k): text(v) for k, v in self.redis.hgetall(self.failures_key).items()}

    def removed_count(self) -> int:
        return int(self.redis.scard(self.removed_key))

    def mark_chunk_done(self, kind: str, index: int) -> None:
        """Mark a chunk written; counted once, however often its task ran."""
        marker = f"{self.prefix}:done:{kind}:{index}"
        self.redis.eval(_MARK_DONE, 2, marker, self.counts_key, DATA_TTL)

    # --- the breaker ----------------------------------------------------------------

    def halted(self) -> bool:
        """Whether writes must stop: the breaker tripped, or an operator cancelled."""
        return any(v is not None for v in self.redis.hmget(self.meta_key, "halted", "cancelled"))

    def cancel(self, message: str) -> bool:
        """Ask the run to stop: no write starts after this (``halted``); the writes in
        flight finish. False when it was cancelled already."""
        return bool(self.redis.hsetnx(self.meta_key, "cancelled", message[:500]))

    def note_write_outcome(self, server_error: bool, threshold: int) -> bool:
        """Track consecutive 5xx answers to this run's writes; True once it trips."""
        key = self.streak_key
        if not server_error:
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(key, 0, ex=DATA_TTL)
            pipe.hget(self.meta_key, "halted")
            return pipe.execute()[-1] is not None
        streak = int(self.redis.incr(key))
        self.redis.expire(key, DATA_TTL)
        if streak >= threshold:
            self.redis.hsetnx(
                self.meta_key,
                "halted",
                f"{streak} consecutive server errors on writes: halted for manual review",
            )
            return True
        return False

    # --- freshness: the list re-read before writes, and after removals ---------------

    @property
    def fresh_key(self) -> str:
        return f"{self.prefix}:freshness"

    def index_plan(self, batch: int = 5000) -> None:
        """Index the plan by contact id for the re-read (updates first: a duplicate's
        removal row replaces its update row). Server-side, a batch a round trip."""
        index = self.redis.register_script(_INDEX_PLAN)
        updates, removes = self.plan_sizes()
        for key, size in ((self.updates_key, updates), (self.removes_key, removes)):
            for start in range(0, size, batch):
                index(keys=[key, self.fresh_key], args=[DATA_TTL, start, start + batch - 1])

    def plan_index_among(self, contact_ids: list[str]) -> dict[str, PlanEntry]:
        """The planned, not yet judged, entries of these contacts (``after`` shrunk)."""
        if not contact_ids:
            return {}
        rows = self.redis.hmget(self.fresh_key, contact_ids)
        return {
            cid: PlanEntry(cid, *json.loads(row))
            for cid, row in zip(contact_ids, rows, strict=True)
            if row is not None and text(row).startswith("[")
        }

    def _mark(
        self, pairs: list[tuple[str, str]], *, write: bool, client: Any = None
    ) -> Any:
        # The counts' reject-reason prefix (audit.REASON_PREFIX; audit imports this module).
        args: list[Any] = [DATA_TTL, "reason:", int(write)]
        for contact_id, state in pairs:
            args += [contact_id, state]
        script = self.redis.register_script(_MARK_FRESHNESS)
        keys = [self.fresh_key, self.counts_key, f"{self.prefix}:stale", self.meta_key]
        return script(keys=keys, args=args, client=client or self.redis)

    def record_recheck_page(
        self,
        kind: str,
        page_no: int,
        next_cursor: str | None,
        page_size: int,
        states: Mapping[str, str],
    ) -> None:
        """One re-read page of the verify pass: its contacts' states, the next page's
        cursor (kept here, not in task arguments) and the pass's page count, in one round
        trip."""
        pipe = self.redis.pipeline(transaction=True)
        if states:
            self._mark(list(states.items()), write=False, client=pipe)
        self._pass_progress(pipe, kind, page_no, next_cursor, page_size)
        pipe.execute()

    def _pass_progress(
        self,
        pipe: redis.client.Pipeline,
        kind: str,
        page_no: int,
        next_cursor: str | None,
        page_size: int,
    ) -> None:
        key = f"{self.prefix}:pass:{kind}"
        if next_cursor:
            pipe.hset(key, f"cursor:{page_no + 1}", next_cursor)
        if page_no == 0:
            pipe.hset(key, "page_size", page_size)
        pipe.expire(key, DATA_TTL)
        # Absolute, not incremented: a page read again by a redelivered task counts once.
        pipe.hset(self.counts_key, f"{kind}_pages", page_no + 1)

    def pass_cursor(self, kind: str, page_no: int) -> tuple[str | None, int]:
        """Where page ``page_no`` of a pass starts, and the size of its first page."""
        if page_no == 0:
            return None, 0
        raw = self.redis.hmget(f"{self.prefix}:pass:{kind}", [f"cursor:{page_no}", "page_size"])
        return (text(raw[0]) if raw[0] is not None else None), int(raw[1] or 0)

    def set_verified(self) -> None:
        self.set_meta(verified=1, verified_at=time.time())

    def claim_fresh(self, contact_ids: list[str]) -> list[str]:
        """For a write: each contact's state. A planned contact the re-read did not meet
        is judged ``gone`` here, once. Raises ``redis.ResponseError`` when the re-read has
        not ended."""
        if not contact_ids:
            return []
        return [text(s) for s in self._mark([(c, "gone") for c in contact_ids], write=True)]

    def confirm_page(
        self, page_no: int, next_cursor: str | None, page_size: int, contact_ids: list[str]
    ) -> list[str]:
        """One re-read page after the removals: the contacts we count as removed that it
        still holds become failures. Returns them."""
        script = self.redis.register_script(_STILL_PRESENT)
        pipe = self.redis.pipeline(transaction=True)
        if contact_ids:
            script(
                keys=[self.removed_key, self.failures_key, self.counts_key],
                args=[DATA_TTL, STILL_PRESENT, *contact_ids],
                client=pipe,
            )
        self._pass_progress(pipe, "confirm", page_no, next_cursor, page_size)
        results = pipe.execute()
        return [text(x) for x in results[0]] if contact_ids else []

    def keep_write_results(self, results: list[Any]) -> None:
        """The write chord's unsuccessful results, for the run's end after the confirm."""
        self.set_meta(write_results=json.dumps(results), writes_done_at=time.time())

    def write_results(self) -> list[Any]:
        raw = self.redis.hget(self.meta_key, "write_results")
        return json.loads(raw) if raw else []

    def failures_sample(self, limit: int = 20) -> dict[str, str]:
        """Some failed contacts and why, for the audit line (the hash may be large)."""
        _, found = self.redis.hscan(self.failures_key, 0, count=limit)
        return dict(sorted((text(k), text(v)) for k, v in cast(dict, found).items())[:limit])

    # --- the end --------------------------------------------------------------------

def persistence_problem(client: redis.Redis) -> str:
    """Why this Redis could lose a run's state (its plan, archive and markers) while the
    run writes, or "" when it persists and never evicts.

    Read with CONFIG GET; where CONFIG is not permitted (managed Redis), from INFO.
    """
    problems = []
    try:
        pipe = client.pipeline(transaction=False)
        for name in ("appendonly", "save", "maxmemory-policy"):
            pipe.config_get(name)
        found: dict[str, str] = {}
        for answer in pipe.execute():
            found.update({text(k): text(v) for k, v in answer.items()})
        persists = found.get("appendonly") == "yes" or bool(found.get("save", "").strip())
        if not persists:
            problems.append("does not persist (appendonly no, no save points)")
        policy = found.get("maxmemory-policy", "")
    except redis.exceptions.ResponseError:
        # CONFIG is renamed or not permitted (managed Redis): INFO tells AOF and whether
        # snapshots happen, not the save points themselves.
        info = client.info("persistence")
        persists = info.get("aof_enabled") == 1 or int(info.get("rdb_saves", 0) or 0) > 0
        if not persists:
            problems.append(
                "shows no persistence in INFO persistence (CONFIG not permitted: aof_enabled 0,"
                " no RDB snapshot since start)"
            )
        policy = str(client.info("memory").get("maxmemory_policy", ""))
    if policy and policy != "noeviction":
        problems.append(f"may evict keys (maxmemory-policy {policy}, not noeviction)")
    return " and ".join(problems)


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
    broker to deliver them again) is not stalled: its stall is counted from the last
    time they were seen waiting. Every call notes each active run's progress."""
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
            if awaiting_redelivery(store.run_id):
                store.set_meta(progress_at=now)
                continue
            minutes = stall_seconds / 60
            found.append((store, f"the run made no progress for {minutes:.0f} minutes"))
    return found
