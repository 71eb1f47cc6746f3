"""Plan, review, apply, restore: a list ends exactly as it began."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from console import cli, launch, summary
from tests.conftest import audit_lines

pytestmark = pytest.mark.usefixtures("sweep_worker")


def by_id(contacts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in contacts}


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = cli.main([*argv, "--json", "--quiet", "--timeout", "120"])
    out = capsys.readouterr().out
    return code, json.loads(out[: out.rindex("}") + 1])


def test_plan_review_apply_then_restore(
    simulator: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], audit_log_path: Path
) -> None:
    list_id = f"plan-{uuid.uuid4().hex[:8]}"
    simulator.put_list(list_id, count=500, seed=31)
    simulator.configure(page_size=100)
    original = simulator.get_list(list_id)
    plan = tmp_path / "plan.jsonl"

    code, dry = run_cli(capsys, "run", list_id, "--dry-run", "--plan-out", str(plan))
    assert code == 0 and dry["dry_run"]
    lines = plan.read_text().splitlines()
    header, entries = json.loads(lines[0]), [json.loads(line) for line in lines[1:-1]]
    assert header["list_id"] == list_id and header["cxsweep_plan"] == 2
    assert json.loads(lines[-1])["entries"] == len(entries)
    assert len(entries) == dry["planned_updates"] + dry["planned_removals"]
    assert {e["action"] for e in entries} == {"update", "remove"}
    assert simulator.get_list(list_id) == original  # the dry run wrote nothing

    # Between review and apply, someone fixes one number by hand on the platform.
    touched = next(e for e in entries if e["action"] == "update")
    edited = [dict(c) for c in original]
    for contact in edited:
        if contact["id"] == touched["contact_id"]:
            contact["phone"] = "+442070313000"
    simulator.put_list(list_id, contacts=edited)

    code, applied = run_cli(capsys, "apply", str(plan))
    assert code == 0 and applied["kind"] == "apply"
    assert applied["stale_skipped"] == 1
    after = by_id(simulator.get_list(list_id))
    assert after[touched["contact_id"]]["phone"] == "+442070313000"  # newer data kept
    removed = {e["contact_id"] for e in entries if e["action"] == "remove"}
    assert not removed & set(after)
    for entry in entries:
        if entry["action"] == "update" and entry["contact_id"] != touched["contact_id"]:
            assert after[entry["contact_id"]]["phone"] == entry["phone_after"]
    assert applied["success_count"] == dry["planned_updates"] - 1
    assert applied["purge_count"] == dry["planned_removals"]

    code = cli.main(["archive", "export", applied["run_id"]])
    exported = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert {r["id"] for r in exported} == {e["contact_id"] for e in entries} - {
        touched["contact_id"]
    }

    code, restored = run_cli(capsys, "restore", applied["run_id"])
    assert code == 0 and restored["kind"] == "restore"
    assert restored["restored"] == len(exported)
    # Field for field, the list is what it was before the apply (with the hand edit).
    assert by_id(simulator.get_list(list_id)) == by_id(edited)
    assert len(audit_lines(audit_log_path, restored["run_id"])) == 1


def test_a_malformed_plan_file_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_client: Any
) -> None:
    from cxsweep.runs.store import ListLock

    list_id = f"plan-{uuid.uuid4().hex[:8]}"
    bad = tmp_path / "plan.jsonl"
    bad.write_text(
        json.dumps({"cxsweep_plan": 2, "list_id": list_id})
        + '\n{"contact_id": "c", "action": "zap"}\n'
    )
    assert cli.main(["apply", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad}:2: not a plan entry" in err
    assert ListLock(redis_client, list_id).holder() is None  # refused before the lock


def test_restore_of_a_dry_run_is_refused(
    simulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    list_id = f"plan-{uuid.uuid4().hex[:8]}"
    simulator.put_list(list_id, count=50, seed=32)
    _, dry = run_cli(capsys, "run", list_id, "--dry-run")
    assert cli.main(["restore", dry["run_id"]]) == 1
    assert "dry run" in capsys.readouterr().err


# --- a plan is applied whole or not at all ------------------------------------------------


def _dry_plan(
    simulator: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], count: int, seed: int
) -> tuple[str, Path, list[str]]:
    list_id = f"plan-{uuid.uuid4().hex[:8]}"
    simulator.put_list(list_id, count=count, seed=seed)
    simulator.configure(page_size=100)
    plan = tmp_path / "plan.jsonl"
    code, _ = run_cli(capsys, "run", list_id, "--dry-run", "--plan-out", str(plan))
    assert code == 0
    return list_id, plan, plan.read_text().splitlines(keepends=True)


def test_a_plan_cut_short_or_altered_is_refused_whole(
    simulator: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_client: Any
) -> None:
    from cxsweep.runs.store import ListLock

    list_id, _, lines = _dry_plan(simulator, tmp_path, capsys, count=300, seed=33)
    end = json.loads(lines[-1])
    assert end["entries"] == len(lines) - 2 > 50 and len(end["sha256"]) == 64
    before = simulator.get_list(list_id)
    requests_before = simulator.stats()["requests"]

    update = next(i for i, line in enumerate(lines) if '"action": "update"' in line)
    edited = json.loads(lines[update])
    edited["after"] = {k: "+15550100000" for k in edited["after"]}
    header = json.loads(lines[0])
    cases = {
        # cut at a line boundary: 50 entries of many, no closing line
        "cut": ("".join(lines[:51]), "incomplete plan: it ends after 50 entries"),
        # cut mid-line
        "torn": ("".join(lines[:51]) + lines[51][:20], ":52: not a JSON line"),
        "edited": (
            "".join([*lines[:update], json.dumps(edited) + "\n", *lines[update + 1 :]]),
            "altered after it was written",
        ),
        "retargeted": (
            "".join([json.dumps({**header, "list_id": "another"}) + "\n", *lines[1:]]),
            "altered after it was written",
        ),
        "dropped": ("".join([*lines[:5], *lines[6:]]), "closing line counts"),
        "binary": (None, ":1: not a cxsweep plan (not UTF-8 text)"),
        "old format": (
            json.dumps({**header, "cxsweep_plan": 1}) + "\n" + "".join(lines[1:-1]),
            "carries no digest",
        ),
    }
    for name, (text, expected) in cases.items():
        bad = tmp_path / f"{name.replace(' ', '-')}.jsonl"
        if text is None:
            bad.write_bytes(b"\xff\xfe\x00garbage\x9c" * 64 + b"\n" + bytes(range(256)))
        else:
            bad.write_text(text)
        code = cli.main(["apply", str(bad), "--quiet", "--timeout", "30"])
        err = capsys.readouterr().err
        assert code == 2, (name, err)
        assert err.count("\n") == 1 and expected in err, (name, err)
        assert "Traceback" not in err
    # Nothing was written, locked, or even asked of the API.
    assert simulator.get_list(list_id) == before
    assert simulator.stats()["requests"] == requests_before
    assert ListLock(redis_client, list_id).holder() is None


def test_a_plan_applied_twice_reports_what_it_found_done(
    simulator: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    list_id, plan, lines = _dry_plan(simulator, tmp_path, capsys, count=300, seed=34)
    entries = [json.loads(line) for line in lines[1:-1]]
    updates = sum(e["action"] == "update" for e in entries)
    removals = len(entries) - updates

    code, first = run_cli(capsys, "apply", str(plan))
    assert code == 0 and first["success_count"] == updates and first["purge_count"] == removals
    assert (first["already_applied"], first["already_gone"], first["stale_skipped"]) == (0, 0, 0)
    after_first = simulator.get_list(list_id)

    code = cli.main(["apply", str(plan), "--quiet", "--timeout", "120"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"already    {updates} update(s) were applied before" in out
    assert f"gone       {removals} planned removal(s): no longer on the list" in out
    code, second = run_cli(capsys, "apply", str(plan))
    assert code == 0 and second["kind"] == "apply" and second["plan_entries"] == len(entries)
    assert second["already_applied"] == updates and second["already_gone"] == removals
    assert second["stale_skipped"] == 0 and second["success_count"] == 0
    assert second["purge_count"] == 0
    assert simulator.get_list(list_id) == after_first


# --- each kind of run says what it does -----------------------------------------------------


def test_a_restore_shows_its_own_progress_report_and_status(
    simulator: Any, capsys: pytest.CaptureFixture[str], redis_client: Any
) -> None:
    from console.progress import Progress, progress_line
    from console.report import render_html
    from console.reportcmd import record_from_redis
    from cxsweep.runs.store import RunStore

    list_id = f"restore-{uuid.uuid4().hex[:8]}"
    simulator.put_list(list_id, count=400, seed=35)
    simulator.configure(page_size=100)
    code, swept = run_cli(capsys, "run", list_id, "--allow-purge-ratio", "1")
    assert code == 0 and swept["kind"] == "sweep"
    archived = swept["success_count"] + swept["purge_count"]
    assert swept["purge_count"] > 20

    # Slow answers: the restore lasts a few seconds, long enough to watch it move.
    simulator.configure(latency_ms=10.0)
    settings = launch.settings_for_run()
    run_id = launch.start_run(
        settings, list_id, dry_run=False, options={"restore_of": swept["run_id"]}
    )
    store = RunStore(redis_client, run_id)
    assert store.meta()["kind"] == "restore"
    seen: set[int] = set()
    lines: list[str] = []
    progress = Progress()
    deadline = time.monotonic() + 120
    while not store.meta().get("record") and time.monotonic() < deadline:
        meta, counts = store.meta(), store.counts()
        seen.add(counts.get("restored_recreated", 0) + counts.get("restored_reverted", 0))
        lines.append(progress_line(meta, counts, 1.0))
        bars = progress.lines(meta, counts, 1.0)
        if "restore_total" in meta:
            assert bars[0].startswith(f"restore {run_id} of run {swept['run_id']}")
        else:  # not taken up by a worker yet
            assert bars == [f"restore {run_id}  waiting for a worker  1.0s"]
        time.sleep(0.05)
    simulator.configure(latency_ms=0.0)
    assert store.begun()
    assert int(store.meta()["restore_total"]) == archived
    # Counted contact by contact batch, not page by page: several values on the way.
    assert len({n for n in seen if 0 < n < archived}) >= 3, sorted(seen)
    assert all(" written " not in line and "chunks" not in line for line in lines)
    assert any(f"/{archived} contacts (recreated" in line for line in lines), lines[-3:]

    record = launch.wait_for_run(settings, run_id, timeout=10, quiet=True)
    assert record["kind"] == "restore" and record["status"] == "completed"
    assert record["restored"] == record["restore_total"] == archived
    assert record["restored_recreated"] == swept["purge_count"]

    summary.print_summary(record)
    out = capsys.readouterr().out
    assert out.startswith(f"restore {run_id} of run {swept['run_id']} on list {list_id}")
    assert f"restored   {archived} of {archived} contact(s)" in out
    assert "fetched" not in out and "unchanged" not in out

    page = render_html(*record_from_redis(settings.redis_url, run_id))
    assert "Restore report" in page and "RESTORE" in page
    assert f"{archived:,} of the {archived:,} contacts run {swept['run_id']}" in page
    assert "No contacts were read" not in page and "Dialable" not in page
    assert "Rejects by reason" not in page

    assert cli.main(["status", run_id]) == 0
    status = capsys.readouterr().out
    assert f"{run_id}  restore  list {list_id}" in status
    assert f"restored {archived:,}/{archived:,} contacts" in status
    assert cli.main(["status", swept["run_id"]]) == 0
    assert f"{swept['run_id']}  sweep    list" in capsys.readouterr().out


def test_a_dry_run_says_what_it_would_do(
    simulator: Any, capsys: pytest.CaptureFixture[str], redis_client: Any
) -> None:
    from console.progress import Progress, progress_line
    from console.report import render_html
    from cxsweep.runs.store import RunStore

    list_id = f"dry-{uuid.uuid4().hex[:8]}"
    simulator.put_list(list_id, count=200, seed=36)
    code, dry = run_cli(capsys, "run", list_id, "--dry-run")
    assert code == 0 and dry["kind"] == "dry_run" and dry["dry_run"]
    store = RunStore(redis_client, dry["run_id"])
    meta, counts = store.meta(), store.counts()
    assert meta["kind"] == "dry_run"
    line = progress_line(meta, counts, 2.0)
    assert f"would update {dry['planned_updates']}" in line and "written" not in line
    bars = Progress().lines(meta, counts, 2.0)
    assert bars[0].startswith(f"dry run {dry['run_id']}")
    assert "nothing is written" in bars[-1] and not any("chunks" in b for b in bars)
    page = render_html(dry)
    assert "Dry run report" in page and "DRY RUN" in page and "Would remove" in page
    assert cli.main(["status", dry["run_id"]]) == 0
    assert f"{dry['run_id']}  dry run  list {list_id}" in capsys.readouterr().out


def test_a_plan_changed_between_check_and_load_frees_the_list(
    simulator: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_client: Any
) -> None:
    """The file is read twice (checked whole, then loaded): an edit in between is caught
    while loading, before anything reaches the workers, and the list is freed at once."""
    from cxsweep.runs.planfile import PlanFileError, read_plan
    from cxsweep.runs.store import RUN_INDEX, ListLock, RunStore

    list_id, plan, lines = _dry_plan(simulator, tmp_path, capsys, count=120, seed=37)
    started: list[str] = []

    def load_after_an_edit(store: RunStore) -> None:
        started.append(store.run_id)
        plan.write_text("".join(lines[:-3] + lines[-1:]))
        store.load_planned(read_plan(plan)[1])

    with pytest.raises(PlanFileError, match="closing line counts"):
        launch.start_run(
            launch.settings_for_run(),
            list_id,
            dry_run=False,
            options={"apply": True},
            before_launch=load_after_an_edit,
        )
    meta = RunStore(redis_client, started[0]).meta()
    assert meta["status"] == "failed" and "refused before" in meta["error"]
    assert not RunStore(redis_client, started[0]).begun()
    assert ListLock(redis_client, list_id).holder() is None
    assert redis_client.zscore(RUN_INDEX, started[0]) is not None
