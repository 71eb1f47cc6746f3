"""The run report: one self-contained HTML page that tells the story of a run at a glance.

``cxsweep report RUN_ID --html FILE`` reads the run's audit record from Redis (or from an
audit log with ``--audit-log``) and writes a page with no external assets and no script:
it opens from a mail attachment or a ticket as well as from a web server. Every value
that comes from the record is escaped: list ids and reasons come from outside.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from cxsweep.errors import SettingsError

EXIT_OK, EXIT_USAGE = 0, 2

STATUS_COLOURS = {
    "completed": ("#1a7f37", "#e6f4ea"),
    "halted": ("#9a5b00", "#fff4e0"),
    "failed": ("#b42318", "#fdecea"),
}
# Outcome colours are chosen to read apart for the common colour-vision deficiencies
# (blue / grey / orange / red-purple), and each segment is labelled in the legend too.
OUTCOME_COLOURS = {
    "updated": "#2f6fdb",
    "unchanged": "#9aa5b1",
    "removed": "#e07b00",
    "failed": "#b4237a",
}
# Inner width of a half-page card (see .grid2 in the CSS), for charts drawn there.
HALF = 440
CHART_COLOURS = {
    "reasons": "#e07b00",
    "regions": "#2f6fdb",
    "types": "#3a9a6a",
    "endpoints": "#6b59c8",
    "statuses": "#5b6b7b",
}

_CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f3f4f7;color:#1d2733;
 font:15px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Helvetica Neue",Arial,
 "DejaVu Sans",sans-serif}
main{max-width:1000px;margin:0 auto;padding:28px 24px 40px}
header{display:flex;flex-wrap:wrap;align-items:flex-start;justify-content:space-between;
 gap:12px;margin-bottom:18px}
.eyebrow{font-size:12px;letter-spacing:.08em;text-transform:uppercase;color:#5b6b7b;
 margin:0 0 4px}
h1{font-size:26px;margin:0 0 6px;font-weight:650;word-break:break-all}
.meta{color:#5b6b7b;font-size:13px;margin:0}
.lead{font-size:15.5px;margin:10px 0 0;max-width:720px}
.meta code{font-size:12.5px;background:#e8ebf0;border-radius:4px;padding:1px 5px;color:#1d2733}
.pill{display:inline-block;border-radius:999px;padding:5px 14px;font-weight:650;
 font-size:14px;text-transform:capitalize;border:1px solid currentColor}
.tag{display:inline-block;border-radius:4px;padding:2px 8px;font-size:12px;
 background:#e8ebf0;color:#1d2733;margin-left:6px;font-weight:600;vertical-align:middle}
.note{border-left:4px solid;border-radius:6px;padding:10px 14px;margin:0 0 18px;
 background:#fff}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(130px,1fr));gap:12px;
 margin-bottom:18px}
.tile{background:#fff;border-radius:10px;padding:14px 16px;
 box-shadow:0 1px 2px rgba(16,24,40,.06),0 1px 3px rgba(16,24,40,.08)}
.tile .label{font-size:12px;text-transform:uppercase;letter-spacing:.06em;color:#5b6b7b}
.tile .value{font-size:27px;font-weight:650;margin-top:2px;font-variant-numeric:tabular-nums}
.tile .sub{font-size:12.5px;color:#5b6b7b}
.tile.accent{border-top:4px solid var(--c);padding-top:10px}
.card{background:#fff;border-radius:10px;padding:16px 18px 14px;margin-bottom:16px;
 box-shadow:0 1px 2px rgba(16,24,40,.06),0 1px 3px rgba(16,24,40,.08)}
h2{font-size:16px;margin:0 0 2px;font-weight:650}
.card .hint{font-size:12.5px;color:#5b6b7b;margin:0 0 10px}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:16px}
.grid2 .card{margin-bottom:0}
.legend{display:flex;flex-wrap:wrap;gap:6px 18px;font-size:13px;margin-top:8px}
.legend i{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:6px;
 vertical-align:-1px}
.empty{color:#5b6b7b;font-style:italic;margin:6px 0}
table{border-collapse:collapse;width:100%;font-size:14px}
td,th{padding:6px 8px;border-bottom:1px solid #e8ebf0;text-align:left}
th{font-size:12px;text-transform:uppercase;letter-spacing:.05em;color:#5b6b7b;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
svg text{font-family:inherit}
footer{color:#8593a3;font-size:12px;margin-top:22px;text-align:center}
section{margin-bottom:16px}
"""


# --- formatting -------------------------------------------------------------------------


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _num(value: Any) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{_int(value):,}"


def _pct(part: float, whole: float) -> str:
    if not whole:
        return "0%"
    share = 100.0 * part / whole
    return f"{share:.1f}%" if share < 99.95 else "100%"


def _when(stamp: Any) -> str:
    text = str(stamp or "")
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text or "unknown"
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: Any) -> str:
    try:
        total = float(seconds)
    except (TypeError, ValueError):
        return "unknown"
    if total < 60:
        return f"{total:.1f} s"
    minutes, secs = divmod(round(total), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _humanize(key: str) -> str:
    """`line_type` -> `Line type`, `FIXED_LINE_OR_MOBILE` -> `Fixed line or mobile`."""
    text = str(key).replace("_", " ").replace("-", " ").strip()
    if len(text) <= 3 and text.isalpha():
        return text.upper()  # region codes, HTTP verbs
    return text[:1].upper() + text[1:].lower() if text else "(none)"


# --- charts -----------------------------------------------------------------------------


def _sorted_items(counts: Mapping[str, Any] | None) -> list[tuple[str, int]]:
    items = [(str(k), _int(v)) for k, v in (counts or {}).items() if _int(v) > 0]
    return sorted(items, key=lambda kv: (-kv[1], kv[0]))


def bar_chart(
    counts: Mapping[str, Any] | None,
    *,
    colour: str,
    title: str,
    label: Any = _humanize,
    limit: int = 10,
    width: int = 900,
) -> dict[str, Any] | None:
    """The geometry of a horizontal bar chart (label, bar, count and share of the total),
    drawn as inline SVG by the template's ``bar_chart`` macro; None when nothing counted.

    ``width`` is the card's inner width in CSS pixels: the SVG is drawn at that size and
    never scaled up, so its text stays the size of the page's text in wide and narrow
    cards alike."""
    items = _sorted_items(counts)
    if not items:
        return None
    total = sum(v for _, v in items)
    if len(items) > limit:
        rest = items[limit - 1 :]
        items = [*items[: limit - 1], (f"{len(rest)} others", sum(v for _, v in rest))]
        label_of = {k: (label(k) if not k.endswith(" others") else k) for k, _ in items}
    else:
        label_of = {k: label(k) for k, _ in items}
    peak = max(v for _, v in items)
    row = 30
    label_w = 180 if width >= 600 else 150
    value_w = 130 if width >= 600 else 108
    bar_w = width - label_w - value_w
    room = 24 if width >= 600 else 21
    rows = []
    for index, (key, value) in enumerate(items):
        shown = label_of[key]
        rows.append(
            {
                "y": index * row + 2,
                "shown": shown,
                "short": shown if len(shown) <= room else shown[: room - 1] + "\u2026",
                "value": f"{value:,}",
                "pct": _pct(value, total),
                "length": f"{max(2.0, bar_w * value / peak):.1f}",
            }
        )
    return {
        "title": title,
        "colour": colour,
        "width": width,
        "height": row * len(items) + 4,
        "label_w": label_w,
        "bar_w": bar_w,
        "rows": rows,
    }


def outcome_bar(segments: Iterable[tuple[str, int, str]]) -> dict[str, Any] | None:
    """The segments of one stacked bar of what happened to every contact (drawn with its
    legend by the template's ``outcome_bar`` macro); None when no contact was read."""
    items = [(name, value, colour) for name, value, colour in segments if value > 0]
    total = sum(value for _, value, _ in items)
    if not total:
        return None
    width, height = 600, 34
    # A sliver of a few failures must still be visible: every segment gets at least
    # 4 units, taken from the others in proportion.
    floor = 4.0
    raw = [width * value / total for _, value, _ in items]
    small = sum(floor for w in raw if w < floor)
    big = sum(w for w in raw if w >= floor)
    widths = [floor if w < floor else w * (width - small) / big for w in raw] if big else raw
    x = 0.0
    rects = []
    for (name, value, colour), w in zip(items, widths, strict=True):
        rects.append(
            {
                "x": f"{x:.2f}",
                "w": f"{w:.2f}",
                "name": name,
                "value": f"{value:,}",
                "pct": _pct(value, total),
                "colour": colour,
            }
        )
        x += w
    return {"width": width, "height": height, "rects": rects}


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
    restored = _int(record.get("restored"))
    failed = _int(record.get("failure_count"))
    # Records of restores made before the archive's size was kept: what was done is all.
    total = _int(record.get("restore_total")) or restored + failed
    headline = {
        "completed": f"Restore of run {source}: what it changed was put back.",
        "halted": "Halted for manual review: the restore stopped writing.",
        "failed": "Failed: see the note below.",
    }.get(status, status)
    lead = (
        f"{restored:,} of the {total:,} contacts run {source} changed were put back:"
        f" {_int(record.get('restored_recreated')):,} re-created (the run had removed them),"
        f" {_int(record.get('restored_reverted')):,} reverted to the numbers they had"
    )
    return headline, lead + (f"; {failed:,} could not be restored." if failed else ".")


def _restore_view(record: Mapping[str, Any]) -> dict[str, Any]:
    recreated = _int(record.get("restored_recreated"))
    reverted = _int(record.get("restored_reverted"))
    failed = _int(record.get("failure_count"))
    total = _int(record.get("restore_total")) or _int(record.get("restored")) + failed
    left = max(0, total - recreated - reverted - failed)
    tiles = [
        _tile("Archived", _num(total), f"contacts run {record.get('restore_of')} changed"),
        _tile(
            "Re-created",
            _num(recreated),
            f"{_pct(recreated, total)} had been removed",
            RESTORE_COLOURS["recreated"],
        ),
        _tile(
            "Reverted",
            _num(reverted),
            f"{_pct(reverted, total)} numbers written back",
            RESTORE_COLOURS["reverted"],
        ),
        _tile(
            "Failed",
            _num(failed),
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
    text = f"A reviewed plan of {_int(record.get('plan_entries')):,} changes applied: "
    text += f"{updated:,} contacts rewritten to E.164, {removed:,} removed"
    skipped = [
        (record.get("stale_skipped"), "skipped as changed on the platform since the plan"),
        (record.get("already_applied"), "already applied before"),
        (record.get("already_gone"), "removals already gone from the list"),
        (record.get("updates_not_found"), "updates whose contact is no longer on the list"),
    ]
    text += "".join(f"; {_int(n):,} {what}" for n, what in skipped if _int(n))
    return text + (f"; {failed:,} writes failed." if failed else ".")


def _apply_rows(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows = [
        ("Changes in the plan", record.get("plan_entries")),
        ("Skipped: changed on the platform since the plan", record.get("stale_skipped")),
        ("Skipped: applied before", record.get("already_applied")),
        ("Skipped: removal already gone", record.get("already_gone")),
        ("Skipped: update of a contact no longer on the list", record.get("updates_not_found")),
    ]
    return [(label, _num(value)) for label, value in rows]


def _latency_by_kind_rows(by_kind: Mapping[str, Any]) -> list[list[str]]:
    """Rows of kind, requests, p50, p95, p99; a missing or non-numeric cell is a dash."""

    def cell(row: Mapping[str, Any], name: str) -> str:
        value = row.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool):
            return "\u2013"
        return _num(int(value)) if name == "requests" else f"{float(value):,.1f}"

    return [
        ["All kinds" if kind == "all" else _humanize(str(kind))]
        + [cell(row, name) for name in ("requests", "p50", "p95", "p99")]
        for kind, row in by_kind.items()
        if isinstance(row, Mapping)
    ]


def _step_rows(steps: Iterable[Mapping[str, Any]]) -> list[tuple[Any, Any, str]]:
    return [
        (
            step.get("name", step.get("step", "?")),
            step.get("detail", ""),
            _duration(step.get("seconds", step.get("duration_seconds", ""))),
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


def _templates() -> Environment:
    return Environment(
        loader=PackageLoader("console", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


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
    fetched = _int(record.get("total_processed"))
    unchanged = _int(record.get("unchanged_count"))
    updated = _int(record.get("planned_updates" if dry else "success_count"))
    removed = _int(record.get("planned_removals" if dry else "purge_count"))
    failed = 0 if dry else _int(record.get("failure_count"))

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
        _tile("Fetched", _num(fetched), "contacts read", "#1d2733"),
        _tile(
            "Would update" if dry else "Updated",
            _num(updated),
            f"{_pct(updated, fetched)} rewritten to E.164",
            OUTCOME_COLOURS["updated"],
        ),
        _tile(
            "Unchanged",
            _num(unchanged),
            f"{_pct(unchanged, fetched)} already clean",
            OUTCOME_COLOURS["unchanged"],
        ),
        _tile(
            "Would remove" if dry else "Removed",
            _num(removed),
            f"{_pct(removed, fetched)} not dialable",
            OUTCOME_COLOURS["removed"],
        ),
    ]
    if not dry:  # a dry run writes nothing, so no write of it can fail
        tiles.append(
            _tile(
                "Failed",
                _num(failed),
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
        skipped = _int(record.get("stale_skipped")) + _int(record.get("already_applied"))
        segments.append(("Skipped (plan)", skipped, APPLY_SKIPPED_COLOUR))
    reasons = record.get("reject_reasons") or {}

    requests = _int(record.get("api_requests"))
    retries = _int(record.get("api_retries"))
    throttled = _int(record.get("api_429s"))
    api_tiles = [
        _tile("Requests", _num(requests), f"{_num(record.get('pages'))} pages read"),
        _tile("Retries", _num(retries), f"{_pct(retries, requests)} of requests"),
        _tile(
            "Rate limited (429)",
            _num(throttled),
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

    by_endpoint = extra.get("requests_by_endpoint")
    by_status = extra.get("responses_by_status")
    percentiles = extra.get("api_latency_ms")
    by_kind = record.get("api_latency_ms")
    steps = extra.get("slowest_steps")
    note = own_note(record)
    return _templates().get_template("run_report.html").render(
        css=Markup(_CSS),  # our own stylesheet: escaping would break its quotes
        run_id=record.get("run_id", ""),
        list_id=record.get("list_id", ""),
        kind=kind,
        eyebrow=EYEBROWS.get(kind, EYEBROWS["sweep"]),
        tag=TAGS.get(kind),
        started=_when(record.get("started_at")),
        finished=_when(record.get("finished_at")),
        took=_duration(record.get("duration_seconds")),
        lead=lead,
        status=status,
        fg=fg,
        bg=bg,
        headline=headline,
        note=note,
        show_note=bool(note or status != "completed" or dry or kind == "restore"),
        restore=_restore_view(record) if kind == "restore" else None,
        apply_rows=_apply_rows(record) if kind == "apply" else None,
        tiles=tiles,
        fetched=f"{fetched:,}",
        outcome=outcome_bar(segments),
        rejects=f"{sum(v for _, v in _sorted_items(reasons)):,}",
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
        endpoint_chart=bar_chart(
            by_endpoint,
            colour=CHART_COLOURS["endpoints"],
            title="Requests by endpoint",
            width=HALF,
        )
        if by_endpoint
        else None,
        status_chart=bar_chart(
            by_status,
            colour=CHART_COLOURS["statuses"],
            title="Responses by status",
            label=str,
            width=HALF,
        )
        if by_status
        else None,
        show_api_charts=bool(by_endpoint or by_status),
        percentiles=(
            [(name, _num(value)) for name, value in percentiles.items()]
            if isinstance(percentiles, Mapping) and percentiles
            else None
        ),
        latency_by_kind=(
            _latency_by_kind_rows(by_kind) if isinstance(by_kind, Mapping) and by_kind else None
        ),
        steps=_step_rows(steps) if isinstance(steps, list) and steps else None,
        recorded=_when(record.get("timestamp")),
        generated=_when(extra.get("generated_at") or datetime.now(UTC).isoformat()),
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
        "requests_by_endpoint": {
            k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("calls:")
        },
        "responses_by_status": {
            k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("status:")
        },
    }
    if counts.get("api_requests") and "api_us_sum" in counts:
        extras["api_avg_ms"] = counts["api_us_sum"] / counts["api_requests"] / 1000.0
    return extras


def record_from_redis(redis_url: str, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from cxsweep.errors import CxsweepError, OperatorError
    from cxsweep.redisconn import get_redis, text
    from cxsweep.runs.store import RUN_INDEX, RunStore
    from devtools.localredis import redis_answers

    if not redis_answers(redis_url):
        raise SettingsError(f"no Redis answers at CXSWEEP_REDIS_URL={redis_url}")
    client = get_redis(redis_url)
    if run_id == "latest":
        newest = cast(list[bytes], client.zrevrange(RUN_INDEX, 0, 0))
        if not newest:
            raise CxsweepError("no runs recorded")
        run_id = text(newest[0])
    store = RunStore(client, run_id)
    meta = store.meta()
    if not meta:
        raise OperatorError(f"no run {run_id} in Redis (use --audit-log for an older run)")
    if not meta.get("record"):
        raise CxsweepError(
            f"run {run_id} has not finished (status {meta.get('status', '?')}): no report yet"
        )
    return json.loads(meta["record"]), extras_from_counts(store.counts())


def report_command(args: argparse.Namespace) -> int:
    """``cxsweep report RUN_ID [--html FILE] [--audit-log FILE]``."""
    if getattr(args, "sweep", None):
        from console.sweepreport import sweep_report_command

        if args.run_id:
            raise SettingsError("give a RUN_ID or --sweep SWEEP_ID, not both")
        return sweep_report_command(args)
    if not args.run_id:
        raise SettingsError("give a RUN_ID (or `latest`), or --sweep SWEEP_ID")
    extras: dict[str, Any] = {}
    if args.audit_log:
        try:
            found = record_from_audit_log(args.audit_log, args.run_id)
        except OSError as exc:
            print(
                f"cxsweep: cannot read audit log {args.audit_log}: {exc.strerror}", file=sys.stderr
            )
            return EXIT_USAGE
        if found is None:
            print(f"cxsweep: no run {args.run_id} in {args.audit_log}", file=sys.stderr)
            return EXIT_USAGE
        record = found
    else:
        from cxsweep.settings import get_settings

        get_settings.cache_clear()
        record, extras = record_from_redis(get_settings().redis_url, args.run_id)
    page = render_html(record, extras)
    target = args.html or f"cxsweep-report-{record.get('run_id') or args.run_id}.html"
    if target == "-":
        sys.stdout.write(page)
        return EXIT_OK
    Path(target).write_text(page, encoding="utf-8")
    print(
        f"report of run {record.get('run_id')} written to {Path(target).resolve()}", file=sys.stderr
    )
    return EXIT_OK


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``report`` on the CLI's subparsers (``console.cli.build_parser``)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "report", help="write a run's report as one self-contained HTML page"
    )
    parser.add_argument("run_id", nargs="?", help="the run's id, or `latest`")
    parser.add_argument(
        "--html",
        metavar="FILE",
        default=None,
        help="where to write the page (default cxsweep-report-RUN_ID.html; - for stdout)",
    )
    parser.add_argument(
        "--audit-log",
        metavar="FILE",
        default=None,
        help="read the record from this audit log instead of Redis",
    )
    parser.add_argument(
        "--sweep",
        metavar="SWEEP_ID",
        default=None,
        help="a scheduled sweep (or `latest`) as one page: every list, linked to its run",
    )
    parser.add_argument(
        "--with-runs",
        action="store_true",
        help="with --sweep: also write each run's report (report-RUN_ID.html) next to it",
    )
    parser.set_defaults(func=report_command)
    return parser
