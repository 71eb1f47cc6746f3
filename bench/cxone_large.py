"""cxsweep on the largest calling list CXone allows: memory, not speed. Not a test.

    .venv/bin/python bench/cxone_large.py [--count 500000]

A private redis-server, the simulator in its own process (serving NICE's schema: the
list whole in one answer, status-only upload jobs) seeded with one calling list of
``--count`` multi-phone records, and two worker processes as an operator runs them (one
I/O worker with threads, one CPU worker with a prefork child). One real sweep
(``launch.start_run``, followed in Redis until its record is written) with
CXSWEEP_BACKEND=cxone and the API found by discovery from CXSWEEP_CXONE_AUTH_URL.

Prints the wall time, the run's counts, the requests by kind, each worker's peak RSS
(the process and its pool children, sampled every 0.2 s) and Redis's
``used_memory_peak``, then each against the 300 MB target with PASS or FAIL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sweep import RssSampler  # noqa: E402

from console.demo import stop_workers, worker_command  # noqa: E402
from devtools.localredis import LocalRedis, free_port  # noqa: E402

LIST_ID = "7000001"
TARGET_MB = 300.0


def start_simulator(work: Path, count: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(work / "simulator.log", "wb")  # noqa: SIM115 - lives with the child
    command = [sys.executable, "-m", "console.cli", "simulator", "--port", str(port)]
    command += ["--lists", "0", "--call-lists", "0"]
    command += ["--call-list", f"{LIST_ID}:{count}:7", "--job-delay", "1"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 900  # seeding half a million records takes a while
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}/_sim/config", timeout=1).ok:
                return process, url
        if process.poll() is not None:
            raise SystemExit(f"the simulator exited; see {work}/simulator.log")
        time.sleep(0.5)
    raise SystemExit("the simulator did not answer")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500_000)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="cxsweep-cxone-bench-"))
    redis_server = LocalRedis(directory=str(work / "redis")).start()
    sim, sim_url = start_simulator(work, args.count)
    env = {
        "CXSWEEP_ENV_FILE": os.devnull,
        "CXSWEEP_BACKEND": "cxone",
        "CXSWEEP_REDIS_URL": redis_server.url,
        "CXSWEEP_CXONE_AUTH_URL": sim_url,
        "CXSWEEP_CLIENT_ID": "demo-client",
        "CXSWEEP_CLIENT_SECRET": "demo-secret",
        "CXSWEEP_CXONE_ACCESS_KEY_ID": "demo-key-id",
        "CXSWEEP_CXONE_ACCESS_KEY_SECRET": "demo-key-secret",
        "CXSWEEP_CXONE_PHONE_COLUMNS": "PhoneNumber,MobileNumber,WorkNumber",
        "CXSWEEP_CXONE_JOB_POLL_SECONDS": "1",
        "CXSWEEP_AUDIT_LOG": str(work / "audit.log"),
        "CXSWEEP_RATE_LIMIT": "0",
        "CXSWEEP_METRICS_PORT": "0",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.pop("CXSWEEP_API_URL", None)
    os.environ.update(env)
    roles = [("io", "cxsweep.io", "threads", 8), ("cpu", "cxsweep.cpu", "prefork", 1)]
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for role, queue, pool, concurrency in roles:
            log = open(work / f"worker-{role}.log", "wb")  # noqa: SIM115 - lives with the child
            command = worker_command(
                f"cxbench-{role}", pool=pool, concurrency=concurrency, queues=queue
            )
            workers.append(
                subprocess.Popen(command, cwd=ROOT, env=os.environ.copy(), stdout=log, stderr=log)
            )
        from workers import app

        while len(app.control.ping(timeout=1.0)) < len(workers):
            if any(w.poll() is not None for w in workers):
                raise SystemExit(f"a worker exited; see {work}/worker-*.log")

        from console import launch
        from cxsweep.runs.store import FINAL, RunStore

        client = redis.Redis.from_url(redis_server.url)
        client.config_resetstat()
        sampler = RssSampler([w.pid for w in workers])
        sampler.start()
        started = time.perf_counter()
        run_id = launch.start_run(launch.settings_for_run(), LIST_ID, dry_run=False)
        store = RunStore(client, run_id)
        while True:
            found = client.hmget(store.meta_key, ["status", "record"])
            status, record = cast(list[bytes | None], found)
            if status is not None and status.decode() in FINAL and record:
                break
            time.sleep(0.2)
        wall = time.perf_counter() - started
        sampler.stop()
        rec = json.loads(record)
        peak_redis = int(client.info("memory")["used_memory_peak"]) / 2**20
        stats = requests.get(f"{sim_url}/_sim/stats", timeout=300).json()
    finally:
        stop_workers(workers)
        sim.terminate()
        sim.wait(timeout=30)
        redis_server.stop()

    print(f"calling list of {args.count:,} records, swept in {wall:.0f} s: {rec['status']}")
    for key in ("total_processed", "success_count", "purge_count", "failure_count"):
        print(f"  {key}: {rec.get(key)}")
    if rec.get("message"):
        print(f"  message: {rec['message']}")
    print("  requests: " + ", ".join(f"{k} {v}" for k, v in stats["requests"].items() if v))
    verdicts = [
        (f"worker {role} peak RSS", sampler.peak_by_role.get(w.pid, 0) / 2**20)
        for (role, *_), w in zip(roles, workers, strict=True)
    ]
    verdicts.append(("Redis used_memory_peak", peak_redis))
    failed = rec["status"] != "completed"
    for name, megabytes in verdicts:
        ok = megabytes <= TARGET_MB
        failed |= not ok
        print(f"{'PASS' if ok else 'FAIL'}  {name} {megabytes:.0f} MB <= {TARGET_MB:.0f} MB")
    print(f"(files in {work})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
