"""The nightly sweep as one page: a real scheduled sweep, its page opened in Chromium.

``CXSWEEP_SCREENSHOT_DIR``, when set, receives the PNG and the pages for a human to see.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest
import redis

from console import cli
from console.sweepreport import ListRow, render_sweep_html
from cxsweep.runs.store import ListLock, RunStore
from tasks.schedule import CURRENT_SWEEP, SweepStore, sweep_all_lists
from tests.test_report import _chromium, _console_messages, _run_chromium, _text

pytestmark = pytest.mark.usefixtures("sweep_worker")


def _wait_for_sweep(client: redis.Redis, sweep_id: str, timeout: float = 180) -> None:
    store = SweepStore(client, sweep_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store.meta().get("status") == "done":
            return
        time.sleep(0.1)
    raise AssertionError(f"sweep {sweep_id} did not finish: {store.meta()}")


def _distinct_pixels(png: bytes) -> int:
    """How many different byte values the image's pixel rows hold (a blank page: 1-2)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    data, at = b"", 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind = png[at + 4 : at + 8]
        if kind == b"IDAT":
            data += png[at + 8 : at + 8 + length]
        at += 12 + length
    return len(set(zlib.decompress(data)))


def test_the_nightly_sweep_as_one_page(
    simulator: Any, redis_client: redis.Redis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    browser = _chromium()
    prefix = f"night-{uuid.uuid4().hex[:6]}"
    plain = [f"{prefix}-{n}" for n in range(3)]
    garbage, busy = f"{prefix}-garbage", f"{prefix}-busy"
    for seed, list_id in enumerate([*plain, busy]):
        simulator.put_list(list_id, count=80 + 60 * seed, seed=seed)
    # Mostly numbers nobody can dial: the purge guard halts this list (default policy).
    simulator.put_list(garbage, count=50, seed=9)
    simulator.put_list(
        garbage,
        contacts=[{**c, "phone": "call me maybe"} for c in simulator.get_list(garbage)],
    )
    redis_client.delete(CURRENT_SWEEP)
    lock = ListLock(redis_client, busy)
    assert lock.acquire("held-by-the-test")
    try:
        sweep_id = sweep_all_lists(poll_seconds=0.1)["sweep_id"]
        _wait_for_sweep(redis_client, sweep_id)
    finally:
        lock.release("held-by-the-test")
    runs = SweepStore(redis_client, sweep_id).runs()
    assert set(runs) == {*plain, garbage}

    page = tmp_path / "nightly" / "sweep.html"
    page.parent.mkdir()
    code = cli.main(["report", "--sweep", sweep_id, "--html", str(page), "--with-runs"])
    assert code == 0
    assert "with 4 run report(s) next to it" in capsys.readouterr().err
    html = page.read_text()
    links = re.findall(r'href="([^"]+)"', html)
    assert {f"report-{run_id}.html" for run_id in runs.values()} <= set(links)
    for link in links:  # every link leads to a page that was written
        assert (page.parent / link).is_file(), link
    assert "List " + plain[0] in (page.parent / f"report-{runs[plain[0]]}.html").read_text()

    assert cli.main(["status", "--sweep", sweep_id]) == 0
    status = capsys.readouterr().out.splitlines()
    assert status[0].startswith(f"sweep {sweep_id}  done  5 lists: 1 halted, 1 skipped, 3 comp")
    assert any(line.startswith(f"  {busy}  skipped ") for line in status)

    if browser is None:
        pytest.skip("no Chromium: install Debian's `chromium` package (apt-get install chromium)")
    dom = _run_chromium(
        browser, page.as_uri(), tmp_path / "profile-dom", "--virtual-time-budget=2000", "--dump-dom"
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _console_messages(dom.stderr) == []
    rows = dict(re.findall(r'<tr data-list="([^"]+)">(.*?)</tr>', dom.stdout, re.S))
    assert set(rows) == {*plain, garbage, busy}
    for list_id in plain:
        record = RunStore(redis_client, runs[list_id]).meta()["record"]
        assert '"status": "completed"' in record
        text = _text(rows[list_id]).text
        assert "completed" in text and runs[list_id] in text
    assert "halted" in _text(rows[garbage]).text and "purge guard" in rows[garbage]
    assert "skipped" in _text(rows[busy]).text and "held-by-the-test" in rows[busy]
    visible = _text(dom.stdout).text
    assert "Slowest lists" in visible and "Every list" in visible
    assert "5 lists in this sweep: 1 halted, 1 skipped, 3 completed." in visible
    # The halted list wrote nothing: its unwritten changes are not counted as failures.
    assert ", 0 failures." in visible

    shot = tmp_path / "sweep.png"
    result = _run_chromium(
        browser,
        page.as_uri(),
        tmp_path / "profile-shot",
        f"--screenshot={shot}",
        "--window-size=1100,1200",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    png = shot.read_bytes()
    assert len(png) > 20_000 and _distinct_pixels(png) > 50
    copy_to = os.environ.get("CXSWEEP_SCREENSHOT_DIR")
    if copy_to:
        Path(copy_to).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(copy_to) / "sweep-report.png")
        shutil.copytree(page.parent, Path(copy_to) / "nightly", dirs_exist_ok=True)


def test_the_sweep_page_escapes_what_came_from_outside() -> None:
    evil = '<script>alert("x")</script>'
    meta = {"sweep_id": "sweep-x", "status": "done", "started_at": "1764300000"}
    rows = [
        ListRow(evil, run_id="r1", outcome="failed", note="<b>boom</b>", link="report-r1.html"),
        ListRow("<img src=x onerror=alert(1)>", outcome="skipped", note=evil),
    ]
    html = render_sweep_html(meta, rows)
    assert "<script" not in html and "<img" not in html and "<b>boom" not in html
    assert "&lt;script&gt;" in html and "&lt;b&gt;boom&lt;/b&gt;" in html
    assert html.count("<tr data-list=") == 2


def test_a_sweep_page_is_refused_without_a_sweep(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", "--sweep", "sweep-nope", "--html", "-"]) == 1
    assert "no sweep sweep-nope in Redis" in capsys.readouterr().err
    assert cli.main(["report"]) == 2
    assert "give a RUN_ID" in capsys.readouterr().err
    assert cli.main(["report", "--sweep", "latest", "--with-runs", "--html", "-"]) == 2
