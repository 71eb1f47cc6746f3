"""The sanitize stage of a sweep through Celery: two worker processes against one.

Not a test: prints its figures. In one run, on a private Redis: stores P pages of
messy contacts under a run's keys (as fetch_page leaves them), starts a CPU worker
(prefork) with one process, sends every page's ``sanitize_page`` task, times until all
are committed; then the same with two processes. Prints pages/s and contacts/s of
each and the speed-up (target >= 1.7x).

    .venv/bin/python bench/sanitize_workers.py [--pages 200] [--page-size 500]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from console.demo import worker_command  # noqa: E402
from cxsweep.runs import keys  # noqa: E402
from devtools.localredis import LocalRedis  # noqa: E402
from devtools.seed import messy_contacts  # noqa: E402


def run_once(processes: int, pages: int, page_size: int, work: Path, server: LocalRedis) -> float:
    env = {
        **os.environ,
        "CXSWEEP_ENV_FILE": os.devnull,
        "CXSWEEP_REDIS_URL": server.url,
        # Sanitizing calls no API; the settings only need to be complete.
        "CXSWEEP_API_URL": "http://127.0.0.1:9",
        "CXSWEEP_CLIENT_ID": "bench",
        "CXSWEEP_CLIENT_SECRET": "bench",
        "CXSWEEP_METRICS_PORT": "0",
    }
    os.environ.update(env)
    from cxsweep.redisconn import get_redis
    from cxsweep.runs.store import RunStore, prepare_run

    client = get_redis(server.url)
    client.flushall()
    run_id = prepare_run(client, "bench-list", dry_run=True)
    store = RunStore(client, run_id)
    contacts = messy_contacts("bench-list", pages * page_size, seed=5)
    for page_no in range(pages):
        store.store_page(page_no, contacts[page_no * page_size : (page_no + 1) * page_size])
    log = open(work / f"worker-{processes}.log", "wb")  # noqa: SIM115 - lives with the child
    worker = subprocess.Popen(
        worker_command(
            f"sanitize{processes}", pool="prefork", concurrency=processes, queues="cxsweep.cpu"
        ),
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        from workers import app

        deadline = time.monotonic() + 60
        while not app.control.ping(timeout=0.5):
            if time.monotonic() > deadline:
                raise SystemExit(f"worker did not start; see {work}")
        # Warm every child (imports, phonenumbers metadata) before the clock starts.
        warm = RunStore(client, prepare_run(client, "warm-list", dry_run=True))
        for page_no in range(processes * 2):
            warm.store_page(page_no, contacts[:page_size])
            app.send_task("tasks.sweep.sanitize_page", args=[warm.run_id, page_no])
        while warm.counts().get(keys.PAGES_SANITIZED, 0) < processes * 2:
            time.sleep(0.05)
        started = time.perf_counter()
        for page_no in range(pages):
            app.send_task("tasks.sweep.sanitize_page", args=[run_id, page_no])
        while store.counts().get(keys.PAGES_SANITIZED, 0) < pages:
            time.sleep(0.02)
        return time.perf_counter() - started
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--page-size", type=int, default=500)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cxsweep-bench-sanitize-"))
    contacts = args.pages * args.page_size
    print(
        f"sanitize stage through Celery: {args.pages} pages of {args.page_size} contacts,"
        f" {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores; logs in {work}"
    )
    seconds = {}
    # One Redis for both runs: the Celery app binds its broker on first import.
    server = LocalRedis(directory=str(work / "redis")).start()
    try:
        for processes in (1, 2):
            seconds[processes] = run_once(processes, args.pages, args.page_size, work, server)
            print(
                f"  {processes} process(es): {seconds[processes]:6.2f} s"
                f"  {args.pages / seconds[processes]:7.1f} pages/s"
                f"  {contacts / seconds[processes]:9,.0f} contacts/s",
                flush=True,
            )
    finally:
        server.stop()
    speedup = seconds[1] / seconds[2]
    verdict = "PASS" if speedup >= 1.7 else "FAIL"
    print(f"{verdict}  two processes are {speedup:.2f}x one (target >= 1.7x)")


if __name__ == "__main__":
    main()
