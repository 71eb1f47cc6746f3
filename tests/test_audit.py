"""cxsweep.runs.audit: a run's record built from its counters, one durable JSON line in
the audit log."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from cxsweep.runs import keys
from cxsweep.runs.audit import append_audit_line, build_record, iso

STARTED, FINISHED = 1_700_000_000.0, 1_700_000_012.5
META = {"run_id": "r-audit", "list_id": "L1", "dry_run": "0", "started_at": str(STARTED)}
COUNTS = {
    keys.FETCHED: 100,
    keys.UNCHANGED: 60,
    keys.TO_UPDATE: 30,
    keys.TO_REMOVE: 10,
    keys.UPDATED: 28,
    keys.API_REQUESTS: 4,
    keys.API_US_SUM: 100_000,
    keys.LATENCY_N: 100,
    keys.LATENCY_US_SUM: 2_500,
    keys.status_counter(429): 2,
    keys.reason_counter("too_short"): 3,
    keys.reason_counter("blocked_region"): 7,
    keys.reason_counter("never_seen"): 0,
    f"{keys.REGION_PREFIX}US": 90,
}


def test_a_sweep_record_counts_what_was_planned_and_what_failed() -> None:
    record = build_record(META, COUNTS, status="completed", removed=9, finished_at=FINISHED)
    assert record["kind"] == "sweep" and record["dry_run"] is False
    assert record["total_processed"] == 100 and record["success_count"] == 28
    assert record["purge_count"] == 9
    assert record["failure_count"] == (30 - 28) + (10 - 9)
    assert record["format_success_rate"] == 0.9
    assert record["avg_latency_ms"] == 25.0  # 100 ms of API time over 4 requests
    assert record["check_us_per_number"] == 25.0
    assert record["api_429s"] == 2
    assert record["duration_seconds"] == 12.5


def test_a_halted_run_counts_its_unsent_writes_apart_from_its_failures() -> None:
    for status in ("halted", "cancelled"):
        record = build_record(
            META, COUNTS, status=status, removed=4, finished_at=FINISHED, failed_records=1
        )
        assert record["failure_count"] == 1, status
        assert record["not_written"] == (30 - 28) + (10 - 4) - 1, status
    failed = build_record(META, COUNTS, status="failed", removed=4, finished_at=FINISHED)
    assert (failed["failure_count"], failed["not_written"]) == ((30 - 28) + (10 - 4), 0)


def test_reasons_are_sorted_by_count_and_zeros_left_out() -> None:
    record = build_record(META, COUNTS, status="completed", removed=10, finished_at=FINISHED)
    assert list(record["reject_reasons"].items()) == [("blocked_region", 7), ("too_short", 3)]
    assert record["by_region"] == {"US": 90}


def test_a_dry_run_fails_nothing_and_a_restore_counts_its_own_failures() -> None:
    dry = build_record(
        {**META, "dry_run": "1"}, COUNTS, status="completed", removed=0, finished_at=FINISHED
    )
    assert dry["kind"] == "dry_run" and dry["failure_count"] == 0
    restore_meta = {**META, "options": json.dumps({"restore_of": "r-0"}), "restore_total": "5"}
    counts = {keys.RESTORED_RECREATED: 3, keys.RESTORED_REVERTED: 1}
    restore = build_record(
        restore_meta, counts, status="completed", removed=0, finished_at=FINISHED, failed_records=1
    )
    assert restore["kind"] == "restore" and restore["restore_of"] == "r-0"
    assert (restore["failure_count"], restore["restored"], restore["restore_total"]) == (1, 4, 5)


def test_an_apply_tells_plan_entries_no_longer_on_the_list() -> None:
    meta = {**META, "kind": "apply", "plan_updates": "4", "plan_removals": "6"}
    counts = {keys.PLAN_SEEN_UPDATE: 3, keys.PLAN_SEEN_REMOVE: 2, keys.ALREADY_APPLIED: 1}
    record = build_record(meta, counts, status="completed", removed=2, finished_at=FINISHED)
    assert record["plan_entries"] == 10
    assert (record["already_gone"], record["updates_not_found"], record["already_applied"]) == (
        4,
        1,
        1,
    )


def test_times_are_utc_with_milliseconds() -> None:
    assert iso(FINISHED) == "2023-11-14T22:13:32.500Z"


def test_lines_are_appended_whole_from_many_threads(tmp_path: Path) -> None:
    log = tmp_path / "new" / "dir" / "audit.log"
    record = build_record(META, COUNTS, status="completed", removed=10, finished_at=FINISHED)
    written = append_audit_line(log, record)
    assert written == log.resolve()
    threads = [
        threading.Thread(target=append_audit_line, args=(log, {**record, "run_id": f"r{i}"}))
        for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    lines = log.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 9
    parsed = [json.loads(line) for line in lines]  # no line torn by another's write
    assert parsed[0] == record
    assert {p["run_id"] for p in parsed[1:]} == {f"r{i}" for i in range(8)}


def test_the_platforms_warnings_and_suppressed_rejects_reach_the_record() -> None:
    warning = "list 7: skill 4001 is running: corrected records uploaded to it are dialed"
    counts = {**COUNTS, keys.ALREADY_SUPPRESSED: 4}
    record = build_record(
        META, counts, status="completed", removed=10, finished_at=FINISHED, warnings=[warning]
    )
    assert record["warnings"] == [warning] and record["already_suppressed"] == 4
    quiet = build_record(META, COUNTS, status="completed", removed=10, finished_at=FINISHED)
    assert quiet["warnings"] == [] and quiet["already_suppressed"] == 0
