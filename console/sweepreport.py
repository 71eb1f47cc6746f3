"""The nightly sweep as one page: every list of a scheduled sweep, linked to its run.

``cxsweep report --sweep SWEEP_ID --html FILE`` reads the sweep's state in Redis (see
``tasks.schedule``: ``runs`` maps each list to its run, ``skipped`` the lists dropped,
``pending`` those not started yet) and each run's audit record, and renders
``templates/sweep_report.html``. Jinja2 escapes every value: list ids and notes come
from outside. ``--with-runs`` also writes each finished run's own report next to the
page, as the ``report-RUN_ID.html`` the page links to.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import redis

from console.pages import (
    OUTCOME_COLOURS,
    STATUS_COLOURS,
    as_int,
    fmt_duration,
    fmt_num,
    fmt_when,
    templates,
)
from console.report import extras_from_counts, render_html
from cxsweep.errors import CxsweepError, SettingsError

EXIT_OK = 0
# Only ids like the ones cxsweep makes become file names and links.
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}")
SLOWEST = 5
NEUTRAL = ("#3d4a57", "#eef1f5")
SWEEP_COLOURS = {
    "done": STATUS_COLOURS["completed"],
    "abandoned": STATUS_COLOURS["failed"],
    "running": NEUTRAL,
}
ROW_COLOURS = {
    **STATUS_COLOURS,
    "skipped": ("#9a5b00", "#fff4e0"),
    "expired": NEUTRAL,
    "running": NEUTRAL,
    "pending": NEUTRAL,
}
# Lists that need a look come first.
ORDER = ("failed", "halted", "skipped", "expired", "running", "pending", "completed")


@dataclass
class ListRow:
    list_id: str
    run_id: str = ""
    outcome: str = "pending"
    checked: int = 0
    updated: int = 0
    removed: int = 0
    failures: int = 0
    seconds: float | None = None
    note: str = ""
    link: str = ""
    record: dict[str, Any] | None = None


def report_name(run_id: str) -> str | None:
    """The file a run's own report is written to, or None for an id unfit for a name."""
    return f"report-{run_id}.html" if SAFE_ID.fullmatch(run_id) else None


def _row(list_id: str, run_id: str, meta: Mapping[str, str]) -> ListRow:
    row = ListRow(list_id, run_id)
    if not meta:
        row.outcome, row.note = "expired", "the run's state has expired from Redis"
        return row
    if not meta.get("record"):
        row.outcome = "running"
        row.note = f"{meta.get('status', '?')} when this page was made"
        return row
    record = json.loads(meta["record"])
    dry = bool(record.get("dry_run"))
    row.record = record
    row.outcome = str(record.get("status") or "?")
    row.checked = as_int(record.get("total_processed"))
    row.updated = as_int(record.get("planned_updates" if dry else "success_count"))
    row.removed = as_int(record.get("planned_removals" if dry else "purge_count"))
    # Records written before ``not_written`` existed counted a halted run's unsent
    # writes as failed; such a row says halted, and why, instead.
    old_halted = row.outcome == "halted" and "not_written" not in record
    row.failures = 0 if dry or old_halted else as_int(record.get("failure_count"))
    try:
        row.seconds = float(record.get("duration_seconds"))
    except (TypeError, ValueError):
        row.seconds = None
    if row.outcome != "completed" or row.failures:
        row.note = str(record.get("message") or "")
    row.link = report_name(run_id) or ""
    return row


def collect(client: redis.Redis, sweep_id: str) -> tuple[dict[str, str], list[ListRow]]:
    """The sweep's metadata and one row per list it took, skipped or still holds."""
    from cxsweep.runs.sweeps import SweepStore

    store = SweepStore(client, sweep_id)
    meta = store.meta()
    if not meta:
        raise CxsweepError(f"no sweep {sweep_id} in Redis (sweeps are kept 7 days)")
    from cxsweep.runs.store import RunStore

    rows = [
        _row(list_id, run_id, RunStore(client, run_id).meta())
        for list_id, run_id in store.runs().items()
    ]
    rows += [
        ListRow(list_id, outcome="skipped", note=why) for list_id, why in store.skipped().items()
    ]
    rows += [ListRow(list_id, note="not started yet") for list_id in store.pending()]
    rank = {outcome: index for index, outcome in enumerate(ORDER)}
    rows.sort(key=lambda r: (rank.get(r.outcome, 0), r.list_id))
    return meta, rows


def _stamp(value: str | None) -> str:
    try:
        return fmt_when(datetime.fromtimestamp(float(value or ""), UTC).isoformat())
    except ValueError:
        return "not yet"


def render_sweep_html(
    meta: Mapping[str, str], rows: list[ListRow], *, generated_at: str | None = None
) -> str:
    """One HTML page for the sweep: totals, every list's outcome, the slowest lists."""
    status = meta.get("status", "unknown")
    dry = meta.get("dry_run") == "1"
    fg, bg = SWEEP_COLOURS.get(status, NEUTRAL)
    outcomes = Counter(row.outcome for row in rows)
    totals = {
        "checked": sum(r.checked for r in rows),
        "updated": sum(r.updated for r in rows),
        "removed": sum(r.removed for r in rows),
        "failures": sum(r.failures for r in rows),
    }
    words = (
        {"updated": "Would update", "removed": "Would remove"}
        if dry
        else {"updated": "Updated", "removed": "Removed"}
    )
    told = ", ".join(f"{outcomes[o]:,} {o}" for o in ORDER if outcomes[o])
    lead = (
        f"{len(rows):,} lists in this sweep"
        + (f": {told}." if told else ".")
        + f" {totals['checked']:,} contacts checked, {totals['updated']:,}"
        + (" would be updated" if dry else " updated")
        + f", {totals['removed']:,}"
        + (" would be removed" if dry else " removed")
        + f", {totals['failures']:,} failures."
    )
    started = float(meta.get("started_at") or 0)
    finished = meta.get("finished_at")
    end = float(finished) if finished else float(meta.get("updated_at") or started)
    problems = outcomes["failed"] + outcomes["halted"]
    note = {
        "running": "Still running: the lists not finished yet show what they were doing.",
        "abandoned": "Abandoned: the sweep stopped advancing and a later one replaced it.",
    }.get(status, "")
    note_colour = fg
    if status == "done" and problems:
        note = f"{problems} list(s) failed or halted: see their rows and reports."
        note_colour = STATUS_COLOURS["halted"][0]
    tiles = [
        {"label": "Lists", "value": fmt_num(len(rows)), "sub": told or "none", "colour": "#1d2733"},
        {
            "label": "Checked",
            "value": fmt_num(totals["checked"]),
            "sub": "contacts read",
            "colour": OUTCOME_COLOURS["unchanged"],
        },
        {
            "label": words["updated"],
            "value": fmt_num(totals["updated"]),
            "sub": "rewritten to E.164",
            "colour": OUTCOME_COLOURS["updated"],
        },
        {
            "label": words["removed"],
            "value": fmt_num(totals["removed"]),
            "sub": "not dialable",
            "colour": OUTCOME_COLOURS["removed"],
        },
        {
            "label": "Failures",
            "value": fmt_num(totals["failures"]),
            "sub": f"{problems} list(s) failed or halted",
            "colour": OUTCOME_COLOURS["failed"],
        },
    ]
    timed = sorted((r for r in rows if r.seconds is not None), key=lambda r: -(r.seconds or 0.0))[
        :SLOWEST
    ]
    longest = max((r.seconds or 0.0 for r in timed), default=0.0) or 1.0
    slowest = [
        {
            "list_id": r.list_id,
            "took": fmt_duration(r.seconds),
            "share": round(100.0 * (r.seconds or 0.0) / longest, 1),
            "link": r.link,
        }
        for r in timed
    ]
    table = [
        {
            "list_id": r.list_id,
            "run_id": r.run_id or "\u2014",
            "outcome": r.outcome,
            "fg": ROW_COLOURS.get(r.outcome, NEUTRAL)[0],
            "bg": ROW_COLOURS.get(r.outcome, NEUTRAL)[1],
            "note": r.note,
            "checked": fmt_num(r.checked) if r.record else "\u2014",
            "updated": fmt_num(r.updated) if r.record else "\u2014",
            "removed": fmt_num(r.removed) if r.record else "\u2014",
            "failures": fmt_num(r.failures) if r.record and r.outcome != "halted" else "\u2014",
            "took": fmt_duration(r.seconds) if r.seconds is not None else "\u2014",
            "link": r.link,
        }
        for r in rows
    ]
    sweep = {
        "sweep_id": meta.get("sweep_id", "?"),
        "status": status,
        "fg": fg,
        "bg": bg,
        "dry_run": dry,
        "note": note,
        "note_colour": note_colour,
        "started": _stamp(meta.get("started_at")),
        "finished": _stamp(finished) if finished else "still running",
        "took": fmt_duration(end - started) if started else "unknown",
        "max_runs": meta.get("max_concurrent_runs", "?"),
        "excluded": as_int(meta.get("excluded")),
        "own_schedule": as_int(meta.get("own_schedule")),
    }
    return (
        templates()
        .get_template("sweep_report.html")
        .render(
            sweep=sweep,
            lead=lead,
            tiles=tiles,
            rows=table,
            totals={k: fmt_num(v) for k, v in totals.items()},
            words=words,
            slowest=slowest,
            generated=fmt_when(generated_at or datetime.now(UTC).isoformat()),
        )
    )


def _resolve(client: redis.Redis, sweep_id: str) -> str:
    if sweep_id != "latest":
        return sweep_id
    from cxsweep.redisconn import text
    from cxsweep.runs.keys import SWEEP_INDEX

    newest = cast(list[bytes], client.zrevrange(SWEEP_INDEX, 0, 0))
    if not newest:
        raise CxsweepError("no sweeps recorded")
    return text(newest[0])


def _client() -> redis.Redis:
    from cxsweep.redisconn import get_redis
    from cxsweep.settings import get_settings
    from devtools.localredis import redis_answers

    get_settings.cache_clear()
    url = get_settings().redis_url
    if not redis_answers(url):
        raise SettingsError(f"no Redis answers at CXSWEEP_REDIS_URL={url}")
    return get_redis(url)


def sweep_report_command(args: argparse.Namespace) -> int:
    """``cxsweep report --sweep SWEEP_ID [--html FILE] [--with-runs]``."""
    if args.audit_log:
        raise SettingsError("--sweep reads the sweep from Redis; --audit-log is for one run")
    if args.with_runs and args.html == "-":
        raise SettingsError("--with-runs needs --html FILE: the runs' pages go next to it")
    client = _client()
    sweep_id = _resolve(client, args.sweep)
    meta, rows = collect(client, sweep_id)
    page = render_sweep_html(meta, rows)
    if args.html == "-":
        sys.stdout.write(page)
        return EXIT_OK
    default = f"cxsweep-{sweep_id}.html" if SAFE_ID.fullmatch(sweep_id) else "cxsweep-sweep.html"
    target = Path(args.html or default)
    target.write_text(page, encoding="utf-8")
    written = 0
    if args.with_runs:
        from cxsweep.runs.store import RunStore

        for row in rows:
            if row.record is not None and row.link:
                extras = extras_from_counts(RunStore(client, row.run_id).counts())
                page = render_html(row.record, extras)
                (target.parent / row.link).write_text(page, encoding="utf-8")
                written += 1
    print(
        f"report of sweep {sweep_id} ({len(rows)} lists) written to {target.resolve()}"
        + (f", with {written} run report(s) next to it" if args.with_runs else ""),
        file=sys.stderr,
    )
    return EXIT_OK


def sweep_status_lines(sweep_id: str) -> list[str]:
    """``cxsweep status --sweep SWEEP_ID``: the sweep, then one line per list."""
    client = _client()
    sweep_id = _resolve(client, sweep_id)
    meta, rows = collect(client, sweep_id)
    outcomes = Counter(row.outcome for row in rows)
    lines = [
        f"sweep {sweep_id}  {meta.get('status', '?')}"
        + ("  (dry run)" if meta.get("dry_run") == "1" else "")
        + f"  {len(rows)} lists: "
        + (", ".join(f"{outcomes[o]} {o}" for o in ORDER if outcomes[o]) or "none")
    ]
    would = "would " if meta.get("dry_run") == "1" else ""
    for row in rows:
        figures = (
            f"  checked {row.checked}  {would}update {row.updated}  {would}remove {row.removed}"
            f"  failures {row.failures}  took {fmt_duration(row.seconds)}"
            if row.record
            else ""
        )
        lines.append(
            f"  {row.list_id}  {row.outcome:<9}  {row.run_id or '-'}{figures}"
            + (f"  ({row.note})" if row.note else "")
        )
    return lines
