"""The re-read passes of a run's list, as chords of ``recheck_list``: ``verify`` before
any write, ``confirm`` after the removals (``tasks.write.confirm_done`` its callback).

The verify pass streams the writes: a removal chunk whose every contact it has judged is
added to its chord at once (up to a wave of them), not after the last page, so the
writes of the first pages overlap the reading of the rest (update chunks too, when the
plan removes nothing). ``tasks.write.list_verified`` then sends what is left, in waves.
"""

from __future__ import annotations

import time

from celery import shared_task

from cxsweep.errors import CxsweepError, RetryableApiError
from cxsweep.runs import keys, pages, writes
from cxsweep.runs.store import RunStore
from tasks._deps import (
    WRITE_TASK_NAMES,
    ApiTask,
    api_backend,
    backoff_seconds,
    fail_run,
    keep_lock,
    pages_ahead,
    run_store,
    settings,
)
from tasks.results import Failure, Reread


@shared_task(bind=True, base=ApiTask, name="tasks.sweep.recheck_list")
def recheck_list(self: ApiTask, run_id: str, kind: str, page_no: int) -> Reread | Failure:
    """Re-read the list from page ``page_no`` on. ``verify`` (before any write) judges
    each planned contact fresh or stale; ``confirm`` (after the removals) finds removed
    contacts the list still holds. Pages come one after another, a few to a task as in
    ``fetch_page``; the next page's cursor waits in Redis, not in task arguments."""
    store = run_store(run_id)
    list_id = store.meta()["list_id"]
    keep_lock(store, list_id)
    what = "re-reading the list " + ("before writing" if kind == "verify" else "after removals")
    # Paging that never ends (a cursor that loops) must not read forever.
    most = 2 * store.counts().get(keys.PAGES_READ, 0) + 2
    started, first, still_present = time.monotonic(), page_no, []
    with api_backend(store, tag=kind) as backend, pages_ahead(backend, list_id) as ahead:
        while True:
            cursor, size = store.pass_cursor(kind, page_no)
            if page_no >= most or (page_no and cursor is None):
                return fail_run(store, f"{what}: page {page_no + 1} is past the list's end")
            try:
                page = ahead.take(cursor)
            except RetryableApiError as exc:
                if page_no != first:
                    wait = exc.retry_after if exc.retry_after is not None else backoff_seconds(0)
                    self.add_to_chord(recheck_list.si(run_id, kind, page_no).set(countdown=wait))
                    break
                gave_up = self.retry_or_give_up(exc, store)
                return fail_run(store, f"{what}: {gave_up['error']}", task=gave_up["task"])
            except CxsweepError as exc:
                return fail_run(store, f"{what}: {exc}")
            size = size or len(page.contacts)
            following = pages.following_cursor(backend, list_id, page_no, page, size)
            # Decided before this page is judged: whether this task reads the next one
            # too, which is then asked for at once (``PagesAhead``).
            reads_on = bool(following) and pages.task_reads_another(page_no + 1 - first, started)
            if reads_on and page_no + 1 < most:
                ahead.start(following)
            if kind == "verify":
                states = pages.recheck_states(store, backend, page.contacts)
                ready = store.record_recheck_page(kind, page_no, following, size, states)
                if ready:
                    _stream_writes(self, store, ready)
            else:
                ids = [backend.contact_id(contact) for contact in page.contacts]
                still_present += store.confirm_page(page_no, following, size, ids)
            if not following:
                break
            page_no += 1
            if not reads_on:
                self.add_to_chord(recheck_list.si(run_id, kind, page_no))
                break
    if still_present:
        shown = ", ".join(still_present[:5])
        return {"ok": False, "error": f"{len(still_present)} still present after DELETE: {shown}"}
    return {"ok": True, "kind": kind, "page": first}


def _stream_writes(task: ApiTask, store: RunStore, ready: list[tuple[str, int]]) -> None:
    """Add the chunks the verify pass made ready to its chord, while the run may write
    and at most a wave of them in all (the chord's callback gets each one's result).

    A chunk is noted as streamed after it was sent: a crash in between leaves it unnoted,
    and ``list_verified`` sends it again, which finds it done. Never the other way round,
    which would leave a chunk noted and never sent."""
    if writes.waves_stop(store):
        return
    if store.plan_sizes()[1]:
        # Removals first: the re-read that confirms them starts once they are all done,
        # and overlaps the updates, which the waves send after this pass.
        ready = [chunk for chunk in ready if chunk[0] == "remove"]
    room = settings().write_wave - store.streamed_count()
    sent = ready[: max(0, room)]
    for kind, index in sent:
        write = task.app.signature(WRITE_TASK_NAMES[kind], args=(store.run_id, index))
        task.add_to_chord(write.set(immutable=True))
    store.note_streamed(sent)
