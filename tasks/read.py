"""A run's first phase, a chord: ``fetch_page`` reads page n, stores its contacts in Redis
and adds to its own chord ``sanitize_page(n, k)`` (pages n to n + k - 1, about a thousand
contacts) and ``fetch_page(n + 1)``; sanitizing pages 1 and 2 so runs while page 3 is
read. The chord's callback ``plan_ready`` sees the whole plan, judges it and starts the
re-read before writing (``tasks.recheck``, ``tasks.write``).

Header tasks never raise for good: they return a ``Failure`` so the callback always runs
and records the failure. One that fails anyway (a bug, a hard time limit) fails its
chord, whose errback ``chord_failed`` ends the run (``tasks.record``). Arguments and
results are ids and small counts.
"""

from __future__ import annotations

import time
from typing import Any

from celery import chord, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils import uuid

from cxsweep.errors import CxsweepError, RetryableApiError
from cxsweep.runs import keys, pages, plan, writes
from cxsweep.runs.store import RunStore
from tasks._deps import (
    ApiTask,
    api_backend,
    backoff_seconds,
    directive_for,
    fail_run,
    keep_lock,
    pages_ahead,
    run_store,
    sanitizer_for,
    settings,
    shared_backend,
)
from tasks.recheck import recheck_list
from tasks.record import on_failure_end, record_later
from tasks.results import Failure, Handed, PagePlanned, PageRead
from tasks.write import list_verified

# Reading pauses while this many pages wait to be sanitized: Redis holds that many.
PAGES_AHEAD = 16
BACK_PRESSURE_WAIT = 0.5
# Read pages are handed to sanitize tasks about this many contacts at a time: a task
# costs the worker milliseconds of Celery plumbing whatever it does, as much as judging
# a few hundred numbers, so a page of 500 per task paid it once per 500 contacts.
CONTACTS_PER_SANITIZE = 1000


@shared_task(name="tasks.sweep.begin_run", ignore_result=True)
def begin_run(run_id: str) -> None:
    """Phase 1 of a run whose metadata the CLI (or a scheduled sweep) stored. Built by a
    worker: a client that sent the chord itself would hold a result subscription."""
    store = run_store(run_id)
    if not store.once("begin"):
        return  # sent again (or redelivered): the run's chord exists already
    chord([fetch_page.si(run_id, 0)])(on_failure_end(plan_ready.s(run_id), run_id))


def _fetch_later(task: ApiTask, store: RunStore, page_no: int, countdown: float) -> None:
    """Send the fetch of ``page_no`` again, later. When this task claimed that page, the
    claim goes to the new task: another id must not be turned away as a duplicate."""
    store.note_read_pause()
    again = uuid()
    if store.hand_off(f"fetch:{page_no}", task.request.id, again) or not store.claimed(
        f"fetch:{page_no}"
    ):
        task.add_to_chord(
            fetch_page.si(store.run_id, page_no).set(countdown=countdown, task_id=again)
        )


def _reading_waits(store: RunStore, *, ahead_by: int) -> bool:
    """Whether reading one more page would leave ``PAGES_AHEAD`` pages waiting to be
    sanitized (``ahead_by``: pages read and not counted yet)."""
    counts = store.counts()
    waiting = counts.get(keys.PAGES_READ, 0) + ahead_by - counts.get(keys.PAGES_SANITIZED, 0)
    return waiting >= PAGES_AHEAD


@shared_task(bind=True, base=ApiTask, name="tasks.sweep.fetch_page")
def fetch_page(
    self: ApiTask, run_id: str, page_no: int, legacy_cursor: str | None = None
) -> PageRead | Failure:
    """Read pages from ``page_no`` on, several in a row (a task per page costs more than
    reading it), each handed at once to its own sanitize task; then hand the rest of
    the list to a fresh fetch task. Reading waits while too many pages are unsanitized:
    memory stays bounded however long the list. Cursors (the platform's URLs) wait in
    Redis (``RunStore.cursor``): task arguments are ids and numbers only
    (``legacy_cursor``: a message sent by an earlier version, which passed it along)."""
    store = run_store(run_id)
    if not store.claim(f"fetch:{page_no}", self.request.id):
        return {"ok": True, "page": page_no, "repeat": True}
    meta = store.meta()
    if meta.get("error"):
        return {"ok": False, "page": page_no, "error": "run already failed"}
    if meta.get("cancelled"):  # the rest is not read: plan_ready records the run
        return {"ok": False, "page": page_no, "error": "run cancelled"}
    list_id = meta["list_id"]
    keep_lock(store, list_id)
    cursor = store.cursor(page_no) or legacy_cursor
    if page_no > 0 and cursor is None:
        return fail_run(store, f"the cursor of page {page_no} is not in Redis", page=page_no)
    started, first, read = time.monotonic(), page_no, 0
    # Pages read and not yet handed to a sanitize task (contiguous): handed a few at a
    # time (``CONTACTS_PER_SANITIZE``), and whatever is left when the loop ends.
    unsanitized: list[int] = []
    unsanitized_contacts = 0
    with api_backend(store) as backend, pages_ahead(backend, list_id) as ahead:
        # ``ahead``: the next page is asked for as soon as its cursor is known, while this
        # one is stored and handed on (it is read only when this task would read it).
        while True:
            if page_no == first and _reading_waits(store, ahead_by=0):
                _fetch_later(self, store, page_no, BACK_PRESSURE_WAIT)
                break
            try:
                page = ahead.take(cursor)
            except RetryableApiError as exc:
                if page_no != first:
                    # Keep what this task read; a fresh task (with its own retry budget)
                    # takes this page on, as late as the server asked.
                    wait = exc.retry_after if exc.retry_after is not None else backoff_seconds(0)
                    self.add_to_chord(fetch_page.si(run_id, page_no).set(countdown=wait))
                    break
                gave_up = self.retry_or_give_up(exc, store)
                return fail_run(store, gave_up["error"], task=gave_up["task"], page=page_no)
            except CxsweepError as exc:
                return fail_run(store, str(exc), page=page_no)
            following = None if backend.parallel_pages else page.next_cursor
            if following:
                earlier = store.note_cursor(page_no + 1, following)
                if earlier is not None:
                    return fail_run(store, pages.looping_cursor(page_no, earlier), page=page_no)
            reads_on = bool(following) and pages.task_reads_another(read + 1, started)
            # The back pressure for the next page, checked before it is asked for: this
            # page is not counted as read yet.
            waits = reads_on and _reading_waits(store, ahead_by=1)
            if reads_on and not waits:
                ahead.start(following)
            if not store.page_committed(page_no):  # a redelivered task re-reads
                store.store_page(page_no, page.contacts)
            store.note_page_read(page_no, len(page.contacts))
            store.add_warnings(page.warnings)
            read += 1
            if page.total is not None and page_no == 0:
                store.set_meta(total_records=page.total)
            unsanitized.append(page_no)
            unsanitized_contacts += len(page.contacts)
            if unsanitized_contacts >= CONTACTS_PER_SANITIZE:
                self.add_to_chord(sanitize_page.si(run_id, unsanitized[0], len(unsanitized)))
                unsanitized, unsanitized_contacts = [], 0
            if page_no == 0 and backend.parallel_pages and page.total is not None:
                # Offset paging with a known total: every other page is read at once.
                size = max(1, len(page.contacts))
                count = pages.page_count(page.total, len(page.contacts))
                for number in range(1, count):
                    store.note_cursor(number, backend.page_cursor(list_id, number, size))
                    self.add_to_chord(fetch_page.si(run_id, number))
                store.set_meta(pages_total=count)
                break
            if backend.parallel_pages:
                break
            if not following:
                store.set_meta(pages_total=page_no + 1)
                break
            page_no, cursor = page_no + 1, following
            if waits:
                _fetch_later(self, store, page_no, BACK_PRESSURE_WAIT)
                break
            if not reads_on:
                self.add_to_chord(fetch_page.si(run_id, page_no))
                break
        # Every way out of the loop but a failed run comes here: no read page is left
        # without its sanitize task (the plan is judged only when every page committed).
        if unsanitized:
            self.add_to_chord(sanitize_page.si(run_id, unsanitized[0], len(unsanitized)))
    return {"ok": True, "page": first, "pages": read}


@shared_task(bind=True, base=ApiTask, name="tasks.sweep.sanitize_page")
def sanitize_page(
    self: ApiTask, run_id: str, page_no: int, pages: int = 1
) -> PagePlanned | Failure:
    """Sanitize ``pages`` read pages from ``page_no`` on, each committed on its own and
    once: a retried or redelivered task skips the pages it committed already."""
    store = run_store(run_id)
    backend = shared_backend()
    done: PagePlanned = {"ok": True, "page": page_no, "update": 0, "remove": 0}
    repeats = 0
    for number in range(page_no, page_no + pages):
        contacts = store.load_page(number)
        if contacts is None:
            if store.page_committed(number):
                repeats += 1
                continue
            return fail_run(store, f"page {number} is no longer in Redis (expired?)")
        try:
            judged = plan.plan_stored_page(store, number, contacts, backend, sanitizer_for)
        except RetryableApiError as exc:  # the paid line-type look-up, throttled or down
            gave_up = self.retry_or_give_up(exc, store)
            return fail_run(store, f"sanitizing page {number}: {gave_up['error']}", page=number)
        except (CxsweepError, SoftTimeLimitExceeded) as exc:
            return fail_run(store, f"sanitizing page {number}: {exc}")
        done["update"] = done.get("update", 0) + len(judged.updates)
        done["remove"] = done.get("remove", 0) + len(judged.removes)
    if repeats == pages:
        return {"ok": True, "page": page_no, "repeat": True}
    return done


@shared_task(bind=True, name="tasks.sweep.plan_ready")
def plan_ready(self: Any, results: list[Any], run_id: str) -> Handed:
    store = run_store(run_id)
    if not store.once("plan_ready"):
        # Delivered again (a redelivery, a second publish): the first delivery judged the
        # plan and sent the writes or recorded the run; doing it again would undo that.
        return {"ok": True, "repeat": True}
    meta = store.meta()
    if meta.get("cancelled"):
        return record_later(run_id, "cancelled", meta["cancelled"])
    max_ratio = plan.purge_limit(store.options(), meta["list_id"], directive_for)
    store.resolve_duplicates()
    judgement = plan.judge_plan(
        store, results, dry_run=meta.get("dry_run") == "1", max_purge_ratio=max_ratio
    )
    if judgement.status != "write":
        return record_later(run_id, judgement.status, judgement.message)
    # Fixes the run's removal task size to the fleet's slots (every later call reads it).
    chunks = writes.write_chunks(store, shared_backend(), slots=settings().write_slots)
    if not chunks:
        return record_later(run_id, "completed", "nothing to write")
    refusal = writes.volatile_redis_refusal(
        store, allowed_by_settings=settings().allow_volatile_redis
    )
    if refusal:
        return record_later(run_id, "halted", refusal)
    store.set_meta(status="writing", chunks_total=len(chunks))
    # Nothing is written before the list is re-read: a contact someone changed or removed
    # since our read is skipped and reported as stale (list_verified starts the writes).
    # Tagged by write chunk: the verify pass sends each chunk once it has judged it.
    store.index_plan(writes.run_chunk_sizes(store, shared_backend()))
    chord([recheck_list.si(run_id, "verify", 0)])(on_failure_end(list_verified.s(run_id), run_id))
    return {"ok": True, "chunks": len(chunks)}
