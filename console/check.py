"""``cxsweep check NUMBER... [--list LIST_ID] [--json]``: explain verdicts to an operator.

With no NUMBER arguments, numbers are read one a line from standard input, so a CSV
column can be piped through it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TextIO

import redis

from cxsweep.errors import CxsweepError, SettingsError
from cxsweep.phone.numbers import Sanitizer, Verdict

if TYPE_CHECKING:
    from cxsweep.phone.lookup import LineTypeProvider
    from cxsweep.phone.numbers import Directive
    from cxsweep.settings import Settings


def add_check_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check",
        help="show the verdict for phone numbers under a list's directive",
        description=(
            "Print, for each number, the verdict under the list's directive: E.164, region, "
            "line type, carrier, time zones, and the reason when rejected. Reads numbers "
            "one a line from standard input when none are given."
        ),
    )
    parser.add_argument("numbers", nargs="*", metavar="NUMBER")
    parser.add_argument(
        "--list",
        dest="list_id",
        default=None,
        metavar="LIST_ID",
        help="judge under this list's directive from the policy file (default: the default)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(func=check_command)


def _read_numbers(stream: TextIO) -> list[str]:
    return [line.rstrip("\r\n") for line in stream if line.strip()]


def _as_dict(verdict: Verdict) -> dict[str, Any]:
    return {
        "raw": verdict.raw,
        "kept": verdict.kept,
        "e164": verdict.e164,
        "reason": verdict.reason,
        "detail": verdict.detail or None,
        "region": verdict.region,
        "type": verdict.line_type,
        "carrier": verdict.carrier,
        "time_zones": list(verdict.time_zones),
        "extension_dropped": verdict.extension_dropped,
    }


def format_verdict(verdict: Verdict) -> str:
    """One human line: what was decided, then what is known about the number."""
    if verdict.kept:
        head = f"{verdict.e164}  kept"
        if verdict.extension_dropped:
            head += " (extension dropped)"
    else:
        head = f"rejected: {verdict.reason}"
        if verdict.detail:
            head += f" ({verdict.detail})"
    facts = [
        f"region={verdict.region or '-'}",
        f"type={verdict.line_type or '-'}",
        f"carrier={verdict.carrier or '-'}",
        f"tz={','.join(verdict.time_zones) or '-'}",
    ]
    return f"{verdict.raw!r}: {head}  " + " ".join(facts)


def _provider(settings: Settings, directive: Directive) -> LineTypeProvider | None:
    if directive.lookup != "twilio":
        return None
    from cxsweep.phone.lookup import build_provider

    return build_provider(settings, directive, redis.Redis.from_url(settings.redis_url))


def run_check(numbers: Iterable[str], list_id: str | None, *, as_json: bool, out: TextIO) -> int:
    from cxsweep.phone.policy import load_policy
    from cxsweep.settings import load_settings

    settings = load_settings()
    policy = load_policy(settings)
    directive = policy.default if list_id is None else policy.directive_for(list_id)
    if list_id is not None and not settings.policy_file:
        print(
            f"cxsweep: note: no policy file (CXSWEEP_POLICY_FILE): list {list_id} is judged"
            " under the settings' defaults",
            file=sys.stderr,
        )
    if list_id is not None and policy.excluded(list_id):
        print(f"cxsweep: note: list {list_id} is excluded from sweeps", file=sys.stderr)
    sanitizer = Sanitizer(directive, lookup=_provider(settings, directive))
    for verdict in sanitizer.check_many(list(numbers)):
        print(json.dumps(_as_dict(verdict)) if as_json else format_verdict(verdict), file=out)
    return 0


def check_command(args: argparse.Namespace) -> int:
    numbers = list(args.numbers) or _read_numbers(sys.stdin)
    try:
        return run_check(numbers, args.list_id, as_json=args.json, out=sys.stdout)
    except SettingsError as exc:
        print(f"cxsweep: {exc}", file=sys.stderr)
        return 2
    except CxsweepError as exc:
        # Look-up failures: the numbers were fine, the provider was not.
        print(f"cxsweep: {exc}", file=sys.stderr)
        return 1
    except (OSError, redis.RedisError) as exc:
        print(f"cxsweep: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
