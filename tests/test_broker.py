"""CXSWEEP_BROKER_URL: validated, never shown with its password, and the Celery settings
it selects (RabbitMQ: quorum queues behind a topic exchange, late acks kept)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cxsweep.errors import SettingsError
from cxsweep.settings import load_settings, masked_url
from tasks._deps import MAX_COUNTDOWN

REPO = Path(__file__).resolve().parent.parent
# RabbitMQ closes a channel holding a delivery unacknowledged longer than this (its
# default consumer_timeout, 30 min).
RABBITMQ_CONSUMER_TIMEOUT = 1800


def test_broker_defaults_to_the_redis() -> None:
    settings = load_settings({"CXSWEEP_ENV_FILE": os.devnull, "CXSWEEP_REDIS_URL": "redis://r:1/3"})
    assert settings.broker == "redis://r:1/3" and not settings.broker_is_amqp


@pytest.mark.parametrize(
    "url", ["amqp://u:p@h:5672//", "amqps://u:p@h/vh", "redis://h:6379/1", "rediss://:p@h/0"]
)
def test_broker_url_schemes(url: str) -> None:
    settings = load_settings({"CXSWEEP_ENV_FILE": os.devnull, "CXSWEEP_BROKER_URL": url})
    assert settings.broker == url
    assert settings.broker_is_amqp == url.startswith("amqp")


@pytest.mark.parametrize(
    "url",
    [
        "http://user:hunter2-secret@h/",
        "amqp://user:hunter2-secret@",
        "amqp://user:hunter2-secret@h:port/",
        "user:hunter2-secret@h",
        "sqs://user:hunter2-secret@h",
    ],
)
def test_a_bad_broker_url_is_one_line_without_its_password(url: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"CXSWEEP_ENV_FILE": os.devnull, "CXSWEEP_BROKER_URL": url})
    message = str(caught.value)
    assert message.startswith("CXSWEEP_BROKER_URL=") and "\n" not in message
    assert "hunter2" not in message


def test_masked_url() -> None:
    assert masked_url("amqp://guest:s3cret@h:5672//") == "amqp://guest:**@h:5672//"
    assert "s3cret" not in masked_url("amqp://guest:s3cret@h:notaport/")


def _celery_settings(broker_url: str) -> dict[str, object]:
    """The app's settings as a worker with this broker would load them (a fresh process:
    workers/config.py reads the environment once)."""
    code = (
        "import json; from workers import app; c = app.conf; q = app.amqp.queues\n"
        "print(json.dumps({'broker': c.broker_url, 'acks_late': c.task_acks_late,"
        " 'reject_on_lost': c.task_reject_on_worker_lost,"
        " 'prefetch': c.worker_prefetch_multiplier, 'time_limit': c.task_time_limit,"
        " 'options': c.broker_transport_options,"
        " 'queues': {n: [q[n].exchange.type, q[n].queue_arguments] for n in q}}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXSWEEP_")}
    env.update(CXSWEEP_ENV_FILE=os.devnull, CXSWEEP_BROKER_URL=broker_url, CXSWEEP_METRICS_PORT="0")
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    ).stdout
    return dict(json.loads(out))


def test_rabbitmq_settings_quorum_queues_on_a_topic_exchange() -> None:
    conf = _celery_settings("amqp://guest:guest@127.0.0.1:5672/x")
    # Quorum queues; countdowns go through kombu's native delayed delivery, which
    # needs the queues' exchange to be a topic exchange (a direct one is not supported).
    assert conf["queues"] == {
        "cxsweep.io": ["topic", {"x-queue-type": "quorum"}],
        "cxsweep.cpu": ["topic", {"x-queue-type": "quorum"}],
    }
    assert (conf["acks_late"], conf["reject_on_lost"], conf["prefetch"]) == (True, True, 1)
    assert conf["options"] == {"confirm_publish": True}
    # Nothing is held unacknowledged past RabbitMQ's consumer_timeout: a task runs at
    # most its hard time limit; even a countdown held by the worker (were delayed
    # delivery unavailable) is far shorter.
    assert float(str(conf["time_limit"])) + MAX_COUNTDOWN < RABBITMQ_CONSUMER_TIMEOUT


def test_redis_broker_settings_unchanged() -> None:
    conf = _celery_settings("")
    assert conf["queues"] == {"cxsweep.io": ["direct", None], "cxsweep.cpu": ["direct", None]}
    assert dict(conf["options"])["visibility_timeout"] == 3600  # type: ignore[call-overload]


def test_this_session_runs_on_the_broker_asked_for() -> None:
    """CXSWEEP_TEST_BROKER=amqp (.ci/run's second pass): the session's app and workers
    really use RabbitMQ, so the sweep tests prove the pipeline on it."""
    from workers import app

    with app.connection_for_write() as connection:
        driver = connection.transport.driver_type
    expected = "amqp" if os.environ.get("CXSWEEP_TEST_BROKER") == "amqp" else "redis"
    assert driver == expected
