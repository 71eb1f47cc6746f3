"""cxsweep against its floor and against the original sequential loop. Not a test.

    .venv/bin/python bench/sweep.py [--quick]
        [--scenario throttled|unthrottled|scale|nightly|fixedcost|all] [--py-spy DIR]

In one run: a private redis-server, the simulator in its own process (its threads must
not compete with this one for the GIL; it is driven over its /_sim/ control API), a
seeded messy list of N contacts (page size 500; ~10% rejects, ~60% not in E.164), then
for each scenario

1. the baseline (``bench/_baseline.py``, a subprocess): one request at a time, PATCH of
   every valid contact in batches of 100, one DELETE per reject, 429s slept out;
2. cxsweep: K worker processes (``celery -A workers worker``; by default one I/O worker
   with a thread pool and one CPU worker with one prefork child), a run started with
   ``launch.start_run`` and followed in Redis until its record is written.

Redis is flushed (and its peak-memory statistic reset) and the list re-seeded before
every run, and the workers are started afresh, so every run starts from the same state.
Wall time runs from ``start_run`` (which fetches the token) to the run's record.

Prints per run: wall seconds, requests by kind, 429s, the minimum number of requests
(1 token + ceil(N/500) reads + ceil(changed/100) PATCHes + one DELETE per reject; the
re-reads that check freshness before the writes and confirm the removals after them,
a read a page each, are counted and checked apart), the
floor (minimum / R), wall / floor, the speed-up over the baseline, the workers' peak RSS
(all worker processes and their pool children, summed, sampled every 0.2 s) and Redis's
``used_memory_peak``, the CPU seconds per contact of cxsweep's workers (pool children
included) and of its Redis next to the baseline's own (psutil; the ratio is the L=0
target); then every target with PASS or FAIL.

The L=0 CPU comparison (``scale`` at 100,000) runs each side twice, alternated: the
loop, cxsweep, cxsweep, the loop. This machine's speed drifts by a tenth or more from
one minute to the next (the same code measured 22.9 and 29.9 s of CPU minutes apart),
and a ratio of two runs taken a minute apart measured the drift as much as the code;
the order cancels a steady drift, and the verdict compares the means (each pair's
ratio is printed with it).

Two scenarios have no baseline: ``nightly``, one all-lists sweep of 40 seeded lists
fired by a real ``celery -A workers beat`` (wall time from the scheduled minute to the
last run's record, against the sweep's minimal requests / R), and ``fixedcost``, the
real ``cxsweep run`` as a subprocess on a list of 3,000, wall minus floor, phase by phase.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import psutil
import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from console.demo import stop_workers, worker_command  # noqa: E402
from cxsweep.runs import keys  # noqa: E402
from devtools.localredis import LocalRedis, free_port  # noqa: E402

LIST_ID = "bench-list"
CLIENT_ID, CLIENT_SECRET = "demo-client", "demo-secret"
PAGE_SIZE = 500
SEED = 7


# ----------------------------------------------------------------------------- plumbing


class SimProcess:
    """``cxsweep simulator`` in a child process, driven over /_sim/."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log_dir / "simulator.log", "wb")  # noqa: SIM115 - lives with the child
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "console.cli",
                "simulator",
                "--lists",
                "0",
                "--call-lists",
                "0",
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

    def reset(
        self,
        count: int,
        *,
        latency_ms: float,
        rate_limit: float,
        lists: dict[str, int] | None = None,
    ) -> None:
        """Fresh state: the seeded list (or these lists: id -> size, each seeded by its
        rank), this latency and tenant limit, zeroed stats."""
        wanted = lists if lists is not None else {LIST_ID: count}
        body = {
            "lists": {
                list_id: {"count": size, "seed": SEED + rank}
                for rank, (list_id, size) in enumerate(wanted.items())
            },
            "latency_ms": latency_ms,
            "rate_limit": rate_limit,
            "page_size": PAGE_SIZE,
        }
        answer = self.http.post(f"{self.url}/_sim/reset", json=body, timeout=600)
        answer.raise_for_status()
        sizes = answer.json()["lists"]
        for list_id, size in wanted.items():
            if sizes.get(list_id) != size:
                raise SystemExit(
                    f"the simulator seeded {sizes.get(list_id)} contacts in {list_id}, not {size}"
                )

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


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


class RssSampler(threading.Thread):
    """Peak of the summed RSS of some processes and all their descendants, and the CPU
    seconds they used from ``start()`` on (every process seen, pool children included,
    at its last sample: a child that exits between two samples loses at most 0.2 s of
    its CPU, and Celery's pool children live as long as their worker)."""

    def __init__(self, pids: list[int], interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.interval = interval
        self.peak = 0
        self.peak_by_role: dict[int, int] = {}
        self.cpu_seen: dict[int, float] = {}
        self.cpu_root: dict[int, int] = {}
        self.cpu_at_start: dict[int, float] = {}
        self._halt = threading.Event()

    def start(self) -> None:
        # What the processes spent booting is not the run's.
        self.sample()
        self.cpu_at_start = dict(self.cpu_seen)
        super().start()

    def cpu_by_root(self) -> dict[int, float]:
        used: dict[int, float] = {}
        for pid, seconds in self.cpu_seen.items():
            root = self.cpu_root[pid]
            used[root] = used.get(root, 0.0) + seconds - self.cpu_at_start.get(pid, 0.0)
        return used

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
                    self.cpu_seen[proc.pid] = cpu_seconds(proc)
                    self.cpu_root[proc.pid] = pid
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
    #: the nightly sweep's lists (id -> size); count is their sum
    lists: dict[str, int] | None = None
    #: runs of each side, alternated (loop, cxsweep, cxsweep, loop): the CPU comparison
    rounds: int = 1


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
    #: CPU seconds over the run: the baseline's process, or cxsweep's workers (pool
    #: children included), beat where it ran, and its Redis server
    cpu_s: float | None = None
    cpu_by_role: dict[str, float] = field(default_factory=dict)
    #: the nightly sweep's: every list's minimum and the listing of lists
    minimum_override: int | None = None
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
    def cpu_us_per_contact(self) -> float | None:
        return None if self.cpu_s is None else 1e6 * self.cpu_s / self.scenario.count

    @property
    def minimum(self) -> int:
        if self.minimum_override is not None:
            return self.minimum_override
        n = self.scenario.count
        return 1 + math.ceil(n / PAGE_SIZE) + math.ceil(self.changed / 100) + self.rejects

    @property
    def floor(self) -> float | None:
        r = self.scenario.rate_limit
        return self.minimum / r if r > 0 else None


# ----------------------------------------------------------------------------- the bench


class Bench:
    def __init__(
        self,
        io_concurrency: int,
        cpu_concurrency: int,
        rate_burst: int,
        topology: str = "split",
        py_spy: Path | None = None,
    ) -> None:
        self.topology = topology
        self.py_spy = py_spy
        # --py-spy-whole: the whole run, read phase included, not only its writes.
        self.py_spy_whole = False
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

    def redis_cpu(self) -> float:
        assert self.redis_server.process is not None
        return cpu_seconds(psutil.Process(self.redis_server.process.pid))

    def worker_roles(self) -> list[str]:
        return ["w1", "w2"] if self.topology == "twin" else ["io", "cpu"]

    def redis_commands(self) -> dict[str, int]:
        return {
            name.removeprefix("cmdstat_"): int(v["calls"])
            for name, v in self.redis.info("commandstats").items()
        }

    def start_py_spy(self, workers: list[subprocess.Popen[bytes]], tag: str) -> list[Any]:
        """py-spy on every worker (collapsed stacks, CPU samples only) until stopped."""
        if self.py_spy is None:
            return []
        self.py_spy.mkdir(parents=True, exist_ok=True)
        spies = []
        for role, worker in zip(self.worker_roles(), workers, strict=False):
            out = self.py_spy / f"{tag}-{role}.txt"
            spies.append(
                subprocess.Popen(
                    [
                        str(Path(sys.executable).with_name("py-spy")),
                        "record",
                        "--pid",
                        str(worker.pid),
                        "--subprocesses",
                        "--format",
                        "raw",
                        "--full-filenames",
                        "--rate",
                        "100",
                        # Only the thread holding the GIL: where the CPU goes, not where
                        # threads wait (a thread blocked on a socket read looks busy).
                        "--gil",
                        "--output",
                        str(out),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=open(self.py_spy / f"{tag}-{role}.log", "wb"),  # noqa: SIM115
                )
            )
        return spies

    @staticmethod
    def stop_py_spy(spies: list[Any]) -> None:
        for spy in spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for spy in spies:
            try:
                spy.wait(timeout=60)
            except subprocess.TimeoutExpired:
                spy.kill()

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
            cpu_s=float(child["cpu"]),
            cpu_by_role={"client": float(child["cpu"])},
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
        from console import launch
        from cxsweep.runs.store import FINAL, RunStore
        from cxsweep.settings import get_settings

        self.fresh_state(sc)
        env = self.env(sc.rate_limit)
        os.environ.update(env)
        get_settings.cache_clear()
        workers = self.start_workers(env)
        sampler = RssSampler([w.pid for w in workers])
        sampler.start()
        redis_cpu = self.redis_cpu()
        spies: list[Any] = []
        try:
            settings = launch.settings_for_run()
            started = time.perf_counter()
            if self.py_spy_whole:
                spies = self.start_py_spy(workers, sc.name)
            run_id = launch.start_run(settings, LIST_ID, dry_run=False)
            store = RunStore(self.redis, run_id)
            deadline = time.monotonic() + 6 * 3600
            writing_at: float | None = None
            commands_at_writing: dict[str, int] = {}
            cpu_at_writing = (0.0, 0.0)
            polls = polls_at_writing = 0  # this loop's HMGETs: not cxsweep's commands
            while True:
                raw_status, record = self.redis.hmget(store.meta_key, ["status", "record"])
                polls += 1
                status = raw_status.decode() if isinstance(raw_status, bytes) else None
                if writing_at is None and status is not None and status != "reading":
                    writing_at = time.perf_counter() - started
                    if not self.py_spy_whole:
                        spies = self.start_py_spy(workers, sc.name)
                    # The write phase's own share: Redis commands and CPU from here on.
                    commands_at_writing = self.redis_commands()
                    polls_at_writing = polls
                    cpu_at_writing = sum(sampler.cpu_by_root().values()), self.redis_cpu()
                if status in FINAL and record:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"run {run_id} did not finish")
                time.sleep(0.05)
            wall = time.perf_counter() - started
        finally:
            try:
                self.stop_py_spy(spies)
                sampler.stop()
                redis_cpu = self.redis_cpu() - redis_cpu
            finally:
                stop_workers(workers)
        rec = json.loads(record)
        counts = store.counts()
        meta = store.meta()
        began = float(meta["started_at"])
        verified_at = float(meta.get("verified_at") or began)
        writes_done_at = float(meta.get("writes_done_at") or meta["finished_at"])
        info = self.redis.info("memory")
        commands = self.redis_commands()
        commands["hmget"] -= polls
        commands_at_writing["hmget"] = commands_at_writing.get("hmget", 0) - polls_at_writing
        stats = self.sim.stats()
        roles = self.worker_roles()
        cpu_by_role = {
            roles[i]: sampler.cpu_by_root().get(w.pid, 0.0) for i, w in enumerate(workers)
        }
        cpu_by_role["redis"] = redis_cpu
        write_commands = {
            k: v - commands_at_writing.get(k, 0)
            for k, v in commands.items()
            if v > commands_at_writing.get(k, 0)
        }
        workers_cpu = sum(sampler.cpu_by_root().values())
        write_cpu = {
            "workers": workers_cpu - cpu_at_writing[0],
            # redis_cpu is already this run's; what it spent before the writes, subtracted
            "redis": self.redis_cpu() - cpu_at_writing[1],
        }
        # Kept with the run's logs (and the profile): every command's count and the
        # write phase's CPU, for comparing two runs.
        phases = {"run": commands, "write_phase": write_commands, "write_cpu": write_cpu}
        for folder in (self.work, self.py_spy):
            if folder is not None:
                (folder / f"{sc.name}-redis.json").write_text(json.dumps(phases, indent=1))
        return Result(
            system="cxsweep",
            scenario=sc,
            wall=wall,
            requests={k: v for k, v in stats["requests"].items() if v},
            statuses=stats["statuses"],
            changed=int(counts.get(keys.TO_UPDATE, 0)),
            rejects=int(counts.get(keys.TO_REMOVE, 0)),
            status=str(rec.get("status")),
            worker_rss_mb=sampler.peak / 2**20,
            worker_rss_by_role={
                roles[i]: sampler.peak_by_role.get(w.pid, 0) / 2**20 for i, w in enumerate(workers)
            },
            redis_peak_mb=int(info["used_memory_peak"]) / 2**20,
            max_writes_per_contact=max(stats["patched"].values(), default=0),
            list_after=self.sim.list_size(),
            cpu_s=sum(cpu_by_role.values()),
            cpu_by_role=cpu_by_role,
            detail={
                "run_id": run_id,
                "retries": counts.get(keys.RETRIES, 0),
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
                "write_commands": write_commands,
            },
        )

    # -- the nightly sweep: beat fires tasks.schedule.sweep_all_lists

    def start_beat(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.work / "beat.log", "ab")  # noqa: SIM115 - lives with the child
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers",
                "beat",
                "--loglevel",
                "INFO",
                "--pidfile",
                str(self.work / "beat.pid"),
            ],
            # beat writes nothing else (RedBeat keeps its schedule in Redis), but a stray
            # file lands in the bench's directory, not the repository.
            cwd=self.work,
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def run_nightly(self, sc: Scenario) -> Result:
        """One all-lists sweep as beat fires it: CXSWEEP_SWEEP_SCHEDULE is set to the next
        whole minute (at least 25 s away, so that beat is up and has stored its entry
        before then: an entry stored after its time would wait for tomorrow), workers and
        beat start, and the wall time runs from that minute to the last run's record."""
        from redbeat.schedulers import RedBeatSchedulerEntry, ensure_conf

        from cxsweep.runs.keys import SWEEP_INDEX
        from cxsweep.runs.store import RunStore
        from cxsweep.runs.sweeps import SweepStore
        from cxsweep.settings import get_settings
        from workers import app

        assert sc.lists is not None
        self.redis.flushall()
        self.redis.config_resetstat()
        self.sim.reset(sc.count, latency_ms=sc.latency_ms, rate_limit=sc.rate_limit, lists=sc.lists)
        fire_at = (math.floor(time.time() / 60) + 1) * 60
        if fire_at - time.time() < 25:
            fire_at += 60
        moment = time.gmtime(fire_at)
        env = {
            **self.env(sc.rate_limit),
            "CXSWEEP_SWEEP_SCHEDULE": f"{moment.tm_min} {moment.tm_hour} * * *",
        }
        os.environ.update(env)
        get_settings.cache_clear()
        workers = self.start_workers(env)
        beat = self.start_beat(env)
        sampler: RssSampler | None = None
        redis_cpu = 0.0
        try:
            conf = ensure_conf(app)
            entry_key = RedBeatSchedulerEntry.generate_key(app, "sweep-all-lists")
            while (due := self.redis.zscore(conf.schedule_key, entry_key)) is None:
                if beat.poll() is not None or time.time() > fire_at:
                    raise SystemExit(f"beat did not store its schedule; see {self.work}/beat.log")
                time.sleep(0.2)
            if abs(due - fire_at) > 1:
                raise SystemExit(f"beat scheduled the sweep at {due}, not {fire_at}")
            time.sleep(max(0.0, fire_at - time.time() - 1.0))
            sampler = RssSampler([*(w.pid for w in workers), beat.pid])
            sampler.start()
            redis_cpu = self.redis_cpu()
            deadline = time.time() + 6 * 3600
            sweep_id: str | None = None
            while True:
                if sweep_id is None:
                    found = cast(list[bytes], self.redis.zrange(SWEEP_INDEX, 0, -1))
                    sweep_id = found[0].decode() if found else None
                if sweep_id is not None:
                    sweep = SweepStore(self.redis, sweep_id)
                    if sweep.meta().get("status") == "done":
                        break
                if time.time() > deadline:
                    raise SystemExit(f"sweep {sweep_id} did not finish")
                time.sleep(0.2)
        finally:
            try:
                if sampler is not None:
                    sampler.stop()
                    redis_cpu = self.redis_cpu() - redis_cpu
            finally:
                stop_workers([*workers, beat])
        meta = sweep.meta()
        runs = {list_id: RunStore(self.redis, run_id) for list_id, run_id in sweep.runs().items()}
        changed = rejects = minimum = 0
        statuses: dict[str, int] = {}
        started_at, finished_at = [], []
        for list_id, store in runs.items():
            run_meta, counts = store.meta(), store.counts()
            statuses[run_meta.get("status", "?")] = statuses.get(run_meta.get("status", "?"), 0) + 1
            updates = int(counts.get(keys.TO_UPDATE, 0))
            removes = int(counts.get(keys.TO_REMOVE, 0))
            changed += updates
            rejects += removes
            minimum += math.ceil(sc.lists[list_id] / PAGE_SIZE) + math.ceil(updates / 100) + removes
            started_at.append(float(run_meta["started_at"]))
            finished_at.append(float(run_meta.get("finished_at") or "nan"))
        # One token for the sweep (runs share the cached one) and the listing of lists.
        minimum += 1 + math.ceil(len(sc.lists) / PAGE_SIZE)
        wall = max(finished_at) - fire_at
        stats = self.sim.stats()
        roles = [*self.worker_roles(), "beat"]
        pids = [*(w.pid for w in workers), beat.pid]
        cpu_by_role = {roles[i]: sampler.cpu_by_root().get(pid, 0.0) for i, pid in enumerate(pids)}
        cpu_by_role["redis"] = redis_cpu
        complete = len(runs) == len(sc.lists) and statuses == {"completed": len(sc.lists)}
        return Result(
            system="cxsweep",
            scenario=sc,
            wall=wall,
            requests={k: v for k, v in stats["requests"].items() if v},
            statuses=stats["statuses"],
            changed=changed,
            rejects=rejects,
            status="completed" if complete else json.dumps(statuses),
            worker_rss_mb=sampler.peak / 2**20,
            worker_rss_by_role={
                roles[i]: sampler.peak_by_role.get(pid, 0) / 2**20 for i, pid in enumerate(pids)
            },
            redis_peak_mb=int(self.redis.info("memory")["used_memory_peak"]) / 2**20,
            max_writes_per_contact=max(stats["patched"].values(), default=0),
            cpu_s=sum(cpu_by_role.values()),
            cpu_by_role=cpu_by_role,
            minimum_override=minimum,
            detail={
                "sweep_id": sweep_id,
                "runs": len(runs),
                "run_statuses": statuses,
                "max_concurrent_runs": meta.get("max_concurrent_runs"),
                # beat's lateness, the worker's pick-up and the listing of lists
                "sweep_created": float(meta["started_at"]) - fire_at,
                "first_run_started": min(started_at) - fire_at,
                "last_run_started": max(started_at) - fire_at,
                "last_run_took": max(finished_at) - started_at[finished_at.index(max(finished_at))],
                "sim_in_flight_max": stats.get("in_flight_max"),
                "redis_commands": self.redis_commands(),
            },
        )

    # -- the fixed cost of one run: the CLI, end to end

    def run_fixed_cost(self, sc: Scenario) -> Result:
        """``cxsweep run`` as an operator types it, timed from before its process starts
        to after it exits; the run's phases are timestamped by watching its Redis state
        every 10 ms meanwhile."""
        from cxsweep.runs.keys import RUN_INDEX
        from cxsweep.runs.store import FINAL, RunStore
        from cxsweep.settings import get_settings

        self.fresh_state(sc)
        env = self.env(sc.rate_limit)
        os.environ.update(env)
        get_settings.cache_clear()
        workers = self.start_workers(env)
        sampler = RssSampler([w.pid for w in workers])
        cli = Path(sys.executable).with_name("cxsweep")
        command = [str(cli)] if cli.exists() else [sys.executable, "-m", "console.cli"]
        marks: dict[str, float] = {}
        store: RunStore | None = None
        sampler.start()
        redis_cpu = self.redis_cpu()
        try:
            marks["cli_start"] = time.time()
            proc = subprocess.Popen(
                [*command, "run", LIST_ID, "--quiet", "--json"],
                cwd=self.work,
                env={**os.environ, **env},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            while proc.poll() is None:
                now = time.time()
                if store is None:
                    newest = cast(list[bytes], self.redis.zrange(RUN_INDEX, -1, -1))
                    if newest:
                        store = RunStore(self.redis, newest[0].decode())
                else:
                    found_status = self.redis.hmget(store.meta_key, ["status"])
                    (status,) = cast(list[bytes | None], found_status)
                    pages = self.redis.hget(store.counts_key, keys.PAGES_READ)
                    if pages and "first_page" not in marks:
                        marks["first_page"] = now
                    if status in (b"writing", *(s.encode() for s in FINAL)):
                        marks.setdefault("writing", now)
                    if status is not None and status.decode() in FINAL:
                        marks.setdefault("final_seen", now)
                time.sleep(0.01)
            marks["cli_exit"] = time.time()
            out, err = proc.communicate()
        finally:
            try:
                sampler.stop()
                redis_cpu = self.redis_cpu() - redis_cpu
            finally:
                stop_workers(workers)
        if proc.returncode != 0 or store is None:
            raise SystemExit(f"cxsweep run exited {proc.returncode}: {err.decode()[-500:]}")
        meta, counts = store.meta(), store.counts()
        marks["run_stored"] = float(meta["started_at"])
        marks["finished"] = float(meta["finished_at"])
        stats = self.sim.stats()
        roles = self.worker_roles()
        cpu_by_role = {
            roles[i]: sampler.cpu_by_root().get(w.pid, 0.0) for i, w in enumerate(workers)
        }
        cpu_by_role["redis"] = redis_cpu
        return Result(
            system="cxsweep",
            scenario=sc,
            wall=marks["cli_exit"] - marks["cli_start"],
            requests={k: v for k, v in stats["requests"].items() if v},
            statuses=stats["statuses"],
            changed=int(counts.get(keys.TO_UPDATE, 0)),
            rejects=int(counts.get(keys.TO_REMOVE, 0)),
            status=str(json.loads(out)["status"]),
            worker_rss_mb=sampler.peak / 2**20,
            worker_rss_by_role={
                roles[i]: sampler.peak_by_role.get(w.pid, 0) / 2**20 for i, w in enumerate(workers)
            },
            redis_peak_mb=int(self.redis.info("memory")["used_memory_peak"]) / 2**20,
            max_writes_per_contact=max(stats["patched"].values(), default=0),
            list_after=self.sim.list_size(),
            cpu_s=sum(cpu_by_role.values()),
            cpu_by_role=cpu_by_role,
            detail={"marks": marks, "redis_commands": self.redis_commands()},
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
        f"{'speedup':>8}{'cpu us/c':>9}{'cpu/base':>9}{'wrk MB':>8}{'redis MB':>9}{'status':>11}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        base = baselines.get((r.scenario.name, r.scenario.count))
        floor = r.floor
        speedup = (
            f"{base.wall / r.wall:.1f}x" if base is not None and r.system == "cxsweep" else "-"
        )
        cpu = r.cpu_us_per_contact
        base_cpu = None if base is None else base.cpu_us_per_contact
        cpu_ratio = (
            f"{cpu / base_cpu:.2f}"
            if cpu is not None and base_cpu and r.system == "cxsweep"
            else "-"
        )
        print(
            f"{r.scenario.name:<12}{r.system:<9}{r.scenario.count:>9,}{r.wall:>9.2f}{r.sent:>8}"
            f"{r.requests.get('token', 0):>6}{r.requests.get('read', 0):>6}"
            f"{r.requests.get('patch', 0):>7}{r.requests.get('delete', 0):>8}{r.throttled:>6}"
            f"{r.minimum:>9}{'-' if floor is None else f'{floor:.2f}':>9}"
            f"{'-' if floor is None else f'{r.wall / floor:.2f}':>8}{speedup:>8}"
            f"{'-' if cpu is None else f'{cpu:.0f}':>9}{cpu_ratio:>9}"
            f"{_mb(r.worker_rss_mb):>8}{_mb(r.redis_peak_mb):>9}{r.status:>11}"
        )
    print()
    for r in results:
        extra = ""
        cpu_note = (
            ""
            if r.cpu_s is None
            else f" CPU {r.cpu_s:.1f} s ("
            + ", ".join(f"{k} {v:.1f}" for k, v in r.cpu_by_role.items())
            + ");"
        )
        if r.scenario.name == "nightly":
            d = r.detail
            extra = (
                f" sweep {d['sweep_id']}: {d['runs']} runs {d['run_statuses']},"
                f" {d['max_concurrent_runs']} at a time; from the scheduled minute: sweep"
                f" stored at {d['sweep_created']:.1f} s, first run started at"
                f" {d['first_run_started']:.1f} s, last at {d['last_run_started']:.1f} s,"
                f" the run recorded last took {d['last_run_took']:.1f} s; requests/s"
                f" {r.sent / r.wall:.1f}; simulator in-flight max {d['sim_in_flight_max']};"
                + cpu_note
                + " RSS by role "
                + ", ".join(f"{k} {v:.0f} MB" for k, v in r.worker_rss_by_role.items())
                + "; "
                + _commands_note(r)
            )
        elif r.scenario.name == "fixedcost":
            extra = " " + fixed_cost_breakdown(r) + ";" + cpu_note
        elif r.system == "cxsweep":
            extra = (
                cpu_note
                + " worker RSS by role "
                + ", ".join(f"{k} {v:.0f} MB" for k, v in r.worker_rss_by_role.items())
                + "; "
                + _commands_note(r)
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
                f" writes {d['write']:.1f} s, slept on 429 {d['slept']:.0f} s;" + cpu_note
            )
        print(
            f"  {r.scenario.name}/{r.system} N={r.scenario.count:,}: changed {r.changed},"
            f" rejects {r.rejects}, list after {r.list_after}, max writes per contact"
            f" {r.max_writes_per_contact}, ms/contact {1000 * r.wall / r.scenario.count:.3f};"
            + extra
        )
    print()


def _commands_note(r: Result) -> str:
    commands = r.detail["redis_commands"]
    total = sum(commands.values())
    top = sorted(commands.items(), key=lambda kv: -kv[1])[:8]
    note = (
        f"Redis commands {total:,} ({total / r.scenario.count:.2f}/contact; top: "
        + ", ".join(f"{k} {v:,}" for k, v in top)
        + ");"
    )
    # From the run's turn to `writing` (the verify re-read, the writes, the confirm, the
    # record): what issue 15's write-phase cuts move.
    writes = r.detail.get("write_commands")
    if writes:
        sent = sum(r.requests.get(k, 0) for k in ("patch", "delete"))
        top = sorted(writes.items(), key=lambda kv: -kv[1])[:10]
        note += (
            f" write phase {sum(writes.values()):,} ({sum(writes.values()) / max(1, sent):.2f}"
            f"/write request; top: " + ", ".join(f"{k} {v:,}" for k, v in top) + ");"
        )
    return note


def fixed_cost_breakdown(r: Result) -> str:
    """Where a CLI run's time over its floor went, phase by phase: each phase's wall
    time less the floor of the requests it must send (the token with the CLI start,
    the page reads, the writes)."""
    m = r.detail["marks"]
    rate = r.scenario.rate_limit
    reads = math.ceil(r.scenario.count / PAGE_SIZE)
    writes = r.minimum - 1 - reads
    first = m.get("first_page", m["run_stored"])
    writing = m.get("writing", m["finished"])
    phases = [
        ("CLI start to run stored (boot, token, lock)", m["run_stored"] - m["cli_start"], 1),
        ("to first page read (dispatch, chord, fetch)", first - m["run_stored"], 1),
        ("to writing (other reads, sanitize, plan, chord set-up)", writing - first, reads - 1),
        ("to record (writes, callback, audit)", m["finished"] - writing, writes),
        ("to CLI exit (its poll, summary)", m["cli_exit"] - m["finished"], 0),
    ]
    return f"fixed cost {r.wall - (r.floor or 0):.2f} s over the floor: " + "; ".join(
        f"{name} {wall:.2f} s (floor {requests / rate:.2f}, over {wall - requests / rate:+.2f})"
        for name, wall, requests in phases
    )


def pooled(runs: list[Result]) -> Result:
    """One side's runs of a scenario as one: the first run's counts, the means of wall
    time and CPU (what the speed-up and the CPU ratio compare), each run's CPU kept."""
    first = runs[0]
    cpus = [r.cpu_s for r in runs if r.cpu_s is not None]
    return Result(
        system=first.system,
        scenario=first.scenario,
        wall=sum(r.wall for r in runs) / len(runs),
        requests=first.requests,
        statuses=first.statuses,
        changed=first.changed,
        rejects=first.rejects,
        status=first.status,
        cpu_s=sum(cpus) / len(cpus) if cpus else None,
        cpu_by_role=first.cpu_by_role,
        detail={**first.detail, "cpu_runs": cpus},
    )


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
                # Issue 15: at most 1.10x the floor.
                r.wall <= 1.10 * r.floor,
                f"throttled: wall {r.wall:.2f} s <= 1.10 x floor {r.floor:.2f} s"
                f" (= {1.10 * r.floor:.2f} s; ratio {r.wall / r.floor:.3f})",
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
        if sc.name == "nightly" and r.floor is not None:
            check(
                r.wall <= 1.15 * r.floor,
                f"nightly: {r.detail['runs']} lists, {sc.count:,} contacts: wall {r.wall:.2f} s"
                f" <= 1.15 x floor {r.floor:.2f} s (= {1.15 * r.floor:.2f} s;"
                f" ratio {r.wall / r.floor:.3f}; {r.sent} requests, minimum {r.minimum})",
            )
        if sc.name == "fixedcost" and r.floor is not None:
            check(
                r.wall - r.floor <= 1.5,
                f"fixed cost: `cxsweep run` of {sc.count:,} contacts at R={sc.rate_limit:g}:"
                f" wall {r.wall:.2f} s - floor {r.floor:.2f} s = {r.wall - r.floor:.2f} s <= 1.5 s",
            )
        base = baselines.get((sc.name, sc.count))
        if sc.rate_limit == 0 and sc.latency_ms == 0 and base is not None and base.cpu_s:
            runs = [x for x in mine if x.scenario is sc and x.cpu_s is not None]
            if r is runs[-1]:  # once, over every run of the scenario
                cpus = [float(x.cpu_s or 0) for x in runs]
                mean = sum(cpus) / len(cpus)
                loops = base.detail.get("cpu_runs", [base.cpu_s])
                # loop, cxsweep, cxsweep, loop: each cxsweep run with the loop's beside it
                pairs = ", ".join(f"{c / loop:.2f}" for c, loop in zip(cpus, loops, strict=False))
                check(
                    mean <= base.cpu_s,
                    f"L=0 N={sc.count:,}: cxsweep CPU {1e6 * mean / sc.count:.0f} us/contact"
                    f" (workers + Redis, {' and '.join(f'{c:.1f}' for c in cpus)} s) <="
                    f" 1.0 x the sequential loop's {base.cpu_us_per_contact:.0f} us/contact"
                    f" ({' and '.join(f'{c:.1f}' for c in loops)} s; {len(runs)} run(s) a"
                    f" side, alternated); ratio of the means {mean / base.cpu_s:.2f}"
                    f" (each run against the loop's beside it: {pairs})",
                )
        if sc.name == "scale":
            # Issue 15: each process at most 250 MB (a worker with its pool children).
            for role, mb in r.worker_rss_by_role.items():
                check(
                    mb <= 250,
                    f"scale N={sc.count:,}: worker {role} peak RSS {mb:.0f} MB <= 250 MB",
                )
            check(
                (r.redis_peak_mb or 0) <= 250,
                f"scale N={sc.count:,}: Redis used_memory_peak {r.redis_peak_mb:.0f} MB <= 250 MB",
            )
    scale = sorted((r for r in mine if r.scenario.name == "scale"), key=lambda r: r.scenario.count)
    if len(scale) >= 2:
        small, big = scale[0], scale[-1]
        per_small = small.wall / small.scenario.count
        per_big = big.wall / big.scenario.count
        # Flat memory: no worker grows by more than a tenth from the small list to the big.
        for role, mb in big.worker_rss_by_role.items():
            before = small.worker_rss_by_role.get(role, 0.0)
            check(
                before > 0 and mb <= 1.1 * before,
                f"scale: worker {role} peak RSS {mb:.0f} MB at N={big.scenario.count:,} <= 1.1x"
                f" its {before:.0f} MB at N={small.scenario.count:,}"
                f" (ratio {mb / before if before else float('inf'):.2f})",
            )
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
    # The nightly sweep: 40 lists of 500 to 5,000 contacts (seeded), R=100, L=20 ms.
    draw = random.Random(SEED)
    lists = {
        f"nightly-{i + 1:02d}": draw.randint(100, 1_000) if quick else draw.randint(500, 5_000)
        for i in range(10 if quick else 40)
    }
    table = {
        "nightly": [
            Scenario(
                "nightly",
                sum(lists.values()),
                latency_ms=20,
                rate_limit=100,
                baseline=False,
                lists=lists,
            )
        ],
        # A small list at a rate whose floor is known: the CLI's fixed cost on top of it.
        "fixedcost": [
            Scenario(
                "fixedcost", 600 if quick else 3_000, latency_ms=20, rate_limit=40, baseline=False
            )
        ],
        "throttled": [Scenario("throttled", n, latency_ms=20, rate_limit=100)],
        "unthrottled": [Scenario("unthrottled", n, latency_ms=20, rate_limit=0)],
        "scale": [
            Scenario("scale", small, latency_ms=0, rate_limit=0, baseline=True, rounds=2),
            Scenario("scale", big, latency_ms=0, rate_limit=0, baseline=False),
        ],
    }
    if which == "all":
        names = ("throttled", "unthrottled", "scale", "nightly", "fixedcost")
        return [s for name in names for s in table[name]]
    return table[which]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N: a smoke test")
    parser.add_argument(
        "--scenario",
        choices=("throttled", "unthrottled", "scale", "nightly", "fixedcost", "all"),
        default="all",
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
        "--rate-burst",
        type=int,
        default=0,
        help="CXSWEEP_RATE_BURST (0: the shipped default, half a second's worth)",
    )
    parser.add_argument("--no-baseline", action="store_true", help="run cxsweep only")
    parser.add_argument("--sizes", help="scale scenario: comma-separated N (overrides defaults)")
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="record the workers with py-spy during each run's write phase (collapsed"
        " stacks in DIR; bench/_profile.py summarises them)",
    )
    parser.add_argument(
        "--py-spy-whole",
        action="store_true",
        help="with --py-spy: record from the run's start, not from its write phase",
    )
    args = parser.parse_args(argv)

    plan = scenarios(args.scenario, args.quick)
    if args.sizes:
        sizes = [int(x) for x in args.sizes.split(",")]
        plan = [s for s in plan if s.name != "scale"] + [
            Scenario(
                "scale", n, latency_ms=0, rate_limit=0, baseline=i == 0, rounds=2 if i == 0 else 1
            )
            for i, n in enumerate(sizes)
        ]
    bench = Bench(
        args.io_concurrency, args.cpu_concurrency, args.rate_burst, args.topology, args.py_spy
    )
    bench.py_spy_whole = args.py_spy_whole
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
            with_baseline = sc.baseline and not args.no_baseline
            # Alternated: loop, cxsweep, cxsweep, loop (see the module's docstring).
            order = (["baseline"] if with_baseline else []) + ["cxsweep"]
            if sc.rounds > 1:
                order = order + order[::-1]
            loops: list[Result] = []
            for side in order:
                if side == "baseline":
                    r = bench.run_baseline(sc)
                    loops.append(r)
                    baselines[(sc.name, sc.count)] = pooled(loops)
                elif sc.name == "nightly":
                    r = bench.run_nightly(sc)
                elif sc.name == "fixedcost":
                    r = bench.run_fixed_cost(sc)
                else:
                    r = bench.run_cxsweep(sc)
                results.append(r)
                shown = f"{r.wall:.2f} s" + ("" if side == "baseline" else f" ({r.status})")
                print(f"  {sc.name} N={sc.count:,} {side}: {shown}", flush=True)
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
