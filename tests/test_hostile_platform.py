"""One sweep against a platform that misbehaves in every way a run survives at once: ids
that are not ids, a page that shifts under paging, a person editing a contact mid-run, a
PATCH refusing an id, a DELETE answered 204 for a contact that stays, and 503s and 429s
throughout. (A foreign link or a looping cursor fails a run before any write, by design:
each has a test of its own in tests/test_platform.py and tests/test_pipeline.py.)

The list must end exactly as it should, every departure named in the one audit line.
Real Redis, a real worker, the simulator over sockets, the shipped rate limit and breaker.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from console import launch
from cxsweep.platforms.factory import make_backend
from cxsweep.redisconn import get_redis
from cxsweep.settings import get_settings
from tests.conftest import audit_lines

pytestmark = pytest.mark.usefixtures("sweep_worker")

ODD_IDS = ("", ".", "..")


def test_a_sweep_through_every_survivable_misbehaviour_at_once(
    simulator: Any, audit_log_path: Path
) -> None:
    list_id = f"hostile-{uuid.uuid4().hex[:8]}"
    good = {f"g{i}": f"+1650253{i:04d}" for i in range(80)}  # half of them to rewrite
    rows = [
        {"id": cid, "phone": phone if i % 2 else phone.removeprefix("+1")}
        for i, (cid, phone) in enumerate(good.items())
    ]
    rows += [
        {"id": "person", "phone": "(650) 253-9001"},  # edited by a person mid-run
        {"id": "refused", "phone": "(650) 253-9002"},  # its PATCH is refused
        {"id": "sticky", "phone": "not a number"},  # DELETE answered 204, stays
        {"id": "drop", "phone": "12"},  # removed
    ]
    simulator.put_list(list_id, contacts=[{**r, "id": f"{list_id}-{r['id']}"} for r in rows])
    simulator.configure(page_size=20)
    # The simulator was reset with its tokens: one read renews the workers' shared token
    # now, so that the read-counting rules below count only the sweep's reads.
    make_backend(get_settings(), get_redis(get_settings().redis_url)).read_page(list_id, None)

    def own(cid: str) -> str:
        return f"{list_id}-{cid}"

    read = f"/contactlists/{list_id}$"
    simulator.add_faults(
        [
            # Every read of the first page also shows three ids that are not ids.
            {
                "method": "GET",
                "path": read,
                "action": "inject_contacts",
                "contacts": [{"id": cid, "phone": "not a number"} for cid in ODD_IDS],
            },
            # The second read's last contact moves to the end: it shows up twice.
            {"method": "GET", "path": read, "action": "shift_page", "times": 1},
            # A read fires the first due rule only, and the rules above take reads 1, 2
            # and 6 (the re-read's first page): this one counts reads 3, 4, 5 and fires on
            # read 7, inside the re-read before writing, before it reaches the last page.
            {
                "method": "GET",
                "path": read,
                "action": "edit_contact",
                "after": 3,
                "times": 1,
                "contact": own("person"),
                "fields": {"phone": "+14155550100"},
            },
            # The first writes meet a server in trouble: retried, never taken as done.
            {"method": "DELETE", "path": "/contacts/", "action": 503, "times": 2},
            {
                "method": "PATCH",
                "path": "/contacts$",
                "action": 429,
                "retry_after": "1",
                "times": 1,
            },
            {
                "method": "PATCH",
                "path": "/contacts$",
                "action": "refuse_ids",
                "ids": [own("refused")],
            },
            {"method": "DELETE", "path": f"/contacts/{own('sticky')}$", "action": "fake_success"},
        ]
    )
    settings = launch.settings_for_run()
    run_id = launch.start_run(settings, list_id, dry_run=False)
    record = launch.wait_for_run(settings, run_id, timeout=180, quiet=True)

    final = {c["id"].removeprefix(f"{list_id}-"): c["phone"] for c in simulator.get_list(list_id)}
    assert final == {
        **good,
        "person": "+14155550100",  # the person's number, not ours
        "refused": "(650) 253-9002",  # as it was: the platform refused it
        "sticky": "not a number",  # still there, whatever its DELETE said
    }
    requests = simulator.requests_seen()
    deletes = {r["path"].rsplit("/", 1)[1] for r in requests if r["method"] == "DELETE"}
    assert deletes == {own("sticky"), own("drop")}, "only real contacts' URLs"
    patched = simulator.stats()["patched"]
    assert own("person") not in patched, "no PATCH for a contact changed since our read"
    assert max(patched.values()) == 1, "a contact shown twice is written once"
    statuses = simulator.stats()["statuses"]
    assert statuses.get("503", 0) > 0 and statuses.get("429", 0) > 0, statuses

    assert record["status"] == "failed", record  # a removal it did not see land
    assert "write chunk(s) failed" in record["message"]
    assert record["repeated_ids"] == 1
    assert record["stale_ids"] == [own("person")]
    assert record["success_count"] == 40 and record["purge_count"] == 1
    failed = record["failed_ids"]
    assert set(failed) == {*ODD_IDS, own("refused"), own("sticky")}, failed
    assert failed[own("sticky")] == "still present after DELETE"
    assert "refused" in failed[own("refused")]
    assert record["failure_count"] == 5
    lines = audit_lines(audit_log_path, run_id)
    assert len(lines) == 1 and lines[0]["failed_ids"] == failed
