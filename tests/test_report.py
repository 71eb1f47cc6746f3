"""The HTML run report: self-contained, escaped, and rendered by a real browser.

The screenshot test drives Debian's headless Chromium. ``CXSWEEP_SCREENSHOT_DIR``, when
set, receives a copy of the PNG for a human to look at.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from console.report import render_html
from console.reportcmd import add_report_parser, report_command
from cxsweep.runs import audit

STARTED = 1_764_300_000.0


def realistic_record(**changes: Any) -> dict[str, Any]:
    """A record made the way the callback makes it: from a run's metadata and counters."""
    counts = {
        "fetched": 12_480,
        "unchanged": 7_912,
        "to_update": 3_301,
        "to_remove": 1_267,
        "updated": 3_296,
        "latency_n": 12_480,
        "latency_us_sum": 12_480 * 87,
        "pages_read": 25,
        "api_requests": 203,
        "retries": 9,
        "status:429": 6,
        "reason:line_type": 512,
        "reason:invalid": 301,
        "reason:unparseable": 233,
        "reason:region": 187,
        "reason:preflight": 34,
        "reason:duplicate": 12,
        "region:US": 9_102,
        "region:GB": 1_344,
        "region:CA": 767,
        "type:MOBILE": 6_012,
        "type:FIXED_LINE_OR_MOBILE": 3_871,
        "type:FIXED_LINE": 1_330,
    }
    meta = {
        "run_id": "20251128T031500Z-5f2a9c1e",
        "list_id": "spring-campaign-0425",
        "started_at": str(STARTED),
        "dry_run": "0",
    }
    record = audit.build_record(
        meta, counts, status="completed", removed=1_262, finished_at=STARTED + 734.6
    )
    record.update(changes)
    return record


EXTRAS = {
    "requests_by_endpoint": {"token": 2, "list_page": 25, "patch": 34, "delete": 142},
    "responses_by_status": {"200": 61, "204": 130, "404": 2, "429": 6, "503": 4},
    "api_avg_ms": 142.7,
    "generated_at": "2025-11-28T03:30:00Z",
}


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)

    @property
    def text(self) -> str:
        return re.sub(r"\s+", " ", " ".join(self.chunks))


def _text(page: str) -> _Text:
    parser = _Text()
    parser.feed(page)
    return parser


# --- the page itself --------------------------------------------------------------------


def test_page_is_self_contained_and_shows_totals() -> None:
    page = render_html(realistic_record(), EXTRAS)
    # Nothing is fetched: no script, no external stylesheet, image or font.
    assert "<script" not in page
    assert not re.search(r"\b(src|href)\s*=", page)
    assert not re.search(r"url\((?!#)", page)
    assert not re.search(r"@import", page)
    text = _text(page).text
    for expected in (
        "List spring-campaign-0425",
        "20251128T031500Z-5f2a9c1e",
        "completed",
        "Fetched 12,480",
        "Updated 3,296",
        "Unchanged 7,912",
        "Removed 1,262",
        "Failed 10",
        "12 min 15 s",
        "2025-11-28 03:20:00 UTC",
        "Requests 203",
        "Retries 9",
        "Rate limited (429) 6",
        "143 ms",
    ):
        assert expected in text, expected
    assert "Line type" in text and "Fixed line or mobile" in text and "US" in text


def test_everything_from_the_record_is_escaped() -> None:
    evil = '<script>alert("x")</script>'
    record = realistic_record(
        list_id=evil,
        run_id='"><img src=x onerror=alert(1)>',
        message="<b>bold</b> & co",
        reject_reasons={evil: 3, "a&b": 1},
    )
    page = render_html(
        record, {"requests_by_endpoint": {evil: 1}, "slowest_steps": [{"name": evil, "seconds": 3}]}
    )
    assert "<script" not in page
    assert "<img" not in page and "<b>bold" not in page
    assert "&lt;script&gt;" in page and "&amp; co" in page


def test_dry_run_halted_and_empty_records_render() -> None:
    dry = render_html(realistic_record(dry_run=True, status="completed"))
    assert "Would update" in _text(dry).text and "nothing was written" in dry
    halted = render_html(realistic_record(status="halted", message="5 consecutive 503s"))
    assert "Halted for manual review" in halted and "5 consecutive 503s" in halted
    empty = render_html({"status": "failed", "message": "credentials refused"})
    assert "No contacts were read" in empty and "credentials refused" in empty


def test_report_command_reads_the_audit_log(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    first, second = realistic_record(run_id="r1"), realistic_record(run_id="r2", list_id="L2")
    log.write_text(json.dumps(first) + "\n{broken\n" + json.dumps(second) + "\n")
    parser = argparse.ArgumentParser()
    add_report_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "r.html"
    args = parser.parse_args(["report", "r2", "--audit-log", str(log), "--html", str(out)])
    assert args.func(args) == 0
    assert "List L2" in _text(out.read_text()).text
    args = parser.parse_args(["report", "nope", "--audit-log", str(log), "--html", str(out)])
    assert report_command(args) == 2


def test_report_command_reads_redis(tmp_path: Path, redis_url: str) -> None:
    import redis

    from cxsweep.runs.store import RunStore
    from cxsweep.settings import get_settings

    get_settings.cache_clear()
    client = redis.Redis.from_url(redis_url)
    store = RunStore(client, "report-test-run")
    store.create("list-r", dry_run=False, options={})
    record = realistic_record(run_id="report-test-run", list_id="list-r")
    store.set_meta(status="completed", record=json.dumps(record))
    store.incr("calls:list_page", 3)
    store.incr("status:200", 3)
    out = tmp_path / "redis.html"
    args = argparse.Namespace(run_id="report-test-run", html=str(out), audit_log=None)
    assert report_command(args) == 0
    text = _text(out.read_text()).text
    assert "List list-r" in text and "Requests by endpoint" in text


# --- in a real browser ------------------------------------------------------------------


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _run_chromium(
    browser: str, url: str, profile: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    # Without the background-networking flags Chromium tries to reach Google's services at
    # every start; on a closed network that is noise and delay.
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--disable-quic",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
    ]
    return subprocess.run(
        [browser, *flags, *extra, url], capture_output=True, text=True, timeout=120
    )


def _console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line]


@pytest.fixture(scope="module")
def browser() -> str:
    found = _chromium()
    if found is None:
        pytest.skip("no Chromium: install Debian's `chromium` package (apt-get install chromium)")
    return found


def test_console_errors_are_detected(browser: str, tmp_path: Path) -> None:
    # The check below is only worth something if a console error does show up.
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>console.error('boom')</script></body></html>")
    result = _run_chromium(browser, page.as_uri(), tmp_path / "profile", "--dump-dom")
    assert any("boom" in line for line in _console_messages(result.stderr)), result.stderr


def test_report_in_headless_chromium(browser: str, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(realistic_record(), EXTRAS), encoding="utf-8")

    dom = _run_chromium(
        browser, page.as_uri(), tmp_path / "profile-dom", "--virtual-time-budget=2000", "--dump-dom"
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _console_messages(dom.stderr) == []
    rendered = _text(dom.stdout)
    assert "svg" in rendered.tags
    for expected in (
        "Fetched 12,480",
        "Updated 3,296",
        "Unchanged 7,912",
        "Removed 1,262",
        "Failed 10",
        "Rejects by reason",
    ):
        assert expected in rendered.text, expected

    shot = tmp_path / "report.png"
    result = _run_chromium(
        browser,
        page.as_uri(),
        tmp_path / "profile-shot",
        f"--screenshot={shot}",
        "--window-size=1100,1500",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    copy_to = os.environ.get("CXSWEEP_SCREENSHOT_DIR")
    if copy_to:
        Path(copy_to).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(copy_to) / "report.png")


def test_the_platforms_warnings_are_shown() -> None:
    record = realistic_record(
        warnings=["list 7: skill <4001> is running"], already_suppressed=1_234
    )
    text = _text(render_html(record, EXTRAS)).text
    assert "The platform warned" in text and "list 7: skill <4001> is running" in text
    assert "1,234 rejected contact(s) had numbers already in the do-not-call group" in text
    assert "The platform warned" not in _text(render_html(realistic_record(), EXTRAS)).text
