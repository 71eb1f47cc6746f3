"""Crash tests with real processes: a private Redis, a private simulator, real
``celery -A workers worker`` processes, ``cxsweep run`` as a subprocess.

A worker is SIGKILLed at a random point of a sweep (a number of simulator requests drawn
from the seed), another is started, and the list must end exactly as a reference run on
an identical list (same contacts, ids prefixed) leaves it, with one audit line, no
contact PATCHed with two different values and no valid contact removed.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from cxsweep.runs.redelivery import UnackedMessages
from cxsweep.runs.store import RunStore, overdue_runs
from devtools import seed as seed_data
from tests._stack import Stack, child_pids, finish, make_stack, wait_until

CONTACTS = 1200
PAGE_SIZE = 100
RECORD_FIELDS = (
    "total_processed",
    "success_count",
    "unchanged_count",
    "purge_count",
    "failure_count",
    "planned_updates",
    "planned_removals",
    "reject_reasons",
)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    # A few ms per request: the sweep lasts long enough to be killed in its middle.
    yield from make_stack(tmp_path, page_size=PAGE_SIZE, latency_ms=4.0, seed=1)


@pytest.fixture
def amqp_stack(tmp_path: Path) -> Iterator[Stack]:
    """The same, with RabbitMQ (a vhost of its own) as the broker."""
    yield from make_stack(tmp_path, broker="amqp", page_size=PAGE_SIZE, latency_ms=4.0, seed=1)


def twin_lists(stack: Stack, seed: int) -> tuple[str, str]:
    """Two lists with the same contacts (ids prefixed "ref-" and "crash-")."""
    contacts = seed_data.messy_contacts("twin", CONTACTS, seed)
    for prefix in ("ref", "crash"):
        stack.sim.put_list(
            f"{prefix}-{seed}", contacts=[{**c, "id": f"{prefix}-{c['id']}"} for c in contacts]
        )
    return f"ref-{seed}", f"crash-{seed}"


def unprefixed(contacts: list[dict[str, Any]], prefix: str) -> dict[str, dict[str, Any]]:
    return {
        c["id"].removeprefix(prefix): {**c, "id": c["id"].removeprefix(prefix)} for c in contacts
    }


def reference_run(stack: Stack, list_id: str) -> dict[str, Any]:
    code, record, err = finish(stack.run_cli(list_id), timeout=60)
    assert code == 0 and record is not None, err
    assert record["status"] == "completed"
    assert record["purge_count"] > 0 and record["success_count"] > 0
    return record


def run_id_of(stack: Stack, list_id: str) -> str:
    for raw in cast(list[bytes], stack.redis.zrange("cxsweep:runs", 0, -1)):
        run_id = raw.decode()
        if stack.redis.hget(f"cxsweep:run:{run_id}:meta", "list_id") == list_id.encode():
            return run_id
    raise AssertionError(f"no run recorded for {list_id}")


def assert_same_outcome(
    stack: Stack, ref_list: str, crash_list: str, original: dict[str, dict[str, Any]]
) -> None:
    """The crashed list ends as the reference list; nothing wrong was ever written."""
    ref = unprefixed(stack.sim.get_list(ref_list), "ref-")
    crashed = unprefixed(stack.sim.get_list(crash_list), "crash-")
    assert set(crashed) - set(ref) == set(), "contacts the reference run removed are still there"
    assert set(ref) - set(crashed) == set(), "valid contacts were removed"
    assert crashed == ref, "a contact differs from the reference run's"
    # Every PATCH of a contact carried the value the reference run wrote.
    ref_values = {
        cid.removeprefix("ref-"): values
        for cid, values in stack.sim.patch_values.items()
        if cid.startswith("ref-")
    }
    for cid, values in stack.sim.patch_values.items():
        if not cid.startswith("crash-"):
            continue
        key = cid.removeprefix("crash-")
        assert len(set(values)) == 1, f"{cid} PATCHed with different values {values}"
        assert set(values) == set(ref_values.get(key, [])), f"{cid}: {values} vs reference"
    deleted = {cid.removeprefix("crash-") for cid in stack.sim.deleted_ids if "crash-" in cid}
    assert deleted == set(original) - set(ref), "removed exactly the reference's rejects"


def kill_point(stack: Stack, seed: int, ref_requests: int) -> int:
    """A request count, drawn from the seed, anywhere from the first read to the last write."""
    rng = random.Random(seed)
    return max(3, int(ref_requests * rng.uniform(0.05, 0.95)))


@dataclass
class CrashRun:
    """A sweep of the crash list under way, its worker "a" about to be killed."""

    ref_list: str
    crash_list: str
    original: dict[str, dict[str, Any]]
    ref_record: dict[str, Any]
    ref_requests: int
    killed_at: int
    first: subprocess.Popen[bytes]
    cli: subprocess.Popen[str]


def sweep_to_kill_point(stack: Stack, seed: int, cli_timeout: int = 60) -> CrashRun:
    """A reference run, then the crash list's run up to a request count drawn from the
    seed (worker "a" serves both)."""
    ref_list, crash_list = twin_lists(stack, seed)
    original = unprefixed(stack.sim.get_list(crash_list), "crash-")
    first = stack.start_worker("a")
    before = stack.sim.total_requests()
    reference_run(stack, ref_list)
    ref_record = stack.audit_lines(run_id_of(stack, ref_list))[0]
    ref_requests = stack.sim.total_requests() - before

    target = kill_point(stack, seed, ref_requests)
    base = stack.sim.total_requests()
    cli = stack.run_cli(crash_list, "--timeout", str(cli_timeout))
    reached = wait_until(lambda: stack.sim.total_requests() - base >= target, timeout=30)
    assert reached, "the sweep never got to the kill point"
    killed_at = stack.sim.total_requests() - base
    return CrashRun(ref_list, crash_list, original, ref_record, ref_requests, killed_at, first, cli)


def kill_whole_worker(worker: subprocess.Popen[bytes]) -> None:
    """SIGKILL parent and pool at once: a lost machine, an OOM kill, a forced drain."""
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)


def assert_completed_as_reference(stack: Stack, crash: CrashRun, seed: int, kill: str) -> None:
    code, record, err = finish(crash.cli, timeout=130)
    lost = stack.worker_log("a").count("WorkerLostError")
    print(
        f"seed {seed} ({kill}): killed at request {crash.killed_at}/{crash.ref_requests},"
        f" {lost} task(s) lost"
    )
    assert record is not None, f"killed at request {crash.killed_at}/{crash.ref_requests}: {err}"
    assert record["status"] == "completed", (crash.killed_at, record)
    assert code == 0
    run_id = record["run_id"]
    lines = stack.audit_lines(run_id)
    assert len(lines) == 1, f"{len(lines)} audit lines for {run_id}"
    for name in RECORD_FIELDS:
        assert lines[0][name] == crash.ref_record[name], (name, crash.killed_at, lines[0])
    assert_same_outcome(stack, crash.ref_list, crash.crash_list, crash.original)


# "pool" SIGKILLs the prefork children: the parent survives and hands their messages
# back (task_reject_on_worker_lost). On the stack's Redis broker, as most fleets run.
POOL_SEEDS = [1, 2, 3, 4]


@pytest.mark.parametrize("seed", POOL_SEEDS, ids=[f"seed{s}-pool" for s in POOL_SEEDS])
def test_sigkill_mid_sweep_ends_as_a_run_without_crash(stack: Stack, seed: int) -> None:
    crash = sweep_to_kill_point(stack, seed)
    pool = child_pids(crash.first.pid)
    assert pool, "the prefork worker has no pool processes"
    for pid in pool:
        os.kill(pid, signal.SIGKILL)
    # The parent saw its pool die (and hands back the messages they held).
    assert wait_until(lambda: "signal 9" in stack.worker_log("a"), timeout=10)
    stack.start_worker("b")
    assert_completed_as_reference(stack, crash, seed, "pool")


# Seconds from the new worker's start to the run recorded, on RabbitMQ.
RECOVERY_BOUND = 60.0
WORKER_SEEDS = [5, 6]


@pytest.mark.parametrize("seed", WORKER_SEEDS, ids=[f"seed{s}-worker" for s in WORKER_SEEDS])
def test_whole_worker_sigkill_on_rabbitmq_recovers_within_a_minute(
    amqp_stack: Stack, seed: int
) -> None:
    """RabbitMQ returns a dead worker's unacknowledged messages when its connection
    drops: the next worker finishes the run, with nothing of the broker's touched."""
    stack = amqp_stack
    crash = sweep_to_kill_point(stack, seed, cli_timeout=120)
    run_id = run_id_of(stack, crash.crash_list)
    kill_whole_worker(crash.first)
    assert not stack.redis.hget(f"cxsweep:run:{run_id}:meta", "record"), "ended before the kill"
    started = time.monotonic()
    stack.start_worker("b")
    recorded = wait_until(
        lambda: bool(stack.redis.hget(f"cxsweep:run:{run_id}:meta", "record")),
        timeout=RECOVERY_BOUND + 10,
        interval=0.1,
    )
    seconds = time.monotonic() - started
    print(f"seed {seed}: run recorded {seconds:.1f}s after the new worker started")
    assert recorded and seconds <= RECOVERY_BOUND, f"{seconds:.1f}s to recover"
    assert_completed_as_reference(stack, crash, seed, "worker")


def test_whole_worker_sigkill_on_redis_is_no_stall_for_the_watchdog(stack: Stack) -> None:
    """On the Redis broker a dead worker's messages come back only after the visibility
    timeout (an hour): the watchdog must not fail the run meanwhile."""
    crash = sweep_to_kill_point(stack, 7)
    run_id = run_id_of(stack, crash.crash_list)
    kill_whole_worker(crash.first)
    meta_key = f"cxsweep:run:{run_id}:meta"
    assert stack.redis.hget(meta_key, "status") in (b"reading", b"writing")
    # Read, never edited: kombu's record of the messages the dead worker held.
    assert UnackedMessages.read(stack.redis).hold(run_id), "the kill left nothing to redeliver"
    stack.start_worker("b")
    # As if the counters had not moved for longer than CXSWEEP_RUN_STALL_SECONDS (15 min):
    # our own run state is aged, never the broker's keys.
    progress = str(sum(RunStore(stack.redis, run_id).counts().values()))
    stack.redis.hset(meta_key, mapping={"progress": progress, "progress_at": time.time() - 3000})
    stack.send_task("tasks.sweep.watchdog")
    done = re.compile(r"tasks\.sweep\.watchdog\[[^]]+\] succeeded in \S+: (\d+)")
    assert wait_until(lambda: done.search(stack.worker_log("b")), timeout=30)
    match = done.search(stack.worker_log("b"))
    assert match is not None and match.group(1) == "0", "the watchdog failed a run"
    assert stack.redis.hget(meta_key, "status") in (b"reading", b"writing")
    assert stack.audit_lines(run_id) == []
    # The watchdog noted the messages as seen waiting now.
    assert float(stack.redis.hget(meta_key, "progress_at") or 0) > time.time() - 60
    # Without the broker's word the same run counts as stalled: the check above can fail.
    later, waiting = time.time() + 3000, UnackedMessages.read(stack.redis).hold
    kept = overdue_runs(stack.redis, stall_seconds=900, now=later, awaiting_redelivery=waiting)
    assert kept == []
    overdue = overdue_runs(stack.redis, stall_seconds=900, now=later + 1000)
    assert [store.run_id for store, _ in overdue] == [run_id]
    crash.cli.kill()


def test_redis_restart_mid_run_completes_or_fails_never_a_wrong_removal(stack: Stack) -> None:
    ref_list, crash_list = twin_lists(stack, 21)
    original = unprefixed(stack.sim.get_list(crash_list), "crash-")
    stack.start_worker("a")
    before = stack.sim.total_requests()
    reference_run(stack, ref_list)
    ref_requests = stack.sim.total_requests() - before

    base = stack.sim.total_requests()
    # A short deadline so that a run stuck by the restart is failed by the watchdog.
    cli = stack.run_cli(crash_list, "--timeout", "60", CXSWEEP_RUN_DEADLINE_SECONDS="10")
    target = ref_requests // 2
    assert wait_until(lambda: stack.sim.total_requests() - base >= target, timeout=30)
    stack.redis_server.kill()
    time.sleep(1.0)
    stack.redis_server.start()

    run_id = ""

    def recorded() -> bool:
        nonlocal run_id
        run_id = run_id or run_id_of(stack, crash_list)
        return bool(stack.redis.hget(f"cxsweep:run:{run_id}:meta", "record"))

    if not wait_until(recorded, timeout=11, interval=0.2):
        # Stuck (a lost message, a chord that never completes): the watchdog fails it.
        # (11 s have passed: the run is past its 10 s deadline.)
        stack.send_task("tasks.sweep.watchdog")
        assert wait_until(recorded, timeout=15, interval=0.2), "not even the watchdog ended it"
    status = stack.redis.hget(f"cxsweep:run:{run_id}:meta", "status")
    assert status in (b"completed", b"failed"), status
    lines = stack.audit_lines(run_id)
    assert len(lines) == 1 and lines[0]["status"] == status.decode()

    ref = unprefixed(stack.sim.get_list(ref_list), "ref-")
    crashed = unprefixed(stack.sim.get_list(crash_list), "crash-")
    assert set(ref) <= set(crashed), "a contact the reference run kept was removed"
    rejects = set(original) - set(ref)
    deleted = {cid.removeprefix("crash-") for cid in stack.sim.deleted_ids if "crash-" in cid}
    assert deleted <= rejects
    for cid, contact in crashed.items():
        # Each contact is as it was, or as the reference run wrote it.
        assert contact in (original[cid], ref.get(cid)), cid
    if status == b"completed":
        assert crashed == ref
    finish(cli, timeout=70)


def test_cli_alone_reaches_the_workers(stack: Stack) -> None:
    """``python -m console.cli run`` exactly as an operator types it, nothing imported first."""
    stack.sim.put_list("plain", count=100, seed=3)
    stack.start_worker("a")
    # The worker's start-up counts in the CLI's time, and so does the shipped rate limit.
    code, record, err = finish(stack.run_cli("plain", "--timeout", "30", plain=True), timeout=60)
    assert code == 0 and record is not None and record["status"] == "completed", err


def test_cli_waiting_on_a_run_survives_a_redis_restart(stack: Stack) -> None:
    stack.sim.put_list("blip", count=100, seed=4)
    cli = stack.run_cli("blip", "--timeout", "30")
    # The run is stored and waits for a worker; the CLI polls Redis meanwhile.
    assert wait_until(lambda: stack.redis.zcard("cxsweep:runs") == 1, timeout=15)
    time.sleep(0.5)
    stack.redis_server.kill()
    time.sleep(1.5)
    stack.redis_server.start()
    stack.start_worker("a")
    code, record, err = finish(cli, timeout=60)
    assert "Traceback" not in err, err[-2000:]
    assert code == 0 and record is not None and record["status"] == "completed"


def test_two_concurrent_runs_on_one_list_one_runs_one_is_refused(stack: Stack) -> None:
    """Two ``cxsweep run`` processes started at the same instant, three times over."""
    stack.sim.configure(latency_ms=15.0)  # each run lasts a few seconds: they overlap
    stack.start_worker("a")
    for trial in range(3):
        list_id = f"race-{trial}"
        stack.sim.put_list(list_id, count=300, seed=40 + trial)
        before = stack.sim.get_list(list_id)
        both = [stack.run_cli(list_id, "--timeout", "60") for _ in range(2)]
        outcomes = [finish(proc, timeout=70) for proc in both]
        winners = [o for o in outcomes if o[0] == 0]
        losers = [o for o in outcomes if o[0] != 0]
        assert len(winners) == 1 and len(losers) == 1, [(o[0], o[2][-300:]) for o in outcomes]
        record = winners[0][1]
        assert record is not None and record["status"] == "completed"
        code, refused, err = losers[0]
        assert code == 1 and refused is None
        assert f"being swept by run {record['run_id']}" in err, err
        assert "Traceback" not in err
        # One run, one audit line; the list cleaned once.
        assert stack.redis.zcard("cxsweep:runs") == trial + 1
        assert len(stack.audit_lines(record["run_id"])) == 1
        patched = stack.sim.patch_values
        assert all(len(v) == 1 for k, v in patched.items() if k.startswith(list_id))
        assert len(stack.sim.get_list(list_id)) == len(before) - record["purge_count"]


def test_racing_threads_take_a_list_once(redis_client: Any) -> None:
    """prepare_run from 16 threads at once (the session's Redis): exactly one holds it."""
    import threading
    import uuid

    from cxsweep.errors import ListBusy
    from cxsweep.runs.store import ListLock, prepare_run

    list_id = f"race-{uuid.uuid4().hex[:8]}"
    barrier = threading.Barrier(16)
    won: list[str] = []
    refused: list[str] = []

    def contender() -> None:
        barrier.wait()
        try:
            won.append(prepare_run(redis_client, list_id, dry_run=True))
        except ListBusy as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=contender) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1 and len(refused) == 15
    assert all(won[0] in message for message in refused)
    lock = ListLock(redis_client, list_id)
    assert lock.holder() == won[0]
    lock.release(won[0])


def test_cxone_upload_in_flight_when_killed_is_followed_not_sent_again(stack: Stack) -> None:
    """CXone: the pool process is SIGKILLed while its upload is in flight. The platform
    takes the file (its job exists) but no job id ever reaches Redis; the redelivered task
    finds that job among the list's jobs (once the dead worker's lease lapses) instead of
    uploading the rows a second time."""
    key_id, key_secret = "crash-key", "crash-key-secret-7c41"
    stack.sim.configure(access_keys={key_id: key_secret}, job_delay=0.5)
    stack.extra_env.update(
        {
            "CXSWEEP_BACKEND": "cxone",
            "CXSWEEP_CXONE_AUTH_URL": stack.sim.url,
            "CXSWEEP_CXONE_ACCESS_KEY_ID": key_id,
            "CXSWEEP_CXONE_ACCESS_KEY_SECRET": key_secret,
            "CXSWEEP_CXONE_PHONE_COLUMNS": "PhoneNumber,MobileNumber,WorkNumber",
            "CXSWEEP_CXONE_JOB_POLL_SECONDS": "1",
        }
    )
    list_id = "6100042"
    stack.sim.put_call_list(list_id, count=150, seed=42)
    # The upload is held 4 s before it is served: the worker dies with it in flight.
    stack.sim.add_faults(
        [{"method": "POST", "path": "/upload$", "action": "hang", "seconds": 4, "times": 1}]
    )
    first = stack.start_worker("a")
    cli = stack.run_cli(list_id, "--timeout", "400", "--allow-purge-ratio", "1")
    assert wait_until(lambda: stack.sim.stats()["requests"].get("upload", 0) >= 1, timeout=120)
    for pid in child_pids(first.pid):
        os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: "signal 9" in stack.worker_log("a"), timeout=10)
    # The platform took the file all the same.
    assert wait_until(lambda: stack.sim.stats()["jobs_submitted"] == 1, timeout=10)
    stack.start_worker("b")
    code, record, err = finish(cli, timeout=420)
    assert record is not None, err
    assert record["status"] == "completed" and code == 0, record
    assert record["success_count"] == record["planned_updates"] > 0
    stats = stack.sim.stats()
    assert stats["jobs_submitted"] == 1, "the rows were uploaded again"
    assert stats["requests"]["jobs"] >= 1
    logs = stack.worker_log("a") + stack.worker_log("b")
    assert "was lost with its answer: following it" in logs
