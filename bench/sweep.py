"""cxsweep against its floor and against the original sequential loop. Not a test.

    .venv/bin/python bench/sweep.py [--quick] [--scenario throttled|unthrottled|scale|all]

In one run: a private redis-server, the simulator in its own process (its threads must
not compete with this one for the GIL; it is driven over its /_sim/ control API), a
seeded messy list of N contacts (page size 500; ~10% rejects, ~60% not in E.164), then
for each scenario

1. the baseline (``bench/_baseline.py``, a subprocess): one request at a time, PATCH of
   every valid contact in batches of 100, one DELETE per reject, 429s slept out;
2. cxsweep: K worker processes (``celery -A workers worker``; by default one I/O worker
   with a thread pool and one CPU worker with one prefork child), a run started with
   ``cli.start_run`` and followed in Redis until its record is written.

Redis is flushed (and its peak-memory statistic reset) and the list re-seeded before
every run, and the workers are started afresh, so every run starts from the same state.
Wall time runs from ``start_run`` (which fetches the token) to the run's record.

Prints per run: wall seconds, requests by kind, 429s, the minimum number of requests
(1 token + ceil(N/500) reads + ceil(changed/100) PATCHes + one DELETE per reject; the
re-reads that check freshness before the writes and confirm the removals after them,
a read a page each, are counted and checked apart), the
floor (minimum / R), wall / floor, the speed-up over the baseline, the workers' peak RSS
(all worker processes and their pool children, summed, sampled every 0.2 s) and Redis's
``used_memory_peak``; then every target with PASS or FAIL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from cxsweep.demo import stop_workers, worker_command  # noqa: E402
from cxsweep.localredis import LocalRedis, free_port  # noqa: E402

LIST_ID = "bench-list"
CLIENT_ID, CLIENT_SECRET = "demo-client", "demo-secret"
PAGE_SIZE = 500
SEED = 7


# ----------------------------------------------------------------------------- plumbing


class SimProcess:
    """``python -m cxsweep.simulator`` in a child process, driven over /_sim/."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log_dir / "simulator.log", "wb")  # noqa: SIM115 - lives with the child
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cxsweep.simulator",
                "--port",
                str(self.port),
                "--page-size",
                str(PAGE_SIZE),
            ],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.http = requests.Session()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if self.http.get(f"{self.url}/_sim/config", timeout=1).ok:
                    return
            if self.process.poll() is not None:
                raise SystemExit(f"the simulator exited at start; see {log_dir}/simulator.log")
            time.sleep(0.1)
        raise SystemExit("the simulator did not answer within 30 s")

    def reset(self, count: int, *, latency_ms: float, rate_limit: float) -> None:
        """Fresh state: the seeded list, this latency and tenant limit, zeroed stats."""
        body = {
            "lists": {LIST_ID: {"count": count, "seed": SEED}},
            "latency_ms": latency_ms,
            "rate_limit": rate_limit,
            "page_size": PAGE_SIZE,
        }
        answer = self.http.post(f"{self.url}/_sim/reset", json=body, timeout=600)
        answer.raise_for_status()
        size = answer.json()["lists"][LIST_ID]
        if size != count:
            raise SystemExit(f"the simulator seeded {size} contacts, not {count}")

    def stats(self) -> dict[str, Any]:
        answer = self.http.get(f"{self.url}/_sim/stats", timeout=120)
        answer.raise_for_status()
        return dict(answer.json())

    def list_size(self) -> int:
        answer = self.http.get(f"{self.url}/_sim/lists", timeout=60)
        answer.raise_for_status()
        return next(int(x["count"]) for x in answer.json()["lists"] if x["id"] == LIST_ID)

    def rss_mb(self) -> float:
        return psutil.Process(self.process.pid).memory_info().rss / 2**20

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()


class RssSampler(threading.Thread):
    """Peak of the summed RSS of some processes and all their descendants."""

    def __init__(self, pids: list[int], interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.interval = interval
        self.peak = 0
        self.peak_by_role: dict[int, int] = {}
        self._halt = threading.Event()

    def sample(self) -> None:
        total = 0
        for pid in self.pids:
            mine = 0
            try:
                parent = psutil.Process(pid)
                procs = [parent, *parent.children(recursive=True)]
            except psutil.Error:
                continue
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    mine += proc.memory_info().rss
            self.peak_by_role[pid] = max(self.peak_by_role.get(pid, 0), mine)
            total += mine
        self.peak = max(self.peak, total)

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.sample()


@dataclass
class Scenario:
    name: str
    count: int
    latency_ms: float
    rate_limit: float  # the simulated tenant's, and CXSWEEP_RATE_LIMIT; 0: none
    baseline: bool = True


@dataclass
class Result:
    system: str
    scenario: Scenario
    wall: float
    requests: dict[str, int]
    statuses: dict[str, int]
    changed: int
    rejects: int
    status: str = "completed"
    worker_rss_mb: float | None = None
    worker_rss_by_role: dict[str, float] = field(default_factory=dict)
    redis_peak_mb: float | None = None
    max_writes_per_contact: int = 0
    list_after: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def sent(self) -> int:
        return sum(self.requests.values())

    @property
    def freshness(self) -> int:
        """Requests of the re-reads: before the writes (verify) and after them (confirm)."""
        return int(self.detail.get("verify_requests", 0) + self.detail.get("confirm_requests", 0))

    @property
    def throttled(self) -> int:
        return int(self.statuses.get("429", 0))

    @property
    def minimum(self) -> int:
        n = self.scenario.count
        return 1 + math.ceil(n / PAGE_SIZE) + math.ceil(self.changed / 100) + self.rejects

    @property
    def floor(self) -> float | None:
        r = self.scenario.rate_limit
        return self.minimum / r if r > 0 else None


# ----------------------------------------------------------------------------- the bench


class Bench:
    def __init__(
        self, io_concurrency: int, cpu_concurrency: int, rate_burst: int, topology: str = "split"
    ) -> None:
        self.topology = topology
        self.work = Path(tempfile.mkdtemp(prefix="cxsweep-bench-"))
        self.redis_server = LocalRedis(directory=str(self.work / "redis")).start()
        self.redis = redis.Redis.from_url(self.redis_server.url)
        self.sim = SimProcess(self.work)
        self.io_concurrency = io_concurrency
        self.cpu_concurrency = cpu_concurrency
        self.rate_burst = rate_burst
        os.environ.update(self.env(0))

    def close(self) -> None:
        self.sim.stop()
        self.redis_server.stop()

    def env(self, rate_limit: float) -> dict[str, str]:
        return {
            "CXSWEEP_REDIS_URL": self.redis_server.url,
            "CXSWEEP_API_URL": self.sim.url,
            "CXSWEEP_CLIENT_ID": CLIENT_ID,
            "CXSWEEP_CLIENT_SECRET": CLIENT_SECRET,
            "CXSWEEP_AUDIT_LOG": str(self.work / "audit.log"),
            "CXSWEEP_RATE_LIMIT": f"{rate_limit:g}",
            "CXSWEEP_RATE_BURST": str(self.rate_burst),
            "CXSWEEP_METRICS_PORT": "0",
            "CXSWEEP_LOG_FORMAT": "text",
            "PYTHONUNBUFFERED": "1",
        }

    def fresh_state(self, sc: Scenario) -> None:
        self.redis.flushall()
        self.redis.config_resetstat()
        self.sim.reset(sc.count, latency_ms=sc.latency_ms, rate_limit=sc.rate_limit)

    # -- the baseline

    def run_baseline(self, sc: Scenario) -> Result:
        self.fresh_state(sc)
        out = subprocess.run(
            [
                sys.executable,
                str(BENCH / "_baseline.py"),
                self.sim.url,
                LIST_ID,
                CLIENT_ID,
                CLIENT_SECRET,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        child = json.loads(out.stdout)
        stats = self.sim.stats()
        return Result(
            system="baseline",
            scenario=sc,
            wall=float(child["wall"]),
            requests={k: v for k, v in stats["requests"].items() if v},
            statuses=stats["statuses"],
            changed=int(child["changed"]),
            rejects=int(child["rejects"]),
            max_writes_per_contact=max(stats["patched"].values(), default=0),
            list_after=self.sim.list_size(),
            detail=child,
        )

    # -- cxsweep

    def start_workers(self, env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
        if self.topology == "twin":
            # K=2 alike: both processes serve both queues with threads, so the write
            # phase (all I/O) uses both cores instead of leaving the CPU worker idle.
            both = "cxsweep.io,cxsweep.cpu"
            roles = [
                ("w1", both, "threads", self.io_concurrency),
                ("w2", both, "threads", self.io_concurrency),
            ]
        else:
            roles = [
                ("io", "cxsweep.io", "threads", self.io_concurrency),
                ("cpu", "cxsweep.cpu", "prefork", self.cpu_concurrency),
            ]
        procs = []
        for role, queue, pool, concurrency in roles:
            log = open(self.work / f"worker-{role}.log", "ab")  # noqa: SIM115 - lives with the child
            procs.append(
                subprocess.Popen(
                    worker_command(
                        f"bench-{role}", pool=pool, concurrency=concurrency, queues=queue
                    ),
                    cwd=ROOT,
                    env={**os.environ, **env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        from workers import app

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if len(app.control.ping(timeout=1.0)) >= len(procs):
                return procs
            if any(p.poll() is not None for p in procs):
                break
        stop_workers(procs)
        raise SystemExit(f"the workers did not come up; see {self.work}/worker-*.log")

    def run_cxsweep(self, sc: Scenario) -> Result:
        from cxsweep import cli
        from cxsweep.runs import FINAL, RunStore
        from cxsweep.settings import get_settings

        self.fresh_state(sc)
        env = self.env(sc.rate_limit)
        os.environ.update(env)
        get_settings.cache_clear()
        workers = self.start_workers(env)
        sampler = RssSampler([w.pid for w in workers])
        sampler.start()
        try:
            settings = cli._settings_for_run()
            started = time.perf_counter()
            run_id = cli.start_run(settings, LIST_ID, dry_run=False)
            store = RunStore(self.redis, run_id)
            deadline = time.monotonic() + 6 * 3600
            writing_at: float | None = None
            while True:
                raw_status, record = self.redis.hmget(store.meta_key, ["status", "record"])
                status = raw_status.decode() if isinstance(raw_status, bytes) else None
                if writing_at is None and status is not None and status != "reading":
                    writing_at = time.perf_counter() - started
                if status in FINAL and record:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"run {run_id} did not finish")
                time.sleep(0.05)
            wall = time.perf_counter() - started
        finally:
            try:
                sampler.stop()
            finally:
                stop_workers(workers)
        rec = json.loads(record)
        counts = store.counts()
        meta = store.meta()
        began = float(meta["started_at"])
        verified_at = float(meta.get("verified_at") or began)
        writes_done_at = float(meta.get("writes_done_at") or meta["finished_at"])
        info = self.redis.info("memory")
        commands = {
            name.removeprefix("cmdstat_"): int(v["calls"])
            for name, v in self.redis.info("commandstats").items()
        }
        stats = self.sim.stats()
        roles = ["io", "cpu"]
        return Result(
            system="cxsweep",
            scenario=sc,
            wall=wall,
            requests={k: v for k, v in stats["requests"].items() if v},
            statuses=stats["statuses"],
            changed=int(counts.get("to_update", 0)),
            rejects=int(counts.get("to_remove", 0)),
            status=str(rec.get("status")),
            worker_rss_mb=sampler.peak / 2**20,
            worker_rss_by_role={
                roles[i]: sampler.peak_by_role.get(w.pid, 0) / 2**20 for i, w in enumerate(workers)
            },
            redis_peak_mb=int(info["used_memory_peak"]) / 2**20,
            max_writes_per_contact=max(stats["patched"].values(), default=0),
            list_after=self.sim.list_size(),
            detail={
                "run_id": run_id,
                "retries": counts.get("retries", 0),
                "waits": counts.get("waits", 0),
                "sim_in_flight_max": stats.get("in_flight_max"),
                "sim_rss_mb": self.sim.rss_mb(),
                "message": rec.get("message", ""),
                "read_phase": writing_at if writing_at is not None else wall,
                # Seconds the writes waited for the verify pass, and the confirm pass took.
                "verify_s": max(0.0, verified_at - began - (writing_at or 0.0)),
                "confirm_s": float(meta["finished_at"]) - writes_done_at,
                **{
                    f"{kind}_{what}": counts.get(f"{kind}_{what}", 0)
                    for kind in ("verify", "confirm")
                    for what in ("requests", "pages")
                },
                "redis_commands": commands,
            },
        )

    def sim_ceiling(self, count: int) -> dict[str, Any]:
        self.redis.flushall()
        self.sim.reset(count, latency_ms=0, rate_limit=0)
        out = subprocess.run(
            [sys.executable, str(BENCH / "_simceiling.py"), self.sim.url, LIST_ID, "4", "2", "8"],
            check=True,
            capture_output=True,
            text=True,
        )
        return dict(json.loads(out.stdout))


# ----------------------------------------------------------------------------- reporting


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def print_table(results: list[Result], baselines: dict[tuple[str, int], Result]) -> None:
    head = (
        f"{'scenario':<12}{'system':<9}{'N':>9}{'wall s':>9}{'sent':>8}{'token':>6}{'read':>6}"
        f"{'patch':>7}{'delete':>8}{'429':>6}{'min req':>9}{'floor s':>9}{'wall/fl':>8}"
        f"{'speedup':>8}{'wrk MB':>8}{'redis MB':>9}{'status':>11}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        base = baselines.get((r.scenario.name, r.scenario.count))
        floor = r.floor
        speedup = (
            f"{base.wall / r.wall:.1f}x" if base is not None and r.system == "cxsweep" else "-"
        )
        print(
            f"{r.scenario.name:<12}{r.system:<9}{r.scenario.count:>9,}{r.wall:>9.2f}{r.sent:>8}"
            f"{r.requests.get('token', 0):>6}{r.requests.get('read', 0):>6}"
            f"{r.requests.get('patch', 0):>7}{r.requests.get('delete', 0):>8}{r.throttled:>6}"
            f"{r.minimum:>9}{'-' if floor is None else f'{floor:.2f}':>9}"
            f"{'-' if floor is None else f'{r.wall / floor:.2f}':>8}{speedup:>8}"
            f"{_mb(r.worker_rss_mb):>8}{_mb(r.redis_peak_mb):>9}{r.status:>11}"
        )
    print()
    for r in results:
        extra = ""
        if r.system == "cxsweep":
            extra = (
                " worker RSS by role "
                + ", ".join(f"{k} {v:.0f} MB" for k, v in r.worker_rss_by_role.items())
                + ";"
                + " Redis commands {:,} ({:.1f}/contact; top: {});".format(
                    sum(r.detail["redis_commands"].values()),
                    sum(r.detail["redis_commands"].values()) / r.scenario.count,
                    ", ".join(
                        f"{k} {v:,}"
                        for k, v in sorted(
                            r.detail["redis_commands"].items(), key=lambda kv: -kv[1]
                        )[:8]
                    ),
                )
                + f" freshness re-reads {r.freshness} requests"
                f" (verify {r.detail['verify_requests']} for {r.detail['verify_pages']} pages,"
                f" confirm {r.detail['confirm_requests']} for {r.detail['confirm_pages']} pages),"
                f" {100 * r.freshness / max(1, r.sent):.2f}% of {r.sent} sent, taking"
                f" {r.detail['verify_s']:.1f} s + {r.detail['confirm_s']:.1f} s;"
                + f" read+plan phase {r.detail['read_phase']:.1f} s,"
                f" write phase {r.wall - r.detail['read_phase']:.1f} s;"
                f" retries {r.detail['retries']}, limiter waits {r.detail['waits']};"
                f" simulator in-flight max {r.detail['sim_in_flight_max']},"
                f" RSS {r.detail['sim_rss_mb']:.0f} MB"
            )
        else:
            d = r.detail
            extra = (
                f" read+sanitize {d['read_and_sanitize']:.1f} s (sanitize {d['sanitize']:.1f} s),"
                f" writes {d['write']:.1f} s, slept on 429 {d['slept']:.0f} s"
            )
        print(
            f"  {r.scenario.name}/{r.system} N={r.scenario.count:,}: changed {r.changed},"
            f" rejects {r.rejects}, list after {r.list_after}, max writes per contact"
            f" {r.max_writes_per_contact}, ms/contact {1000 * r.wall / r.scenario.count:.3f};"
            + extra
        )
    print()


def verdicts(results: list[Result], baselines: dict[tuple[str, int], Result]) -> list[str]:
    lines: list[str] = []

    def check(ok: bool, text: str) -> None:
        lines.append(f"{'PASS' if ok else 'FAIL'}  {text}")

    mine = [r for r in results if r.system == "cxsweep"]
    for r in mine:
        check(r.status == "completed", f"{r.scenario.name} N={r.scenario.count:,}: run completed")
        base = baselines.get((r.scenario.name, r.scenario.count))
        if base is not None and (base.changed, base.rejects) != (r.changed, r.rejects):
            check(
                False,
                f"{r.scenario.name}: plans agree (baseline changed/rejects"
                f" {base.changed}/{base.rejects}, cxsweep {r.changed}/{r.rejects})",
            )
    for r in mine:
        sc = r.scenario
        if sc.name == "throttled" and r.floor is not None:
            check(
                r.wall <= 1.15 * r.floor,
                f"throttled: wall {r.wall:.2f} s <= 1.15 x floor {r.floor:.2f} s"
                f" (= {1.15 * r.floor:.2f} s; ratio {r.wall / r.floor:.3f})",
            )
            check(
                r.throttled <= 0.01 * r.sent,
                f"throttled: 429s {r.throttled} <= 1% of {r.sent} requests",
            )
            check(
                r.sent - r.freshness <= 1.02 * r.minimum,
                f"throttled: requests sent {r.sent - r.freshness} (without the re-reads)"
                f" <= 1.02 x minimum {r.minimum} (= {1.02 * r.minimum:.0f})",
            )
        if r.system == "cxsweep":
            # The freshness re-reads: one request a page, before the writes and after.
            pages = math.ceil(sc.count / PAGE_SIZE)
            check(
                r.freshness <= 2 * pages + 2,
                f"{sc.name} N={sc.count:,}: re-reads {r.freshness} requests <= 2 x {pages}"
                f" pages + 2 ({100 * r.freshness / max(1, r.sent):.2f}% of {r.sent} sent)",
            )
        if sc.name == "unthrottled":
            base = baselines.get((sc.name, sc.count))
            if base is not None:
                check(
                    base.wall >= 8 * r.wall,
                    f"unthrottled: cxsweep {r.wall:.2f} s is {base.wall / r.wall:.1f}x faster"
                    f" than the baseline {base.wall:.2f} s (target >= 8x)",
                )
        if sc.name == "scale":
            check(
                (r.worker_rss_mb or 0) <= 300,
                f"scale N={sc.count:,}: worker peak RSS {r.worker_rss_mb:.0f} MB <= 300 MB",
            )
            check(
                (r.redis_peak_mb or 0) <= 300,
                f"scale N={sc.count:,}: Redis used_memory_peak {r.redis_peak_mb:.0f} MB <= 300 MB",
            )
    scale = sorted((r for r in mine if r.scenario.name == "scale"), key=lambda r: r.scenario.count)
    if len(scale) >= 2:
        small, big = scale[0], scale[-1]
        per_small = small.wall / small.scenario.count
        per_big = big.wall / big.scenario.count
        check(
            per_big <= 1.2 * per_small,
            f"scale: s/contact at N={big.scenario.count:,} ({per_big * 1e6:.1f} us) within 1.2x"
            f" of N={small.scenario.count:,} ({per_small * 1e6:.1f} us): ratio"
            f" {per_big / per_small:.2f}",
        )
    return lines


def scenarios(which: str, quick: bool) -> list[Scenario]:
    n = 2_000 if quick else 20_000
    small, big = (5_000, 20_000) if quick else (100_000, 1_000_000)
    table = {
        "throttled": [Scenario("throttled", n, latency_ms=20, rate_limit=100)],
        "unthrottled": [Scenario("unthrottled", n, latency_ms=20, rate_limit=0)],
        "scale": [
            Scenario("scale", small, latency_ms=0, rate_limit=0, baseline=True),
            Scenario("scale", big, latency_ms=0, rate_limit=0, baseline=False),
        ],
    }
    if which == "all":
        return [s for name in ("throttled", "unthrottled", "scale") for s in table[name]]
    return table[which]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N: a smoke test")
    parser.add_argument(
        "--scenario", choices=("throttled", "unthrottled", "scale", "all"), default="all"
    )
    parser.add_argument(
        "--io-concurrency", type=int, default=16, help="threads of each thread-pool worker"
    )
    parser.add_argument(
        "--topology",
        choices=("split", "twin"),
        default="twin",
        help="split: an I/O worker (threads) and a CPU worker (prefork); twin: two alike"
        " workers, threads, both queues",
    )
    parser.add_argument("--cpu-concurrency", type=int, default=1, help="prefork children")
    parser.add_argument(
        "--rate-burst", type=int, default=0, help="CXSWEEP_RATE_BURST (0: one second's worth)"
    )
    parser.add_argument("--no-baseline", action="store_true", help="run cxsweep only")
    parser.add_argument("--sizes", help="scale scenario: comma-separated N (overrides defaults)")
    args = parser.parse_args(argv)

    plan = scenarios(args.scenario, args.quick)
    if args.sizes:
        sizes = [int(x) for x in args.sizes.split(",")]
        plan = [s for s in plan if s.name != "scale"] + [
            Scenario("scale", n, latency_ms=0, rate_limit=0, baseline=i == 0)
            for i, n in enumerate(sizes)
        ]
    bench = Bench(args.io_concurrency, args.cpu_concurrency, args.rate_burst, args.topology)
    print(
        f"cxsweep bench {time.strftime('%Y-%m-%d %H:%M')} on {os.uname().nodename}"
        f" ({os.cpu_count()} cores); redis {bench.redis_server.url}, simulator {bench.sim.url};"
        + (
            f" workers: 2 x (threads x{args.io_concurrency}, both queues);"
            if args.topology == "twin"
            else f" workers: io threads x{args.io_concurrency}"
            f" + cpu prefork x{args.cpu_concurrency};"
        )
        + f" CXSWEEP_RATE_BURST={args.rate_burst}; logs in {bench.work}",
        flush=True,
    )
    results: list[Result] = []
    baselines: dict[tuple[str, int], Result] = {}
    try:
        if any(s.name == "scale" for s in plan):
            ceiling = bench.sim_ceiling(min(s.count for s in plan if s.name == "scale"))
            print(
                f"simulator alone at L=0: {ceiling['delete_per_s']:.0f} DELETE/s from 16 client"
                f" threads in 2 processes; one page read of {PAGE_SIZE} contacts"
                f" {ceiling['read_page_ms']:.1f} ms",
                flush=True,
            )
        for sc in plan:
            if sc.baseline and not args.no_baseline:
                r = bench.run_baseline(sc)
                baselines[(sc.name, sc.count)] = r
                results.append(r)
                print(f"  {sc.name} N={sc.count:,} baseline: {r.wall:.2f} s", flush=True)
            r = bench.run_cxsweep(sc)
            results.append(r)
            print(f"  {sc.name} N={sc.count:,} cxsweep: {r.wall:.2f} s ({r.status})", flush=True)
    finally:
        bench.close()
    print()
    print_table(results, baselines)
    lines = verdicts(results, baselines)
    for line in lines:
        print(line)
    return 0 if all(line.startswith("PASS") for line in lines) else 1


if __name__ == "__main__":
    sys.exit(main())
