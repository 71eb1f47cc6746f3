"""Every run ends: with one audit line, a clear status, a freed list and a webhook, even
when a task fails in a way nobody planned for, recording fails, or a callback comes twice.

Real Redis, the in-process worker, the simulator over sockets. Faults are injected by
replacing a domain function the worker calls (it runs in this process).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from console import cli, launch
from cxsweep.platforms.factory import make_backend
from cxsweep.runs import plan, restore, writes
from cxsweep.runs.store import ListLock, RunStore
from cxsweep.settings import get_settings
from tests.conftest import audit_lines
from tests.test_sweep import new_list, wait_for_webhooks


def _start(list_id: str) -> tuple[Any, str]:
    settings = launch.settings_for_run()
    return settings, launch.start_run(settings, list_id, dry_run=False)


def _assert_ended_failed(
    simulator: Any,
    redis_client: redis.Redis,
    audit_log_path: Path,
    record: dict[str, Any],
    list_id: str,
    task_name: str,
) -> None:
    run_id = record["run_id"]
    assert record["status"] == "failed", record
    lines = audit_lines(audit_log_path, run_id)
    assert len(lines) == 1, lines
    assert task_name in lines[0]["message"], lines[0]["message"]
    assert "injected fault" in lines[0]["message"], lines[0]["message"]
    assert ListLock(redis_client, list_id).holder() is None
    hooks = wait_for_webhooks(simulator, run_id)
    assert [h["body"]["event"] for h in hooks] == ["campaign.sanitization.halted"]


@pytest.mark.usefixtures("sweep_worker")
def test_a_write_task_that_raises_ends_the_run_failed(
    simulator: Any,
    redis_client: redis.Redis,
    audit_log_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    list_id, _ = new_list(simulator, 120, seed=21)
    real = writes.apply_remove_chunk

    def broken(store: RunStore, backend: Any, list_id: str, index: int, **kw: Any) -> Any:
        if index == 0:
            raise ValueError("injected fault in a write")
        return real(store, backend, list_id, index, **kw)

    monkeypatch.setattr(writes, "apply_remove_chunk", broken)
    settings, run_id = _start(list_id)
    started = time.monotonic()
    record = launch.wait_for_run(settings, run_id, timeout=60, quiet=True)
    assert time.monotonic() - started < 60
    _assert_ended_failed(
        simulator, redis_client, audit_log_path, record, list_id, "tasks.sweep.write_removals"
    )
    # The other removal chunks ran: the chord waited for its whole header.
    assert record["purge_count"] > 0


@pytest.mark.usefixtures("sweep_worker")
def test_a_read_task_that_raises_ends_the_run_failed(
    simulator: Any,
    redis_client: redis.Redis,
    audit_log_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    list_id, _ = new_list(simulator, 50, seed=22)

    def broken(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("injected fault in sanitizing")

    monkeypatch.setattr(plan, "plan_page", broken)
    settings, run_id = _start(list_id)
    record = launch.wait_for_run(settings, run_id, timeout=60, quiet=True)
    _assert_ended_failed(
        simulator, redis_client, audit_log_path, record, list_id, "tasks.sweep.sanitize_page"
    )
    assert simulator.stats()["requests"].get("delete", 0) == 0


@pytest.mark.usefixtures("sweep_worker")
def test_a_restore_task_that_raises_ends_the_restore_failed(
    simulator: Any,
    redis_client: redis.Redis,
    audit_log_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    list_id, _ = new_list(simulator, 60, seed=23)
    settings, run_id = _start(list_id)
    assert launch.wait_for_run(settings, run_id, timeout=60, quiet=True)["status"] == "completed"

    def broken(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("injected fault in a restore")

    monkeypatch.setattr(restore, "restore_page", broken)
    capsys.readouterr()
    code = cli.main(["restore", run_id, "--json", "--quiet", "--timeout", "60"])
    out = capsys.readouterr().out
    record = json.loads(out[: out.rindex("}") + 1])
    assert code != 0
    _assert_ended_failed(
        simulator,
        redis_client,
        audit_log_path,
        record,
        list_id,
        "tasks.sweep.restore_archive_page",
    )


@pytest.mark.usefixtures("sweep_worker")
def test_recording_is_retried_until_the_audit_log_can_be_written(
    simulator: Any,
    redis_client: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tasks.record

    list_id, _ = new_list(simulator, 40, seed=24)
    # The audit log path is a directory: appending raises IsADirectoryError.
    audit_path = tmp_path / "audit.log"
    audit_path.mkdir()
    broken = dataclasses.replace(get_settings(), audit_log=str(audit_path))
    monkeypatch.setattr(tasks.record, "settings", lambda: broken)
    settings, run_id = _start(list_id)
    store = RunStore(redis_client, run_id)
    deadline = time.monotonic() + 30
    while not store.meta().get("record_error") and time.monotonic() < deadline:
        time.sleep(0.05)
    meta = store.meta()
    assert "IsADirectoryError" in meta.get("record_error", ""), meta
    assert meta["status"] not in ("completed", "failed", "halted")
    assert ListLock(redis_client, list_id).holder() == run_id
    time.sleep(2)  # a retry or two fails the same way

    # The operator fixes the path; the next retry (backoff 1, 2, 4 ... s) records the run.
    audit_path.rmdir()
    record = launch.wait_for_run(settings, run_id, timeout=30, quiet=True)
    assert record["status"] == "completed"
    lines = [json.loads(line) for line in audit_path.read_text().splitlines()]
    assert [line["run_id"] for line in lines] == [run_id]
    assert "record_error" not in store.meta()
    assert ListLock(redis_client, list_id).holder() is None
    assert len(wait_for_webhooks(simulator, run_id)) == 1


@pytest.mark.usefixtures("sweep_worker")
def test_plan_ready_delivered_twice_leaves_a_completed_run_completed(
    simulator: Any, redis_client: redis.Redis, audit_log_path: Path
) -> None:
    from tasks.read import plan_ready

    list_id, _ = new_list(simulator, 40, seed=25)
    settings, run_id = _start(list_id)
    record = launch.wait_for_run(settings, run_id, timeout=60, quiet=True)
    assert record["status"] == "completed"
    requests_before = simulator.stats()["requests"]

    # The chord delivered it once; here it comes again, with the same results.
    for _ in range(2):
        again = plan_ready([{"ok": True, "page": 0, "pages": 1}], run_id)
        assert again == {"ok": True, "repeat": True}
    time.sleep(1)
    meta = RunStore(redis_client, run_id).meta()
    assert meta["status"] == "completed"
    assert simulator.stats()["requests"] == requests_before, "nothing was written again"
    assert len(audit_lines(audit_log_path, run_id)) == 1


@pytest.mark.usefixtures("sweep_worker")
def test_a_wave_callback_delivered_again_writes_nothing_twice(
    simulator: Any,
    redis_client: redis.Redis,
    audit_log_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tasks.write import wave_done

    list_id, _ = new_list(simulator, 300, seed=26)
    # Waves of 2 (the shipped 500 would make one wave of this list's few chunks).
    monkeypatch.setenv("CXSWEEP_WRITE_WAVE", "2")
    get_settings.cache_clear()
    try:
        settings, run_id = _start(list_id)
        record = launch.wait_for_run(settings, run_id, timeout=60, quiet=True)
        assert record["status"] == "completed", record
        store = RunStore(redis_client, run_id)
        assert int(store.meta()["chunks_total"]) > 4
        requests_before = simulator.stats()["requests"]
        # The first wave after the verify pass (which sent two chunks itself), and where
        # the second begins: the first wave's callback sent it.
        backend = make_backend(get_settings(), redis_client)
        chunks, end = writes.wave(store, backend, 0, 2)
        second, _ = writes.wave(store, backend, end, 2)
        assert len(chunks) == 2 and second
        first_wave = [{"ok": True, "kind": k, "chunk": i, "failed": 0} for k, i in chunks]
        sender = cast(bytes | None, store.redis.get(store.keys.claim(f"wave:{end}")))
        assert sender is not None

        # A twin (the first wave's chord sent twice: another callback id) is turned away.
        twin = wave_done.apply(args=[first_wave, run_id, 0, end], task_id="a-twin-callback")
        assert twin.result == {"ok": True, "repeat": True}
        # The callback itself, redelivered after a crash: it sends its wave again (a
        # crash mid-send must not leave a chord that never completes), whose chunks are
        # done already, and whose callback is a twin of the first's.
        again = wave_done.apply(args=[first_wave, run_id, 0, end], task_id=sender.decode())
        assert again.result == {"ok": True, "chunks": len(second), "wave": end}
        time.sleep(2)
    finally:
        monkeypatch.delenv("CXSWEEP_WRITE_WAVE")
        get_settings.cache_clear()
    assert simulator.stats()["requests"] == requests_before, "nothing was written again"
    assert store.meta()["status"] == "completed"
    assert len(audit_lines(audit_log_path, run_id)) == 1


def _flaky_updates(monkeypatch: pytest.MonkeyPatch, errors: list[Exception]) -> dict[int, int]:
    """Make every update chunk raise ``errors`` one after another before it writes;
    returns the calls per chunk."""
    real = writes.apply_update_chunk
    calls: dict[int, int] = {}
    lock = threading.Lock()

    def flaky(store: RunStore, backend: Any, list_id: str, index: int, **kw: Any) -> Any:
        with lock:
            calls[index] = calls.get(index, 0) + 1
            attempt = calls[index]
        if attempt <= len(errors):
            raise errors[attempt - 1]
        return real(store, backend, list_id, index, **kw)

    monkeypatch.setattr(writes, "apply_update_chunk", flaky)
    return calls


@pytest.mark.usefixtures("sweep_worker")
def test_waiting_never_spends_the_retry_budget(
    simulator: Any, audit_log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twelve waits (the shared rate limit, a running job, a 429), more than the budget
    of 8 and Celery's default cap, then two server errors: the run completes."""
    from cxsweep.errors import NotYet, RateLimited, RetryableApiError

    waits: list[Exception] = [
        NotYet("the shared rate limit asks to wait 0.1s", retry_after=0.05) for _ in range(6)
    ] + [RateLimited("PATCH: 429", status=429, retry_after=0.05) for _ in range(6)]
    failures: list[Exception] = [
        RetryableApiError("PATCH: server error 503", status=503, retry_after=0.05)
    ] * 2
    calls = _flaky_updates(monkeypatch, waits + failures)
    list_id, _ = new_list(simulator, 150, seed=26)
    settings, run_id = _start(list_id)
    record = launch.wait_for_run(settings, run_id, timeout=60, quiet=True)
    assert record["status"] == "completed", record
    assert calls and all(n == 15 for n in calls.values()), calls
    assert record["success_count"] > 0
    assert len(audit_lines(audit_log_path, run_id)) == 1


@pytest.mark.usefixtures("sweep_worker")
def test_a_spent_budget_is_returned_and_the_run_fails(
    simulator: Any, redis_client: redis.Redis, audit_log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nine server errors in a row on one chunk: eight retries, then the task returns
    its failure (it does not raise into the chord) and the run ends failed."""
    from cxsweep.errors import RetryableApiError

    errors: list[Exception] = [
        RetryableApiError("PATCH: server error 503", status=503, retry_after=0.05)
    ] * 9
    calls = _flaky_updates(monkeypatch, errors)
    list_id, _ = new_list(simulator, 60, seed=27)
    settings, run_id = _start(list_id)
    record = launch.wait_for_run(settings, run_id, timeout=60, quiet=True)
    assert record["status"] == "failed", record
    assert all(n == 9 for n in calls.values()), calls
    line = audit_lines(audit_log_path, run_id)
    assert len(line) == 1
    assert "write chunk(s) failed" in line[0]["message"]
    assert "gave up after 8 retries" in line[0]["message"]
    assert ListLock(redis_client, list_id).holder() is None


@pytest.mark.usefixtures("sweep_worker")
def test_a_task_that_progresses_between_failures_keeps_its_budget(
    simulator: Any, audit_log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each attempt of a removal chunk removes one contact, then meets a 503: ten
    failures for a chunk of ten, more than the budget of 8, yet never two in a row
    without progress. The run completes."""
    from cxsweep.errors import RetryableApiError
    from cxsweep.platforms.v2 import V2Client

    attempt = threading.local()
    real_chunk, real_delete = writes.apply_remove_chunk, V2Client.delete_contact

    def chunk(*args: Any, **kw: Any) -> Any:
        attempt.deletes = 0
        return real_chunk(*args, **kw)

    def delete(self: V2Client, contact_id: str) -> bool:
        attempt.deletes = getattr(attempt, "deletes", 0) + 1
        if attempt.deletes == 2:
            raise RetryableApiError("DELETE: server error 503", status=503, retry_after=0.05)
        return bool(real_delete(self, contact_id))

    monkeypatch.setattr(writes, "apply_remove_chunk", chunk)
    monkeypatch.setattr(V2Client, "delete_contact", delete)
    list_id, _ = new_list(simulator, 200, seed=29)
    settings, run_id = _start(list_id)
    record = launch.wait_for_run(settings, run_id, timeout=90, quiet=True)
    assert record["status"] == "completed", record
    assert record["purge_count"] >= 10 and record["api_retries"] >= 9
    assert len(audit_lines(audit_log_path, run_id)) == 1
