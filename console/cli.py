"""``cxsweep``: the operator's command line (the one edge that also talks to workers).

Exit codes: 0 completed, 1 halted, failed or cancelled, 2 usage, settings or credentials
error, or a run id or list id that cannot be used.
Operator mistakes end in one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, cast

from console import launch
from console.check import add_check_parser
from console.progress import progress_line
from console.reportcmd import add_report_parser
from console.summary import print_summary
from cxsweep.errors import (
    CredentialsRefused,
    CxsweepError,
    OperatorError,
    SettingsError,
)
from cxsweep.runs.planfile import PlanFileError
from cxsweep.settings import Settings, get_settings

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE = 0, 1, 2


def _err(message: str) -> None:
    print(f"cxsweep: {message}", file=sys.stderr)


# --- run ------------------------------------------------------------------------------


KIND_WORDS = {"sweep": "sweep", "dry_run": "dry run", "apply": "apply", "restore": "restore"}


def _launch_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if getattr(args, "allow_purge_ratio", None) is not None:
        options["allow_purge_ratio"] = args.allow_purge_ratio
    if getattr(args, "allow_volatile_redis", False):
        options["allow_volatile_redis"] = True
    return options


def _follow_and_report(
    args: argparse.Namespace, settings: Settings, run_id: str, list_id: str
) -> dict[str, Any]:
    print(f"run {run_id} started on list {list_id}", file=sys.stderr)
    try:
        record = launch.wait_for_run(settings, run_id, timeout=args.timeout, quiet=args.quiet)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            f"interrupted: run {run_id} goes on on the workers;"
            f" follow it with `cxsweep status {run_id}`, stop it with `cxsweep cancel {run_id}`"
        ) from None
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print_summary(record)
    return record


def _exit_code(record: dict[str, Any]) -> int:
    return EXIT_OK if record["status"] == "completed" else EXIT_RUN_FAILED


def cmd_run(args: argparse.Namespace) -> int:
    launch.check_list_id(args.list_id)
    settings = launch.settings_for_run()
    if args.plan_out:
        _writable(args.plan_out)
    run_id = launch.start_run(
        settings, args.list_id, dry_run=args.dry_run, options=_launch_options(args)
    )
    record = _follow_and_report(args, settings, run_id, args.list_id)
    if args.plan_out:
        from cxsweep.runs.planfile import write_plan

        store = launch.store_for(settings, run_id)
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
    from cxsweep.runs.planfile import verify_plan

    settings = launch.settings_for_run()
    # The whole file is checked (count and digest) before the list is locked and
    # anything is sent: a plan cut short or edited is refused whole.
    header, planned = verify_plan(args.plan)
    print(f"plan {args.plan}: {planned} change(s) to list {header['list_id']}", file=sys.stderr)
    list_id = header["list_id"]
    run_id = launch.start_apply(
        settings,
        args.plan,
        list_id,
        plan_of=header.get("run_id"),
        options=_launch_options(args),
    )
    record = _follow_and_report(args, settings, run_id, list_id)
    stale = record.get("stale_skipped", 0)
    if stale:
        shown = ", ".join(launch.store_for(settings, run_id).stale_ids(10))
        print(f"  skipped    {stale} contact(s) changed on the platform since the plan: {shown}")
    return _exit_code(record)


def cmd_archive(args: argparse.Namespace) -> int:
    get_settings.cache_clear()
    store = launch.store_for(get_settings(), args.run_id)
    if not store.exists() and not store.archive_pages():
        raise OperatorError(f"no run {args.run_id} (or its archive has expired)")
    count = 0
    for record in store.iter_archive():
        print(json.dumps(record))
        count += 1
    print(f"{count} record(s) of run {args.run_id}", file=sys.stderr)
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    settings = launch.settings_for_run()
    run_id, list_id = launch.start_restore(settings, args.run_id, options=_launch_options(args))
    return _exit_code(_follow_and_report(args, settings, run_id, list_id))


def cmd_cancel(args: argparse.Namespace) -> int:
    """Stop a run: no write starts after this, the writes in flight finish, and the run
    is recorded ``cancelled`` (audit line, webhook, list freed) by its own workers."""
    get_settings.cache_clear()
    if not launch.cancel(get_settings(), args.run_id):
        print(f"run {args.run_id} was already asked to stop", file=sys.stderr)
    else:
        print(
            f"run {args.run_id} asked to stop: writes in flight finish, then it is recorded"
            " cancelled",
            file=sys.stderr,
        )
    if args.wait:
        record = launch.wait_for_run(get_settings(), args.run_id, timeout=args.timeout, quiet=True)
        print_summary(record)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from cxsweep.redisconn import get_redis, text
    from cxsweep.runs.keys import RUN_INDEX
    from cxsweep.runs.store import RunStore, kind_of
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
            + progress_line(meta, store.counts(), end - started).strip()
        )
        # Read from the run itself, so they show while it goes, not only once recorded.
        for warning in store.warnings():
            print(f"    WARNING: {warning}")
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


def entry() -> None:
    """The ``cxsweep`` program: ``main``, then exit without the interpreter's last
    garbage collections over every object the imports made (~0.1 s on a 2-core machine,
    a tenth of a short run's fixed cost): the process is ending, there is nothing to
    free. Exit handlers still run (logging flushes there), so do stdout and stderr's
    flushes; every file the commands write is closed by its ``with`` block."""
    code = main()
    gc.disable()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    entry()
