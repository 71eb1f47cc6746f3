"""A run's writes: ``list_verified`` (the callback of the re-read before writing, which
sent the removal chunks it judged on the way) sends the rest, one ``write_updates`` per
chunk of changed numbers and one ``write_removals`` per chunk of rejects, in waves (a
chord each, ``wave_done`` sending the next). The removals are confirmed by a last re-read
(``confirm_done`` its callback), started by the task that completes the last removal
chunk, so that it overlaps the updates still going, or else by ``writes_done``; once both
the writes and that re-read have ended, ``removals_confirmed`` hands the run to
``tasks.record``.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import chord, shared_task

from cxsweep.errors import CxsweepError, RetryableApiError
from cxsweep.runs import keys, writes
from cxsweep.runs.outcomes import unsuccessful, why
from cxsweep.runs.store import RunStore
from tasks._deps import (
    WRITE_TASK_NAMES,
    ApiTask,
    RequestCounts,
    api_backend,
    keep_lock,
    run_store,
    settings,
    shared_backend,
)
from tasks.recheck import recheck_list
from tasks.record import on_failure_end, record_later
from tasks.results import ChunkResult, Handed

# The run's tasks log under the name they always had (log filters select on it).
log = logging.getLogger("tasks.sweep")


@shared_task(bind=True, name="tasks.sweep.list_verified")
def list_verified(self: Any, results: list[Any], run_id: str) -> Handed:
    """The list was re-read, and the chunks it made ready on the way were written (its
    chord's, ``tasks.recheck``): the rest of the writes go, in waves. A re-read that
    failed sends nothing more, and fails the run."""
    store = run_store(run_id)
    written = [r for r in results if is_write_result(r)]
    failed = unsuccessful([r for r in results if not is_write_result(r)])
    if failed:
        reason = why(failed[0], "a re-read failed")
        if not store.streamed_count():
            return record_later(run_id, "failed", f"nothing was written: {reason}")
        return record_later(
            run_id, "failed", f"the re-read before writing failed, writes stopped: {reason}"
        )
    store.set_verified()
    # Kept as the first wave's: ``writes_done`` reads them with every wave's.
    store.keep_wave_results(STREAMED_WAVE, unsuccessful(written))
    return _send_wave(self, run_id, 0)


def is_write_result(result: Any) -> bool:
    """Whether a result in the verify chord is a write chunk's (streamed into it)."""
    return isinstance(result, dict) and (
        result.get("kind") in ("update", "remove") or result.get("task") in WRITE_TASKS
    )


def _send_wave(task: Any, run_id: str, start: int) -> Handed:
    """Send the wave of writes that begins at position ``start`` of the chunks: a chord
    of at most ``write_wave`` chunks (those the verify pass did not send) whose callback
    ``wave_done`` sends the next. Past the last chunk, or once the run may no longer
    write, ``writes_done`` gets every wave's failures.

    One chord of every chunk made the worker that sent it hold a message, a result and a
    subscription per chunk at once: 10,000 at 1,000,000 contacts (issue 15)."""
    store = run_store(run_id)
    # A callback redelivered after a crash (same task id) sends its wave again: a crash
    # mid-send would leave a chord that never completes; chunks run once anyway. A twin
    # callback (another id: a wave's chord sent twice) is turned away, so twins do not
    # multiply wave after wave.
    if not store.claim(f"wave:{start}", task.request.id):
        return {"ok": True, "repeat": True}
    stop = writes.waves_stop(store)
    chunks: list[tuple[str, int]] = []
    end = start
    if not stop:
        chunks, end = writes.wave(store, shared_backend(), start, settings().write_wave)
    if not chunks:
        if stop:
            log.info("run %s: no writes sent from chunk %d on: %s", run_id, start, stop)
        return writes_done(store.wave_results(), run_id)
    header = [write_task(kind).si(run_id, index) for kind, index in chunks]
    chord(header)(on_failure_end(wave_done.s(run_id, start, end), run_id))
    return {"ok": True, "chunks": len(chunks), "wave": start}


@shared_task(bind=True, name="tasks.sweep.wave_done")
def wave_done(self: Any, results: list[Any], run_id: str, start: int, end: int) -> Handed:
    """A wave of writes ended: its failures are kept for ``writes_done``, the next wave
    goes (unless the run was halted, cancelled or failed meanwhile)."""
    # Only the failures: all the end of the writes reads (the counts are the run's), and
    # a worker that loaded every chunk's result there would grow with the list again.
    run_store(run_id).keep_wave_results(start, unsuccessful(results))
    return _send_wave(self, run_id, end)


def _write(task: ApiTask, run_id: str, kind: str, index: int) -> ChunkResult:
    store = run_store(run_id)
    list_id = store.meta()["list_id"]
    keep_lock(store, list_id)
    threshold = settings().breaker_threshold
    # Looked up on the module when called: a test swaps in a failing chunk.
    apply = writes.apply_update_chunk if kind == "update" else writes.apply_remove_chunk
    # The chunk's requests are kept with its done marker (added to the run's counters
    # once, at its record); those of an attempt that does not mark it, counted as before.
    counts = RequestCounts(store)
    try:
        with api_backend(store, counts=counts) as backend:
            result = apply(store, backend, list_id, index, threshold=threshold, tally=counts)
    except RetryableApiError as exc:
        if store.halted():
            return {"ok": False, "kind": kind, "chunk": index, "halted": True}
        gave_up = task.retry_or_give_up(exc, store)
        return {
            "ok": False,
            "kind": kind,
            "chunk": index,
            "error": gave_up["error"],
            "task": gave_up["task"],
        }
    except CxsweepError as exc:
        log.warning("run %s: %s chunk %d failed: %s", run_id, kind, index, exc)
        return {"ok": False, "kind": kind, "chunk": index, "error": str(exc)}
    if kind == "remove":
        # A redelivered task (its chunk found done) asks again: it may have died after
        # claiming the re-read and before sending it.
        _confirm_once_removed(store, str(task.request.id))
    return result


def _confirm_once_removed(store: RunStore, task_id: str) -> None:
    """The task that completes the last removal chunk starts the re-read that confirms
    the removals: the update chunks still going do not add or remove contacts, and the
    re-read's page reads go ahead of their requests (``RateLimiter``), so the two overlap
    instead of the re-read waiting for the last update (issue 15). Claimed by its id: a
    redelivery of it sends the re-read again, no other task does."""
    # The cheap question first: only the last removal tasks find every chunk done.
    if not writes.removals_all_done(store, shared_backend()) or writes.waves_stop(store):
        return
    if store.claim("confirm", task_id):
        _start_confirm(store.run_id)


def _start_confirm(run_id: str) -> None:
    chord([recheck_list.si(run_id, "confirm", 0)])(
        on_failure_end(confirm_done.s(run_id), run_id)
    )


# No STARTED state stored for a write task (task_track_started): nothing reads it (the
# CLI and the watchdog read the run's counters and writers, Flower the task events), and
# it costs a result write and a publish per task.
@shared_task(bind=True, base=ApiTask, name=WRITE_TASK_NAMES["update"], track_started=False)
def write_updates(self: ApiTask, run_id: str, index: int) -> ChunkResult:
    return _write(self, run_id, "update", index)


@shared_task(bind=True, base=ApiTask, name=WRITE_TASK_NAMES["remove"], track_started=False)
def write_removals(self: ApiTask, run_id: str, index: int) -> ChunkResult:
    return _write(self, run_id, "remove", index)


# The task names of the writes, and the field ``keep_wave_results`` keeps the failures of
# the chunks the verify pass sent under (the waves' are their first positions).
WRITE_TASKS = frozenset(WRITE_TASK_NAMES.values())
STREAMED_WAVE = -1


def write_task(kind: str) -> Any:
    """The task that writes a chunk of ``kind`` (update, remove)."""
    return write_updates if kind == "update" else write_removals


@shared_task(bind=True, name="tasks.sweep.writes_done")
def writes_done(self: Any, results: list[Any], run_id: str) -> Handed:
    """Every write ended. After removals, the list is read once more: a contact it still
    holds was not removed, whatever its DELETE was answered. That re-read may have begun
    already (``_confirm_once_removed``)."""
    store = run_store(run_id)
    if store.halted() or not store.removed_count():
        return finish_run(results, run_id)
    store.keep_write_results(unsuccessful(results))
    if store.claim("confirm", str(self.request.id)):
        _start_confirm(run_id)
        return {"ok": True, "confirming": True}
    return _when_both_ended(run_id)


@shared_task(bind=True, name="tasks.sweep.confirm_done")
def confirm_done(self: Any, results: list[Any], run_id: str) -> Handed:
    """The re-read after the removals ended: kept, for when the writes have ended too."""
    run_store(run_id).keep_confirm_results(unsuccessful(results))
    return _when_both_ended(run_id)


def _when_both_ended(run_id: str) -> Handed:
    """The join of the writes and the confirming re-read: each side keeps its results,
    then looks for the other's; the one that finds both goes on, once."""
    store = run_store(run_id)
    confirmed = store.confirm_results()
    if confirmed is None or not store.writes_ended() or not store.once("removals_confirmed"):
        return {"ok": True, "confirming": True}
    return removals_confirmed(confirmed, run_id)


@shared_task(bind=True, name="tasks.sweep.removals_confirmed")
def removals_confirmed(self: Any, results: list[Any], run_id: str) -> Handed:
    """The writes and the re-read after them ended (``results``: the re-read's). Also the
    callback of the re-reads that runs of an earlier version started."""
    store = run_store(run_id)
    written, confirm = store.write_results(), unsuccessful(results)
    still_present = store.counts().get(keys.STILL_PRESENT, 0)
    if confirm and not written and not still_present:
        why_not = why(confirm[0], "the re-read failed")
        return record_later(run_id, "failed", f"the removals are not confirmed: {why_not}")
    if still_present and not confirm:
        # Found by a twin of this pass (a redelivered callback ran it twice): still failed.
        confirm = [{"ok": False, "error": f"{still_present} still present after DELETE"}]
    return finish_run(written + confirm, run_id)


@shared_task(bind=True, name="tasks.sweep.finish_run")
def finish_run(self: Any, results: list[Any], run_id: str) -> Handed:
    store = run_store(run_id)
    meta = store.meta()
    if meta.get("cancelled"):
        return record_later(run_id, "cancelled", meta["cancelled"])
    halted = meta.get("halted")
    if halted:
        return record_later(run_id, "halted", halted)
    if meta.get("error"):  # failed while writing: lost its list, or the watchdog
        return record_later(run_id, "failed", meta["error"])
    failures = unsuccessful(results)
    if failures:
        message = why(failures[0], "a write failed")
        return record_later(run_id, "failed", f"{len(failures)} write chunk(s) failed: {message}")
    return record_later(run_id, "completed")
