"""The sweep's steps as plain functions over a run's Redis state and an API client.

The Celery tasks in ``tasks/`` are thin wrappers around these: they decide *when* a step
runs and retry it; these decide *what* it does. Nothing here sleeps or retries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from cxsweep.audit import REASON_PREFIX, REGION_PREFIX, TYPE_PREFIX
from cxsweep.client import MAX_UPDATE_BATCH, V2Client
from cxsweep.errors import RetryableApiError
from cxsweep.phone import Sanitizer
from cxsweep.runs import PlanEntry, RunStore

UPDATE_CHUNK = MAX_UPDATE_BATCH
# DELETE is one request per contact: small chunks spread them over many worker slots.
REMOVE_CHUNK = 25


@dataclass
class PagePlan:
    updates: list[PlanEntry] = field(default_factory=list)
    removes: list[PlanEntry] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


def plan_page(contacts: Sequence[dict[str, Any]], sanitizer: Sanitizer) -> PagePlan:
    """Judge every contact of a page: keep as is, rewrite to E.164, or remove (with why)."""
    plan = PagePlan()
    counts = plan.counts
    raws = [contact.get("phone") for contact in contacts]
    latency = 0.0
    for contact, verdict in zip(contacts, sanitizer.check_many(raws), strict=True):
        contact_id = str(contact["id"])
        before = contact.get("phone")
        latency += verdict.latency_us
        if verdict.kept:
            if verdict.region:
                counts[REGION_PREFIX + verdict.region] += 1
            if verdict.line_type:
                counts[TYPE_PREFIX + verdict.line_type] += 1
            if verdict.e164 == before:
                counts["unchanged"] += 1
            else:
                counts["to_update"] += 1
                plan.updates.append(PlanEntry(contact_id, before, verdict.e164, None))
        else:
            counts["to_remove"] += 1
            counts[REASON_PREFIX + str(verdict.reason)] += 1
            plan.removes.append(PlanEntry(contact_id, before, None, verdict.reason))
    counts["fetched"] += len(contacts)
    counts["latency_n"] += len(contacts)
    counts["latency_us_sum"] += round(latency)
    return plan


@dataclass(frozen=True)
class Judgement:
    """What to do once the plan is whole."""

    status: str  # "write", or a final status: "completed", "halted", "failed"
    message: str = ""


def judge_plan(store: RunStore, header_results: Sequence[Any], *, dry_run: bool) -> Judgement:
    """Decide, from the whole plan, whether writes may start."""
    meta = store.meta()
    if meta.get("error"):
        return Judgement("failed", meta["error"])
    failures = [r for r in header_results if isinstance(r, dict) and not r.get("ok", False)]
    if failures:
        return Judgement("failed", str(failures[0].get("error", "a read step failed")))
    counts = store.counts()
    if counts.get("pages_sanitized", 0) != counts.get("pages_read", 0):
        return Judgement(
            "failed",
            f"only {counts.get('pages_sanitized', 0)} of {counts.get('pages_read', 0)}"
            " pages were sanitized",
        )
    if dry_run:
        return Judgement("completed", "dry run: nothing was written")
    return Judgement("write")


def write_chunks(store: RunStore) -> list[tuple[str, int]]:
    updates, removes = store.plan_sizes()
    return [("update", i) for i in range(-(-updates // UPDATE_CHUNK))] + [
        ("remove", i) for i in range(-(-removes // REMOVE_CHUNK))
    ]


def _guarded(store: RunStore, threshold: int, send: Callable[[], Any]) -> Any:
    """Send one write, feeding its outcome to the run's breaker."""
    try:
        result = send()
    except RetryableApiError as exc:
        if exc.status != 429:
            store.note_write_outcome(server_error=True, threshold=threshold)
        raise
    store.note_write_outcome(server_error=False, threshold=threshold)
    return result


def apply_update_chunk(
    store: RunStore, client: V2Client, list_id: str, index: int, *, threshold: int
) -> dict[str, Any]:
    if store.chunk_done("update", index):
        return {"ok": True, "kind": "update", "chunk": index, "repeat": True}
    if store.halted():
        return {"ok": False, "kind": "update", "chunk": index, "halted": True}
    entries = store.plan_slice("update", index * UPDATE_CHUNK, (index + 1) * UPDATE_CHUNK)
    batch = [{"id": e.contact_id, "phone": str(e.after)} for e in entries]
    _guarded(store, threshold, lambda: client.update_contacts(list_id, batch))
    store.commit_update_chunk(index, len(entries))
    return {"ok": True, "kind": "update", "chunk": index, "updated": len(entries)}


def apply_remove_chunk(
    store: RunStore, client: V2Client, index: int, *, threshold: int
) -> dict[str, Any]:
    if store.chunk_done("remove", index):
        return {"ok": True, "kind": "remove", "chunk": index, "repeat": True}
    entries = store.plan_slice("remove", index * REMOVE_CHUNK, (index + 1) * REMOVE_CHUNK)
    done = store.removed_ids_among([e.contact_id for e in entries])
    removed = 0
    for entry in entries:
        if entry.contact_id in done:
            continue
        # Checked before every DELETE: once the breaker trips, no further DELETE leaves.
        if store.halted():
            return {"ok": False, "kind": "remove", "chunk": index, "halted": True}
        was_there = _guarded(store, threshold, partial(client.delete_contact, entry.contact_id))
        store.record_removed(entry.contact_id, was_there=was_there)
        removed += 1
    store.mark_chunk_done("remove", index)
    return {"ok": True, "kind": "remove", "chunk": index, "removed": removed}
