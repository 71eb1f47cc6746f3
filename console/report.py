"""The run report: one self-contained HTML page that tells the story of a run at a glance.

``cxsweep report RUN_ID --html FILE`` reads the run's audit record from Redis (or from an
audit log with ``--audit-log``) and writes a page with no external assets and no script:
it opens from a mail attachment or a ticket as well as from a web server. Every value
that comes from the record is escaped: list ids and reasons come from outside.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from console.pages import (
    CHART_COLOURS,
    HALF,
    OUTCOME_COLOURS,
    STATUS_COLOURS,
    as_int,
    bar_chart,
    fmt_duration,
    fmt_num,
    fmt_pct,
    fmt_when,
    humanize,
    outcome_bar,
    sorted_counts,
    templates,
)
from cxsweep.runs import keys

EXIT_OK, EXIT_USAGE = 0, 2

# --- the page ---------------------------------------------------------------------------


def _summary(
    dry: bool, fetched: int, updated: int, unchanged: int, removed: int, failed: int
) -> str:
    if not fetched:
        return "No contacts were read."
    if dry:
        return (
            f"{fetched:,} contacts checked: {updated:,} would be rewritten to E.164, "
            f"{removed:,} would be removed as not dialable, {unchanged:,} are already clean."
        )
    text = (
        f"{fetched:,} contacts checked: {updated:,} rewritten to E.164, {removed:,} removed "
        f"as not dialable, {unchanged:,} already clean"
    )
    return text + (f"; {failed:,} writes failed." if failed else "; every write succeeded.")


EYEBROWS = {
    "sweep": "Contact list sweep report",
    "dry_run": "Dry run report: nothing was written",
    "apply": "Plan apply report",
    "restore": "Restore report",
}
TAGS = {"dry_run": "DRY RUN", "apply": "APPLY", "restore": "RESTORE"}
APPLY_SKIPPED_COLOUR = "#6b59c8"
RESTORE_COLOURS = {"recreated": "#e07b00", "reverted": "#2f6fdb", "left": "#9aa5b1"}


def _tile(label: str, value: str, sub: str = "", colour: str | None = None) -> dict[str, Any]:
    return {"label": label, "value": value, "sub": sub, "colour": colour}


def _restore_wording(record: Mapping[str, Any], status: str) -> tuple[str, str]:
    """The note's headline and the lead sentence of a restore."""
    source = record.get("restore_of") or "?"
    restored = as_int(record.get("restored"))
    failed = as_int(record.get("failure_count"))
    # Records of restores made before the archive's size was kept: what was done is all.
    total = as_int(record.get("restore_total")) or restored + failed
    headline = {
        "completed": f"Restore of run {source}: what it changed was put back.",
        "halted": "Halted for manual review: the restore stopped writing.",
        "failed": "Failed: see the note below.",
    }.get(status, status)
    lead = (
        f"{restored:,} of the {total:,} contacts run {source} changed were put back:"
        f" {as_int(record.get('restored_recreated')):,} re-created (the run had removed them),"
        f" {as_int(record.get('restored_reverted')):,} reverted to the numbers they had"
    )
    return headline, lead + (f"; {failed:,} could not be restored." if failed else ".")


def _restore_view(record: Mapping[str, Any]) -> dict[str, Any]:
    recreated = as_int(record.get("restored_recreated"))
    reverted = as_int(record.get("restored_reverted"))
    failed = as_int(record.get("failure_count"))
    total = as_int(record.get("restore_total")) or as_int(record.get("restored")) + failed
    left = max(0, total - recreated - reverted - failed)
    tiles = [
        _tile("Archived", fmt_num(total), f"contacts run {record.get('restore_of')} changed"),
        _tile(
            "Re-created",
            fmt_num(recreated),
            f"{fmt_pct(recreated, total)} had been removed",
            RESTORE_COLOURS["recreated"],
        ),
        _tile(
            "Reverted",
            fmt_num(reverted),
            f"{fmt_pct(reverted, total)} numbers written back",
            RESTORE_COLOURS["reverted"],
        ),
        _tile(
            "Failed",
            fmt_num(failed),
            "not restored" if failed else "every contact restored",
            OUTCOME_COLOURS["failed"],
        ),
    ]
    segments = [
        ("Re-created", recreated, RESTORE_COLOURS["recreated"]),
        ("Reverted", reverted, RESTORE_COLOURS["reverted"]),
        ("Failed", failed, OUTCOME_COLOURS["failed"]),
        ("Not reached", left, RESTORE_COLOURS["left"]),
    ]
    return {
        "tiles": tiles,
        "bar": outcome_bar(segments) if total else None,
        "hint": f"{total:,} contacts in the archive of run {record.get('restore_of')}",
    }


def _apply_lead(record: Mapping[str, Any], updated: int, removed: int, failed: int) -> str:
    text = f"A reviewed plan of {as_int(record.get('plan_entries')):,} changes applied: "
    text += f"{updated:,} contacts rewritten to E.164, {removed:,} removed"
    skipped = [
        (record.get("stale_skipped"), "skipped as changed on the platform since the plan"),
        (record.get("already_applied"), "already applied before"),
        (record.get("already_gone"), "removals already gone from the list"),
        (record.get("updates_not_found"), "updates whose contact is no longer on the list"),
    ]
    text += "".join(f"; {as_int(n):,} {what}" for n, what in skipped if as_int(n))
    return text + (f"; {failed:,} writes failed." if failed else ".")


def _apply_rows(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows = [
        ("Changes in the plan", record.get("plan_entries")),
        ("Skipped: changed on the platform since the plan", record.get("stale_skipped")),
        ("Skipped: applied before", record.get("already_applied")),
        ("Skipped: removal already gone", record.get("already_gone")),
        ("Skipped: update of a contact no longer on the list", record.get("updates_not_found")),
    ]
    return [(label, fmt_num(value)) for label, value in rows]


def _latency_by_kind_rows(by_kind: Mapping[str, Any]) -> list[list[str]]:
    """Rows of kind, requests, p50, p95, p99; a missing or non-numeric cell is a dash."""

    def cell(row: Mapping[str, Any], name: str) -> str:
        value = row.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool):
            return "\u2013"
        return fmt_num(int(value)) if name == "requests" else f"{float(value):,.1f}"

    return [
        ["All kinds" if kind == "all" else humanize(str(kind))]
        + [cell(row, name) for name in ("requests", "p50", "p95", "p99")]
        for kind, row in by_kind.items()
        if isinstance(row, Mapping)
    ]


def _step_rows(steps: Iterable[Mapping[str, Any]]) -> list[tuple[Any, Any, str]]:
    return [
        (
            step.get("name", step.get("step", "?")),
            step.get("detail", ""),
            fmt_duration(step.get("seconds", step.get("duration_seconds", ""))),
        )
        for step in steps
    ]


DRY_RUN_NOTE = "dry run: nothing was written"


def own_note(record: Mapping[str, Any]) -> str:
    """The record's message without what a dry run's headline already says (a dry run's
    message starts with it; a purge-guard warning may follow)."""
    note = str(record.get("message") or "")
    if record.get("dry_run"):
        note = note.removeprefix(DRY_RUN_NOTE).removeprefix("; ")
    return note


def render_html(record: Mapping[str, Any], extras: Mapping[str, Any] | None = None) -> str:
    """One self-contained HTML page (inline CSS and SVG, no script) for a run's record.

    ``record`` is the audit record (``cxsweep.audit.build_record``). ``extras`` may add
    what the record does not carry: ``requests_by_endpoint`` and ``responses_by_status``
    ({name: count}), ``api_avg_ms``, ``api_latency_ms`` ({"p50": ms, ...}),
    ``slowest_steps`` ([{"name", "detail", "seconds"}]) and ``generated_at``.
    The page is ``templates/run_report.html``; here are only the numbers it shows.
    """
    extra: dict[str, Any] = {**dict(record.get("extras") or {}), **dict(extras or {})}
    status = str(record.get("status") or "unknown")
    fg, bg = STATUS_COLOURS.get(status, ("#3d4a57", "#eef1f5"))
    dry = bool(record.get("dry_run"))
    fetched = as_int(record.get("total_processed"))
    unchanged = as_int(record.get("unchanged_count"))
    updated = as_int(record.get("planned_updates" if dry else "success_count"))
    removed = as_int(record.get("planned_removals" if dry else "purge_count"))
    failed = 0 if dry else as_int(record.get("failure_count"))

    headline = {
        "completed": "Completed: the list was cleaned.",
        "halted": "Halted for manual review: writes stopped, nothing further was removed.",
        "failed": "Failed: see the note below.",
        "cancelled": "Cancelled: no write started after the request; what was written stays.",
    }.get(status, status)
    if dry:
        headline = "Dry run: the list was read and judged; nothing was written."
    kind = str(record.get("kind") or ("dry_run" if dry else "sweep"))
    lead = _summary(dry, fetched, updated, unchanged, removed, failed)
    if kind == "restore":
        headline, lead = _restore_wording(record, status)
    elif kind == "apply":
        lead = _apply_lead(record, updated, removed, failed)

    rate = record.get("format_success_rate")
    tiles = [
        _tile("Fetched", fmt_num(fetched), "contacts read", "#1d2733"),
        _tile(
            "Would update" if dry else "Updated",
            fmt_num(updated),
            f"{fmt_pct(updated, fetched)} rewritten to E.164",
            OUTCOME_COLOURS["updated"],
        ),
        _tile(
            "Unchanged",
            fmt_num(unchanged),
            f"{fmt_pct(unchanged, fetched)} already clean",
            OUTCOME_COLOURS["unchanged"],
        ),
        _tile(
            "Would remove" if dry else "Removed",
            fmt_num(removed),
            f"{fmt_pct(removed, fetched)} not dialable",
            OUTCOME_COLOURS["removed"],
        ),
    ]
    if not dry:  # a dry run writes nothing, so no write of it can fail
        tiles.append(
            _tile(
                "Failed",
                fmt_num(failed),
                "writes not done" if failed else "no write failed",
                OUTCOME_COLOURS["failed"],
            )
        )
    # An apply judges nothing itself: the share of dialable numbers was the plan's.
    if isinstance(rate, int | float) and kind != "apply":
        kept = "would stay after a sweep" if dry else "kept after the sweep"
        tiles.append(_tile("Dialable", f"{100.0 * float(rate):.1f}%", kept, "#3a9a6a"))

    segments = [
        ("Would update" if dry else "Updated", updated, OUTCOME_COLOURS["updated"]),
        ("Unchanged", unchanged, OUTCOME_COLOURS["unchanged"]),
        ("Would remove" if dry else "Removed", removed, OUTCOME_COLOURS["removed"]),
        ("Failed", failed, OUTCOME_COLOURS["failed"]),
    ]
    if kind == "apply":
        skipped = as_int(record.get("stale_skipped")) + as_int(record.get("already_applied"))
        segments.append(("Skipped (plan)", skipped, APPLY_SKIPPED_COLOUR))
    reasons = record.get("reject_reasons") or {}

    requests = as_int(record.get("api_requests"))
    retries = as_int(record.get("api_retries"))
    throttled = as_int(record.get("api_429s"))
    api_tiles = [
        _tile("Requests", fmt_num(requests), f"{fmt_num(record.get('pages'))} pages read"),
        _tile("Retries", fmt_num(retries), f"{fmt_pct(retries, requests)} of requests"),
        _tile(
            "Rate limited (429)",
            fmt_num(throttled),
            "server asked to slow down" if throttled else "never throttled",
        ),
    ]
    # Records before check_us_per_number held the check time in avg_latency_ms/_us.
    check_us = record.get("check_us_per_number", record.get("avg_latency_us"))
    api_avg_ms = extra.get("api_avg_ms")
    if api_avg_ms is None and "check_us_per_number" in record:
        api_avg_ms = record.get("avg_latency_ms")
    if isinstance(api_avg_ms, int | float):
        shown = f"{api_avg_ms:,.0f}" if api_avg_ms >= 10 else f"{api_avg_ms:.1f}"
        api_tiles.append(_tile("Avg API latency", f"{shown} ms", "per request"))
    if isinstance(check_us, int | float):
        api_tiles.append(
            _tile("Check time", f"{float(check_us):,.0f} \u00b5s", "per number, on the workers")
        )

    # A chart whose counts are present but all zero still shows its card, saying so.
    api_charts = [
        (title, bar_chart(counts, colour=CHART_COLOURS[key], title=title, label=label, width=HALF))
        for title, counts, key, label in (
            ("Requests by endpoint", extra.get("requests_by_endpoint"), "endpoints", humanize),
            ("Responses by status", extra.get("responses_by_status"), "statuses", str),
        )
        if counts
    ]
    percentiles = extra.get("api_latency_ms")
    by_kind = record.get("api_latency_ms")
    steps = extra.get("slowest_steps")
    note = own_note(record)
    return (
        templates()
        .get_template("run_report.html")
        .render(
            run_id=record.get("run_id", ""),
            list_id=record.get("list_id", ""),
            kind=kind,
            eyebrow=EYEBROWS.get(kind, EYEBROWS["sweep"]),
            tag=TAGS.get(kind),
            started=fmt_when(record.get("started_at")),
            finished=fmt_when(record.get("finished_at")),
            took=fmt_duration(record.get("duration_seconds")),
            lead=lead,
            status=status,
            fg=fg,
            bg=bg,
            headline=headline,
            note=note,
            show_note=bool(note or status != "completed" or dry or kind == "restore"),
            warnings=[str(w) for w in record.get("warnings") or ()],
            already_suppressed=as_int(record.get("already_suppressed")),
            restore=_restore_view(record) if kind == "restore" else None,
            apply_rows=_apply_rows(record) if kind == "apply" else None,
            tiles=tiles,
            fetched=f"{fetched:,}",
            outcome=outcome_bar(segments),
            rejects=f"{sum(v for _, v in sorted_counts(reasons)):,}",
            reasons_chart=bar_chart(
                reasons, colour=CHART_COLOURS["reasons"], title="Rejects by reason"
            ),
            region_chart=bar_chart(
                record.get("by_region"),
                colour=CHART_COLOURS["regions"],
                title="Kept contacts by region",
                label=str,
                width=HALF,
            ),
            type_chart=bar_chart(
                record.get("by_line_type"),
                colour=CHART_COLOURS["types"],
                title="Kept contacts by line type",
                width=HALF,
            ),
            api_tiles=api_tiles,
            api_charts=api_charts,
            percentiles=(
                [(name, fmt_num(value)) for name, value in percentiles.items()]
                if isinstance(percentiles, Mapping) and percentiles
                else None
            ),
            latency_by_kind=(
                _latency_by_kind_rows(by_kind) if isinstance(by_kind, Mapping) and by_kind else None
            ),
            steps=_step_rows(steps) if isinstance(steps, list) and steps else None,
            recorded=fmt_when(record.get("timestamp")),
            generated=fmt_when(extra.get("generated_at") or datetime.now(UTC).isoformat()),
        )
    )


# --- where records come from ------------------------------------------------------------


def record_from_audit_log(path: str | Path, run_id: str) -> dict[str, Any] | None:
    """The last line of the log for ``run_id`` (``latest``: the last line of the log)."""
    found: dict[str, Any] | None = None
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash must not hide the others
            if isinstance(record, dict) and (run_id == "latest" or record.get("run_id") == run_id):
                found = record
    return found


def extras_from_counts(counts: Mapping[str, int]) -> dict[str, Any]:
    """What the run's counters in Redis add to the record."""
    extras: dict[str, Any] = {
        "requests_by_endpoint": keys.by_prefix(counts, keys.CALLS_PREFIX),
        "responses_by_status": keys.by_prefix(counts, keys.STATUS_PREFIX),
    }
    if counts.get(keys.API_REQUESTS) and keys.API_US_SUM in counts:
        extras["api_avg_ms"] = counts[keys.API_US_SUM] / counts[keys.API_REQUESTS] / 1000.0
    return extras
