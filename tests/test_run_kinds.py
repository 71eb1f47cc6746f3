"""Each kind of run (sweep, dry run, apply, restore) is recorded and worded for what it does."""

from __future__ import annotations

import json
from typing import Any

from console import progress
from console.report import render_html
from cxsweep.runs import audit
from tests.test_report import STARTED, _text


def _record(kind: str | None, counts: dict[str, int], **meta: Any) -> dict[str, Any]:
    fields = {
        "run_id": "r-1",
        "list_id": "L",
        "started_at": str(STARTED),
        "dry_run": "1" if kind == "dry_run" else "0",
        **({"kind": kind} if kind else {}),
        **{k: str(v) for k, v in meta.items()},
    }
    return audit.build_record(
        fields,
        counts,
        status="completed",
        removed=counts.get("removed", 0),
        finished_at=STARTED + 12.0,
    )


def test_the_kind_is_recorded_and_derived_for_older_runs() -> None:
    assert _record("dry_run", {})["kind"] == "dry_run"
    assert _record("sweep", {})["kind"] == "sweep"
    # Runs stored before the kind was: derived from their options.
    older = _record(None, {}, options=json.dumps({"restore_of": "r-0"}))
    assert older["kind"] == "restore"
    assert _record(None, {}, options=json.dumps({"apply": True}))["kind"] == "apply"


def test_a_restore_report_counts_what_was_put_back() -> None:
    record = _record(
        "restore",
        {"restored_recreated": 67, "restored_reverted": 400, "api_requests": 431},
        restore_total=470,
        options=json.dumps({"restore_of": "r-0"}),
    )
    assert (record["restore_total"], record["restored"], record["restored_recreated"]) == (
        470,
        467,
        67,
    )
    text = _text(render_html(record)).text
    assert "Restore report" in text and "RESTORE" in text
    assert "467 of the 470 contacts run r-0 changed were put back" in text
    for expected in ("Archived 470", "Re-created 67", "Reverted 400", "Not reached 3"):
        assert expected in text, expected
    for absent in ("No contacts were read", "Dialable", "Fetched", "Rejects by reason"):
        assert absent not in text, absent
    # A record written before the archive's size was kept still reads right.
    del record["restore_total"]
    assert "467 of the 467 contacts" in _text(render_html(record)).text


def test_an_apply_report_says_what_the_plan_met() -> None:
    record = _record(
        "apply",
        {
            "fetched": 300,
            "to_update": 2,
            "updated": 2,
            "stale": 1,
            "already_applied": 40,
            "plan_seen_update": 43,
            "plan_seen_remove": 0,
        },
        plan_updates=45,
        plan_removals=7,
    )
    assert record["plan_entries"] == 52 and record["already_gone"] == 7
    assert record["updates_not_found"] == 2
    text = _text(render_html(record)).text
    assert "Plan apply report" in text and "APPLY" in text
    assert "A reviewed plan of 52 changes applied: 2 contacts rewritten to E.164" in text
    assert "1 skipped as changed on the platform since the plan" in text
    assert "40 already applied before; 7 removals already gone from the list" in text
    assert "Skipped: removal already gone 7" in text
    assert "Skipped (plan) 41" in text and "Dialable" not in text


def test_a_dry_run_report_shows_no_write_failures() -> None:
    record = _record("dry_run", {"fetched": 10, "to_update": 3, "to_remove": 2, "unchanged": 5})
    text = _text(render_html(record)).text
    assert "Dry run report" in text and "Would update 3" in text and "Would remove 2" in text
    assert "Failed" not in text and "would stay after a sweep" in text


def test_the_progress_line_of_a_restore_before_and_while_it_runs() -> None:
    meta = {"kind": "restore", "status": "reading"}
    assert "waiting for a worker" in progress.progress_line(meta, {}, 3.0)
    meta = {"kind": "restore", "status": "writing", "restore_total": "689"}
    counts = {"restored_recreated": 50, "restored_reverted": 100, "chunks_done": 0}
    line = progress.progress_line(meta, counts, 3.0)
    assert "restored 150/689 contacts (recreated 50, reverted 100)" in line
    assert "chunks" not in line
