"""The sweep's steps as plain functions over a run's Redis state and an API client.

The Celery tasks in ``tasks/`` are thin wrappers around these: they decide *when* a step
runs and retry it; these decide *what* it does. Nothing here sleeps or retries.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import redis

from cxsweep.errors import CxsweepError, RetryableApiError
from cxsweep.phone.numbers import Sanitizer
from cxsweep.platforms.base import Backend, Change, Page, WriteOutcome
from cxsweep.runs.audit import REASON_PREFIX, REGION_PREFIX, TYPE_PREFIX
from cxsweep.runs.store import PlanEntry, RunStore, persistence_problem

# DELETE-style removals (one contact a request) are grouped this many to a task: enough
# to spread a task's overhead, few enough that the last tasks do not leave a long tail.
REMOVALS_PER_TASK = 10
# Contacts a restore deletes and re-creates (numbers PATCH would refuse) per group.
RESTORE_IN_PLACE_GROUP = 20


class WriteStopped(CxsweepError):
    """A write request was not sent: the run lost its list, was halted or failed."""


def _filled(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


@dataclass
class PagePlan:
    updates: list[PlanEntry] = field(default_factory=list)
    removes: list[PlanEntry] = field(default_factory=list)
    archive: list[dict[str, Any]] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    #: (E.164, position in the list, JSON row) of kept numbers, for ``keep_first``
    numbers: list[tuple[str, int, str]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


def unique_contacts(
    store: RunStore, page_no: int, contacts: list[dict[str, Any]], backend: Backend
) -> tuple[list[dict[str, Any]], int]:
    """The page's contacts minus those already seen: an id another page claimed first
    (offset paging shows a contact twice when the list shifts under it), or repeated on
    this page. A contact is judged and written once, never as a duplicate of itself.
    Returns the contacts to judge and how many were dropped."""
    ids = [backend.contact_id(contact) for contact in contacts]
    elsewhere = store.claim_ids(page_no, ids)
    seen: set[str] = set()
    kept = []
    for contact, contact_id in zip(contacts, ids, strict=True):
        if contact_id in elsewhere or contact_id in seen:
            continue
        seen.add(contact_id)
        kept.append(contact)
    return kept, len(contacts) - len(kept)


def fence(store: RunStore, why: str, *, request_seconds: float) -> None:
    """Fail a run from outside (the watchdog) so that its writes stop: mark it failed,
    which every write's permit reads, then wait (at most one request's time) for the
    requests already sent to land and be counted, so its audit line tells all."""
    store.fail(why)
    deadline = time.monotonic() + request_seconds
    while store.writers_active(within=request_seconds) and time.monotonic() < deadline:
        time.sleep(0.1)


def looping_cursor(page_no: int, earlier: int) -> str:
    return (
        f"the platform's nextPageUri after page {page_no} points back to page {earlier}:"
        " its paging loops, so the list cannot be read whole; nothing was written"
    )


def volatile_redis_refusal(store: RunStore, *, allowed: bool) -> str:
    """Before a run's first write: why it must not write (its Redis would lose the plan,
    the archive and the done markers in a restart), or "" when it may."""
    if allowed:
        return ""
    problem = persistence_problem(store.redis)
    if not problem:
        return ""
    return (
        f"Redis {problem}: a restart mid-write would lose this run's plan and archive, so"
        " nothing was written; enable AOF (appendonly yes) with maxmemory-policy noeviction,"
        " or accept the risk with `cxsweep run --allow-volatile-redis`"
        " (CXSWEEP_ALLOW_VOLATILE_REDIS=1 for scheduled sweeps)"
    )


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
        # The purge guard weighs phone values as well as records: blanking secondary
        # numbers destroys data without removing a record.
        values = sum(1 for name in fields if _filled(contact.get(name)))
        counts["phone_values"] += values
        good = [(name, v) for name, v in present if v.kept]
        if not good:
            reason = str(present[0][1].reason)
            counts["values_destroyed"] += values
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
                counts["values_destroyed"] += 1
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
        counts["phone_values"] += sum(1 for f in backend.phone_fields if _filled(contact.get(f)))
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
            counts["values_destroyed"] += sum(1 for v in entry.before.values() if _filled(v))
            counts["to_remove"] += 1
            counts[REASON_PREFIX + str(entry.reason)] += 1
            plan.removes.append(entry)
        else:
            counts["values_destroyed"] += sum(
                1 for f, v in entry.after.items() if v == "" and _filled(entry.before.get(f))
            )
            counts["to_update"] += 1
            record = contact if backend.update_needs_record else None
            plan.updates.append(PlanEntry(contact_id, entry.before, entry.after, None, record))
    counts["fetched"] += len(contacts)
    counts["planned_seen"] += len(plan.updates) + len(plan.removes) + len(plan.stale)
    return plan


def recheck_states(
    store: RunStore, backend: Backend, contacts: Sequence[dict[str, Any]]
) -> dict[str, str]:
    """The verify pass over one re-read page: each planned contact on it is ``fresh``
    (as the plan saw it) or ``stale`` (changed since), judged as ``apply`` judges a plan."""
    ids = [backend.contact_id(contact) for contact in contacts]
    judged = plan_page_from_plan(contacts, store.plan_index_among(ids), backend)
    states = {entry.contact_id: "fresh" for entry in judged.updates + judged.removes}
    states.update(dict.fromkeys(judged.stale, "stale"))
    return states


def following_cursor(
    backend: Backend, list_id: str, page_no: int, page: Page, page_size: int
) -> str | None:
    """The cursor of the page after ``page_no``: the platform's, or for offset paging with
    a total, built from the first page's size as ``fetch_page`` builds them (a platform
    may serve fewer records than asked)."""
    if not backend.parallel_pages or page.total is None:
        return page.next_cursor
    if not page.contacts or (page_no + 1) * page_size >= page.total:
        return None
    return backend.page_cursor(list_id, page_no + 1, page_size)


def fresh_entries(store: RunStore, entries: list[PlanEntry]) -> list[PlanEntry]:
    """The entries a write may send: those the re-read found as planned. The rest were
    changed or removed by someone else since our read, and are reported as stale."""
    try:
        states = store.claim_fresh([e.contact_id for e in entries])
    except redis.ResponseError as exc:
        raise CxsweepError(str(exc)) from None
    return [e for e, state in zip(entries, states, strict=True) if state == "fresh"]


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
    writer = f"restore:{page_no}"
    try:
        _restore_writes(
            restore, backend, list_id, writer, threshold, patchable, recreate, recreate_in_place
        )
    finally:
        restore.writer_done(writer)
    restore.mark_chunk_done("restore", page_no)
    recreated = len(recreate) + len(recreate_in_place)
    return {"ok": True, "page": page_no, "recreated": recreated, "reverted": len(patchable)}


def _restore_writes(
    restore: RunStore,
    backend: Backend,
    list_id: str,
    writer: str,
    threshold: int,
    patchable: list[dict[str, Any]],
    recreate: list[dict[str, Any]],
    recreate_in_place: list[dict[str, Any]],
) -> None:
    fields, size = backend.phone_fields, backend.update_batch_size
    for start in range(0, len(patchable), size):
        batch = patchable[start : start + size]
        changes = [
            Change(backend.contact_id(r), {f: str(r.get(f) or "") for f in fields}, record=r)
            for r in batch
        ]
        outcome = _guarded(
            restore, list_id, writer, threshold, partial(backend.update_contacts, list_id, changes)
        )
        restore.record_failures(outcome.failed)
        restore.record_restored(outcome.done, "reverted")
    for start in range(0, len(recreate), size):
        batch = recreate[start : start + size]
        created = _guarded(
            restore, list_id, writer, threshold, partial(backend.create_contacts, list_id, batch)
        )
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
            send = partial(backend.remove_contacts, list_id, batch_ids)
            _guarded(restore, list_id, writer, threshold, send)
        created = _guarded(
            restore, list_id, writer, threshold, partial(backend.create_contacts, list_id, batch)
        )
        restore.record_failures(created.failed)
        # The run changed these contacts' numbers (it did not remove them): reverted.
        restore.record_restored(created.done + created.missing, "reverted")


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
    # Whole means: the last page was seen (one without a next page), and every page
    # from the first to it was sanitized. Reading that stopped early judges nothing.
    if not meta.get("pages_total"):
        return Judgement(
            "failed",
            f"the list's last page was never read ({counts.get('pages_read', 0)} page(s) read):"
            " the plan is incomplete, nothing was written",
        )
    pages_total = int(meta["pages_total"])
    missing = store.pages_missing(pages_total)
    if missing:
        shown = ", ".join(str(n) for n in missing[:10]) + (" ..." if len(missing) > 10 else "")
        return Judgement(
            "failed",
            f"{len(missing)} of {pages_total} pages were never sanitized ({shown}):"
            " the plan is incomplete, nothing was written",
        )
    total, removals = counts.get("fetched", 0), counts.get("to_remove", 0)
    values, destroyed = counts.get("phone_values", 0), counts.get("values_destroyed", 0)
    ratio = removals / total if total else 0.0
    value_ratio = destroyed / values if values else 0.0
    guard = ""
    if ratio > max_purge_ratio or value_ratio > max_purge_ratio:
        guard = (
            f"the plan would remove {removals} of {total} contacts ({ratio:.1%}) and destroy"
            f" {destroyed} of {values} phone values ({value_ratio:.1%}), above the purge guard"
            f" of {max_purge_ratio:.0%}"
        )
        ratio = max(ratio, value_ratio)
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


def _guarded(
    store: RunStore, list_id: str, writer: str, threshold: int, send: Callable[[], WriteOutcome]
) -> WriteOutcome:
    """Send one write request if the run may still write (``RunStore.permit_write``),
    feeding its outcome to the run's breaker."""
    why = store.permit_write(list_id, writer)
    if why:
        raise WriteStopped(why)
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
    entries = fresh_entries(store, [e for e in entries if e.contact_id not in duplicates])
    if not entries:
        store.commit_update_chunk(index, 0)
        return {"ok": True, "kind": "update", "chunk": index, "updated": 0}
    changes = [Change(e.contact_id, e.after or {}, record=e.record or {}) for e in entries]
    writer = f"update:{index}"
    try:
        send = partial(backend.update_contacts, list_id, changes)
        outcome = _guarded(store, list_id, writer, threshold, send)
        store.record_failures(outcome.failed)
        store.commit_update_chunk(index, len(outcome.done))
    finally:
        store.writer_done(writer)
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
    entries = fresh_entries(store, store.plan_slice("remove", index * size, (index + 1) * size))
    ids = [e.contact_id for e in entries]
    done = store.removed_ids_among(ids)
    pending = [cid for cid in ids if cid not in done]
    failed: dict[str, str] = {}
    writer = f"remove:{index}"
    try:
        why = store.permit_write(list_id, writer) if pending else ""
        for start in range(0, len(pending), backend.remove_batch_size):
            # Checked right before every request (read back with the previous one's
            # outcome, in the same round trip): once the breaker trips or the run loses
            # its list, no further removal leaves.
            if why:
                raise WriteStopped(why)
            batch = pending[start : start + backend.remove_batch_size]
            try:
                outcome = backend.remove_contacts(list_id, batch)
            except RetryableApiError as exc:
                if exc.is_server_error:
                    store.note_write_outcome(server_error=True, threshold=threshold)
                raise
            why = store.record_removed(outcome.done, outcome.missing, list_id, writer)
            failed.update(outcome.failed)
    finally:
        store.writer_done(writer)
    store.record_failures(failed)
    store.mark_chunk_done("remove", index)
    result: dict[str, Any] = {"ok": not failed, "kind": "remove", "chunk": index}
    result["failed"] = len(failed)
    if failed:
        cid, why = next(iter(failed.items()))
        result["error"] = f"{len(failed)} record(s) not removed, e.g. {cid}: {why}"
    return result
