"""The sweep pipeline as Celery tasks.

Phase 1, a chord: ``fetch_page`` reads page n, stores its contacts in Redis and adds to
its own chord ``sanitize_page(n)`` and ``fetch_page(n + 1)``; sanitizing page 1 so runs
while page 2 is read. The chord's callback ``plan_ready`` sees the whole plan and judges
it. Phase 2, a second chord: one ``write_updates`` per 100 changed numbers and one
``write_removals`` per chunk of rejects; its callback ``finish_run`` records the run.

Header tasks never raise for good: they return ``{"ok": False, ...}`` so the callback
always runs and records the failure. Arguments and results are ids and small counts.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from celery import chord, current_app, shared_task
from celery.exceptions import SoftTimeLimitExceeded

from cxsweep import audit, metrics, sweep, webhook
from cxsweep.errors import CxsweepError, RetryableApiError
from cxsweep.runs import ListLock, RunStore, overdue_runs
from tasks._deps import (
    ApiTask,
    backend_for,
    directive_for,
    redis_client,
    run_store,
    sanitizer_for,
    settings,
)

log = logging.getLogger(__name__)

# List positions are page_no * this + index: pages never hold this many contacts.
PAGE_POSITIONS = 10_000_000


def launch(run_id: str) -> None:
    """Hand a run whose metadata is already in Redis to the workers.

    The CLI sends one fire-and-forget message; a worker builds the chord. A client that
    sent the chord itself would subscribe to its result and hold a connection open.
    """
    begin_run.delay(run_id)


@shared_task(name="tasks.sweep.begin_run", ignore_result=True)
def begin_run(run_id: str) -> None:
    chord([fetch_page.si(run_id, 0, None)])(plan_ready.s(run_id))


def _keep_lock(store: RunStore, list_id: str) -> None:
    """A run that progresses keeps its list; one whose workers all died lets it expire."""
    if not ListLock(store.redis, list_id).renew(store.run_id):
        log.warning("run %s no longer holds the lock of list %s", store.run_id, list_id)


def _failed(store: RunStore, message: str, **extra: Any) -> dict[str, Any]:
    store.fail(message)
    log.warning("run %s: %s", store.run_id, message)
    return {"ok": False, "error": message, **extra}


@shared_task(bind=True, base=ApiTask, name="tasks.sweep.fetch_page")
def fetch_page(self: ApiTask, run_id: str, page_no: int, cursor: str | None) -> dict[str, Any]:
    store = run_store(run_id)
    if not store.claim(f"fetch:{page_no}", self.request.id):
        return {"ok": True, "page": page_no, "repeat": True}
    if store.meta().get("error"):
        return {"ok": False, "page": page_no, "error": "run already failed"}
    list_id = store.meta()["list_id"]
    _keep_lock(store, list_id)
    backend = backend_for(store)
    try:
        page = backend.read_page(list_id, cursor)
    except RetryableApiError as exc:
        if self.retries_left(exc, store):
            raise self.retry_api(exc, store) from None
        return _failed(store, f"{exc} (gave up after {self.max_retries} retries)")
    except CxsweepError as exc:
        return _failed(store, str(exc), page=page_no)

    store.store_page(page_no, page.contacts)
    store.incr("pages_read")
    store.incr("read", len(page.contacts))
    if page.total is not None and page_no == 0:
        store.set_meta(total_records=page.total)
    self.add_to_chord(sanitize_page.si(run_id, page_no))
    if page_no == 0 and backend.parallel_pages and page.total is not None and page.contacts:
        # Offset paging with a known total: every other page is read at once.
        size = len(page.contacts)
        pages = -(-page.total // size)
        for number in range(1, pages):
            cursor = backend.page_cursor(list_id, number, size)
            self.add_to_chord(fetch_page.si(run_id, number, cursor))
        store.set_meta(pages_total=pages)
    elif page.next_cursor and not backend.parallel_pages:
        self.add_to_chord(fetch_page.si(run_id, page_no + 1, page.next_cursor))
    elif page_no == 0 or not backend.parallel_pages:
        store.set_meta(pages_total=page_no + 1)
    return {"ok": True, "page": page_no, "contacts": len(page.contacts)}


@shared_task(bind=True, base=ApiTask, name="tasks.sweep.sanitize_page")
def sanitize_page(self: ApiTask, run_id: str, page_no: int) -> dict[str, Any]:
    store = run_store(run_id)
    contacts = store.load_page(page_no)
    if contacts is None:
        if store.redis.exists(f"{store.prefix}:done:page:{page_no}"):
            return {"ok": True, "page": page_no, "repeat": True}
        return _failed(store, f"page {page_no} is no longer in Redis (expired?)")
    backend = backend_for(store)
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
        if self.retries_left(exc, store):
            raise self.retry_api(exc, store) from None
        return _failed(store, f"sanitizing page {page_no}: {exc}")
    except (CxsweepError, SoftTimeLimitExceeded) as exc:
        return _failed(store, f"sanitizing page {page_no}: {exc}")
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
    meta = store.meta()
    allowed = store.options().get("allow_purge_ratio")
    max_ratio = (
        float(allowed) if allowed is not None else directive_for(meta["list_id"]).max_purge_ratio
    )
    store.resolve_duplicates()
    judgement = sweep.judge_plan(
        store, results, dry_run=meta.get("dry_run") == "1", max_purge_ratio=max_ratio
    )
    if judgement.status != "write":
        return record_run(store, judgement.status, judgement.message)
    chunks = sweep.write_chunks(store, backend_for(store))
    if not chunks:
        return record_run(store, "completed", "nothing to write")
    store.set_meta(status="writing", chunks_total=len(chunks))
    header = [
        write_updates.si(run_id, index) if kind == "update" else write_removals.si(run_id, index)
        for kind, index in chunks
    ]
    chord(header)(finish_run.s(run_id))
    return {"ok": True, "chunks": len(chunks)}


def _write(task: ApiTask, run_id: str, kind: str, index: int) -> dict[str, Any]:
    store = run_store(run_id)
    list_id = store.meta()["list_id"]
    _keep_lock(store, list_id)
    threshold = settings().breaker_threshold
    apply = sweep.apply_update_chunk if kind == "update" else sweep.apply_remove_chunk
    try:
        result = apply(store, backend_for(store), list_id, index, threshold=threshold)
    except RetryableApiError as exc:
        if store.halted():
            return {"ok": False, "kind": kind, "chunk": index, "halted": True}
        if task.retries_left(exc, store):
            raise task.retry_api(exc, store) from None
        return {"ok": False, "kind": kind, "chunk": index, "error": str(exc)}
    except CxsweepError as exc:
        log.warning("run %s: %s chunk %d failed: %s", run_id, kind, index, exc)
        return {"ok": False, "kind": kind, "chunk": index, "error": str(exc)}
    store.incr("chunks_done")
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
    halted = store.meta().get("halted")
    if halted:
        return record_run(store, "halted", halted)
    failures = [r for r in results if not (isinstance(r, dict) and r.get("ok"))]
    if failures:
        first = failures[0]
        message = first.get("error", "a write failed") if isinstance(first, dict) else str(first)
        return record_run(store, "failed", f"{len(failures)} write chunk(s) failed: {message}")
    return record_run(store, "completed")


def record_run(store: RunStore, status: str, message: str = "") -> dict[str, Any]:
    """Write the audit line, free the list and send the webhook: once per run."""
    if not store.claim_finish():
        return {"ok": True, "repeat": True}
    meta = store.meta()
    finished_at = audit.now()
    record = audit.build_record(
        meta,
        store.counts(),
        status=status,
        removed=store.removed_count(),
        finished_at=finished_at,
        message=message,
        failed_records=store.failure_count(),
    )
    path = audit.append_audit_line(settings().audit_log, record)
    metrics.observe_run(record)
    store.set_meta(
        status=status, finished_at=finished_at, record=json.dumps(record), audit_log=str(path)
    )
    ListLock(redis_client(), meta.get("list_id", "")).release(store.run_id)
    if settings().aggregator_url:
        send_webhook.delay(store.run_id)
    sweep_id = store.options().get("sweep_id")
    if sweep_id:
        # A scheduled sweep starts its next list as soon as a slot frees.
        current_app.send_task("tasks.schedule.advance_sweep", args=[sweep_id])
    log.info("run %s %s: %s", store.run_id, status, message or "ok")
    return {"ok": True, "status": status}


@shared_task(
    bind=True,
    name="tasks.sweep.send_webhook",
    autoretry_for=(RetryableApiError,),
    retry_backoff=1,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=8,
)
def send_webhook(self: Any, run_id: str) -> dict[str, Any]:
    store = run_store(run_id)
    record = json.loads(store.meta().get("record") or "{}")
    if not record:
        return {"ok": False, "error": "run has no record"}
    try:
        status = webhook.post(
            settings().aggregator_url,
            webhook.build_payload(record),
            settings().webhook_secret,
            insecure_hosts=settings().tls_insecure_hosts,
        )
    except RetryableApiError:
        store.set_meta(webhook="retrying")
        raise
    except CxsweepError as exc:
        store.set_meta(webhook=f"refused: {exc}")
        return {"ok": False, "error": str(exc)}
    store.set_meta(webhook=f"delivered ({status})")
    return {"ok": True, "status": status}


@shared_task(name="tasks.sweep.watchdog", ignore_result=True)
def watchdog() -> int:
    """Fail the runs past their deadline: audit line, halted webhook, list freed."""
    overdue = overdue_runs(redis_client())
    for store in overdue:
        store.fail("the run passed its deadline without finishing")
        record_run(store, "failed", "the run passed its deadline without finishing")
    return len(overdue)


@shared_task(name="tasks.sweep.begin_restore", ignore_result=True)
def begin_restore(run_id: str) -> None:
    """Restore run ``run_id`` puts back what run ``options.restore_of`` changed."""
    store = run_store(run_id)
    source = run_store(str(store.options()["restore_of"]))
    pages = source.archive_pages()
    store.set_meta(status="writing", chunks_total=len(pages))
    header = [restore_archive_page.si(run_id, page_no) for page_no in pages]
    chord(header)(finish_run.s(run_id))


@shared_task(bind=True, base=ApiTask, name="tasks.sweep.restore_archive_page")
def restore_archive_page(self: ApiTask, run_id: str, page_no: int) -> dict[str, Any]:
    store = run_store(run_id)
    list_id = store.meta()["list_id"]
    _keep_lock(store, list_id)
    if store.chunk_done("restore", page_no):
        return {"ok": True, "page": page_no, "repeat": True}
    source = run_store(str(store.options()["restore_of"]))
    try:
        result = sweep.restore_page(
            store,
            source,
            backend_for(store),
            list_id,
            page_no,
            threshold=settings().breaker_threshold,
        )
    except RetryableApiError as exc:
        if store.halted():
            return {"ok": False, "page": page_no, "halted": True}
        if self.retries_left(exc, store):
            raise self.retry_api(exc, store) from None
        return {"ok": False, "page": page_no, "error": str(exc)}
    except CxsweepError as exc:
        return {"ok": False, "page": page_no, "error": str(exc)}
    store.incr("chunks_done")
    return result
