"""The sweep pipeline as Celery tasks.

Phase 1, a chord: ``fetch_page`` reads page n, stores its contacts in Redis and adds to
its own chord ``sanitize_page(n)`` and ``fetch_page(n + 1)``; sanitizing page 1 so runs
while page 2 is read. The chord's callback ``plan_ready`` sees the whole plan and judges
it. Phase 2, a second chord: one ``write_updates`` per 100 changed numbers and one
``write_removals`` per chunk of rejects; its callback ``finish_run`` records the run.

Header tasks never raise for good: they return ``{"ok": False, ...}`` so the callback
always runs and records the failure. One that fails anyway (a bug, a hard time limit)
fails its chord, whose errback ``chord_failed`` ends the run. Every end goes through
``record_outcome``, retried until the run is recorded. Arguments and results are ids and
small counts.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from celery import Signature, chord, current_app, shared_task
from celery.exceptions import ChordError, SoftTimeLimitExceeded
from celery.utils import uuid

from cxsweep import latency, metrics
from cxsweep.errors import CxsweepError, RetryableApiError
from cxsweep.runs import audit, webhook
from cxsweep.runs import steps as sweep
from cxsweep.runs.redelivery import UnackedMessages
from cxsweep.runs.store import ListLock, RunStore, overdue_runs
from tasks._deps import (
    ApiTask,
    api_backend,
    backend_for,
    backoff_seconds,
    directive_for,
    redis_client,
    run_store,
    sanitizer_for,
    settings,
)

log = logging.getLogger(__name__)

# List positions are page_no * this + index: pages never hold this many contacts.
PAGE_POSITIONS = 10_000_000
# Pages one fetch task reads before handing the rest to a fresh task (so no task runs
# for minutes and a crash re-reads little), and how long at most.
PAGES_PER_TASK = 10
SECONDS_PER_TASK = 2.0
# Reading pauses while this many pages wait to be sanitized: Redis holds that many.
PAGES_AHEAD = 16
BACK_PRESSURE_WAIT = 0.5


@shared_task(name="tasks.sweep.begin_run", ignore_result=True)
def begin_run(run_id: str) -> None:
    """Phase 1 of a run whose metadata the CLI (or a scheduled sweep) stored. Built by a
    worker: a client that sent the chord itself would hold a result subscription."""
    store = run_store(run_id)
    if not store.once("begin"):
        return  # sent again (or redelivered): the run's chord exists already
    chord([fetch_page.si(run_id, 0)])(on_failure_end(plan_ready.s(run_id), run_id))


def on_failure_end(callback: Signature, run_id: str) -> Signature:
    """``callback`` of one of the run's chords, which fails the run if a header task (or
    the callback itself) fails for good: a bug, a hard time limit, an unexpected error.
    Header tasks return their expected failures; this is for the rest."""
    return callback.on_error(chord_failed.s(run_id))


def _keep_lock(store: RunStore, list_id: str) -> None:
    """A run that progresses keeps its list; one whose workers all died lets it expire."""
    if not ListLock(store.redis, list_id).renew(store.run_id):
        log.warning("run %s no longer holds the lock of list %s", store.run_id, list_id)


def _failed(store: RunStore, message: str, **extra: Any) -> dict[str, Any]:
    store.fail(message)
    log.warning("run %s: %s", store.run_id, message)
    return {"ok": False, "error": message, **extra}


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


@shared_task(bind=True, base=ApiTask, name="tasks.sweep.fetch_page")
def fetch_page(
    self: ApiTask, run_id: str, page_no: int, legacy_cursor: str | None = None
) -> dict[str, Any]:
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
    _keep_lock(store, list_id)
    cursor = store.cursor(page_no) or legacy_cursor
    if page_no > 0 and cursor is None:
        return _failed(store, f"the cursor of page {page_no} is not in Redis", page=page_no)
    started, first, read = time.monotonic(), page_no, 0
    with api_backend(store) as backend:
        while True:
            counts = store.counts()
            if counts.get("pages_read", 0) - counts.get("pages_sanitized", 0) >= PAGES_AHEAD:
                _fetch_later(self, store, page_no, BACK_PRESSURE_WAIT)
                break
            try:
                page = backend.read_page(list_id, cursor)
            except RetryableApiError as exc:
                if page_no != first:
                    # Keep what this task read; a fresh task (with its own retry budget)
                    # takes this page on, as late as the server asked.
                    wait = exc.retry_after if exc.retry_after is not None else backoff_seconds(0)
                    self.add_to_chord(fetch_page.si(run_id, page_no).set(countdown=wait))
                    break
                gave_up = self.retry_or_give_up(exc, store)
                return _failed(store, gave_up["error"], task=gave_up["task"], page=page_no)
            except CxsweepError as exc:
                return _failed(store, str(exc), page=page_no)
            if not store.page_committed(page_no):  # a redelivered task re-reads
                store.store_page(page_no, page.contacts)
            store.note_page_read(page_no, len(page.contacts))
            read += 1
            if page.total is not None and page_no == 0:
                store.set_meta(total_records=page.total)
            self.add_to_chord(sanitize_page.si(run_id, page_no))
            if page_no == 0 and backend.parallel_pages and page.total is not None:
                # Offset paging with a known total: every other page is read at once.
                size = max(1, len(page.contacts))
                pages = -(-page.total // size) if page.contacts else 1
                for number in range(1, pages):
                    store.note_cursor(number, backend.page_cursor(list_id, number, size))
                    self.add_to_chord(fetch_page.si(run_id, number))
                store.set_meta(pages_total=pages)
                break
            if backend.parallel_pages:
                break
            if not page.next_cursor:
                store.set_meta(pages_total=page_no + 1)
                break
            earlier = store.note_cursor(page_no + 1, page.next_cursor)
            if earlier is not None:
                return _failed(store, sweep.looping_cursor(page_no, earlier), page=page_no)
            page_no, cursor = page_no + 1, page.next_cursor
            if read >= PAGES_PER_TASK or time.monotonic() - started > SECONDS_PER_TASK:
                self.add_to_chord(fetch_page.si(run_id, page_no))
                break
    return {"ok": True, "page": first, "pages": read}


@shared_task(bind=True, base=ApiTask, name="tasks.sweep.sanitize_page")
def sanitize_page(self: ApiTask, run_id: str, page_no: int) -> dict[str, Any]:
    store = run_store(run_id)
    contacts = store.load_page(page_no)
    if contacts is None:
        if store.page_committed(page_no):
            return {"ok": True, "page": page_no, "repeat": True}
        return _failed(store, f"page {page_no} is no longer in Redis (expired?)")
    backend = backend_for(store)
    contacts, repeated = sweep.unique_contacts(store, page_no, contacts, backend)
    try:
        if store.options().get("apply"):
            ids = [backend.contact_id(c) for c in contacts]
            plan = sweep.plan_page_from_plan(contacts, store.planned_among(ids), backend)
            store.note_stale(plan.stale)
        else:
            list_id = store.meta()["list_id"]
            keep_first = directive_for(list_id).duplicates == "keep_first"
            plan = sweep.plan_page(
                contacts,
                sanitizer_for(list_id),
                backend,
                first_position=page_no * PAGE_POSITIONS if keep_first else None,
            )
    except RetryableApiError as exc:  # the paid line-type look-up, throttled or down
        gave_up = self.retry_or_give_up(exc, store)
        return _failed(store, f"sanitizing page {page_no}: {gave_up['error']}", page=page_no)
    except (CxsweepError, SoftTimeLimitExceeded) as exc:
        return _failed(store, f"sanitizing page {page_no}: {exc}")
    plan.counts["repeated_id"] += repeated
    store.commit_page(page_no, plan.updates, plan.removes, plan.counts, plan.archive, plan.numbers)
    return {
        "ok": True,
        "page": page_no,
        "update": len(plan.updates),
        "remove": len(plan.removes),
    }


@shared_task(bind=True, name="tasks.sweep.plan_ready")
def plan_ready(self: Any, results: list[Any], run_id: str) -> dict[str, Any]:
    store = run_store(run_id)
    if not store.once("plan_ready"):
        # Delivered again (a redelivery, a second publish): the first delivery judged the
        # plan and sent the writes or recorded the run; doing it again would undo that.
        return {"ok": True, "repeat": True}
    meta = store.meta()
    if meta.get("cancelled"):
        return record_later(run_id, "cancelled", meta["cancelled"])
    allowed = store.options().get("allow_purge_ratio")
    max_ratio = (
        float(allowed) if allowed is not None else directive_for(meta["list_id"]).max_purge_ratio
    )
    store.resolve_duplicates()
    judgement = sweep.judge_plan(
        store, results, dry_run=meta.get("dry_run") == "1", max_purge_ratio=max_ratio
    )
    if judgement.status != "write":
        return record_later(run_id, judgement.status, judgement.message)
    chunks = sweep.write_chunks(store, backend_for(store))
    if not chunks:
        return record_later(run_id, "completed", "nothing to write")
    refusal = sweep.volatile_redis_refusal(store, allowed=_volatile_allowed(store))
    if refusal:
        return record_later(run_id, "halted", refusal)
    store.set_meta(status="writing", chunks_total=len(chunks))
    # Nothing is written before the list is re-read: a contact someone changed or removed
    # since our read is skipped and reported as stale (list_verified starts the writes).
    store.index_plan()
    chord([recheck_list.si(run_id, "verify", 0)])(on_failure_end(list_verified.s(run_id), run_id))
    return {"ok": True, "chunks": len(chunks)}


def _unsuccessful(results: list[Any]) -> list[Any]:
    return [r for r in results if not (isinstance(r, dict) and r.get("ok"))]


def _why(result: Any, default: str) -> str:
    return str(result.get("error", default)) if isinstance(result, dict) else str(result)


@shared_task(bind=True, base=ApiTask, name="tasks.sweep.recheck_list")
def recheck_list(self: ApiTask, run_id: str, kind: str, page_no: int) -> dict[str, Any]:
    """Re-read the list from page ``page_no`` on. ``verify`` (before any write) judges
    each planned contact fresh or stale; ``confirm`` (after the removals) finds removed
    contacts the list still holds. Pages come one after another, a few to a task as in
    ``fetch_page``; the next page's cursor waits in Redis, not in task arguments."""
    store = run_store(run_id)
    list_id = store.meta()["list_id"]
    _keep_lock(store, list_id)
    what = "re-reading the list " + ("before writing" if kind == "verify" else "after removals")
    # Paging that never ends (a cursor that loops) must not read forever.
    most = 2 * store.counts().get("pages_read", 0) + 2
    started, first, still_present = time.monotonic(), page_no, []
    with api_backend(store, tag=kind) as backend:
        while True:
            cursor, size = store.pass_cursor(kind, page_no)
            if page_no >= most or (page_no and cursor is None):
                return _failed(store, f"{what}: page {page_no + 1} is past the list's end")
            try:
                page = backend.read_page(list_id, cursor)
            except RetryableApiError as exc:
                if page_no != first:
                    wait = exc.retry_after if exc.retry_after is not None else backoff_seconds(0)
                    self.add_to_chord(recheck_list.si(run_id, kind, page_no).set(countdown=wait))
                    break
                gave_up = self.retry_or_give_up(exc, store)
                return _failed(store, f"{what}: {gave_up['error']}", task=gave_up["task"])
            except CxsweepError as exc:
                return _failed(store, f"{what}: {exc}")
            size = size or len(page.contacts)
            following = sweep.following_cursor(backend, list_id, page_no, page, size)
            if kind == "verify":
                states = sweep.recheck_states(store, backend, page.contacts)
                store.record_recheck_page(kind, page_no, following, size, states)
            else:
                ids = [backend.contact_id(contact) for contact in page.contacts]
                still_present += store.confirm_page(page_no, following, size, ids)
            if not following:
                break
            page_no += 1
            if page_no - first >= PAGES_PER_TASK or time.monotonic() - started > SECONDS_PER_TASK:
                self.add_to_chord(recheck_list.si(run_id, kind, page_no))
                break
    if still_present:
        shown = ", ".join(still_present[:5])
        return {"ok": False, "error": f"{len(still_present)} still present after DELETE: {shown}"}
    return {"ok": True, "kind": kind, "page": first}


@shared_task(bind=True, name="tasks.sweep.list_verified")
def list_verified(self: Any, results: list[Any], run_id: str) -> dict[str, Any]:
    """The list was re-read: the writes start; each sends only fresh contacts."""
    store = run_store(run_id)
    failed = _unsuccessful(results)
    if failed:
        why = _why(failed[0], "a re-read failed")
        return record_later(run_id, "failed", f"nothing was written: {why}")
    # A callback redelivered after a crash sends its chord again (not guarded by once():
    # a crash mid-send would leave a chord that never completes); chunks run once anyway.
    store.set_verified()
    chunks = sweep.write_chunks(store, backend_for(store))
    header = [
        write_updates.si(run_id, index) if kind == "update" else write_removals.si(run_id, index)
        for kind, index in chunks
    ]
    chord(header)(on_failure_end(writes_done.s(run_id), run_id))
    return {"ok": True, "chunks": len(chunks)}


@shared_task(bind=True, name="tasks.sweep.writes_done")
def writes_done(self: Any, results: list[Any], run_id: str) -> dict[str, Any]:
    """After removals, the list is read once more: a contact it still holds was not
    removed, whatever its DELETE was answered."""
    store = run_store(run_id)
    if store.halted() or not store.removed_count():
        return finish_run(results, run_id)
    store.keep_write_results(_unsuccessful(results))
    chord([recheck_list.si(run_id, "confirm", 0)])(
        on_failure_end(removals_confirmed.s(run_id), run_id)
    )
    return {"ok": True, "confirming": True}


@shared_task(bind=True, name="tasks.sweep.removals_confirmed")
def removals_confirmed(self: Any, results: list[Any], run_id: str) -> dict[str, Any]:
    store = run_store(run_id)
    writes, confirm = store.write_results(), _unsuccessful(results)
    still_present = store.counts().get("still_present", 0)
    if confirm and not writes and not still_present:
        why = _why(confirm[0], "the re-read failed")
        return record_later(run_id, "failed", f"the removals are not confirmed: {why}")
    if still_present and not confirm:
        # Found by a twin of this pass (a redelivered callback ran it twice): still failed.
        confirm = [{"ok": False, "error": f"{still_present} still present after DELETE"}]
    return finish_run(writes + confirm, run_id)


def _volatile_allowed(store: RunStore) -> bool:
    return bool(store.options().get("allow_volatile_redis")) or settings().allow_volatile_redis


def _write(task: ApiTask, run_id: str, kind: str, index: int) -> dict[str, Any]:
    store = run_store(run_id)
    list_id = store.meta()["list_id"]
    _keep_lock(store, list_id)
    threshold = settings().breaker_threshold
    apply = sweep.apply_update_chunk if kind == "update" else sweep.apply_remove_chunk
    try:
        with api_backend(store) as backend:
            result = apply(store, backend, list_id, index, threshold=threshold)
    except RetryableApiError as exc:
        if store.halted():
            return {"ok": False, "kind": kind, "chunk": index, "halted": True}
        return {**task.retry_or_give_up(exc, store), "kind": kind, "chunk": index}
    except CxsweepError as exc:
        log.warning("run %s: %s chunk %d failed: %s", run_id, kind, index, exc)
        return {"ok": False, "kind": kind, "chunk": index, "error": str(exc)}
    return result


@shared_task(bind=True, base=ApiTask, name="tasks.sweep.write_updates")
def write_updates(self: ApiTask, run_id: str, index: int) -> dict[str, Any]:
    return _write(self, run_id, "update", index)


@shared_task(bind=True, base=ApiTask, name="tasks.sweep.write_removals")
def write_removals(self: ApiTask, run_id: str, index: int) -> dict[str, Any]:
    return _write(self, run_id, "remove", index)


@shared_task(bind=True, name="tasks.sweep.finish_run")
def finish_run(self: Any, results: list[Any], run_id: str) -> dict[str, Any]:
    store = run_store(run_id)
    meta = store.meta()
    if meta.get("cancelled"):
        return record_later(run_id, "cancelled", meta["cancelled"])
    halted = meta.get("halted")
    if halted:
        return record_later(run_id, "halted", halted)
    if meta.get("error"):  # failed while writing: lost its list, or the watchdog
        return record_later(run_id, "failed", meta["error"])
    failures = [r for r in results if not (isinstance(r, dict) and r.get("ok"))]
    if failures:
        first = failures[0]
        message = first.get("error", "a write failed") if isinstance(first, dict) else str(first)
        return record_later(run_id, "failed", f"{len(failures)} write chunk(s) failed: {message}")
    return record_later(run_id, "completed")


def _what_failed(request: Any, exc: BaseException) -> str:
    """'<task name>[<task id>]: <error>' for the task behind a chord's failure."""
    task_id, error = str(getattr(request, "id", "") or "?"), repr(exc)
    name = str(getattr(request, "task", "") or "a task")
    if isinstance(exc, ChordError):
        # "Dependency <task id> raised <error>": a header task failed for good. Its name
        # is in its stored result (result_extended).
        found = re.match(r"Dependency (\S+) raised (.*)", str(exc), re.DOTALL)
        if found:
            task_id, error = found.group(1), found.group(2)
            try:
                name = str(current_app.AsyncResult(task_id).name or "a task")
            except Exception:  # the error path must not fail on a lookup
                name = "a task"
    return f"{name}[{task_id}] failed: {error}"[:400]


@shared_task(name="tasks.sweep.chord_failed", ignore_result=True)
def chord_failed(request: Any, exc: BaseException, traceback: Any, run_id: str) -> None:
    """Errback of a run's chord callbacks: called by Celery, in the worker that saw the
    failure, when a header task failed for good (``ChordError``) or the callback itself
    failed. The run ends ``failed`` with a line naming the task and the error."""
    message = _what_failed(request, exc)
    log.error("run %s: %s", run_id, message)
    store = run_store(run_id)
    store.fail(message)
    record_later(run_id, "failed", message)


def record_later(run_id: str, status: str, message: str = "") -> dict[str, Any]:
    """Hand the run's recording to ``record_outcome``, a task retried until it works."""
    record_outcome.delay(run_id, status, message)
    return {"ok": True, "status": status}


@shared_task(
    bind=True,
    name="tasks.sweep.record_outcome",
    ignore_result=True,
    # Until it succeeds: a run that is not recorded keeps its list locked and its
    # operator waiting. A full disk or an audit log path that became a directory is
    # fixed by hand; the next retry then finishes the job.
    autoretry_for=(Exception,),
    max_retries=None,
    retry_backoff=1,
    retry_backoff_max=300,
    retry_jitter=False,
)
def record_outcome(self: Any, run_id: str, status: str, message: str = "") -> dict[str, Any]:
    store = run_store(run_id)
    try:
        return record_run(store, status, message, owner=self.request.id)
    except Exception as exc:
        store.set_meta(record_error=f"recording the run failed: {exc!r}"[:300])
        log.warning("run %s: recording failed, will retry: %r", run_id, exc)
        raise


def record_run(store: RunStore, status: str, message: str = "", *, owner: str) -> dict[str, Any]:
    """Write the audit line, free the list and send the webhook: once per run.

    The first ``owner`` (a ``record_outcome`` task id) to claim the run records it; its
    retries may finish what a failed attempt left, anyone else is turned away. The
    audit line is written once: the stored record says it was."""
    if not store.claim("record", owner):
        return {"ok": True, "repeat": True}
    meta = store.meta()
    if not meta.get("record"):
        finished_at = audit.now()
        record = audit.build_record(
            meta,
            store.counts(),
            status=status,
            removed=store.removed_count(),
            finished_at=finished_at,
            message=message,
            failed_records=store.failure_count(),
            stale_ids=store.stale_ids(20),
            failed_ids=store.failures_sample(20),
            api_latency=latency.summary(latency.read_histograms(store.redis, store.prefix)),
        )
        path = audit.append_audit_line(settings().audit_log, record)
        metrics.observe_run(record)
        store.set_meta(
            status=status, finished_at=finished_at, record=json.dumps(record), audit_log=str(path)
        )
        store.redis.hdel(store.meta_key, "record_error")
    status = store.meta().get("status", status)
    ListLock(redis_client(), meta.get("list_id", "")).release(store.run_id)
    if settings().aggregator_url and store.once("webhook"):
        webhook.Outbox(store.redis).add(store.run_id, signed=bool(settings().webhook_secret))
        send_webhook.delay(store.run_id)
    sweep_id = store.options().get("sweep_id")
    if sweep_id and store.once("advance_sweep"):
        # A scheduled sweep starts its next list as soon as a slot frees.
        current_app.send_task("tasks.schedule.advance_sweep", args=[sweep_id])
    log.info("run %s %s: %s", store.run_id, status, message or "ok")
    return {"ok": True, "status": status}


@shared_task(name="tasks.sweep.send_webhook")
def send_webhook(run_id: str) -> dict[str, Any]:
    """One attempt at the run's webhook; the outbox says when (and whether) the next is
    due, and ``resend_webhooks`` sends it then."""
    outbox = webhook.Outbox(redis_client())
    if not outbox.begin(run_id):
        return {"ok": True, "skipped": True}  # delivered, given up, or being sent
    signed = bool(settings().webhook_secret)
    record = json.loads(run_store(run_id).meta().get("record") or "{}")
    try:
        if not record:
            raise webhook.WebhookRefused("the run's record is gone: nothing to send")
        status = webhook.post(
            settings().aggregator_url,
            webhook.build_payload(record),
            settings().webhook_secret,
            insecure_hosts=settings().tls_insecure_hosts,
        )
    except RetryableApiError as exc:
        state = outbox.retry_later(run_id, str(exc), signed=signed)
        if state == webhook.ABANDONED:
            log.warning("run %s: webhook abandoned after a day of failures: %s", run_id, exc)
        return {"ok": False, "state": state, "error": str(exc)}
    except CxsweepError as exc:
        outbox.failed(run_id, str(exc), signed=signed)
        log.warning("run %s: webhook not delivered: %s", run_id, exc)
        return {"ok": False, "state": webhook.FAILED, "error": str(exc)}
    outbox.delivered(run_id, status, signed=signed)
    return {"ok": True, "status": status}


@shared_task(name="tasks.sweep.resend_webhooks", ignore_result=True)
def resend_webhooks() -> int:
    """Beat's sweep of the webhook outbox: one attempt for each delivery now due."""
    due = webhook.Outbox(redis_client()).due()
    for run_id in due:
        send_webhook.delay(run_id)
    return len(due)


@shared_task(name="tasks.sweep.watchdog", ignore_result=True)
def watchdog() -> int:
    """Fail the runs past their deadline or stalled: audit line, halted webhook, list
    freed."""
    # A dead worker's messages waiting out the Redis broker's visibility timeout are
    # work still to come, not a stall.
    unacked = UnackedMessages.of_broker(settings())
    overdue = overdue_runs(
        redis_client(), stall_seconds=settings().run_stall_seconds, awaiting_redelivery=unacked.hold
    )
    # Fenced first, its list freed last (when recorded): its writes in flight stop at
    # their next permit, and none goes out once another run may hold the list.
    request_seconds = settings().connect_timeout + settings().read_timeout + 1
    for store, why in overdue:
        sweep.fence(store, why, request_seconds=request_seconds)
        record_later(store.run_id, "failed", why)
    return len(overdue)


@shared_task(name="tasks.sweep.begin_restore", ignore_result=True)
def begin_restore(run_id: str) -> None:
    """Restore run ``run_id`` puts back what run ``options.restore_of`` changed."""
    store = run_store(run_id)
    if not store.once("begin"):
        return
    source = run_store(str(store.options()["restore_of"]))
    pages = source.archive_pages()
    refusal = sweep.volatile_redis_refusal(store, allowed=_volatile_allowed(store))
    if refusal:
        record_later(run_id, "halted", refusal)
        return
    # The progress counts contacts put back out of all the archive holds.
    total = sum(len(source.archive_page(page_no)) for page_no in pages)
    store.set_meta(status="writing", chunks_total=len(pages), restore_total=total)
    header = [restore_archive_page.si(run_id, page_no) for page_no in pages]
    chord(header)(on_failure_end(finish_run.s(run_id), run_id))


@shared_task(bind=True, base=ApiTask, name="tasks.sweep.restore_archive_page")
def restore_archive_page(self: ApiTask, run_id: str, page_no: int) -> dict[str, Any]:
    store = run_store(run_id)
    list_id = store.meta()["list_id"]
    _keep_lock(store, list_id)
    if store.chunk_done("restore", page_no):
        return {"ok": True, "page": page_no, "repeat": True}
    if store.halted():
        return {"ok": False, "page": page_no, "halted": True}
    source = run_store(str(store.options()["restore_of"]))
    try:
        with api_backend(store) as backend:
            result = sweep.restore_page(
                store, source, backend, list_id, page_no, threshold=settings().breaker_threshold
            )
    except RetryableApiError as exc:
        if store.halted():
            return {"ok": False, "page": page_no, "halted": True}
        return {**self.retry_or_give_up(exc, store), "page": page_no}
    except CxsweepError as exc:
        return {"ok": False, "page": page_no, "error": str(exc)}
    return result
