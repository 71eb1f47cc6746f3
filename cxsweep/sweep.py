"""The sweep's steps as plain functions over a run's Redis state and an API client.

The Celery tasks in ``tasks/`` are thin wrappers around these: they decide *when* a step
runs and retry it; these decide *what* it does. Nothing here sleeps or retries.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from cxsweep.audit import REASON_PREFIX, REGION_PREFIX, TYPE_PREFIX
from cxsweep.backend import Backend, Change, WriteOutcome
from cxsweep.errors import RetryableApiError
from cxsweep.phone import Sanitizer
from cxsweep.runs import PlanEntry, RunStore

# DELETE-style removals (one contact a request) are grouped this many to a task: enough
# to spread a task's overhead, few enough that the last tasks do not leave a long tail.
REMOVALS_PER_TASK = 10
# Contacts a restore deletes and re-creates (numbers PATCH would refuse) per group.
RESTORE_IN_PLACE_GROUP = 20


@dataclass
class PagePlan:
    updates: list[PlanEntry] = field(default_factory=list)
    removes: list[PlanEntry] = field(default_factory=list)
    archive: list[dict[str, Any]] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    #: (E.164, position in the list, JSON row) of kept numbers, for ``keep_first``
    numbers: list[tuple[str, int, str]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


def plan_page(
    contacts: Sequence[dict[str, Any]],
    sanitizer: Sanitizer,
    backend: Backend,
    *,
    first_position: int | None = None,
) -> PagePlan:
    """Judge every contact of a page: keep as is, rewrite to E.164, or remove (with why).

    Every phone field the backend names is judged; a contact with no good number is
    removed, one with a good and a bad number keeps the good one and blanks the bad.
    """
    plan = PagePlan()
    counts = plan.counts
    fields = backend.phone_fields
    # One sanitizer call for the whole page: look-ups and caches work in batches.
    raws = [contact.get(name) for contact in contacts for name in fields]
    verdicts = sanitizer.check_many(raws)
    latency = 0.0
    for position, contact in enumerate(contacts):
        contact_id = backend.contact_id(contact)
        judged = verdicts[position * len(fields) : (position + 1) * len(fields)]
        before = {name: contact.get(name) for name in fields}
        present = [
            (name, v)
            for name, v in zip(fields, judged, strict=True)
            if isinstance(contact.get(name), str) and contact[name].strip()
        ] or [(fields[0], judged[0])]
        latency += sum(v.latency_us for _, v in present)
        good = [(name, v) for name, v in present if v.kept]
        if not good:
            reason = str(present[0][1].reason)
            counts["to_remove"] += 1
            counts[REASON_PREFIX + reason] += 1
            plan.removes.append(PlanEntry(contact_id, before, None, reason))
            plan.archive.append(contact)
            continue
        _, primary = good[0]
        if primary.region:
            counts[REGION_PREFIX + primary.region] += 1
        if primary.line_type:
            counts[TYPE_PREFIX + primary.line_type] += 1
        after = {name: str(v.e164) for name, v in good if v.e164 != contact.get(name)}
        if first_position is not None:
            # keep_first: who dials this number first is decided once the plan is whole.
            category = "to_update" if after else "unchanged"
            row = json.dumps([contact_id, category, before])
            plan.numbers.append((str(primary.e164), first_position + position, row))
        for name, verdict in present:
            if not verdict.kept:
                after[name] = ""  # a bad secondary number is blanked, not dialled
                counts["blanked"] += 1
                counts[REASON_PREFIX + str(verdict.reason)] += 1
        if after:
            counts["to_update"] += 1
            record = contact if backend.update_needs_record else None
            plan.updates.append(PlanEntry(contact_id, before, after, None, record))
            plan.archive.append(contact)
        else:
            counts["unchanged"] += 1
    counts["fetched"] += len(contacts)
    counts["latency_n"] += len(contacts)
    counts["latency_us_sum"] += round(latency)
    return plan


def plan_page_from_plan(
    contacts: Sequence[dict[str, Any]], planned: dict[str, PlanEntry], backend: Backend
) -> PagePlan:
    """``cxsweep apply``: the reviewed plan's entries for this page, each kept only when
    the contact still holds the numbers the plan saw. A contact changed on the platform
    since is skipped and reported (``stale``), so a stale plan never overwrites newer data.
    """
    plan = PagePlan()
    counts = plan.counts
    for contact in contacts:
        contact_id = backend.contact_id(contact)
        entry = planned.get(contact_id)
        if entry is None:
            counts["unchanged"] += 1
            continue
        counts["plan_seen_remove" if entry.after is None else "plan_seen_update"] += 1
        now = {name: contact.get(name) for name in entry.before}
        if now != entry.before:
            wanted = {**entry.before, **entry.after} if entry.after is not None else None
            if wanted and all((now.get(k) or "") == (v or "") for k, v in wanted.items()):
                counts["already_applied"] += 1  # the same plan, applied before
                continue
            counts["stale"] += 1
            plan.stale.append(contact_id)
            continue
        plan.archive.append(contact)
        if entry.after is None:
            counts["to_remove"] += 1
            counts[REASON_PREFIX + str(entry.reason)] += 1
            plan.removes.append(entry)
        else:
            counts["to_update"] += 1
            record = contact if backend.update_needs_record else None
            plan.updates.append(PlanEntry(contact_id, entry.before, entry.after, None, record))
    counts["fetched"] += len(contacts)
    counts["planned_seen"] += len(plan.updates) + len(plan.removes) + len(plan.stale)
    return plan


E164 = re.compile(r"^\+[1-9]\d{1,14}$")


def restore_page(
    restore: RunStore,
    source: RunStore,
    backend: Backend,
    list_id: str,
    page_no: int,
    *,
    threshold: int,
) -> dict[str, Any]:
    """Put one archive page of ``source`` back: re-create what it removed, write back the
    numbers it changed. Contacts already restored (a redelivered task) are skipped."""
    records = source.archive_page(page_no)
    ids = [backend.contact_id(r) for r in records]
    done = restore.restored_among(ids)
    removed = source.removed_ids_among(ids)
    recreate = [
        r for r, cid in zip(records, ids, strict=True) if cid in removed and cid not in done
    ]
    # Every other archived record was to be updated. Writing back the values it had is
    # right whether or not its update went through, so no record of which did is needed.
    revert = [r for r, cid in zip(records, ids, strict=True) if cid not in removed | done]
    fields = backend.phone_fields
    # A platform that rewrites whole records takes any value back; one that PATCHes only
    # E.164 numbers (v2) gets a contact whose old number was not E.164 re-created as it was.
    patchable = [
        r
        for r in revert
        if backend.update_needs_record
        or all(not r.get(f) or E164.match(str(r.get(f))) for f in fields)
    ]
    recreate_in_place = [r for r in revert if r not in patchable]
    size = backend.update_batch_size
    for start in range(0, len(patchable), size):
        batch = patchable[start : start + size]
        changes = [
            Change(backend.contact_id(r), {f: str(r.get(f) or "") for f in fields}, record=r)
            for r in batch
        ]
        outcome = _guarded(restore, threshold, partial(backend.update_contacts, list_id, changes))
        restore.record_failures(outcome.failed)
        restore.record_restored(outcome.done, "reverted")
    for start in range(0, len(recreate), size):
        batch = recreate[start : start + size]
        created = _guarded(restore, threshold, partial(backend.create_contacts, list_id, batch))
        restore.record_failures(created.failed)
        restore.record_restored(created.done + created.missing, "recreated")
    # Deleted and re-created a group at a time: a contact is off the list for a few
    # requests only, and the restore's progress moves with every group (on v2 each
    # deletion is a request of its own).
    group = min(size, RESTORE_IN_PLACE_GROUP)
    for start in range(0, len(recreate_in_place), group):
        batch = recreate_in_place[start : start + group]
        ids_in_place = [backend.contact_id(r) for r in batch]
        for first in range(0, len(ids_in_place), backend.remove_batch_size):
            batch_ids = ids_in_place[first : first + backend.remove_batch_size]
            _guarded(restore, threshold, partial(backend.remove_contacts, list_id, batch_ids))
        created = _guarded(restore, threshold, partial(backend.create_contacts, list_id, batch))
        restore.record_failures(created.failed)
        # The run changed these contacts' numbers (it did not remove them): reverted.
        restore.record_restored(created.done + created.missing, "reverted")
    restore.mark_chunk_done("restore", page_no)
    recreated = len(recreate) + len(recreate_in_place)
    return {"ok": True, "page": page_no, "recreated": recreated, "reverted": len(patchable)}


@dataclass(frozen=True)
class Judgement:
    """What to do once the plan is whole."""

    status: str  # "write", or a final status: "completed", "halted", "failed"
    message: str = ""


def judge_plan(
    store: RunStore, header_results: Sequence[Any], *, dry_run: bool, max_purge_ratio: float
) -> Judgement:
    """Decide, from the whole plan, whether writes may start.

    The purge guard: a plan that would remove more than ``max_purge_ratio`` of the list
    (a list that is mostly garbage, or a policy gone wrong) writes nothing at all.
    """
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
    total, removals = counts.get("fetched", 0), counts.get("to_remove", 0)
    ratio = removals / total if total else 0.0
    guard = ""
    if ratio > max_purge_ratio:
        guard = (
            f"the plan would remove {removals} of {total} contacts ({ratio:.1%}), above the"
            f" purge guard of {max_purge_ratio:.0%}"
        )
    if dry_run:
        note = "dry run: nothing was written"
        return Judgement("completed", f"{note}; {guard}" if guard else note)
    if guard:
        return Judgement(
            "halted",
            f"{guard}: nothing was updated or removed; to proceed deliberately, run again"
            f" with --allow-purge-ratio {min(1.0, ratio + 0.005):.2f}",
        )
    return Judgement("write")


def chunk_sizes(backend: Backend) -> tuple[int, int]:
    """Contacts per update task and per removal task."""
    return backend.update_batch_size, max(backend.remove_batch_size, REMOVALS_PER_TASK)


def write_chunks(store: RunStore, backend: Backend) -> list[tuple[str, int]]:
    update_chunk, remove_chunk = chunk_sizes(backend)
    updates, removes = store.plan_sizes()
    # Removal tasks are the long ones (a request per contact on v2): queued first, they
    # do not end the run with a tail of them on a few worker slots.
    return [("remove", i) for i in range(-(-removes // remove_chunk))] + [
        ("update", i) for i in range(-(-updates // update_chunk))
    ]


def _guarded(store: RunStore, threshold: int, send: Callable[[], WriteOutcome]) -> WriteOutcome:
    """Send one write request, feeding its outcome to the run's breaker."""
    try:
        result = send()
    except RetryableApiError as exc:
        # The contract's breaker counts 5xx answers; a 429, a time-out or a job still
        # running neither trips it nor resets the streak.
        if exc.is_server_error:
            store.note_write_outcome(server_error=True, threshold=threshold)
        raise
    store.note_write_outcome(server_error=False, threshold=threshold)
    return result


def apply_update_chunk(
    store: RunStore, backend: Backend, list_id: str, index: int, *, threshold: int
) -> dict[str, Any]:
    if store.chunk_done("update", index):
        return {"ok": True, "kind": "update", "chunk": index, "repeat": True}
    if store.halted():
        return {"ok": False, "kind": "update", "chunk": index, "halted": True}
    size, _ = chunk_sizes(backend)
    entries = store.plan_slice("update", index * size, (index + 1) * size)
    # A duplicate found once the plan was whole is removed, never also updated.
    duplicates = store.duplicates_among([e.contact_id for e in entries])
    entries = [e for e in entries if e.contact_id not in duplicates]
    if not entries:
        store.commit_update_chunk(index, 0)
        return {"ok": True, "kind": "update", "chunk": index, "updated": 0}
    changes = [Change(e.contact_id, e.after or {}, record=e.record or {}) for e in entries]
    outcome = _guarded(store, threshold, partial(backend.update_contacts, list_id, changes))
    store.record_failures(outcome.failed)
    store.commit_update_chunk(index, len(outcome.done))
    result: dict[str, Any] = {
        "ok": not outcome.failed,
        "kind": "update",
        "chunk": index,
        "updated": len(outcome.done),
        "failed": len(outcome.failed),
    }
    if outcome.failed:
        # The first reason reaches the run's audit line ("N chunk(s) failed: ...").
        cid, why = next(iter(outcome.failed.items()))
        result["error"] = f"{len(outcome.failed)} record(s) not updated, e.g. {cid}: {why}"
    return result


def apply_remove_chunk(
    store: RunStore, backend: Backend, list_id: str, index: int, *, threshold: int
) -> dict[str, Any]:
    if store.chunk_done("remove", index):
        return {"ok": True, "kind": "remove", "chunk": index, "repeat": True}
    _, size = chunk_sizes(backend)
    entries = store.plan_slice("remove", index * size, (index + 1) * size)
    ids = [e.contact_id for e in entries]
    done = store.removed_ids_among(ids)
    pending = [cid for cid in ids if cid not in done]
    failed: dict[str, str] = {}
    halted = store.halted()
    for start in range(0, len(pending), backend.remove_batch_size):
        # Checked before every request (read back with the previous one's outcome): once
        # the breaker trips, no further removal leaves.
        if halted:
            return {"ok": False, "kind": "remove", "chunk": index, "halted": True}
        batch = pending[start : start + backend.remove_batch_size]
        try:
            outcome = backend.remove_contacts(list_id, batch)
        except RetryableApiError as exc:
            if exc.is_server_error:
                store.note_write_outcome(server_error=True, threshold=threshold)
            raise
        halted = store.record_removed(outcome.done, outcome.missing)
        failed.update(outcome.failed)
    store.record_failures(failed)
    store.mark_chunk_done("remove", index)
    result: dict[str, Any] = {"ok": not failed, "kind": "remove", "chunk": index}
    result["failed"] = len(failed)
    if failed:
        cid, why = next(iter(failed.items()))
        result["error"] = f"{len(failed)} record(s) not removed, e.g. {cid}: {why}"
    return result
