"""The run's record: one JSON line in the audit log, the same fields in the webhook."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cxsweep.runs import keys
from cxsweep.runs.keys import (
    PAGES_READ,
    REASON_PREFIX,
    REGION_PREFIX,
    TYPE_PREFIX,
    status_counter,
)
from cxsweep.runs.store import kind_of

_append_lock = threading.Lock()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _by_prefix(counts: Mapping[str, int], prefix: str) -> dict[str, int]:
    return dict(
        sorted(
            ((k[len(prefix) :], v) for k, v in counts.items() if k.startswith(prefix) and v),
            key=lambda item: (-item[1], item[0]),
        )
    )


def build_record(
    meta: Mapping[str, str],
    counts: Mapping[str, int],
    *,
    status: str,
    removed: int,
    finished_at: float,
    message: str = "",
    failed_records: int = 0,
    stale_ids: Sequence[str] = (),
    failed_ids: Mapping[str, str] | None = None,
    api_latency: Mapping[str, Mapping[str, float]] | None = None,
    warnings: Sequence[str] = (),
) -> dict[str, Any]:
    """The audit fields of a run from its metadata and counters (all kept in Redis).

    Two different times, named apart: ``avg_latency_ms`` and ``api_latency_ms`` (per
    request kind: requests, p50, p95, p99) are the contact-list API's answers, as the
    workers waited for them; ``check_us_per_number`` is the time the workers spent
    judging one number (CPU, no network).
    """
    dry_run = meta.get("dry_run") == "1"
    total = counts.get(keys.FETCHED, 0)
    unchanged = counts.get(keys.UNCHANGED, 0)
    planned_updates = counts.get(keys.TO_UPDATE, 0)
    planned_removals = counts.get(keys.TO_REMOVE, 0)
    updated = counts.get(keys.UPDATED, 0)
    checked = counts.get(keys.LATENCY_N, 0)
    check_us = counts.get(keys.LATENCY_US_SUM, 0) / checked if checked else 0.0
    requests = counts.get(keys.API_REQUESTS, 0)
    api_avg_ms = counts.get(keys.API_US_SUM, 0) / requests / 1000.0 if requests else 0.0
    options = json.loads(meta.get("options") or "{}")
    kind = kind_of(meta)
    restored = counts.get(keys.RESTORED_RECREATED, 0) + counts.get(keys.RESTORED_REVERTED, 0)
    unmade = 0 if dry_run else (planned_updates - updated) + (planned_removals - removed)
    failures, not_written = unmade, 0
    if kind == "restore":
        failures = failed_records
    elif status in ("halted", "cancelled"):
        # The run stopped its writes on purpose: what it never sent did not fail. Only
        # the records the platform refused (or did not apply) are failures.
        failures = min(failed_records, unmade)
        not_written = unmade - failures
    return {
        "timestamp": iso(finished_at),
        "run_id": meta.get("run_id", ""),
        "list_id": meta.get("list_id", ""),
        "status": status,
        "kind": kind,
        "dry_run": dry_run,
        "total_processed": total,
        "success_count": updated,
        "unchanged_count": unchanged,
        "failure_count": failures,
        # Planned writes a halted or cancelled run never sent.
        "not_written": not_written,
        "purge_count": removed,
        "planned_updates": planned_updates,
        "planned_removals": planned_removals,
        "reject_reasons": _by_prefix(counts, REASON_PREFIX),
        "by_region": _by_prefix(counts, REGION_PREFIX),
        "by_line_type": _by_prefix(counts, TYPE_PREFIX),
        "avg_latency_ms": round(api_avg_ms, 3),
        "api_latency_ms": {k: dict(v) for k, v in (api_latency or {}).items()},
        "check_us_per_number": round(check_us, 3),
        "format_success_rate": round((unchanged + planned_updates) / total, 6) if total else 0.0,
        "pages": counts.get(PAGES_READ, 0),
        "api_requests": counts.get(keys.API_REQUESTS, 0),
        "api_retries": counts.get(keys.RETRIES, 0),
        "api_429s": counts.get(status_counter(429), 0),
        "started_at": iso(float(meta.get("started_at") or finished_at)),
        "finished_at": iso(finished_at),
        "duration_seconds": round(finished_at - float(meta.get("started_at") or finished_at), 3),
        "stale_skipped": counts.get(keys.STALE, 0),
        # Contacts the platform showed twice (paging over a shifting list): judged once.
        "repeated_ids": counts.get(keys.REPEATED_ID, 0),
        # A sample of each (the first 20): who changed under us, and who failed and why.
        "stale_ids": list(stale_ids),
        "failed_ids": dict(failed_ids or {}),
        # What the platform showed that may undo the sweep's work (a CXone skill still
        # dialing, one not scrubbed against the DNC group), and rejects already suppressed.
        "warnings": list(warnings),
        "already_suppressed": counts.get(keys.ALREADY_SUPPRESSED, 0),
        "restored": restored,
        "restore_of": options.get("restore_of"),
        **_kind_fields(kind, meta, counts),
        "message": message,
    }


def _kind_fields(kind: str, meta: Mapping[str, str], counts: Mapping[str, int]) -> dict[str, Any]:
    """What only a restore or an apply has to tell."""
    if kind == "restore":
        return {
            "restore_total": int(meta.get("restore_total") or 0),
            "restored_recreated": counts.get(keys.RESTORED_RECREATED, 0),
            "restored_reverted": counts.get(keys.RESTORED_REVERTED, 0),
        }
    if kind == "apply":
        # A planned change whose contact is no longer on the list was never seen: a
        # removal done before (a plan applied twice), or a contact deleted since.
        return {
            "plan_entries": int(meta.get("plan_updates") or 0)
            + int(meta.get("plan_removals") or 0),
            "already_applied": counts.get(keys.ALREADY_APPLIED, 0),
            "already_gone": max(
                0, int(meta.get("plan_removals") or 0) - counts.get(keys.PLAN_SEEN_REMOVE, 0)
            ),
            "updates_not_found": max(
                0, int(meta.get("plan_updates") or 0) - counts.get(keys.PLAN_SEEN_UPDATE, 0)
            ),
        }
    return {}


def append_audit_line(path: str | os.PathLike[str], record: Mapping[str, Any]) -> Path:
    """Append one line and make it durable before the run is called recorded."""
    target = Path(path)
    if target.parent != Path(""):
        target.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, separators=(",", ":"), sort_keys=False) + "\n"
    with _append_lock, open(target, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())
    return target.resolve()


def now() -> float:
    return time.time()
