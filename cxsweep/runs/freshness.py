"""The list re-read before writes and after removals, as part of a run's store.

Before its writes a run reads its list again: each planned contact is judged ``fresh``,
``stale`` (changed on the platform since the plan was made) or ``gone``, once, and a
stale or gone contact leaves the plan's counts. After the removals a second read
confirms them: a contact still there is a failure, whatever its DELETE was answered.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import redis
from redis.client import Pipeline

from cxsweep import jsoncodec
from cxsweep.redisconn import text
from cxsweep.runs import keys, scripts
from cxsweep.runs.model import DATA_TTL, STILL_PRESENT, PlanEntry


class Freshness:
    """``RunStore``'s re-read state (a mixin: the store holds the client and the keys)."""

    redis: redis.Redis
    keys: keys.RunKeys

    if TYPE_CHECKING:

        def plan_sizes(self) -> tuple[int, int]: ...

        def set_meta(self, **fields: Any) -> None: ...

    def index_plan(self, chunks: tuple[int, int] | None = None, batch: int = 5000) -> None:
        """Index the plan by contact id for the re-read (updates first: a duplicate's
        removal row replaces its update row). Server-side, a batch a round trip. With
        ``chunks`` (contacts per update task, per removal task) each row is tagged with
        its write chunk, so that a chunk whose contacts the verify pass judged may be
        written before the pass ends (``record_recheck_page``)."""
        # The read's claims on contact ids (``claim_ids``) are spent once the plan is whole
        # (every page committed): dropped before the index that takes their place, Redis
        # holds one or the other, not both (69 + 77 MB at 1,000,000 contacts, issue 15).
        # UNLINK: a hash of a million fields is freed off Redis's main thread.
        self.redis.unlink(self.keys.contact_ids)
        index = self.redis.register_script(scripts.INDEX_PLAN)
        updates, removes = self.plan_sizes()
        update_chunk, remove_chunk = chunks or (0, 0)
        families = (
            (self.keys.updates, updates, keys.UPDATE_CHUNK_TAG, update_chunk),
            (self.keys.removes, removes, keys.REMOVE_CHUNK_TAG, remove_chunk),
        )
        names = [self.keys.freshness, self.keys.chunk_pending]
        for key, size, tag, chunk in families:
            for start in range(0, size, batch):
                index(keys=[key, *names], args=[DATA_TTL, start, start + batch - 1, tag, chunk])

    def plan_index_among(self, contact_ids: list[str]) -> dict[str, PlanEntry]:
        """The planned, not yet judged, entries of these contacts (``after`` shrunk)."""
        if not contact_ids:
            return {}
        rows = self.redis.hmget(self.keys.freshness, contact_ids)
        # A row not yet judged is a JSON array; a judged one holds its state.
        found = [
            (cid, row)
            for cid, row in zip(contact_ids, rows, strict=True)
            if row is not None and row[:1] in (b"[", "[")
        ]
        decoded = jsoncodec.loads_rows([row for _, row in found])
        # A row is [before, after, reason] and its chunk's tag, which is not the entry's.
        return {
            cid: PlanEntry(cid, *row[:3]) for (cid, _), row in zip(found, decoded, strict=True)
        }

    def _mark(self, pairs: list[tuple[str, str]], *, write: bool, client: Any = None) -> Any:
        args: list[Any] = [DATA_TTL, keys.REASON_PREFIX, int(write)]
        for contact_id, state in pairs:
            args += [contact_id, state]
        script = self.redis.register_script(scripts.MARK_FRESHNESS)
        names = [self.keys.freshness, self.keys.counts, self.keys.stale, self.keys.meta]
        names.append(self.keys.chunk_pending)
        return script(keys=names, args=args, client=client or self.redis)

    def record_recheck_page(
        self,
        kind: str,
        page_no: int,
        next_cursor: str | None,
        page_size: int,
        states: Mapping[str, str],
    ) -> list[tuple[str, int]]:
        """One re-read page of the verify pass: its contacts' states, the next page's
        cursor (kept here, not in task arguments) and the pass's page count, in one round
        trip. Returns the write chunks (kind, index) whose every contact is now judged."""
        pipe = self.redis.pipeline(transaction=True)
        if states:
            self._mark(list(states.items()), write=False, client=pipe)
        self._pass_progress(pipe, kind, page_no, next_cursor, page_size)
        results = pipe.execute()
        if not states:
            return []
        return [keys.chunk_of_tag(text(tag)) for tag in results[0][1]]

    def _pass_progress(
        self,
        pipe: Pipeline,
        kind: str,
        page_no: int,
        next_cursor: str | None,
        page_size: int,
    ) -> None:
        key = self.keys.recheck_pass(kind)
        if next_cursor:
            pipe.hset(key, f"cursor:{page_no + 1}", next_cursor)
        if page_no == 0:
            pipe.hset(key, "page_size", page_size)
        pipe.expire(key, DATA_TTL)
        # Absolute, not incremented: a page read again by a redelivered task counts once.
        pipe.hset(self.keys.counts, f"{kind}_pages", page_no + 1)

    def pass_cursor(self, kind: str, page_no: int) -> tuple[str | None, int]:
        """Where page ``page_no`` of a pass starts, and the size of its first page."""
        if page_no == 0:
            return None, 0
        raw = self.redis.hmget(self.keys.recheck_pass(kind), [f"cursor:{page_no}", "page_size"])
        return (text(raw[0]) if raw[0] is not None else None), int(raw[1] or 0)

    def set_verified(self) -> None:
        self.set_meta(verified=1, verified_at=time.time())

    def claim_fresh(self, contact_ids: list[str]) -> list[str]:
        """For a write: each contact's state. A planned contact the re-read did not meet
        is judged ``gone`` here, once. Raises ``redis.ResponseError`` when the re-read has
        not ended."""
        if not contact_ids:
            return []
        states, _ = self._mark([(c, "gone") for c in contact_ids], write=True)
        return [text(s) for s in states]

    def confirm_page(
        self, page_no: int, next_cursor: str | None, page_size: int, contact_ids: list[str]
    ) -> list[str]:
        """One re-read page after the removals: the contacts we count as removed that it
        still holds become failures. Returns them."""
        script = self.redis.register_script(scripts.FLAG_STILL_PRESENT)
        pipe = self.redis.pipeline(transaction=True)
        if contact_ids:
            script(
                keys=[self.keys.removed, self.keys.failures, self.keys.counts],
                args=[DATA_TTL, STILL_PRESENT, *contact_ids],
                client=pipe,
            )
        self._pass_progress(pipe, "confirm", page_no, next_cursor, page_size)
        results = pipe.execute()
        return [text(x) for x in results[0]] if contact_ids else []
