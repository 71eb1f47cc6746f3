"""``cxsweep report``: the command that finds a run's (or a sweep's) record and writes
its page. Apart from the pages themselves, which it imports both of."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, cast

from console.report import (
    EXIT_OK,
    EXIT_USAGE,
    extras_from_counts,
    record_from_audit_log,
    render_html,
)
from console.sweepreport import sweep_report_command
from cxsweep.errors import SettingsError


def record_from_redis(redis_url: str, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from cxsweep.errors import CxsweepError, OperatorError
    from cxsweep.redisconn import get_redis, text
    from cxsweep.runs.keys import RUN_INDEX
    from cxsweep.runs.store import RunStore
    from devtools.localredis import redis_answers

    if not redis_answers(redis_url):
        raise SettingsError(f"no Redis answers at CXSWEEP_REDIS_URL={redis_url}")
    client = get_redis(redis_url)
    if run_id == "latest":
        newest = cast(list[bytes], client.zrevrange(RUN_INDEX, 0, 0))
        if not newest:
            raise CxsweepError("no runs recorded")
        run_id = text(newest[0])
    store = RunStore(client, run_id)
    meta = store.meta()
    if not meta:
        raise OperatorError(f"no run {run_id} in Redis (use --audit-log for an older run)")
    if not meta.get("record"):
        raise CxsweepError(
            f"run {run_id} has not finished (status {meta.get('status', '?')}): no report yet"
        )
    return json.loads(meta["record"]), extras_from_counts(store.counts())


def report_command(args: argparse.Namespace) -> int:
    """``cxsweep report RUN_ID [--html FILE] [--audit-log FILE]``."""
    if getattr(args, "sweep", None):
        if args.run_id:
            raise SettingsError("give a RUN_ID or --sweep SWEEP_ID, not both")
        return sweep_report_command(args)
    if not args.run_id:
        raise SettingsError("give a RUN_ID (or `latest`), or --sweep SWEEP_ID")
    extras: dict[str, Any] = {}
    if args.audit_log:
        try:
            found = record_from_audit_log(args.audit_log, args.run_id)
        except OSError as exc:
            print(
                f"cxsweep: cannot read audit log {args.audit_log}: {exc.strerror}", file=sys.stderr
            )
            return EXIT_USAGE
        if found is None:
            print(f"cxsweep: no run {args.run_id} in {args.audit_log}", file=sys.stderr)
            return EXIT_USAGE
        record = found
    else:
        from cxsweep.settings import get_settings

        get_settings.cache_clear()
        record, extras = record_from_redis(get_settings().redis_url, args.run_id)
    page = render_html(record, extras)
    target = args.html or f"cxsweep-report-{record.get('run_id') or args.run_id}.html"
    if target == "-":
        sys.stdout.write(page)
        return EXIT_OK
    Path(target).write_text(page, encoding="utf-8")
    print(
        f"report of run {record.get('run_id')} written to {Path(target).resolve()}", file=sys.stderr
    )
    return EXIT_OK


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``report`` on the CLI's subparsers (``console.cli.build_parser``)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "report", help="write a run's report as one self-contained HTML page"
    )
    parser.add_argument("run_id", nargs="?", help="the run's id, or `latest`")
    parser.add_argument(
        "--html",
        metavar="FILE",
        default=None,
        help="where to write the page (default cxsweep-report-RUN_ID.html; - for stdout)",
    )
    parser.add_argument(
        "--audit-log",
        metavar="FILE",
        default=None,
        help="read the record from this audit log instead of Redis",
    )
    parser.add_argument(
        "--sweep",
        metavar="SWEEP_ID",
        default=None,
        help="a scheduled sweep (or `latest`) as one page: every list, linked to its run",
    )
    parser.add_argument(
        "--with-runs",
        action="store_true",
        help="with --sweep: also write each run's report (report-RUN_ID.html) next to it",
    )
    parser.set_defaults(func=report_command)
    return parser
