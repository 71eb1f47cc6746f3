"""Every Celery setting of the fleet, in one module (read by ``app.config_from_object``)."""

from __future__ import annotations

from kombu import Queue

from cxsweep.errors import SettingsError
from cxsweep.settings import get_settings

try:
    _settings = get_settings()
except SettingsError as exc:  # a worker started with a bad setting says so in one line
    raise SystemExit(f"cxsweep: {exc}") from None

# API-bound steps (fetch, write, webhook) wait on the network: run them in a thread pool
# with many slots. Sanitizing is CPU-bound: processes, one per core.
IO_QUEUE = "cxsweep.io"
CPU_QUEUE = "cxsweep.cpu"

broker_url = _settings.redis_url
result_backend = _settings.redis_url
broker_connection_retry_on_startup = True

# A message stays unacknowledged until its task finishes; a worker that dies mid-task
# has its message delivered again. Redelivered steps are idempotent (see cxsweep.runs).
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
_visibility = {"visibility_timeout": 3600}
broker_transport_options = dict(_visibility)
result_backend_transport_options = dict(_visibility)

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_expires = 24 * 3600
task_track_started = True
worker_send_task_events = True
task_send_sent_event = True
task_soft_time_limit = 600
task_time_limit = 660

task_queues = (Queue(IO_QUEUE), Queue(CPU_QUEUE))
task_default_queue = IO_QUEUE
task_routes = {"tasks.sweep.sanitize_page": {"queue": CPU_QUEUE}}

include = ["tasks.sweep"]

# Beat keeps its schedule and a lock in Redis (celery-redbeat): several beat processes
# may stand by, one fires.
beat_scheduler = "redbeat.RedBeatScheduler"
redbeat_redis_url = _settings.redis_url
redbeat_key_prefix = "cxsweep:redbeat"
redbeat_lock_timeout = 5 * 60
beat_schedule = {
    # Runs whose chord never finished (a lost callback, workers gone) are failed,
    # recorded and their lists freed.
    "watchdog": {"task": "tasks.sweep.watchdog", "schedule": 60.0},
}
