"""The summary printed when a run has been recorded: what it read, changed and met."""

from __future__ import annotations

from typing import Any

from console.report import own_note


def _print_restore_summary(record: dict[str, Any]) -> None:
    total = record.get("restore_total")
    print(
        f"restore {record['run_id']} of run {record.get('restore_of')} on list"
        f" {record['list_id']}: {record['status']}"
    )
    print(
        f"  restored   {record.get('restored', 0)}"
        + (f" of {total}" if total is not None else "")
        + " contact(s) the run changed"
    )
    if total is not None:
        print(f"  recreated  {record.get('restored_recreated', 0)} (the run had removed them)")
        print(f"  reverted   {record.get('restored_reverted', 0)} (numbers written back)")
    print(f"  failed     {record.get('failure_count', 0)}")
    print(
        f"  api        {record.get('api_requests', 0)} requests, "
        f"{record.get('api_retries', 0)} retries, {record.get('api_429s', 0)} x 429"
    )
    print(f"  took       {record.get('duration_seconds', 0)} s")
    if record.get("message"):
        print(f"  note       {record['message']}")
    if record["status"] == "halted":
        print("  the restore HALTED for manual review: the rest was not put back")


def _print_apply_lines(record: dict[str, Any]) -> None:
    """What applying a plan met on the list: changes done before, contacts gone."""
    if record.get("already_applied"):
        print(f"  already    {record['already_applied']} update(s) were applied before")
    if record.get("already_gone"):
        print(f"  gone       {record['already_gone']} planned removal(s): no longer on the list")
    if record.get("updates_not_found"):
        print(
            f"  not found  {record['updates_not_found']} planned update(s):"
            " contact no longer on the list"
        )


def print_summary(record: dict[str, Any]) -> None:
    if record.get("kind") == "restore":
        _print_restore_summary(record)
        return
    dry = record.get("dry_run")
    print(
        f"run {record['run_id']} on list {record['list_id']}: {record['status']}"
        + (" (dry run)" if dry else "")
    )
    print(f"  fetched    {record['total_processed']}")
    if dry:
        print(f"  would update {record['planned_updates']}")
        print(f"  would remove {record['planned_removals']}")
    else:
        print(f"  updated    {record['success_count']}")
    print(f"  unchanged  {record['unchanged_count']}")
    if not dry:
        print(f"  removed    {record['purge_count']}")
        print(f"  failed     {record['failure_count']}")
        if record.get("not_written"):
            print(f"  not sent   {record['not_written']} (the run stopped before sending them)")
    reasons = record.get("reject_reasons") or {}
    if reasons:
        print("  rejects    " + ", ".join(f"{k} {v}" for k, v in reasons.items()))
    print(
        f"  api        {record.get('api_requests', 0)} requests, "
        f"{record.get('api_retries', 0)} retries, {record.get('api_429s', 0)} x 429"
    )
    latency = (record.get("api_latency_ms") or {}).get("all")
    if latency and latency.get("requests"):
        print(
            f"  latency    p50 {latency['p50']:.1f} ms, p95 {latency['p95']:.1f} ms,"
            f" p99 {latency['p99']:.1f} ms per API request"
        )
    if record.get("kind") == "apply":
        _print_apply_lines(record)
    if record.get("already_suppressed"):
        print(f"  suppressed {record['already_suppressed']} reject(s) already in the DNC group")
    print(f"  took       {record.get('duration_seconds', 0)} s")
    note = own_note(record)
    if note:
        print(f"  note       {note}")
    for warning in record.get("warnings") or ():
        print(f"  WARNING    {warning}")
    if record["status"] == "halted":
        print("  the run HALTED for manual review: nothing further was removed")
