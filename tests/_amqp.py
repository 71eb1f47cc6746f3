"""RabbitMQ for the tests: one vhost per test session (and per private stack), so that
sessions run at once on one machine against one RabbitMQ never share a queue.

``CXSWEEP_TEST_AMQP_URL`` names the RabbitMQ (``.ci/run`` exports it); without it the
default ``amqp://guest:guest@127.0.0.1:5672//`` is tried. Vhosts are made with
``rabbitmqctl`` on this machine, so the RabbitMQ must be local and the tests able to
run ``rabbitmqctl`` (root, or the rabbitmq user). When either is missing, the RabbitMQ
tests skip and say why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pytest
from kombu import Connection

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672//"
_VHOST_PREFIX = "cxsweep-test-"
_made: list[str] = []


def base_url() -> str:
    return os.environ.get("CXSWEEP_TEST_AMQP_URL") or DEFAULT_URL


def answers(url: str, timeout: float = 3.0) -> bool:
    try:
        with Connection(url, connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
        return True
    except Exception:  # any failure means "not usable here"
        return False


def _rabbitmqctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)


def unavailable() -> str:
    """Why the RabbitMQ tests cannot run here ("" when they can)."""
    url = base_url()
    if not answers(url):
        return f"no RabbitMQ answers at {urlsplit(url).hostname}:{urlsplit(url).port or 5672}"
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl not found: cannot give this session a vhost of its own"
    probe = _rabbitmqctl("list_vhosts")
    if probe.returncode != 0:
        return f"rabbitmqctl cannot reach the node: {probe.stderr.strip()[:200]}"
    return ""


def make_vhost(tag: str) -> str:
    """A new vhost with full rights for the URL's user; returns the URL on it."""
    parts = urlsplit(base_url())
    vhost = f"{_VHOST_PREFIX}{tag}-{uuid.uuid4().hex[:8]}"
    for args in (
        ("add_vhost", vhost),
        ("set_permissions", "-p", vhost, parts.username or "guest", ".*", ".*", ".*"),
    ):
        done = _rabbitmqctl(*args)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {args[0]} {vhost}: {done.stderr.strip()}")
    url = urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))
    _made.append(url)
    return url


def session_broker() -> str:
    """A vhost for this test session (CXSWEEP_TEST_BROKER=amqp); a usage error, saying
    why, when RabbitMQ cannot be had here."""
    why = unavailable()
    if why:
        raise pytest.UsageError(f"CXSWEEP_TEST_BROKER=amqp, but {why}")
    return make_vhost(f"session-{os.getpid()}")


def delete_all() -> None:
    """At the session's end: every vhost this process made and did not delete yet."""
    for url in list(_made):
        delete_vhost(url)


def delete_vhost(url: str) -> None:
    """Deletes the vhost of ``url`` (one made by ``make_vhost``), with its queues."""
    vhost = unquote(urlsplit(url).path.lstrip("/"))
    if vhost.startswith(_VHOST_PREFIX):
        _rabbitmqctl("delete_vhost", vhost)
    if url in _made:
        _made.remove(url)
