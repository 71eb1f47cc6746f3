"""A restore run: ``begin_restore`` sends one ``restore_archive_page`` per archive page of
the run it undoes, in a chord whose callback ``finish_run`` ends it like any run.
"""

from __future__ import annotations

from celery import chord, shared_task

from cxsweep.errors import CxsweepError, RetryableApiError
from cxsweep.runs import restore, writes
from tasks._deps import ApiTask, api_backend, keep_lock, run_store, settings
from tasks.record import on_failure_end, record_later
from tasks.results import RestoreResult
from tasks.write import finish_run


@shared_task(name="tasks.sweep.begin_restore", ignore_result=True)
def begin_restore(run_id: str) -> None:
    """Restore run ``run_id`` puts back what run ``options.restore_of`` changed."""
    store = run_store(run_id)
    if not store.once("begin"):
        return
    source = run_store(str(store.options()["restore_of"]))
    pages = source.archive_pages()
    refusal = writes.volatile_redis_refusal(
        store, allowed_by_settings=settings().allow_volatile_redis
    )
    if refusal:
        record_later(run_id, "halted", refusal)
        return
    # The progress counts contacts put back out of all the archive holds.
    total = sum(len(source.archive_page(page_no)) for page_no in pages)
    store.set_meta(status="writing", chunks_total=len(pages), restore_total=total)
    header = [restore_archive_page.si(run_id, page_no) for page_no in pages]
    chord(header)(on_failure_end(finish_run.s(run_id), run_id))


@shared_task(bind=True, base=ApiTask, name="tasks.sweep.restore_archive_page")
def restore_archive_page(self: ApiTask, run_id: str, page_no: int) -> RestoreResult:
    store = run_store(run_id)
    list_id = store.meta()["list_id"]
    keep_lock(store, list_id)
    if store.chunk_done("restore", page_no):
        return {"ok": True, "page": page_no, "repeat": True}
    if store.halted():
        return {"ok": False, "page": page_no, "halted": True}
    source = run_store(str(store.options()["restore_of"]))
    try:
        with api_backend(store) as backend:
            # Looked up on the module when called: a test swaps in a failing page.
            return restore.restore_page(
                store, source, backend, list_id, page_no, threshold=settings().breaker_threshold
            )
    except RetryableApiError as exc:
        if store.halted():
            return {"ok": False, "page": page_no, "halted": True}
        gave_up = self.retry_or_give_up(exc, store)
        return {"ok": False, "page": page_no, "error": gave_up["error"], "task": gave_up["task"]}
    except CxsweepError as exc:
        return {"ok": False, "page": page_no, "error": str(exc)}
