"""A run re-reads the list before writing and after removing: a person's edit made
during the run wins, and a removal the list does not show is a failure. Real Redis, a
real worker, the simulator over sockets; the person is a simulator fault rule."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from console import launch
from cxsweep.errors import CxsweepError
from cxsweep.platforms.factory import make_backend
from cxsweep.redisconn import get_redis
from cxsweep.runs import writes
from cxsweep.runs.store import RunStore
from cxsweep.runs.writes import fresh_entries
from cxsweep.settings import get_settings
from tests.conftest import audit_lines

pytestmark = pytest.mark.usefixtures("sweep_worker")


def sweep(list_id: str) -> dict[str, Any]:
    settings = launch.settings_for_run()
    run_id = launch.start_run(settings, list_id, dry_run=False)
    return launch.wait_for_run(settings, run_id, timeout=120, quiet=True)


def put_list(sim: Any, contacts: list[dict[str, Any]]) -> tuple[str, dict[str, dict[str, Any]]]:
    """A list of 60 good numbers (so that its rejects stay under the purge guard), then
    ``contacts``; ids prefixed with the list's id."""
    list_id = f"fresh-{uuid.uuid4().hex[:8]}"
    good = [{"id": f"k{i}", "phone": f"+1650253{i:04d}"} for i in range(60)]
    rows = [{**c, "id": f"{list_id}-{c['id']}", "name": "n"} for c in [*good, *contacts]]
    sim.put_list(list_id, contacts=rows)
    # The simulator was reset (its tokens with it): one read renews the workers' shared
    # token now, so that the rules below count only the sweep's own reads.
    make_backend(get_settings(), get_redis(get_settings().redis_url)).read_page(list_id, None)
    return list_id, {c["id"]: c for c in rows}


def final(sim: Any, list_id: str) -> dict[str, str]:
    return {c["id"].removeprefix(f"{list_id}-"): c["phone"] for c in sim.get_list(list_id)}


def on_read(list_id: str, after: int, action: str, contact: str, **extra: Any) -> dict[str, Any]:
    """A person acts just before the list's page read number ``after + 1`` is served."""
    return {
        "method": "GET",
        "path": f"/contactlists/{list_id}$",
        "after": after,
        "times": 1,
        "action": action,
        "contact": f"{list_id}-{contact}",
        **extra,
    }


def test_edits_made_after_our_read_win_and_are_reported_stale(
    simulator: Any, audit_log_path: Path
) -> None:
    list_id, _ = put_list(
        simulator,
        [
            {"id": "fix-me", "phone": "(650) 253-9001"},  # planned: rewrite to E.164
            {"id": "gone-upd", "phone": "650.253.9002"},  # planned: rewrite
            {"id": "reject-fixed", "phone": "not a number"},  # planned: remove
            {"id": "reject-gone", "phone": "123"},  # planned: remove
            {"id": "plain-upd", "phone": "650 253 9005"},  # planned: rewrite, untouched
            {"id": "plain-rej", "phone": "nope"},  # planned: remove, untouched
        ],
    )
    # Four pages of 20: reads 1-4 are ours, reads 5-8 the re-read before writing. The
    # person works on the last page (our six) during the re-read's first four reads (a
    # read fires the first due rule only: rules due together fire on successive reads).
    simulator.configure(page_size=20)
    simulator.add_faults(
        [
            on_read(list_id, 4, "edit_contact", "fix-me", fields={"phone": "+14155550100"}),
            on_read(list_id, 4, "remove_contact", "gone-upd"),
            on_read(list_id, 4, "edit_contact", "reject-fixed", fields={"phone": "+14155550101"}),
            on_read(list_id, 4, "remove_contact", "reject-gone"),
        ]
    )
    record = sweep(list_id)

    after = final(simulator, list_id)
    assert after["fix-me"] == "+14155550100", "the person's number, not ours"
    assert after["reject-fixed"] == "+14155550101", "a contact the person fixed stays"
    assert "gone-upd" not in after and "reject-gone" not in after
    assert after["plain-upd"] == "+16502539005" and "plain-rej" not in after
    patched = {cid.removeprefix(f"{list_id}-") for cid in simulator.stats()["patched"]}
    assert patched == {"plain-upd"}, "no PATCH for a stale or gone contact"
    assert simulator.stats()["statuses"].get("400", 0) == 0

    assert record["status"] == "completed", record
    assert record["stale_skipped"] == 4
    stale = {f"{list_id}-{c}" for c in ("fix-me", "gone-upd", "reject-fixed", "reject-gone")}
    assert set(record["stale_ids"]) == stale
    assert record["failure_count"] == 0 and record["failed_ids"] == {}
    assert record["success_count"] == 1 and record["purge_count"] == 1
    assert record["planned_updates"] == 1 and record["planned_removals"] == 1
    lines = audit_lines(audit_log_path, record["run_id"])
    assert len(lines) == 1 and set(lines[0]["stale_ids"]) == stale


def test_a_delete_answered_204_for_a_contact_that_stays_is_a_failure(
    simulator: Any, audit_log_path: Path
) -> None:
    list_id, _ = put_list(
        simulator, [{"id": "sticky", "phone": "not a number"}, {"id": "bad", "phone": "12"}]
    )
    simulator.add_faults(
        [{"method": "DELETE", "path": f"/contacts/{list_id}-sticky$", "action": "fake_success"}]
    )
    record = sweep(list_id)

    after = final(simulator, list_id)
    assert "sticky" in after and "bad" not in after
    assert record["status"] == "failed", record
    assert "still present after DELETE" in record["message"]
    assert record["purge_count"] == 1 and record["failure_count"] == 1
    assert record["failed_ids"] == {f"{list_id}-sticky": "still present after DELETE"}
    lines = audit_lines(audit_log_path, record["run_id"])
    assert len(lines) == 1 and lines[0]["failed_ids"] == record["failed_ids"]


def test_a_contact_deleted_after_the_check_fails_alone_in_its_patch(
    simulator: Any, audit_log_path: Path
) -> None:
    # 100 numbers to rewrite: one PATCH. The person deletes one of them after the re-read
    # and before the PATCH: the server refuses the batch naming that id.
    list_id, _ = put_list(
        simulator, [{"id": f"u{i}", "phone": f"650 253 7{i:03d}"} for i in range(100)]
    )
    simulator.add_faults(
        [
            {
                "method": "PATCH",
                "path": f"/contactlists/{list_id}/contacts$",
                "times": 1,
                "action": "remove_contact",
                "contact": f"{list_id}-u7",
            }
        ]
    )
    record = sweep(list_id)

    after = final(simulator, list_id)
    assert "u7" not in after
    assert all(after[f"u{i}"] == f"+16502537{i:03d}" for i in range(100) if i != 7)
    assert record["success_count"] == 99
    assert record["failure_count"] == 1
    assert list(record["failed_ids"]) == [f"{list_id}-u7"]
    assert "unknown id" in record["failed_ids"][f"{list_id}-u7"]
    lines = audit_lines(audit_log_path, record["run_id"])
    assert len(lines) == 1 and lines[0]["failed_ids"] == record["failed_ids"]


def test_the_freshness_passes_cost_a_read_per_page_each(simulator: Any) -> None:
    list_id, contacts = put_list(simulator, [{"id": f"r{i}", "phone": "junk"} for i in range(8)])
    simulator.configure(page_size=10)
    reads_before = simulator.stats()["requests"]["read"]
    record = sweep(list_id)

    assert record["status"] == "completed" and record["purge_count"] == 8
    pages, pages_after = -(-len(contacts) // 10), -(-(len(contacts) - 8) // 10)
    counts = RunStore(get_redis(launch.settings_for_run().redis_url), record["run_id"]).counts()
    assert counts["verify_pages"] == counts["verify_requests"] == pages
    assert counts["confirm_pages"] == counts["confirm_requests"] == pages_after
    assert simulator.stats()["requests"]["read"] - reads_before == 2 * pages + pages_after


def test_a_failed_re_read_writes_nothing(simulator: Any) -> None:
    list_id, _ = put_list(
        simulator, [{"id": "upd", "phone": "650 253 9101"}, {"id": "rej", "phone": "no"}]
    )
    before = simulator.get_list(list_id)
    simulator.add_faults(
        [
            {
                "method": "GET",
                "path": f"/contactlists/{list_id}$",
                "after": 1,
                "action": "missing_contacts",
            }
        ]
    )
    record = sweep(list_id)
    assert record["status"] == "failed"
    assert record["message"].startswith("nothing was written: re-reading the list before")
    assert simulator.get_list(list_id) == before
    stats = simulator.stats()["requests"]
    assert stats["patch"] == 0 and stats["delete"] == 0


def test_no_write_before_the_re_read_ends(redis_client: Any) -> None:
    from cxsweep.runs.store import PlanEntry

    store = RunStore(redis_client, f"unit-{uuid.uuid4().hex[:8]}")
    entry = PlanEntry("c1", {"phone": "12"}, None, "invalid_number")
    store.commit_page(0, [], [entry], {"to_remove": 1, "reason:invalid_number": 1})
    store.index_plan()
    with pytest.raises(CxsweepError, match="not re-read"):
        fresh_entries(store, [entry])
    store.set_verified()
    # Never met by the re-read: gone, counted once however often a write asks.
    assert fresh_entries(store, [entry]) == [] and fresh_entries(store, [entry]) == []
    counts = store.counts()
    assert counts["stale"] == counts["stale_gone"] == 1
    assert counts["to_remove"] == counts["reason:invalid_number"] == 0
    assert store.stale_ids() == ["c1"]


def test_the_plan_index_takes_the_place_of_the_reads_id_claims(redis_client: Any) -> None:
    from cxsweep.runs.store import PlanEntry

    store = RunStore(redis_client, f"unit-{uuid.uuid4().hex[:8]}")
    assert store.claim_ids(0, ["c1", "c2"]) == set()
    entry = PlanEntry("c1", {"phone": "12"}, None, "invalid_number")
    store.commit_page(0, [], [entry], {"to_remove": 1})
    assert redis_client.exists(store.keys.contact_ids)
    store.index_plan()
    # Redis holds one or the other: at 1,000,000 contacts both were ~150 MB.
    assert not redis_client.exists(store.keys.contact_ids)
    assert redis_client.hlen(store.keys.freshness) == 1


def test_the_verify_pass_streams_the_writes_it_has_judged(
    simulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A removal chunk whose every contact the verify pass has judged is written while the
    pass reads on: the first write goes before the pass's last page (each request takes
    40 ms, so the pass's eight pages take a third of a second at least). Once every
    removal is done the re-read that confirms them starts, while the updates (sent after
    the verify pass) still go: it has read a page before the PATCH leaves."""
    list_id = f"stream-{uuid.uuid4().hex[:8]}"
    bad = [{"id": f"b{i}", "phone": "no"} for i in range(2)]
    fix = [{"id": f"f{i}", "phone": f"(650) 253-{i:04d}"} for i in range(20)]
    good = [{"id": f"k{i}", "phone": f"+1650254{i:04d}"} for i in range(58)]
    rows = [{**c, "id": f"{list_id}-{c['id']}", "name": "n"} for c in [*bad, *fix, *good]]
    simulator.put_list(list_id, contacts=rows)
    simulator.configure(page_size=10, latency_ms=40)
    seen_before = len(simulator.requests_seen())
    # The pages the confirming re-read had read when each update chunk began.
    confirm_pages_then: list[int] = []
    real = writes.apply_update_chunk

    def update(store: RunStore, *args: Any, **kwargs: Any) -> Any:
        confirm_pages_then.append(store.counts().get("confirm_pages", 0))
        return real(store, *args, **kwargs)

    monkeypatch.setattr(writes, "apply_update_chunk", update)

    record = sweep(list_id)

    assert record["status"] == "completed", record
    assert record["purge_count"] == 2 and record["success_count"] == 20
    phones = final(simulator, list_id)
    assert set(phones) == {c["id"] for c in [*fix, *good]}
    assert all(phone.startswith("+1") for phone in phones.values())
    seen = simulator.requests_seen()[seen_before:]
    reads = [i for i, r in enumerate(seen) if r["method"] == "GET" and list_id in r["path"]]
    verify_reads = reads[8:16]  # the read pass's eight pages, then the verify pass's
    first_write = min(i for i, r in enumerate(seen) if r["method"] in ("PATCH", "DELETE"))
    assert verify_reads[0] < first_write < verify_reads[-1]
    assert [r["method"] for r in seen[first_write:]].count("DELETE") == 2
    assert confirm_pages_then and confirm_pages_then[0] > 0, (
        "the confirming re-read began before the update chunk"
    )
