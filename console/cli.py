"""``cxsweep``: the operator's command line (the one edge that also talks to workers).

Exit codes: 0 completed, 1 halted, failed or cancelled, 2 usage, settings or credentials
error, or a run id or list id that cannot be used.
Operator mistakes end in one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any, cast

import redis

from console.check import add_check_parser
from console.report import add_report_parser, own_note
from cxsweep.errors import (
    CredentialsRefused,
    CxsweepError,
    OperatorError,
    RetryableApiError,
    SettingsError,
)
from cxsweep.runs.planfile import PlanFileError
from cxsweep.settings import Settings, get_settings

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE = 0, 1, 2


def _err(message: str) -> None:
    print(f"cxsweep: {message}", file=sys.stderr)


def _settings_for_run() -> Settings:
    from cxsweep.phone.policy import load_policy

    get_settings.cache_clear()
    settings = get_settings()
    settings.require_api()
    load_policy(settings)  # a bad policy file stops here, before any call
    return settings


# --- run ------------------------------------------------------------------------------


def check_list_id(list_id: str) -> str:
    """A list id is a platform key sent in URLs and logs: empty, blank or control
    characters are an operator's slip (``cxsweep run "$LIST"`` with LIST unset)."""
    if not list_id.strip():
        raise OperatorError(f"list id {list_id!r} is empty")
    if not list_id.isprintable():
        raise OperatorError(f"list id {list_id!r} holds control or invisible characters")
    return list_id


def start_run(
    settings: Settings,
    list_id: str,
    *,
    dry_run: bool,
    options: dict[str, Any] | None = None,
    before_launch: Any = None,
) -> str:
    """Check credentials, take the list's lock, store the run and hand it to the workers."""
    from cxsweep.latency import RequestTally
    from cxsweep.platforms.factory import make_backend
    from cxsweep.redisconn import get_redis
    from cxsweep.runs.store import RunStore, prepare_run
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


KIND_WORDS = {"sweep": "sweep", "dry_run": "dry run", "apply": "apply", "restore": "restore"}


def _progress_line(meta: dict[str, str], counts: dict[str, int], elapsed: float) -> str:
    from cxsweep.runs.store import kind_of

    kind = kind_of(meta)
    head = f"[{meta.get('status', '?'):>9}] {elapsed:6.1f}s  "
    if kind == "restore":
        if "restore_total" not in meta:
            return head + "restore waiting for a worker to take it up"
        # A restore reads nothing: it puts back, batch by batch, what the archive holds.
        return head + (
            f"restored {_restored(counts):,}/{int(meta.get('restore_total') or 0):,} contacts"
            f" (recreated {counts.get('restored_recreated', 0):,},"
            f" reverted {counts.get('restored_reverted', 0):,})"
        )
    fetched = counts.get("fetched", 0)
    rate = fetched / elapsed if elapsed > 0 else 0.0
    line = head + (
        f"read {counts.get('pages_read', 0)} pages  sanitized {fetched} ({rate:,.0f}/s)"
    )
    if kind == "dry_run":
        return line + (
            f"  would update {counts.get('to_update', 0)}"
            f"  would remove {counts.get('to_remove', 0)}"
        )
    if kind == "apply":
        line += f"  stale {counts.get('stale', 0)}"
    if meta.get("status") in ("writing", "completed", "halted", "failed"):
        line += (
            f"  written {counts.get('chunks_done', 0)}/{meta.get('chunks_total', 0)} chunks"
            f"  updated {counts.get('updated', 0)}"
        )
    return line


def _restored(counts: dict[str, int]) -> int:
    return counts.get("restored_recreated", 0) + counts.get("restored_reverted", 0)


def wait_for_run(
    settings: Settings, run_id: str, *, timeout: float | None = None, quiet: bool = False
) -> dict[str, Any]:
    """Follow a run until it is recorded; returns its audit record."""
    from console.progress import Progress
    from cxsweep.redisconn import get_redis
    from cxsweep.runs.store import FINAL, RunStore

    store = RunStore(get_redis(settings.redis_url), run_id)
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
                _err(f"lost Redis at {settings.redis_url}; waiting for it to come back")
            time.sleep(1.0)
            continue
        if lost_since is not None:
            _err(f"Redis is back after {elapsed - lost_since:.0f}s")
            lost_since = None
        if not meta:
            # The run was stored before we began to wait: its metadata is gone.
            raise CxsweepError(
                f"Redis lost the state of run {run_id} (restarted without persistence, or"
                " flushed?): no worker can finish it; its list lock is gone with it, so"
                " start the run again"
            )
        if meta.get("record_error") and not warned_record_error:
            _err(f"{meta['record_error']}; retrying until it succeeds")
            warned_record_error = True
        done = meta.get("status") in FINAL and meta.get("record")
        if interactive and (done or elapsed - last_print >= 0.5):
            lines = progress.lines(meta, counts, elapsed)
            # Redraw the bars in place: move up over the previous drawing first.
            up = f"\x1b[{drawn}F" if drawn else ""
            print(up + "\n".join(f"{line}\x1b[K" for line in lines), file=sys.stderr, flush=True)
            drawn, last_print = len(lines), elapsed
        elif not quiet and not interactive and elapsed - last_print >= 5:
            print(_progress_line(meta, counts, elapsed), file=sys.stderr, flush=True)
            last_print = elapsed
        if done:
            record: dict[str, Any] = json.loads(meta["record"])
            return record
        if (
            not warned_no_worker
            and elapsed > 15
            and not counts.get("api_requests")
            and not store.begun()
        ):
            _err("no worker has picked the run up yet: is `celery -A workers worker` running?")
            warned_no_worker = True
        time.sleep(0.2)


def _print_restore_summary(record: dict[str, Any]) -> None:
    total = record.get("restore_total")
    print(
        f"restore {record['run_id']} of run {record.get('restore_of')} on list"
        f" {record['list_id']}: {record['status']}"
    )
    print(
        f"  restored   {record.get('restored', 0)}"
        + (f" of {total}" if total is not None else "")
        + " contact(s) the run changed"
    )
    if total is not None:
        print(f"  recreated  {record.get('restored_recreated', 0)} (the run had removed them)")
        print(f"  reverted   {record.get('restored_reverted', 0)} (numbers written back)")
    print(f"  failed     {record.get('failure_count', 0)}")
    print(
        f"  api        {record.get('api_requests', 0)} requests, "
        f"{record.get('api_retries', 0)} retries, {record.get('api_429s', 0)} x 429"
    )
    print(f"  took       {record.get('duration_seconds', 0)} s")
    if record.get("message"):
        print(f"  note       {record['message']}")
    if record["status"] == "halted":
        print("  the restore HALTED for manual review: the rest was not put back")


def _print_apply_lines(record: dict[str, Any]) -> None:
    """What applying a plan met on the list: changes done before, contacts gone."""
    if record.get("already_applied"):
        print(f"  already    {record['already_applied']} update(s) were applied before")
    if record.get("already_gone"):
        print(f"  gone       {record['already_gone']} planned removal(s): no longer on the list")
    if record.get("updates_not_found"):
        print(
            f"  not found  {record['updates_not_found']} planned update(s):"
            " contact no longer on the list"
        )


def print_summary(record: dict[str, Any]) -> None:
    if record.get("kind") == "restore":
        _print_restore_summary(record)
        return
    dry = record.get("dry_run")
    print(
        f"run {record['run_id']} on list {record['list_id']}: {record['status']}"
        + (" (dry run)" if dry else "")
    )
    print(f"  fetched    {record['total_processed']}")
    if dry:
        print(f"  would update {record['planned_updates']}")
        print(f"  would remove {record['planned_removals']}")
    else:
        print(f"  updated    {record['success_count']}")
    print(f"  unchanged  {record['unchanged_count']}")
    if not dry:
        print(f"  removed    {record['purge_count']}")
        print(f"  failed     {record['failure_count']}")
    reasons = record.get("reject_reasons") or {}
    if reasons:
        print("  rejects    " + ", ".join(f"{k} {v}" for k, v in reasons.items()))
    print(
        f"  api        {record.get('api_requests', 0)} requests, "
        f"{record.get('api_retries', 0)} retries, {record.get('api_429s', 0)} x 429"
    )
    latency = (record.get("api_latency_ms") or {}).get("all")
    if latency and latency.get("requests"):
        print(
            f"  latency    p50 {latency['p50']:.1f} ms, p95 {latency['p95']:.1f} ms,"
            f" p99 {latency['p99']:.1f} ms per API request"
        )
    if record.get("kind") == "apply":
        _print_apply_lines(record)
    print(f"  took       {record.get('duration_seconds', 0)} s")
    note = own_note(record)
    if note:
        print(f"  note       {note}")
    if record["status"] == "halted":
        print("  the run HALTED for manual review: nothing further was removed")


def _run_and_report(
    args: argparse.Namespace,
    settings: Settings,
    list_id: str,
    *,
    dry_run: bool,
    options: dict[str, Any],
    before_launch: Any = None,
) -> tuple[str, dict[str, Any]]:
    if getattr(args, "allow_purge_ratio", None) is not None:
        options["allow_purge_ratio"] = args.allow_purge_ratio
    if getattr(args, "allow_volatile_redis", False):
        options["allow_volatile_redis"] = True
    run_id = start_run(
        settings, list_id, dry_run=dry_run, options=options, before_launch=before_launch
    )
    print(f"run {run_id} started on list {list_id}", file=sys.stderr)
    try:
        record = wait_for_run(settings, run_id, timeout=args.timeout, quiet=args.quiet)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            f"interrupted: run {run_id} goes on on the workers;"
            f" follow it with `cxsweep status {run_id}`, stop it with `cxsweep cancel {run_id}`"
        ) from None
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print_summary(record)
    return run_id, record


def _exit_code(record: dict[str, Any]) -> int:
    return EXIT_OK if record["status"] == "completed" else EXIT_RUN_FAILED


def cmd_run(args: argparse.Namespace) -> int:
    check_list_id(args.list_id)
    settings = _settings_for_run()
    if args.plan_out:
        _writable(args.plan_out)
    run_id, record = _run_and_report(args, settings, args.list_id, dry_run=args.dry_run, options={})
    if args.plan_out:
        from cxsweep.redisconn import get_redis
        from cxsweep.runs.planfile import write_plan
        from cxsweep.runs.store import RunStore

        store = RunStore(get_redis(settings.redis_url), run_id)
        with open(args.plan_out, "w", encoding="utf-8") as out:
            count = write_plan(store, out, settings.backend)
        print(f"plan of {count} change(s) written to {args.plan_out}", file=sys.stderr)
    return _exit_code(record)


def _writable(path: str) -> None:
    import pathlib

    parent = pathlib.Path(path).resolve().parent
    if not parent.is_dir():
        raise SettingsError(f"--plan-out: no such directory {parent}")


def cmd_apply(args: argparse.Namespace) -> int:
    """Execute a reviewed plan; contacts changed on the platform since are skipped."""
    from cxsweep.redisconn import get_redis
    from cxsweep.runs.planfile import read_plan, verify_plan
    from cxsweep.runs.store import PlanEntry, RunStore

    settings = _settings_for_run()
    # The whole file is checked (count and digest) before the list is locked and
    # anything is sent: a plan cut short or edited is refused whole.
    header, planned = verify_plan(args.plan)
    print(f"plan {args.plan}: {planned} change(s) to list {header['list_id']}", file=sys.stderr)

    def load(store: RunStore) -> None:
        kinds = {"update": 0, "remove": 0}

        def counted(entries: Iterator[PlanEntry]) -> Iterator[PlanEntry]:
            for entry in entries:
                kinds["update" if entry.after is not None else "remove"] += 1
                yield entry

        # Read again (checked again: a file changed since the check fails here).
        store.load_planned(counted(read_plan(args.plan)[1]))
        store.set_meta(plan_updates=kinds["update"], plan_removals=kinds["remove"])

    run_id, record = _run_and_report(
        args,
        settings,
        header["list_id"],
        dry_run=False,
        options={"apply": True, "plan_of": header.get("run_id")},
        before_launch=load,
    )
    store = RunStore(get_redis(settings.redis_url), run_id)
    stale = record.get("stale_skipped", 0)
    if stale:
        shown = ", ".join(store.stale_ids(10))
        print(f"  skipped    {stale} contact(s) changed on the platform since the plan: {shown}")
    return _exit_code(record)


def cmd_archive(args: argparse.Namespace) -> int:
    from cxsweep.redisconn import get_redis
    from cxsweep.runs.store import RunStore

    get_settings.cache_clear()
    store = RunStore(get_redis(get_settings().redis_url), args.run_id)
    if not store.exists() and not store.archive_pages():
        raise OperatorError(f"no run {args.run_id} (or its archive has expired)")
    count = 0
    for record in store.iter_archive():
        print(json.dumps(record))
        count += 1
    print(f"{count} record(s) of run {args.run_id}", file=sys.stderr)
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    from cxsweep.redisconn import get_redis
    from cxsweep.runs.store import RunStore

    settings = _settings_for_run()
    source = RunStore(get_redis(settings.redis_url), args.run_id)
    meta = source.meta()
    if not meta or not source.archive_pages():
        raise OperatorError(f"run {args.run_id} has no archive to restore (unknown or expired)")
    if meta.get("dry_run") == "1":
        raise CxsweepError(f"run {args.run_id} was a dry run: it changed nothing")
    _, record = _run_and_report(
        args,
        settings,
        meta["list_id"],
        dry_run=False,
        options={"restore_of": args.run_id},
    )
    return _exit_code(record)


def cmd_cancel(args: argparse.Namespace) -> int:
    """Stop a run: no write starts after this, the writes in flight finish, and the run
    is recorded ``cancelled`` (audit line, webhook, list freed) by its own workers."""
    from cxsweep.redisconn import get_redis
    from cxsweep.runs.store import FINAL, RunStore

    get_settings.cache_clear()
    store = RunStore(get_redis(get_settings().redis_url), args.run_id)
    meta = store.meta()
    if not meta:
        raise OperatorError(f"no run {args.run_id}")
    if meta.get("status") in FINAL:
        raise OperatorError(f"run {args.run_id} has already ended: {meta['status']}")
    if not store.cancel(
        f"cancelled by the operator at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
    ):
        print(f"run {args.run_id} was already asked to stop", file=sys.stderr)
    else:
        print(
            f"run {args.run_id} asked to stop: writes in flight finish, then it is recorded"
            " cancelled",
            file=sys.stderr,
        )
    if args.wait:
        record = wait_for_run(get_settings(), args.run_id, timeout=args.timeout, quiet=True)
        print_summary(record)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from cxsweep.redisconn import get_redis, text
    from cxsweep.runs.store import RUN_INDEX, RunStore, kind_of
    from cxsweep.runs.webhook import Outbox

    if args.sweep:
        from console.sweepreport import sweep_status_lines

        print("\n".join(sweep_status_lines(args.sweep)))
        return EXIT_OK
    get_settings.cache_clear()
    settings = get_settings()
    client = get_redis(settings.redis_url)
    run_ids = (
        [args.run_id]
        if args.run_id
        else [text(r) for r in cast(list[bytes], client.zrevrange(RUN_INDEX, 0, args.limit - 1))]
    )
    if not run_ids:
        print("no runs recorded")
    for run_id in run_ids:
        store = RunStore(client, run_id)
        meta = store.meta()
        if not meta:
            _err(f"no run {run_id}")
            return EXIT_USAGE
        started = float(meta.get("started_at") or 0)
        end = float(meta.get("finished_at") or time.time())
        kind = KIND_WORDS[kind_of(meta)]
        print(
            f"{run_id}  {kind:<7}  list {meta.get('list_id')}  "
            + _progress_line(meta, store.counts(), end - started).strip()
        )
        delivery = Outbox(client).describe(run_id)
        if delivery:
            print(f"    webhook: {delivery}")
    return EXIT_OK


# --- simulator and demo -----------------------------------------------------------------


def cmd_simulator(args: argparse.Namespace) -> int:
    from devtools.simulator import SimConfig, Simulator

    config = SimConfig(
        page_size=args.page_size,
        token_lifetime=args.token_lifetime,
        latency_ms=args.latency_ms,
        rate_limit=args.rate_limit,
        fail_rate=args.fail_rate,
        total_records=args.total_records,
        seed=args.seed,
        job_delay=args.job_delay,
    )
    try:
        sim = Simulator(config, host=args.host, port=args.port)
    except (ValueError, OSError) as exc:  # a bad option, or the port is taken
        print(f"cxsweep simulator: {exc}", file=sys.stderr)
        return EXIT_USAGE
    list_ids = [f"list-{number + 1}" for number in range(args.lists)]
    call_list_ids = [str(1001 + number) for number in range(args.call_lists)]
    for number, list_id in enumerate(list_ids):
        sim.put_list(list_id, count=args.contacts, seed=args.seed + number)
    for number, list_id in enumerate(call_list_ids):
        sim.put_call_list(list_id, count=args.contacts, seed=args.seed + number)
    for list_id, count, seed in args.list:
        sim.put_list(list_id, count=count, seed=seed)
        list_ids.append(list_id)
    for list_id, count, seed in args.call_list:
        sim.put_call_list(list_id, count=count, seed=seed)
        call_list_ids.append(list_id)
    print(
        f"simulator on {sim.url}: {len(list_ids)} v2 list(s) and {len(call_list_ids)} CXone"
        " calling list(s) (client id demo-client, secret demo-secret;"
        " CXone access key demo-key-id / demo-key-secret)",
        file=sys.stderr,
    )
    print(f"  v2 lists: {', '.join(list_ids) or '(none)'}", file=sys.stderr)
    print(f"  CXone calling lists: {', '.join(call_list_ids) or '(none)'}", file=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        sim.serve_forever()
    return EXIT_OK


def _seeded_list(value: str) -> tuple[str, int, int]:
    """``ID:COUNT[:SEED]`` (COUNT 1000 when left out) for --list and --call-list."""
    list_id, _, rest = value.partition(":")
    count, _, seed = rest.partition(":")
    if not list_id or not (count or "0").isdigit() or not (seed or "0").isdigit():
        raise argparse.ArgumentTypeError(f"{value!r}: expected ID:COUNT[:SEED], e.g. demo:10000")
    return list_id, int(count or 1000), int(seed or 0)


def cmd_demo(args: argparse.Namespace) -> int:
    from console.demo import run_demo

    return run_demo(contacts=args.contacts, workers=args.workers, keep=args.keep)


def _waiting_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the audit record as JSON")
    parser.add_argument("--quiet", action="store_true", help="no live progress")


def _ratio(value: str) -> float:
    try:
        ratio = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0.0 <= ratio <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return ratio


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"{value!r}: expected a positive number of seconds")
    return seconds


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cxsweep")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxsweep", description="Clean outbound-dialing contact lists on NICE CXone."
    )
    parser.add_argument("--version", action="version", version=f"cxsweep {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="sweep one contact list on the workers and wait")
    run.add_argument("list_id")
    run.add_argument("--dry-run", action="store_true", help="read and judge, write nothing")
    run.add_argument(
        "--allow-purge-ratio",
        type=_ratio,
        metavar="R",
        help="let this run remove up to this share of the list (0..1), above the guard",
    )
    run.add_argument(
        "--allow-volatile-redis",
        action="store_true",
        help="write although Redis does not persist (a restart mid-run loses the plan)",
    )
    run.add_argument("--timeout", type=_seconds, default=None, help="give up waiting after N s")
    run.add_argument("--plan-out", metavar="FILE", help="write the plan as JSON lines")
    _waiting_options(run)
    run.set_defaults(func=cmd_run)

    apply = sub.add_parser("apply", help="execute a reviewed plan file (skips stale contacts)")
    apply.add_argument("plan", metavar="FILE")
    apply.add_argument("--allow-purge-ratio", type=_ratio, metavar="R")
    apply.add_argument("--allow-volatile-redis", action="store_true")
    apply.add_argument("--timeout", type=_seconds, default=None)
    _waiting_options(apply)
    apply.set_defaults(func=cmd_apply)

    archive = sub.add_parser("archive", help="the contacts a run changed, as they were")
    archive_sub = archive.add_subparsers(dest="archive_command", required=True)
    export = archive_sub.add_parser("export", help="print a run's archive as JSON lines")
    export.add_argument("run_id")
    export.set_defaults(func=cmd_archive)

    restore = sub.add_parser("restore", help="put back what a run changed")
    restore.add_argument("run_id")
    restore.add_argument("--allow-volatile-redis", action="store_true")
    restore.add_argument("--timeout", type=_seconds, default=None)
    _waiting_options(restore)
    restore.set_defaults(func=cmd_restore)

    cancel = sub.add_parser("cancel", help="stop a run: no new write, then recorded cancelled")
    cancel.add_argument("run_id")
    cancel.add_argument("--wait", action="store_true", help="wait for the run's record")
    cancel.add_argument("--timeout", type=_seconds, default=None)
    cancel.set_defaults(func=cmd_cancel)

    status = sub.add_parser("status", help="runs in progress and recent runs")
    status.add_argument("run_id", nargs="?")
    status.add_argument("--limit", type=int, default=10)
    status.add_argument("--sweep", metavar="SWEEP_ID", help="a scheduled sweep's lists (or latest)")
    status.set_defaults(func=cmd_status)

    sim = sub.add_parser("simulator", help="serve the v2 contract locally with messy lists")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8080)
    sim.add_argument("--lists", type=int, default=3)
    sim.add_argument("--call-lists", type=int, default=1, help="CXone calling lists 1001...")
    sim.add_argument("--contacts", type=int, default=1000)
    sim.add_argument("--page-size", type=int, default=500)
    sim.add_argument("--token-lifetime", type=int, default=1800)
    sim.add_argument("--latency-ms", type=float, default=0.0)
    sim.add_argument("--rate-limit", type=float, default=0.0, help="requests/s; 0 = none")
    sim.add_argument("--fail-rate", type=float, default=0.0, help="share of 503 answers")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument(
        "--list",
        action="append",
        default=[],
        type=_seeded_list,
        metavar="ID:COUNT[:SEED]",
        help="also seed a v2 list of COUNT messy contacts (repeatable)",
    )
    sim.add_argument(
        "--call-list",
        action="append",
        default=[],
        type=_seeded_list,
        metavar="ID:COUNT[:SEED]",
        help="also seed a CXone calling list of COUNT multi-phone records (repeatable)",
    )
    sim.add_argument("--job-delay", type=float, default=0.5, help="seconds an upload job takes")
    sim.add_argument("--total-records", action="store_true", help="v2 reads give totalRecords")
    sim.set_defaults(func=cmd_simulator)

    demo = sub.add_parser("demo", help="simulator + Redis + workers + one sweep, all local")
    demo.add_argument("--contacts", type=int, default=5000)
    demo.add_argument("--workers", type=int, default=2)
    demo.add_argument("--keep", action="store_true", help="leave the demo's files in place")
    demo.set_defaults(func=cmd_demo)

    add_check_parser(sub)
    add_report_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (SettingsError, CredentialsRefused, PlanFileError, OperatorError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    except CxsweepError as exc:
        _err(str(exc))
        return EXIT_RUN_FAILED
    except KeyboardInterrupt as exc:
        _err(str(exc) or "interrupted (a started run goes on on the workers: `cxsweep status`)")
        return 130


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
