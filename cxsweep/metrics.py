"""The sweep's Prometheus metrics: what a worker exports on ``CXSWEEP_METRICS_PORT``.

Plain functions the tasks call (no Celery here). The metric objects are built on first
use, not at import: prometheus_client chooses its value store (memory, or mmapped files
under ``PROMETHEUS_MULTIPROC_DIR`` shared by prefork children) when it is first
imported, and a worker knows which one it needs only once it knows its pool
(``workers/_metrics.py``).

Run totals are added once per run, from the run's counters in Redis, by the task that
records the run (``record_run`` claims a run once, so nothing counts twice). API
requests are counted live, as the responses arrive.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram

# Seconds: the contract's calls take milliseconds; CXone's upload jobs and slow pages
# take seconds; the read time-out (30 s) caps the rest.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class _Metrics:
    contacts_processed: Counter
    contacts_kept: Counter
    contacts_updated: Counter
    contacts_removed: Counter
    rejects: Counter
    runs: Counter
    api_requests: Counter
    api_rate_limited: Counter
    api_latency: Histogram
    task_retries: Counter
    sweep_lists: Counter


@functools.lru_cache(maxsize=1)
def _metrics() -> _Metrics:
    from prometheus_client import Counter, Histogram

    return _Metrics(
        contacts_processed=Counter(
            "cxsweep_contacts_processed", "Contacts read and judged, by finished runs"
        ),
        contacts_kept=Counter(
            "cxsweep_contacts_kept", "Contacts judged dialable (unchanged or rewritten)"
        ),
        contacts_updated=Counter(
            "cxsweep_contacts_updated", "Contacts whose numbers were rewritten on the platform"
        ),
        contacts_removed=Counter(
            "cxsweep_contacts_removed", "Contacts removed from their list (or found gone)"
        ),
        rejects=Counter("cxsweep_rejects", "Numbers rejected by the policy, by reason", ["reason"]),
        runs=Counter("cxsweep_runs", "Runs recorded, by final status", ["status"]),
        api_requests=Counter(
            "cxsweep_api_requests",
            "HTTP requests to the contact-list API, by endpoint kind and status",
            ["kind", "status"],
        ),
        api_rate_limited=Counter(
            "cxsweep_api_rate_limited", "429 answers of the contact-list API", ["kind"]
        ),
        api_latency=Histogram(
            "cxsweep_api_request_duration_seconds",
            "Time to a complete answer of the contact-list API, by endpoint kind",
            ["kind"],
            buckets=LATENCY_BUCKETS,
        ),
        task_retries=Counter("cxsweep_task_retries", "Task retries scheduled, by task", ["task"]),
        sweep_lists=Counter(
            "cxsweep_sweep_lists",
            "Lists seen by scheduled sweeps, by what the sweep did with them",
            ["outcome"],
        ),
    )


def built() -> bool:
    """Whether the metric objects exist (their value store is fixed from then on)."""
    return _metrics.cache_info().currsize > 0


def observe_api(kind: str, status: int | None, seconds: float) -> None:
    """One API response (``status`` None: no answer: time-out, connection failure)."""
    metrics = _metrics()
    label = str(status) if status is not None else "error"
    metrics.api_requests.labels(kind=kind, status=label).inc()
    metrics.api_latency.labels(kind=kind).observe(seconds)
    if status == 429:
        metrics.api_rate_limited.labels(kind=kind).inc()


def observe_run(record: Mapping[str, Any]) -> None:
    """A recorded run, from its audit record (``cxsweep.audit.build_record``)."""
    metrics = _metrics()
    total = int(record.get("total_processed", 0))
    metrics.runs.labels(status=str(record.get("status", "unknown"))).inc()
    metrics.contacts_processed.inc(total)
    metrics.contacts_kept.inc(max(0, total - int(record.get("planned_removals", 0))))
    metrics.contacts_updated.inc(int(record.get("success_count", 0)))
    metrics.contacts_removed.inc(int(record.get("purge_count", 0)))
    for reason, count in dict(record.get("reject_reasons") or {}).items():
        metrics.rejects.labels(reason=str(reason)).inc(int(count))


def count_retry(task_name: str) -> None:
    _metrics().task_retries.labels(task=task_name).inc()


def count_sweep_lists(outcome: str, amount: int = 1) -> None:
    """``outcome``: queued, started, busy, excluded, own_schedule."""
    if amount:
        _metrics().sweep_lists.labels(outcome=outcome).inc(amount)
