"""``cxsweep demo``: the whole job on embedded defaults, on one machine.

A simulator with a seeded messy list (with some 429s, 5xx and a token revocation along
the way), the Redis at ``CXSWEEP_REDIS_URL`` or a private one, real worker processes,
one sweep, the summary and where the audit line went.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from cxsweep.errors import CxsweepError
from cxsweep.redisconn import get_redis
from cxsweep.runs.store import persistence_problem
from cxsweep.settings import get_settings, masked_url
from devtools.localredis import LocalRedis, redis_answers

DEMO_LIST = "demo-list"
CLIENT_ID, CLIENT_SECRET = "demo-client", "demo-secret"


def worker_command(
    name: str,
    *,
    pool: str,
    concurrency: int,
    queues: str | None = None,
    loglevel: str = "WARNING",
) -> list[str]:
    """``celery -A workers worker`` as this machine's Python runs it (demo, benches, tests);
    no ``queues`` serves every queue of the app."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers",
        "worker",
        "--hostname",
        f"{name}@%h",
        "--pool",
        pool,
        "--concurrency",
        str(concurrency),
        "--loglevel",
        loglevel,
        "--without-gossip",
        "--without-mingle",
    ]
    return command + (["--queues", queues] if queues else [])


def start_workers(env: dict[str, str], count: int, log_dir: Path) -> list[subprocess.Popen[bytes]]:
    """Worker processes as an operator would run them: one I/O (threads), the rest CPU."""
    workers = []
    for number in range(count):
        io = number == 0
        command = worker_command(
            f"demo{number}-{'io' if io else 'cpu'}",
            pool="threads" if io else "prefork",
            concurrency=16 if io else 1,
            queues=("cxsweep.io" if io else "cxsweep.cpu") if count > 1 else None,
        )
        log = open(log_dir / f"worker-{number}.log", "wb")  # noqa: SIM115 - lives with the child
        workers.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
    return workers


def wait_for_workers(count: int, timeout: float = 60.0) -> None:
    from workers import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0)
        if len(replies) >= count:
            return
    raise CxsweepError(f"workers did not come up within {timeout:.0f}s")


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def run_demo(contacts: int = 5000, workers: int = 2, keep: bool = False) -> int:
    from console import launch
    from console.summary import print_summary
    from devtools.simulator import SimConfig, Simulator

    work_dir = Path(tempfile.mkdtemp(prefix="cxsweep-demo-"))
    private_redis: LocalRedis | None = None
    worker_procs: list[subprocess.Popen[bytes]] = []
    redis_url = os.environ.get("CXSWEEP_REDIS_URL", "redis://127.0.0.1:6379/0")
    if redis_answers(redis_url):
        print(f"using the Redis at {masked_url(redis_url)}")
    else:
        # On this machine's address, where the operator asked for it; elsewhere we cannot
        # start one, so a private one on a free port.
        parts = urlsplit(redis_url)
        local = parts.hostname in ("127.0.0.1", "localhost") and parts.scheme == "redis"
        private_redis = LocalRedis(
            port=(parts.port or 6379) if local else None, directory=str(work_dir / "redis")
        ).start()
        redis_url = redis_url if local else private_redis.url
        print(f"no Redis answered; started a private redis-server at {redis_url}")

    sim = Simulator(SimConfig(page_size=500, token_lifetime=600, seed=7, rate_limit=300)).start()
    sim.put_list(DEMO_LIST, count=contacts, seed=7)
    original = {c["id"]: dict(c) for c in sim.get_list(DEMO_LIST)}
    # A taste of a real platform's weather: throttling, server errors, a revoked token.
    sim.add_faults(
        [
            {
                "method": "GET",
                "path": "/contactlists/",
                "action": 429,
                "after": 1,
                "times": 2,
                "retry_after": "1",
            },
            {"method": "PATCH", "path": "/contacts$", "action": 503, "after": 3, "times": 2},
            {"method": "DELETE", "path": "/contacts/", "action": 502, "after": 10, "times": 1},
        ]
    )
    revoker = threading.Timer(1.0, sim.revoke_tokens)
    revoker.daemon = True

    audit_log = str(Path.cwd() / "sanitization_audit.log")
    env = dict(os.environ)
    env.update(
        {
            "CXSWEEP_REDIS_URL": redis_url,
            "CXSWEEP_API_URL": sim.url,
            "CXSWEEP_CLIENT_ID": CLIENT_ID,
            "CXSWEEP_CLIENT_SECRET": CLIENT_SECRET,
            "CXSWEEP_AUDIT_LOG": audit_log,
            "CXSWEEP_AGGREGATOR_URL": f"{sim.url}/_sim/webhook",
            # The simulated tenant allows 300 requests/s; the fleet paces itself below that.
            "CXSWEEP_RATE_LIMIT": os.environ.get("CXSWEEP_RATE_LIMIT", "250"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        print(f"simulator at {sim.url} serving list {DEMO_LIST!r} with {contacts} messy contacts")
        worker_procs = start_workers(env, workers, work_dir)
        wait_for_workers(len(worker_procs))
        logs = f" (logs in {work_dir})" if keep else " (--keep keeps their logs)"
        print(f"{len(worker_procs)} worker process(es) up{logs}")
        settings = launch.settings_for_run()
        started = time.monotonic()
        # The demo's list lives in the simulator, so a Redis that would lose the run's
        # archive on a restart risks nothing here; a real run refuses such a Redis.
        volatile = persistence_problem(get_redis(redis_url))
        if volatile:
            print(
                f"the Redis at {masked_url(redis_url)} {volatile}: the demo writes anyway"
                " (its list is the simulator's); `cxsweep run` would refuse without"
                " --allow-volatile-redis"
            )
        options = {"allow_volatile_redis": True} if volatile else None
        run_id = launch.start_run(settings, DEMO_LIST, dry_run=False, options=options)
        revoker.start()
        record = launch.wait_for_run(settings, run_id, timeout=600)
        seconds = time.monotonic() - started
        # Let the webhook task deliver before the simulator goes away.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not sim.webhooks():
            time.sleep(0.1)
        print()
        print_summary(record)
        stats = sim.stats()
        final = {c["id"]: c for c in sim.get_list(DEMO_LIST)}
        untouched = all(
            {k: v for k, v in c.items() if k != "phone"}
            == {k: v for k, v in original[cid].items() if k != "phone"}
            for cid, c in final.items()
        )
        print()
        print(
            f"{contacts} contacts swept in {seconds:.1f} s; requests by kind: "
            + ", ".join(f"{k} {v}" for k, v in stats["requests"].items() if v)
        )
        print(f"the simulator answered {stats['statuses']}; token grants {stats['token_grants']}")
        print(
            f"list now holds {len(final)} contacts; other fields untouched: {untouched}; "
            f"webhooks received: {len(sim.webhooks())}"
        )
        print(f"audit line appended to {audit_log}")
        return 0 if record["status"] == "completed" else 1
    finally:
        with contextlib.suppress(Exception):
            revoker.cancel()
        stop_workers(worker_procs)
        sim.stop()
        if private_redis is not None:
            private_redis.stop()
        if not keep:
            import shutil

            shutil.rmtree(work_dir, ignore_errors=True)
