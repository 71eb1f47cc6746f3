"""The whole sweep: real Redis, a real worker, the simulator over sockets."""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from console import cli, launch
from cxsweep.phone.numbers import Sanitizer
from cxsweep.phone.policy import settings_directive
from cxsweep.platforms.factory import make_backend
from cxsweep.runs import writes
from cxsweep.runs.store import RunStore
from cxsweep.settings import get_settings
from tests.conftest import audit_lines

pytestmark = pytest.mark.usefixtures("sweep_worker")


def sweep(list_id: str, *, dry_run: bool = False, timeout: float = 120) -> dict[str, Any]:
    settings = launch.settings_for_run()
    run_id = launch.start_run(settings, list_id, dry_run=dry_run)
    return launch.wait_for_run(settings, run_id, timeout=timeout, quiet=True)


def expected_outcome(contacts: list[dict[str, Any]]) -> tuple[dict[str, str], set[str]]:
    """What the list must hold afterwards: id -> E.164 for keepers, and the removed ids."""
    sanitizer = Sanitizer(settings_directive(get_settings()))
    kept: dict[str, str] = {}
    removed: set[str] = set()
    for contact in contacts:
        verdict = sanitizer.check(contact.get("phone"))
        if verdict.e164 is not None:
            kept[contact["id"]] = verdict.e164
        else:
            removed.add(contact["id"])
    return kept, removed


def new_list(sim: Any, count: int, seed: int) -> tuple[str, list[dict[str, Any]]]:
    list_id = f"list-{uuid.uuid4().hex[:8]}"
    sim.put_list(list_id, count=count, seed=seed)
    return list_id, sim.get_list(list_id)


def wait_for_webhooks(sim: Any, run_id: str, timeout: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hooks = [h for h in sim.webhooks() if h["body"].get("run_id") == run_id]
        if hooks:
            time.sleep(0.3)  # a second delivery, if any, would arrive now
            return [h for h in sim.webhooks() if h["body"].get("run_id") == run_id]
        time.sleep(0.05)
    return []


def test_sweep_with_429_5xx_and_revoked_token_ends_right(
    simulator: Any, audit_log_path: Path
) -> None:
    list_id, original = new_list(simulator, 1200, seed=11)
    simulator.configure(page_size=100)
    simulator.add_faults(
        [
            {
                "method": "GET",
                "path": "/contactlists/",
                "action": 429,
                "after": 2,
                "times": 2,
                "retry_after": "1",
            },
            {"method": "GET", "path": "/contactlists/", "action": 503, "after": 5, "times": 1},
            {"method": "PATCH", "path": "/contacts$", "action": 503, "after": 1, "times": 2},
            {"method": "PATCH", "path": "/contacts$", "action": 429, "after": 4, "times": 1},
            {"method": "DELETE", "path": "/contacts/", "action": 502, "after": 3, "times": 2},
            {"method": "DELETE", "path": "/contacts/", "action": "drop", "after": 20, "times": 1},
        ]
    )
    kept, removed = expected_outcome(original)
    assert removed and kept  # the seed has both, or this test proves nothing

    settings = launch.settings_for_run()
    run_id = launch.start_run(settings, list_id, dry_run=False)
    time.sleep(0.3)
    simulator.revoke_tokens()
    record = launch.wait_for_run(settings, run_id, timeout=180, quiet=True)

    assert record["status"] == "completed", record
    final = {c["id"]: c for c in simulator.get_list(list_id)}
    assert set(final) == set(kept), "exactly the rejects are gone"
    by_id = {c["id"]: c for c in original}
    for contact_id, contact in final.items():
        assert contact["phone"] == kept[contact_id]
        before = {k: v for k, v in by_id[contact_id].items() if k != "phone"}
        assert {k: v for k, v in contact.items() if k != "phone"} == before

    stats = simulator.stats()
    changed = {cid for cid, e164 in kept.items() if by_id[cid]["phone"] != e164}
    assert set(stats["patched"]) == changed, "only changed numbers are PATCHed"
    assert all(times == 1 for times in stats["patched"].values())
    assert stats["max_patch_batch"] <= 100
    assert stats["statuses"].get("429", 0) >= 3 and stats["statuses"].get("401", 0) >= 1

    assert record["total_processed"] == len(original)
    assert record["success_count"] == len(changed)
    assert record["unchanged_count"] == len(kept) - len(changed)
    assert record["purge_count"] == len(removed)
    assert record["failure_count"] == 0
    assert sum(record["reject_reasons"].values()) == len(removed)
    assert record["api_retries"] >= 5

    lines = audit_lines(audit_log_path, run_id)
    assert len(lines) == 1 and lines[0]["status"] == "completed"
    for field in (
        "timestamp",
        "total_processed",
        "success_count",
        "unchanged_count",
        "failure_count",
        "purge_count",
        "reject_reasons",
        "avg_latency_ms",
        "format_success_rate",
        "started_at",
        "finished_at",
        "dry_run",
    ):
        assert field in lines[0]
    # Milliseconds (not seconds, not microseconds), whatever the load on the machine.
    assert 0 < lines[0]["avg_latency_ms"] < 1000

    hooks = wait_for_webhooks(simulator, run_id)
    assert len(hooks) == 1
    body = hooks[0]["body"]
    assert body["event"] == "campaign.sanitization.complete"
    assert body["list_id"] == list_id and body["metrics"]["purge_count"] == len(removed)
    # Signed with the configured secret, over "timestamp.body".
    timestamp = hooks[0]["headers"]["X-Cxsweep-Timestamp"]
    mac = hmac.new(
        b"test-webhook-secret", timestamp.encode() + b"." + hooks[0]["raw"], hashlib.sha256
    ).hexdigest()
    assert hooks[0]["headers"]["X-Cxsweep-Signature"] == f"sha256={mac}"


def test_dry_run_writes_nothing(simulator: Any, audit_log_path: Path) -> None:
    list_id, original = new_list(simulator, 600, seed=12)
    kept, removed = expected_outcome(original)
    record = sweep(list_id, dry_run=True)
    assert record["status"] == "completed" and record["dry_run"] is True
    stats = simulator.stats()
    assert stats["requests"]["patch"] == 0 and stats["requests"]["delete"] == 0
    assert simulator.get_list(list_id) == original
    assert record["planned_removals"] == len(removed)
    changed = sum(1 for c in original if c["id"] in kept and kept[c["id"]] != c["phone"])
    assert record["planned_updates"] == changed
    assert record["purge_count"] == 0 and record["success_count"] == 0


def test_breaker_halts_and_removes_nothing(
    simulator: Any, audit_log_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    list_id, original = new_list(simulator, 400, seed=13)
    simulator.add_faults([{"method": "DELETE", "path": "/contacts/", "action": 503}])
    simulator.add_faults([{"method": "PATCH", "path": "/contacts$", "action": 500}])
    settings = get_settings()
    code = cli.main(["run", list_id, "--quiet", "--timeout", "120"])
    out = capsys.readouterr().out
    assert code == 1
    assert "HALTED for manual review" in out
    final = simulator.get_list(list_id)
    assert [c["id"] for c in final] == [c["id"] for c in original], "nothing removed"
    stats = simulator.stats()
    # Consecutive 5xx stop the writes: no stream of DELETEs after the breaker trips.
    writes = stats["requests"]["delete"] + stats["requests"]["patch"]
    assert writes <= settings.breaker_threshold + 8  # + what was in flight on 8 threads
    run_id = out.split()[1]
    lines = audit_lines(audit_log_path, run_id)
    assert len(lines) == 1 and lines[0]["status"] == "halted" and lines[0]["purge_count"] == 0
    hooks = wait_for_webhooks(simulator, run_id)
    assert [h["body"]["event"] for h in hooks] == ["campaign.sanitization.halted"]


def sweep_in_waves(monkeypatch: pytest.MonkeyPatch, list_id: str, wave: int) -> dict[str, Any]:
    """Sweep with waves of ``wave`` write tasks: the shipped 500 would send a test list's
    few chunks in one wave, so a small one makes the waves (their hand-overs, their
    halts) happen on a list the suite can afford."""
    monkeypatch.setenv("CXSWEEP_WRITE_WAVE", str(wave))
    get_settings.cache_clear()
    try:
        return sweep(list_id)
    finally:
        monkeypatch.delenv("CXSWEEP_WRITE_WAVE")
        get_settings.cache_clear()


def test_writes_in_several_waves_complete_right(
    simulator: Any, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    list_id, original = new_list(simulator, 600, seed=14)
    kept, removed = expected_outcome(original)
    record = sweep_in_waves(monkeypatch, list_id, 3)

    assert record["status"] == "completed", record
    store = RunStore(redis_client, record["run_id"])
    chunks = int(store.meta()["chunks_total"])
    assert chunks >= 7, "a list that makes several waves, or this test proves nothing"
    # One wave after another, each of at most 3 chunks, each kept its (no) failures.
    assert redis_client.hlen(store.keys.wave_results) == math.ceil(chunks / 3)
    assert store.wave_results() == []
    every = writes.write_chunks(store, make_backend(get_settings(), redis_client))
    assert len(every) == chunks
    assert all(store.chunk_done(kind, index) for kind, index in every)
    final = {c["id"]: c["phone"] for c in simulator.get_list(list_id)}
    assert final == kept, "every update and every removal of every wave was written"
    by_id = {c["id"]: c for c in original}
    changed = {cid for cid, e164 in kept.items() if by_id[cid]["phone"] != e164}
    stats = simulator.stats()
    assert set(stats["patched"]) == changed and all(n == 1 for n in stats["patched"].values())
    assert stats["requests"]["delete"] == len(removed)
    assert record["success_count"] == len(changed) and record["purge_count"] == len(removed)
    assert record["failure_count"] == 0


def test_a_failed_chunk_in_an_early_wave_is_counted_at_the_end(
    simulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    list_id, original = new_list(simulator, 600, seed=14)
    kept, removed = expected_outcome(original)
    real = writes.apply_remove_chunk

    def failing(store: RunStore, backend: Any, list_id: str, index: int, **kw: Any) -> Any:
        if index == 0:  # the first wave's first chunk fails, as a task returns it
            return {"ok": False, "kind": "remove", "chunk": 0, "error": "injected failure"}
        return real(store, backend, list_id, index, **kw)

    monkeypatch.setattr(writes, "apply_remove_chunk", failing)
    record = sweep_in_waves(monkeypatch, list_id, 3)

    assert record["status"] == "failed", record
    assert "1 write chunk(s) failed: injected failure" in record["message"]
    # The later waves went out: every removal but the failed chunk's ten.
    assert record["purge_count"] == len(removed) - 10
    assert len(simulator.get_list(list_id)) == len(kept) + 10


def test_a_halt_mid_waves_sends_no_further_wave(
    simulator: Any, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waves of two: the verify pass streams two chunks, its callback sends the first
    wave of two more, and the first of those to finish halts the run: no wave follows."""
    list_id, original = new_list(simulator, 600, seed=15)
    _, removed = expected_outcome(original)
    assert len(removed) > 30, "removal chunks past the first wave, or this proves nothing"
    real = {"update": writes.apply_update_chunk, "remove": writes.apply_remove_chunk}
    finished: list[tuple[str, int]] = []
    finishing = threading.Lock()

    def tripping(kind: str) -> Any:
        def apply(store: RunStore, backend: Any, list_id: str, index: int, **kw: Any) -> Any:
            result = real[kind](store, backend, list_id, index, **kw)
            with finishing:
                finished.append((kind, index))
                if len(finished) == 3:  # the streamed two end before any wave is sent
                    # What the breaker does on the threshold-th consecutive 5xx.
                    store.note_write_outcome(server_error=True, threshold=1)
            return result

        return apply

    monkeypatch.setattr(writes, "apply_update_chunk", tripping("update"))
    monkeypatch.setattr(writes, "apply_remove_chunk", tripping("remove"))
    record = sweep_in_waves(monkeypatch, list_id, 2)

    assert record["status"] == "halted", record
    store = RunStore(redis_client, record["run_id"])
    chunks = int(store.meta()["chunks_total"])
    assert chunks > 6
    assert store.streamed_count() == 2
    # The streamed chunks' results and the first wave's; no later wave was sent.
    assert redis_client.hlen(store.keys.wave_results) == 2
    assert len(finished) <= 4, finished
    written = [
        (kind, i)
        for kind in ("update", "remove")
        for i in range(chunks)
        if store.chunk_done(kind, i)
    ]
    assert set(written) <= set(finished)
    assert len(simulator.get_list(list_id)) == len(original) - store.removed_count()


def test_bad_credentials_fail_fast(
    simulator: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    list_id, _original = new_list(simulator, 50, seed=14)
    monkeypatch.setenv("CXSWEEP_CLIENT_SECRET", "wrong-secret")
    started = time.monotonic()
    code = cli.main(["run", list_id])
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    get_settings.cache_clear()
    assert code == 2
    assert elapsed < 10
    assert err.count("\n") == 1 and "refused" in err and "Traceback" not in err
    assert "wrong-secret" not in err
    stats = simulator.stats()
    assert stats["requests"]["read"] == 0 and stats["requests"]["delete"] == 0


@pytest.mark.parametrize("action", ["bad_json", "missing_contacts", "wrong_types"])
def test_malformed_answer_stops_with_clear_error_and_no_writes(
    simulator: Any, action: str, audit_log_path: Path
) -> None:
    list_id, original = new_list(simulator, 300, seed=15)
    simulator.configure(page_size=100)
    simulator.add_faults(
        [{"method": "GET", "path": "/contactlists/", "action": action, "after": 1, "times": 1}]
    )
    record = sweep(list_id)
    assert record["status"] == "failed"
    assert "GET /api/v2/campaigns/contactlists/" in record["message"]
    stats = simulator.stats()
    assert stats["requests"]["patch"] == 0 and stats["requests"]["delete"] == 0
    assert simulator.get_list(list_id) == original
    assert len(audit_lines(audit_log_path, record["run_id"])) == 1


def test_unknown_list_fails_without_writes(simulator: Any) -> None:
    record = sweep("no-such-list")
    assert record["status"] == "failed" and "not found" in record["message"]


def test_second_run_on_a_list_being_swept_is_refused(
    simulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    list_id, _ = new_list(simulator, 200, seed=16)
    simulator.configure(latency_ms=30)
    settings = launch.settings_for_run()
    run_id = launch.start_run(settings, list_id, dry_run=True)
    code = cli.main(["run", list_id, "--quiet"])
    assert code == 1
    assert run_id in capsys.readouterr().err
    record = launch.wait_for_run(settings, run_id, timeout=60, quiet=True)
    assert record["status"] == "completed"
    simulator.configure(latency_ms=0)
    # The lock is freed with the run's record: the next run may start.
    assert sweep(list_id, dry_run=True)["status"] == "completed"


def garbage_list(sim: Any, good: int, bad: int) -> str:
    list_id = f"junk-{uuid.uuid4().hex[:8]}"
    contacts = [
        {"id": f"{list_id}-g{i}", "phone": f"+1650253{i:04d}", "name": "ok"} for i in range(good)
    ] + [{"id": f"{list_id}-b{i}", "phone": "not a number", "name": "junk"} for i in range(bad)]
    sim.put_list(list_id, contacts=contacts)
    return list_id


def test_purge_guard_halts_a_mostly_garbage_list(
    simulator: Any, audit_log_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    list_id = garbage_list(simulator, good=30, bad=70)
    before = simulator.get_list(list_id)
    code = cli.main(["run", list_id, "--quiet", "--timeout", "60"])
    out = capsys.readouterr().out
    assert code == 1
    assert "would remove 70 of 100 contacts" in out and "--allow-purge-ratio" in out
    assert simulator.get_list(list_id) == before
    stats = simulator.stats()
    assert stats["requests"]["patch"] == 0 and stats["requests"]["delete"] == 0
    run_id = out.split()[1]
    assert audit_lines(audit_log_path, run_id)[0]["status"] == "halted"

    # Deliberately allowed, the same list is cleaned.
    code = cli.main(["run", list_id, "--quiet", "--allow-purge-ratio", "0.75"])
    assert code == 0
    assert {c["name"] for c in simulator.get_list(list_id)} == {"ok"}


def test_watchdog_fails_an_overdue_run_and_frees_its_list(
    simulator: Any, redis_client: Any, audit_log_path: Path
) -> None:
    from cxsweep.runs.store import ListLock, RunStore, prepare_run
    from tasks.record import watchdog

    list_id = f"stuck-{uuid.uuid4().hex[:8]}"
    # A run whose chord callback never came: never launched, deadline already passed.
    run_id = prepare_run(redis_client, list_id, dry_run=False, deadline_seconds=-1)
    assert ListLock(redis_client, list_id).holder() == run_id
    watchdog.delay()
    store = RunStore(redis_client, run_id)
    deadline = time.monotonic() + 30
    while store.meta().get("status") != "failed" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.meta()["status"] == "failed"
    assert ListLock(redis_client, list_id).holder() is None
    lines = audit_lines(audit_log_path, run_id)
    assert len(lines) == 1 and "deadline" in lines[0]["message"]
    hooks = wait_for_webhooks(simulator, run_id)
    assert [h["body"]["event"] for h in hooks] == ["campaign.sanitization.halted"]


def test_keep_first_removes_later_duplicates_in_list_order(
    simulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks import _deps

    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[[lists]]\nmatch = "dup-*"\nduplicates = "keep_first"\nmax_purge_ratio = 0.6\n'
    )
    monkeypatch.setenv("CXSWEEP_POLICY_FILE", str(policy))
    get_settings.cache_clear()
    _deps.policy.cache_clear()
    simulator.configure(page_size=2)
    contacts = [
        {"id": "a", "phone": "(650) 253-0000"},
        {"id": "b", "phone": "+16502530001"},
        {"id": "c", "phone": "+1 650 253 0000"},  # same number as a
        {"id": "d", "phone": "+16502530002"},
        {"id": "e", "phone": "650.253.0000"},  # same as a again
        {"id": "f", "phone": "+16502530001"},  # same as b, already E.164
    ]
    try:
        outcomes = {}
        for prefix in ("dup", "all"):
            list_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
            simulator.put_list(
                list_id, contacts=[{**c, "id": f"{list_id}-{c['id']}"} for c in contacts]
            )
            record = sweep(list_id)
            final = {c["id"].rsplit("-", 1)[1]: c["phone"] for c in simulator.get_list(list_id)}
            outcomes[prefix] = (record, final)
            if prefix == "dup":
                patched = {cid for cid in simulator.stats()["patched"] if cid.startswith(list_id)}
                # Undone, every duplicate comes back, the one that needed no change (f,
                # archived by no page) as well as those that did.
                settings = launch.settings_for_run()
                restore_id = launch.start_run(
                    settings, list_id, dry_run=False, options={"restore_of": record["run_id"]}
                )
                restored = launch.wait_for_run(settings, restore_id, timeout=120, quiet=True)
                assert restored["status"] == "completed", restored
                back = {c["id"].rsplit("-", 1)[1]: c["phone"] for c in simulator.get_list(list_id)}
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        _deps.policy.cache_clear()

    record, final = outcomes["dup"]
    assert final == {"a": "+16502530000", "b": "+16502530001", "d": "+16502530002"}
    assert record["reject_reasons"] == {"duplicate": 3}
    assert record["success_count"] == 1 and record["unchanged_count"] == 2
    assert record["purge_count"] == 3
    assert {cid.rsplit("-", 1)[1] for cid in patched} == {"a"}, "never PATCH a duplicate"
    assert back == {c["id"]: c["phone"] for c in contacts}
    # The list the policy does not name keeps its duplicates.
    assert len(outcomes["all"][1]) == 6


def test_watchdog_fails_a_run_that_stopped_moving(redis_client: Any) -> None:
    from cxsweep.runs.store import RunStore, overdue_runs, prepare_run

    list_id = f"stall-{uuid.uuid4().hex[:8]}"
    run_id = prepare_run(redis_client, list_id, dry_run=True)
    store = RunStore(redis_client, run_id)
    now = time.time()

    def stalled(at: float) -> set[str]:
        return {s.run_id for s, _ in overdue_runs(redis_client, stall_seconds=60, now=at)}

    assert run_id not in stalled(now)  # first look: progress noted
    store.incr("fetched", 10)
    assert run_id not in stalled(now + 50)  # it moved
    assert run_id not in stalled(now + 100)  # still within 60 s of its last move
    assert run_id in stalled(now + 120)
    store.set_meta(status="completed")
    assert run_id not in stalled(now + 500)
