"""How a run ends, whichever way: ``record_outcome`` (retried until it works) writes the
audit line, frees the list and queues the webhook; ``chord_failed`` ends a run whose
chord failed for good; ``watchdog`` fails runs past their deadline or stalled;
``send_webhook`` and ``resend_webhooks`` deliver the webhook through its outbox.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from celery import Signature, current_app, shared_task
from celery.exceptions import ChordError

from cxsweep import metrics
from cxsweep.errors import CxsweepError, RetryableApiError
from cxsweep.runs import audit, latency, webhook, writes
from cxsweep.runs.redelivery import UnackedMessages
from cxsweep.runs.store import ListLock, RunStore, overdue_runs
from tasks._deps import redis_client, run_store, settings
from tasks.results import Delivery, Handed

# The run's tasks log under the name they always had (log filters select on it).
log = logging.getLogger("tasks.sweep")


def on_failure_end(callback: Signature, run_id: str) -> Signature:
    """``callback`` of one of the run's chords, which fails the run if a header task (or
    the callback itself) fails for good: a bug, a hard time limit, an unexpected error.
    Header tasks return their expected failures; this is for the rest."""
    return callback.on_error(chord_failed.s(run_id))


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


def record_later(run_id: str, status: str, message: str = "") -> Handed:
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
def record_outcome(self: Any, run_id: str, status: str, message: str = "") -> Handed:
    store = run_store(run_id)
    try:
        return record_run(store, status, message, owner=self.request.id)
    except Exception as exc:
        store.set_meta(record_error=f"recording the run failed: {exc!r}"[:300])
        log.warning("run %s: recording failed, will retry: %r", run_id, exc)
        raise


def record_run(store: RunStore, status: str, message: str = "", *, owner: str) -> Handed:
    """Write the audit line, free the list and send the webhook: once per run.

    The first ``owner`` (a ``record_outcome`` task id) to claim the run records it; its
    retries may finish what a failed attempt left, anyone else is turned away. The
    audit line is written once: the stored record says it was."""
    if not store.claim("record", owner):
        return {"ok": True, "repeat": True}
    meta = store.meta()
    if not meta.get("record"):
        # The write chunks' request counts, kept with their done markers: added once.
        store.settle_write_tallies()
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
            warnings=store.warnings(),
            api_latency=latency.summary(latency.read_histograms(store.redis, store.run_id)),
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
def send_webhook(run_id: str) -> Delivery:
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
    writes.fence(overdue, request_seconds=request_seconds)
    for store, why in overdue:
        record_later(store.run_id, "failed", why)
    return len(overdue)
