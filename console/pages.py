"""What the HTML reports (one run's, one sweep's) share: their template environment,
colours, number formatting and the geometry of their inline SVG charts.

The markup itself is in ``templates/``: Jinja2 escapes every value there, since list
ids, reasons and notes come from outside.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jinja2 import Environment


def templates() -> Environment:
    """The packaged templates, autoescaped (``report.css`` is included, not escaped)."""
    # Imported here: every ``cxsweep`` command loads this module (the summary's notes),
    # only ``report`` renders a page, and Jinja2 is a tenth of the CLI's start-up.
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=PackageLoader("console", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


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


# --- formatting -------------------------------------------------------------------------


def as_int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def fmt_num(value: Any) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{as_int(value):,}"


def fmt_pct(part: float, whole: float) -> str:
    if not whole:
        return "0%"
    share = 100.0 * part / whole
    return f"{share:.1f}%" if share < 99.95 else "100%"


def fmt_when(stamp: Any) -> str:
    text = str(stamp or "")
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text or "unknown"
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_duration(seconds: Any) -> str:
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


def humanize(key: str) -> str:
    """`line_type` -> `Line type`, `FIXED_LINE_OR_MOBILE` -> `Fixed line or mobile`."""
    text = str(key).replace("_", " ").replace("-", " ").strip()
    if len(text) <= 3 and text.isalpha():
        return text.upper()  # region codes, HTTP verbs
    return text[:1].upper() + text[1:].lower() if text else "(none)"


# --- charts -----------------------------------------------------------------------------


def sorted_counts(counts: Mapping[str, Any] | None) -> list[tuple[str, int]]:
    items = [(str(k), as_int(v)) for k, v in (counts or {}).items() if as_int(v) > 0]
    return sorted(items, key=lambda kv: (-kv[1], kv[0]))


def bar_chart(
    counts: Mapping[str, Any] | None,
    *,
    colour: str,
    title: str,
    label: Any = humanize,
    limit: int = 10,
    width: int = 900,
) -> dict[str, Any] | None:
    """The geometry of a horizontal bar chart (label, bar, count and share of the total),
    drawn as inline SVG by the template's ``bar_chart`` macro; None when nothing counted.

    ``width`` is the card's inner width in CSS pixels: the SVG is drawn at that size and
    never scaled up, so its text stays the size of the page's text in wide and narrow
    cards alike."""
    items = sorted_counts(counts)
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
                "pct": fmt_pct(value, total),
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
                "pct": fmt_pct(value, total),
                "colour": colour,
            }
        )
        x += w
    return {"width": width, "height": height, "rects": rects}
