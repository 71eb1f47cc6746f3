"""A private stack for tests that kill things: its own redis-server, its own simulator,
real ``celery -A workers worker`` processes and ``cxsweep run`` as a subprocess.

The test process's own settings (and its Celery app) point at the session's Redis and
simulator and are cached process-wide, so everything that must talk to the private
stack runs in a child process with an environment built here.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from console.demo import worker_command
from devtools.localredis import LocalRedis
from devtools.simulator import Request, Response, SimConfig, Simulator
from tests import _amqp

REPO = Path(__file__).resolve().parent.parent
CLIENT_ID, CLIENT_SECRET = "crash-client", "crash-secret-5d1e0c"


class RecordingSimulator(Simulator):
    """The simulator, remembering every value PATCHed and every id DELETEd (answered 2xx)."""

    def __init__(self, config: SimConfig) -> None:
        super().__init__(config)
        self.record_lock = threading.Lock()
        self.patch_values: dict[str, list[str]] = {}
        self.deleted_ids: list[str] = []
        self.on_answer(self._record)

    def _record(
        self, kind: str, params: Mapping[str, str], request: Request, response: Response
    ) -> None:
        if kind == "patch" and response.status == 200:
            with self.record_lock:
                for item in json.loads(request.body)["contacts"]:
                    self.patch_values.setdefault(item["id"], []).append(item["phone"])
        elif kind == "delete" and response.status == 204:
            with self.record_lock:
                self.deleted_ids.append(params["contact"])

    def total_requests(self) -> int:
        return int(sum(self.stats()["requests"].values()))


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (the prefork pool's processes), from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after the last ")".
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


@dataclass
class Stack:
    work_dir: Path
    redis_server: LocalRedis
    sim: RecordingSimulator
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    clis: list[subprocess.Popen[str]] = field(default_factory=list)
    #: more environment for every child (workers and CLIs) of this stack
    extra_env: dict[str, str] = field(default_factory=dict)
    #: the Celery broker: "" for the stack's Redis, else a RabbitMQ vhost of its own
    broker_url: str = ""

    @property
    def audit_log(self) -> Path:
        return self.work_dir / "audit.log"

    @property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_server.url, socket_timeout=5)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CXSWEEP_")}
        env.update(
            {
                "CXSWEEP_ENV_FILE": os.devnull,
                "CXSWEEP_REDIS_URL": self.redis_server.url,
                "CXSWEEP_BROKER_URL": self.broker_url,
                "CXSWEEP_API_URL": self.sim.url,
                "CXSWEEP_CLIENT_ID": CLIENT_ID,
                "CXSWEEP_CLIENT_SECRET": CLIENT_SECRET,
                "CXSWEEP_AUDIT_LOG": str(self.audit_log),
                "CXSWEEP_READ_TIMEOUT": "5",
                # Parallel stacks would race for the default metrics port; a test that
                # scrapes a worker names its own.
                "CXSWEEP_METRICS_PORT": "0",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        env.update(extra)
        return env

    def start_worker(
        self,
        name: str,
        pool: str = "prefork",
        loglevel: str = "INFO",
        *,
        concurrency: int = 2,
        queues: str = "cxsweep.io,cxsweep.cpu",
    ) -> subprocess.Popen[bytes]:
        log = open(self.work_dir / f"worker-{name}.log", "wb")  # noqa: SIM115 - the child's
        command = worker_command(
            f"{name}-{uuid.uuid4().hex[:6]}",
            pool=pool,
            concurrency=concurrency,
            queues=queues,
            loglevel=loglevel,
        )
        # Its own session: the whole worker (parent and pool) can be killed as a group.
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.workers.append(proc)
        return proc

    def worker_log(self, name: str) -> str:
        path = self.work_dir / f"worker-{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def run_cli(
        self, *args: str, plain: bool = False, command: str = "run", **env: str
    ) -> subprocess.Popen[str]:
        """``cxsweep COMMAND ARGS --json --quiet`` (``run`` by default) in a child process.

        Unless ``plain``, the child imports ``workers`` first: the CLI on its own never
        does, so its ``begin_run`` message would go through Celery's default app (AMQP on
        localhost) instead of the configured Redis (see test_cli_alone_reaches_the_workers).
        """
        if plain:
            python = [sys.executable, "-m", "console.cli"]
        else:
            code = "import sys, workers; from console.cli import main; sys.exit(main(sys.argv[1:]))"
            python = [sys.executable, "-c", code]
        proc = subprocess.Popen(
            [*python, command, *args, "--json", "--quiet"],
            cwd=REPO,
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.clis.append(proc)
        return proc

    def send_task(self, name: str, *args: Any) -> None:
        """Send one task to the private broker from a child process (e.g. the watchdog)."""
        code = (
            "import sys, json\n"
            "from workers import app\n"
            "app.send_task(sys.argv[1], args=json.loads(sys.argv[2]))\n"
        )
        subprocess.run(
            [sys.executable, "-c", code, name, json.dumps(list(args))],
            cwd=REPO,
            env=self.env(),
            check=True,
            timeout=30,
        )

    def audit_lines(self, run_id: str) -> list[dict[str, Any]]:
        if not self.audit_log.exists():
            return []
        lines = [json.loads(line) for line in self.audit_log.read_text().splitlines() if line]
        return [line for line in lines if line.get("run_id") == run_id]

    def stop(self) -> None:
        for cli in self.clis:
            if cli.poll() is None:
                cli.kill()
            cli.communicate()
        for worker in self.workers:
            if worker.poll() is None:
                # TERM for a warm shutdown; the group, so no pool child is left behind.
                os.killpg(worker.pid, signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
            # Pool children left over (their parent was killed alone) go too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGKILL)
        self.sim.stop()
        self.redis_server.stop()
        if self.broker_url:
            _amqp.delete_vhost(self.broker_url)


def make_stack(
    work_dir: Path, broker: str = "redis", *, persist: bool = True, **sim_config: Any
) -> Iterator[Stack]:
    """A private stack; ``broker="amqp"``: RabbitMQ on a vhost of its own (the test skips,
    saying why, where no RabbitMQ can be had)."""
    broker_url = ""
    if broker == "amqp":
        why = _amqp.unavailable()
        if why:
            pytest.skip(f"RabbitMQ tests need a RabbitMQ: {why}")
        broker_url = _amqp.make_vhost(work_dir.name[:40])
    config = SimConfig(clients={CLIENT_ID: CLIENT_SECRET}, **sim_config)
    server = LocalRedis(directory=str(work_dir / "redis"), persist=persist).start()
    sim = RecordingSimulator(config)
    sim.start()
    stack = Stack(work_dir=work_dir, redis_server=server, sim=sim, broker_url=broker_url)
    try:
        yield stack
    finally:
        stack.stop()


def finish(proc: subprocess.Popen[str], timeout: float) -> tuple[int, dict[str, Any] | None, str]:
    """Wait for a ``cxsweep run --json``: exit code, the record (if printed), stderr."""
    out, err = proc.communicate(timeout=timeout)
    try:
        record = json.loads(out) if out.strip() else None
    except ValueError:
        record = None
    return proc.returncode, record, err


def wait_until(predicate: Any, timeout: float, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
