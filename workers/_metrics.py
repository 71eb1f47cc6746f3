"""Serving the worker's Prometheus metrics (``cxsweep.metrics``) on a port.

One HTTP server per worker node, in the worker's main process, on
``CXSWEEP_METRICS_PORT`` (``metrics_port`` in ``workers/config.py``; 0: none).

Pools:

- threads / solo / gevent: the tasks run in the main process, whose in-memory registry
  the server exposes as it is.
- prefork: the tasks run in child processes that the main process never sees. The
  children write their values to mmapped files in ``PROMETHEUS_MULTIPROC_DIR``
  (prometheus_client's multiprocess mode) and the main process's server sums the files
  at each scrape. Values of a child that exited stay counted: a recycled child
  (``max_tasks_per_child``) must not make a counter go down. The directory is chosen
  before the pool forks, and wiped at start so a restarted worker does not re-export
  the previous one's totals.

prometheus_client reads ``PROMETHEUS_MULTIPROC_DIR`` once, when it is first imported, to
choose its value store. In a worker it always is imported before our code runs: the
``celery`` command loads its plugins' subcommands (Flower's imports prometheus_client)
before it imports the ``-A`` app. So the store is switched after the fact, through the
library's own ``values.get_value_class``; metric objects read ``values.ValueClass``
when they are built, and ours are built on first use (``cxsweep.metrics``), after this.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The directory this process created (and removes at shutdown); None when the operator
# gave one or when the pool needs none.
_created_dir: str | None = None
_server: Any = None


def enable_multiprocess(directory: str | None = None) -> str:
    """Switch prometheus_client to its multiprocess store; returns the directory.

    Must run before our metric objects are built (on first use: see the module's
    docstring), hence before the pool forks.
    """
    global _created_dir
    directory = directory or os.environ.get(MULTIPROC_ENV)
    if directory:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        # Files left by a previous worker on this directory would be summed with ours.
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
    else:
        directory = tempfile.mkdtemp(prefix="cxsweep-metrics-")
        _created_dir = directory
    os.environ[MULTIPROC_ENV] = directory
    if "prometheus_client" in sys.modules:
        from prometheus_client import values

        values.ValueClass = values.get_value_class()
    from cxsweep import metrics

    if metrics.built():
        log.warning(
            "metrics were built before the worker chose its metrics store: "
            "prefork children's metrics will not be exported"
        )
    return directory


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def registry() -> Any:
    """What the server exposes: the summed files (multiprocess) or this process's own."""
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    if not multiprocess_enabled():
        return REGISTRY
    summed = CollectorRegistry()
    MultiProcessCollector(summed)
    return summed


def start_metrics_server(port: int, addr: str = "0.0.0.0") -> Any:
    """Serve ``/metrics`` on ``port`` from a daemon thread; returns the server.

    A port already taken is logged, not fatal: a worker without metrics still sweeps.
    """
    global _server
    from prometheus_client import start_http_server

    try:
        server, _thread = start_http_server(port, addr=addr, registry=registry())
    except OSError as exc:
        log.warning("metrics: cannot listen on %s:%d (%s); not exporting", addr, port, exc)
        return None
    _server = server
    log.info("metrics: serving /metrics on %s:%d", addr, port)
    return server


def child_exited(pid: int) -> None:
    """Bookkeeping for a dead prefork child (its live gauges; counters stay summed)."""
    if multiprocess_enabled():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def shutdown() -> None:
    global _server, _created_dir
    if _server is not None:
        _server.shutdown()
        _server = None
    if _created_dir is not None:
        shutil.rmtree(_created_dir, ignore_errors=True)
        _created_dir = None
