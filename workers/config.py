"""Every Celery setting of the fleet, in one module (read by ``app.config_from_object``)."""

from __future__ import annotations

from celery.schedules import crontab
from kombu import Exchange, Queue

from cxsweep.errors import SettingsError
from cxsweep.phone.policy import load_policy
from cxsweep.runs.keys import REDBEAT_PREFIX
from cxsweep.settings import get_settings
from tasks.crontab import parse_crontab

try:
    _settings = get_settings()
except SettingsError as exc:  # a worker started with a bad setting says so in one line
    raise SystemExit(f"cxsweep: {exc}") from None

# API-bound steps (fetch, write, webhook) wait on the network: run them in a thread pool
# with many slots. Sanitizing is CPU-bound: processes, one per core.
IO_QUEUE = "cxsweep.io"
CPU_QUEUE = "cxsweep.cpu"

broker_url = _settings.broker
result_backend = _settings.redis_url
broker_connection_retry_on_startup = True

# A message stays unacknowledged until its task finishes; a worker that dies mid-task
# has its message delivered again. Redelivered steps are idempotent (see cxsweep.runs.store).
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
_visibility = {"visibility_timeout": _settings.visibility_timeout}
# Look for the unacknowledged messages of dead workers every minute (kombu's default is
# about every 100 s); they are restored once older than the visibility timeout.
broker_transport_options: dict[str, object] = {
    **_visibility,
    "unacked_restore_interval": 60,
    "unacked_restore_throttle": 1,
}
result_backend_transport_options = dict(_visibility)

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_expires = 24 * 3600
# Results keep their task's name: a chord's error names only the failed task's id, and
# the run's audit line names the task (tasks.sweep.chord_failed).
result_extended = True
task_track_started = True
# No task events by default: each task would publish ~4 (sent, received, started,
# succeeded), about 9% of a worker's CPU in the write phase (bench/PROFILE.md). Flower
# turns them on in the running workers itself (its --enable_events, on by default, sends
# the `enable_events` control command every 5 s), so a fleet watched with Flower still
# shows its tasks; `celery -A workers control disable_events` stops them after Flower.
# task-sent events (the client's) stay off: Flower shows a task from its receipt.
worker_send_task_events = False
task_send_sent_event = False
task_soft_time_limit = 600
task_time_limit = 660

task_queues: tuple[Queue, ...] = (Queue(IO_QUEUE), Queue(CPU_QUEUE))
task_default_queue = IO_QUEUE
if _settings.broker_is_amqp:
    # RabbitMQ: replicated quorum queues. A dead worker's unacknowledged messages go back
    # to the queue as soon as its connection drops (at once for a killed process, after
    # two missed heartbeats for a lost machine). Countdowns (retries, up to MAX_COUNTDOWN)
    # travel through kombu's native delayed delivery, which needs a topic exchange; a
    # worker never holds a message unacknowledged longer than a task's time limit, far
    # below RabbitMQ's consumer_timeout (30 min).
    _exchange = Exchange("cxsweep", type="topic")
    _quorum = {"x-queue-type": "quorum"}
    task_queues = tuple(
        Queue(name, _exchange, routing_key=name, queue_arguments=_quorum)
        for name in (IO_QUEUE, CPU_QUEUE)
    )
    task_default_exchange = _exchange.name
    task_default_exchange_type = "topic"
    task_default_routing_key = IO_QUEUE
    task_default_queue_type = "quorum"
    worker_detect_quorum_queues = True  # per-consumer QoS: quorum queues have no global QoS
    # A task sent is confirmed by the broker before send_task returns.
    broker_transport_options = {"confirm_publish": True}
    # A machine that vanishes without closing its sockets is noticed within ~2 heartbeats.
    broker_heartbeat = 10
task_routes = {"tasks.sweep.sanitize_page": {"queue": CPU_QUEUE}}

include = [
    "tasks.read",
    "tasks.recheck",
    "tasks.write",
    "tasks.record",
    "tasks.restore",
    "tasks.schedule",
]

# Beat keeps its schedule and a lock in Redis (celery-redbeat): several beat processes
# may stand by, one fires.
beat_scheduler = "redbeat.RedBeatScheduler"
redbeat_redis_url = _settings.redis_url
redbeat_key_prefix = REDBEAT_PREFIX
redbeat_redis_options: dict[str, object] = {}
redbeat_lock_timeout = 5 * 60
beat_schedule = {
    # Runs whose chord never finished (a lost callback, workers gone) are failed,
    # recorded and their lists freed.
    "watchdog": {"task": "tasks.sweep.watchdog", "schedule": 60.0},
    # Webhooks not delivered yet are sent again when due (backoff up to an hour, a day).
    "resend-webhooks": {"task": "tasks.sweep.resend_webhooks", "schedule": 60.0},
}


def _sweep_schedule() -> crontab:
    """The all-lists sweep: CXSWEEP_SWEEP_SCHEDULE, else the policy file's [default]
    schedule, else nightly at 02:00 (the timezone is Celery's, UTC by default)."""
    value, name = _settings.sweep_schedule, "CXSWEEP_SWEEP_SCHEDULE"
    if not value:
        try:
            value = load_policy(_settings).default_schedule or "0 2 * * *"
        except SettingsError as exc:
            raise SystemExit(f"cxsweep: {exc}") from None
        name = "the policy's [default] schedule"
    try:
        return parse_crontab(value)
    except ValueError as exc:
        raise SystemExit(
            f"cxsweep: {name}={value!r} is not a crontab expression"
            " (minute hour day-of-month month day-of-week): " + str(exc).split(": ", 1)[-1]
        ) from None


beat_schedule.update(
    {
        # Every list of the account, with back-pressure (tasks/schedule.py). Lists with
        # their own schedule in the policy get their own entries, kept in Redis by RedBeat.
        "sweep-all-lists": {
            "task": "tasks.schedule.sweep_all_lists",
            "schedule": _sweep_schedule(),
        },
        # Keeps those per-list entries in step with the policy and the account's lists
        # between nightly sweeps (a new rule takes effect within the hour).
        "sync-list-schedules": {"task": "tasks.schedule.sync_list_schedules", "schedule": 3600.0},
    }
)

# Workers serve Prometheus /metrics here (workers/_metrics.py); 0: no server.
cxsweep_metrics_port = _settings.metrics_port
