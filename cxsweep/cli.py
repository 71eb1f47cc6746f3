"""``cxsweep``: the operator's command line (the one edge that also talks to workers).

Exit codes: 0 completed, 1 halted or failed, 2 usage, settings or credentials error.
Operator mistakes end in one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, cast

from cxsweep.check import add_check_parser
from cxsweep.errors import CredentialsRefused, CxsweepError, RetryableApiError, SettingsError
from cxsweep.report import add_report_parser
from cxsweep.settings import Settings, get_settings

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE = 0, 1, 2


def _err(message: str) -> None:
    print(f"cxsweep: {message}", file=sys.stderr)


def _settings_for_run() -> Settings:
    from cxsweep.policy import load_policy

    get_settings.cache_clear()
    settings = get_settings()
    settings.require_api()
    load_policy(settings)  # a bad policy file stops here, before any call
    return settings


# --- run ------------------------------------------------------------------------------


def start_run(
    settings: Settings, list_id: str, *, dry_run: bool, options: dict[str, Any] | None = None
) -> str:
    """Check credentials, take the list's lock, store the run and hand it to the workers."""
    from cxsweep.backend import make_backend
    from cxsweep.localredis import redis_answers
    from cxsweep.redisconn import get_redis
    from cxsweep.runs import prepare_run

    if not redis_answers(settings.redis_url):
        raise SettingsError(f"no Redis answers at CXSWEEP_REDIS_URL={settings.redis_url}")
    redis_client = get_redis(settings.redis_url)
    try:
        make_backend(settings, redis_client).check_credentials()
    except RetryableApiError as exc:
        raise CxsweepError(f"cannot obtain a token: {exc}") from None
    run_id = prepare_run(
        redis_client,
        list_id,
        dry_run=dry_run,
        options=options,
        deadline_seconds=settings.run_deadline_seconds,
    )

    from tasks.sweep import launch

    launch(run_id)
    return run_id


def _progress_line(meta: dict[str, str], counts: dict[str, int], elapsed: float) -> str:
    fetched = counts.get("fetched", 0)
    rate = fetched / elapsed if elapsed > 0 else 0.0
    line = (
        f"[{meta.get('status', '?'):>9}] {elapsed:6.1f}s  read {counts.get('pages_read', 0)} pages"
        f"  sanitized {fetched} ({rate:,.0f}/s)"
    )
    if meta.get("status") in ("writing", "completed", "halted", "failed"):
        line += (
            f"  written {counts.get('chunks_done', 0)}/{meta.get('chunks_total', 0)} chunks"
            f"  updated {counts.get('updated', 0)}"
        )
    return line


def wait_for_run(
    settings: Settings, run_id: str, *, timeout: float | None = None, quiet: bool = False
) -> dict[str, Any]:
    """Follow a run until it is recorded; returns its audit record."""
    from cxsweep.redisconn import get_redis
    from cxsweep.runs import FINAL, RunStore

    store = RunStore(get_redis(settings.redis_url), run_id)
    started = time.monotonic()
    interactive = sys.stderr.isatty() and not quiet
    last_print = 0.0
    warned_no_worker = False
    while True:
        meta = store.meta()
        elapsed = time.monotonic() - started
        if meta.get("status") in FINAL and meta.get("record"):
            if interactive:
                print(file=sys.stderr)
            record: dict[str, Any] = json.loads(meta["record"])
            return record
        if not quiet and (interactive or elapsed - last_print >= 5):
            line = _progress_line(meta, store.counts(), elapsed)
            print(
                ("\r" + line) if interactive else line,
                end="" if interactive else "\n",
                file=sys.stderr,
                flush=True,
            )
            last_print = elapsed
        if not warned_no_worker and elapsed > 15 and not store.counts().get("api_requests"):
            _err("no worker has picked the run up yet: is `celery -A workers worker` running?")
            warned_no_worker = True
        if timeout is not None and elapsed > timeout:
            raise CxsweepError(f"run {run_id} did not finish within {timeout:.0f}s")
        time.sleep(0.2)


def print_summary(record: dict[str, Any]) -> None:
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
    print(f"  took       {record.get('duration_seconds', 0)} s")
    if record.get("message"):
        print(f"  note       {record['message']}")
    if record["status"] == "halted":
        print("  the run HALTED for manual review: nothing further was removed")


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings_for_run()
    options = {}
    if args.allow_purge_ratio is not None:
        options["allow_purge_ratio"] = args.allow_purge_ratio
    run_id = start_run(settings, args.list_id, dry_run=args.dry_run, options=options)
    print(f"run {run_id} started on list {args.list_id}", file=sys.stderr)
    record = wait_for_run(settings, run_id, timeout=args.timeout, quiet=args.quiet)
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print_summary(record)
    return EXIT_OK if record["status"] == "completed" else EXIT_RUN_FAILED


def cmd_status(args: argparse.Namespace) -> int:
    from cxsweep.redisconn import get_redis, text
    from cxsweep.runs import RUN_INDEX, RunStore

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
        print(
            f"{run_id}  list {meta.get('list_id')}  "
            + _progress_line(meta, store.counts(), end - started).strip()
        )
    return EXIT_OK


# --- simulator and demo -----------------------------------------------------------------


def cmd_simulator(args: argparse.Namespace) -> int:
    from cxsweep.simulator import SimConfig, Simulator

    config = SimConfig(
        page_size=args.page_size,
        token_lifetime=args.token_lifetime,
        latency_ms=args.latency_ms,
        rate_limit=args.rate_limit,
        fail_rate=args.fail_rate,
        seed=args.seed,
    )
    sim = Simulator(config, host=args.host, port=args.port)
    for number in range(args.lists):
        sim.put_list(f"list-{number + 1}", count=args.contacts, seed=args.seed + number)
    for number in range(args.call_lists):
        sim.put_call_list(str(1001 + number), count=args.contacts, seed=args.seed + number)
    print(
        f"simulator on {sim.url}: {args.lists} v2 list(s) and {args.call_lists} CXone calling"
        f" list(s) of {args.contacts} contacts (client id demo-client, secret demo-secret;"
        " CXone access key demo-key-id / demo-key-secret)",
        file=sys.stderr,
    )
    with contextlib.suppress(KeyboardInterrupt):
        sim.serve_forever()
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from cxsweep.demo import run_demo

    return run_demo(contacts=args.contacts, workers=args.workers, keep=args.keep)


def _ratio(value: str) -> float:
    try:
        ratio = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0.0 <= ratio <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return ratio


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxsweep", description="Clean outbound-dialing contact lists on NICE CXone."
    )
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
    run.add_argument("--timeout", type=float, default=None, help="give up waiting after N s")
    run.add_argument("--json", action="store_true", help="print the audit record as JSON")
    run.add_argument("--quiet", action="store_true", help="no live progress")
    run.set_defaults(func=cmd_run)

    status = sub.add_parser("status", help="runs in progress and recent runs")
    status.add_argument("run_id", nargs="?")
    status.add_argument("--limit", type=int, default=10)
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
    except (SettingsError, CredentialsRefused) as exc:
        _err(str(exc))
        return EXIT_USAGE
    except CxsweepError as exc:
        _err(str(exc))
        return EXIT_RUN_FAILED
    except KeyboardInterrupt:
        _err("interrupted (a started run goes on on the workers: `cxsweep status`)")
        return 130


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
