"""Start runs on the workers and follow them to their record.

The one public way to launch a run from this side of the broker: the CLI, the demo, the
tests and the benches all go through here. Nothing in this module parses arguments or
decides an exit code; it raises the project's errors and leaves the wording to callers.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis

from cxsweep.errors import CxsweepError, OperatorError, RetryableApiError, SettingsError
from cxsweep.runs import keys
from cxsweep.runs.store import RunStore
from cxsweep.settings import Settings, get_settings

# How often ``wait_for_run`` looks at the run.
POLL_SECONDS = 0.05


def _warn(message: str) -> None:
    print(f"cxsweep: {message}", file=sys.stderr)


def settings_for_run() -> Settings:
    """Settings read afresh, with API credentials and the phone policy checked."""
    from cxsweep.phone.policy import load_policy

    get_settings.cache_clear()
    settings = get_settings()
    settings.require_api()
    load_policy(settings)  # a bad policy file stops here, before any call
    return settings


def check_list_id(list_id: str) -> str:
    """A list id is a platform key sent in URLs and logs: empty, blank or control
    characters are an operator's slip (``cxsweep run "$LIST"`` with LIST unset)."""
    if not list_id.strip():
        raise OperatorError(f"list id {list_id!r} is empty")
    if not list_id.isprintable():
        raise OperatorError(f"list id {list_id!r} holds control or invisible characters")
    return list_id


def store_for(settings: Settings, run_id: str) -> RunStore:
    from cxsweep.redisconn import get_redis

    return RunStore(get_redis(settings.redis_url), run_id)


def start_run(
    settings: Settings,
    list_id: str,
    *,
    dry_run: bool,
    options: dict[str, Any] | None = None,
    before_launch: Callable[[RunStore], None] | None = None,
) -> str:
    """Check credentials, take the list's lock, store the run and hand it to the workers."""
    from cxsweep.platforms.factory import make_backend
    from cxsweep.redisconn import get_redis
    from cxsweep.runs.latency import RequestTally
    from cxsweep.runs.store import prepare_run
    from devtools.localredis import redis_answers

    check_list_id(list_id)
    if not redis_answers(settings.redis_url):
        raise SettingsError(f"no Redis answers at CXSWEEP_REDIS_URL={settings.redis_url}")
    redis_client = get_redis(settings.redis_url)
    # The token grant sent here belongs to the run: its request count and latency are
    # the run's, as the platform counts them.
    requests = RequestTally()
    try:
        make_backend(settings, redis_client, observer=requests.observe).check_credentials()
    except RetryableApiError as exc:
        raise CxsweepError(f"cannot obtain a token: {exc}") from None
    run_id = prepare_run(
        redis_client,
        list_id,
        dry_run=dry_run,
        options=options,
        deadline_seconds=settings.run_deadline_seconds,
    )
    requests.flush_to(RunStore(redis_client, run_id))

    if before_launch is not None:
        from cxsweep.runs.store import ListLock

        store = RunStore(redis_client, run_id)
        try:
            before_launch(store)
        except BaseException:
            # Nothing was sent to the workers: close the run and free the list at once.
            store.fail("refused before it was handed to the workers")
            store.set_meta(status="failed", finished_at=time.time())
            ListLock(redis_client, list_id).release(run_id)
            raise
    # The project's Celery app (broker = CXSWEEP_REDIS_URL), not Celery's default one.
    from workers import app

    first_step = (
        "tasks.sweep.begin_restore"
        if options and options.get("restore_of")
        else ("tasks.sweep.begin_run")
    )
    app.send_task(first_step, args=[run_id], ignore_result=True)
    return run_id


def start_apply(
    settings: Settings,
    plan_path: str,
    list_id: str,
    *,
    plan_of: str | None = None,
    options: dict[str, Any] | None = None,
) -> str:
    """Start a run that executes a reviewed plan file on ``list_id``.

    The file is read again while the run is stored (checked again: a file changed since
    the caller's ``verify_plan`` fails here), so a plan cut short or edited is refused
    whole, before anything is sent.
    """
    from cxsweep.runs.planfile import read_plan
    from cxsweep.runs.store import PlanEntry

    def load(store: RunStore) -> None:
        kinds = {"update": 0, "remove": 0}

        def counted(entries: Iterator[PlanEntry]) -> Iterator[PlanEntry]:
            for entry in entries:
                kinds["update" if entry.after is not None else "remove"] += 1
                yield entry

        store.load_planned(counted(read_plan(plan_path)[1]))
        store.set_meta(plan_updates=kinds["update"], plan_removals=kinds["remove"])

    return start_run(
        settings,
        list_id,
        dry_run=False,
        options={**(options or {}), "apply": True, "plan_of": plan_of},
        before_launch=load,
    )


def start_restore(
    settings: Settings, source_run_id: str, *, options: dict[str, Any] | None = None
) -> tuple[str, str]:
    """Start putting back what run ``source_run_id`` changed; returns (run id, list id)."""
    source = store_for(settings, source_run_id)
    meta = source.meta()
    if not meta or not source.archive_pages():
        raise OperatorError(f"run {source_run_id} has no archive to restore (unknown or expired)")
    if meta.get("dry_run") == "1":
        raise CxsweepError(f"run {source_run_id} was a dry run: it changed nothing")
    list_id = meta["list_id"]
    run_id = start_run(
        settings,
        list_id,
        dry_run=False,
        options={**(options or {}), "restore_of": source_run_id},
    )
    return run_id, list_id


def cancel(settings: Settings, run_id: str) -> bool:
    """Ask a run to stop: no write starts after this, the writes in flight finish, and the
    run is recorded ``cancelled`` by its own workers. False if it was already asked."""
    from cxsweep.runs.store import FINAL

    store = store_for(settings, run_id)
    meta = store.meta()
    if not meta:
        raise OperatorError(f"no run {run_id}")
    if meta.get("status") in FINAL:
        raise OperatorError(f"run {run_id} has already ended: {meta['status']}")
    return store.cancel(
        f"cancelled by the operator at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
    )


def wait_for_run(
    settings: Settings,
    run_id: str,
    *,
    timeout: float | None = None,
    quiet: bool = False,
    on_progress: Callable[[dict[str, str], dict[str, int], float], None] | None = None,
) -> dict[str, Any]:
    """Follow a run until it is recorded; returns its audit record.

    ``on_progress(meta, counts, elapsed)`` is called on every look at the run; without it
    progress goes to stderr (bars on a terminal, a line every 5 s elsewhere) unless
    ``quiet``.
    """
    from console.progress import Progress, progress_line
    from cxsweep.runs.store import FINAL

    store = store_for(settings, run_id)
    started = time.monotonic()
    interactive = sys.stderr.isatty() and not quiet
    progress = Progress()
    drawn = 0
    last_print = 0.0
    warned_no_worker = False
    warned_record_error = False
    lost_since: float | None = None
    while True:
        elapsed = time.monotonic() - started
        if timeout is not None and elapsed > timeout:
            raise CxsweepError(f"run {run_id} did not finish within {timeout:.0f}s")
        try:
            meta = store.meta()
            counts = store.counts()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            # Redis restarting: the run's state is in it (persisted); keep asking.
            if lost_since is None:
                lost_since = elapsed
                _warn(f"lost Redis at {settings.redis_url}; waiting for it to come back")
            time.sleep(1.0)
            continue
        if lost_since is not None:
            _warn(f"Redis is back after {elapsed - lost_since:.0f}s")
            lost_since = None
        if not meta:
            # The run was stored before we began to wait: its metadata is gone.
            raise CxsweepError(
                f"Redis lost the state of run {run_id} (restarted without persistence, or"
                " flushed?): no worker can finish it; its list lock is gone with it, so"
                " start the run again"
            )
        if meta.get("record_error") and not warned_record_error:
            _warn(f"{meta['record_error']}; retrying until it succeeds")
            warned_record_error = True
        done = meta.get("status") in FINAL and meta.get("record")
        if on_progress is not None:
            on_progress(meta, counts, elapsed)
        elif interactive and (done or elapsed - last_print >= 0.5):
            lines = progress.lines(meta, counts, elapsed)
            # Redraw the bars in place: move up over the previous drawing first.
            up = f"\x1b[{drawn}F" if drawn else ""
            print(up + "\n".join(f"{line}\x1b[K" for line in lines), file=sys.stderr, flush=True)
            drawn, last_print = len(lines), elapsed
        elif not quiet and not interactive and elapsed - last_print >= 5:
            print(progress_line(meta, counts, elapsed), file=sys.stderr, flush=True)
            last_print = elapsed
        if done:
            record: dict[str, Any] = json.loads(meta["record"])
            return record
        if (
            not warned_no_worker
            and elapsed > 15
            and not counts.get(keys.API_REQUESTS)
            and not store.begun()
        ):
            _warn("no worker has picked the run up yet: is `celery -A workers worker` running?")
            warned_no_worker = True
        # Two small reads per look: looking often costs Redis little and ends the wait
        # within ~50 ms of the record (at 0.2 s the operator waited 0.1 s on average).
        time.sleep(POLL_SECONDS)
