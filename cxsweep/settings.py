"""Settings from ``CXSWEEP_*`` environment variables, optionally added to by a ``.env`` file.

Each setting is declared once, below: its type, default, bounds and help text. The
loader, the README's table (``python -m cxsweep.settings --markdown``, checked by a
test) and the error messages all come from that declaration. Validated once, up front:
a bad value raises ``SettingsError`` with a one-line message naming the variable, before
any network call is made.

Long because the declaration is the point: some fifty settings, each with its type,
default, bounds and help in one place, and the few checks they share beside them.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import math
import os
import re
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import phonenumbers

from cxsweep.errors import SettingsError
from cxsweep.phone.numbers import TYPE_BY_NAME

PREFIX = "CXSWEEP_"
# A run's keys live a week (cxsweep.runs.store.DATA_TTL): no run time-out may outlast them.
WEEK = 7 * 24 * 3600


class Secret:
    """A string that never prints itself: safe in reprs, logs and tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__


NO_SECRET = Secret("")


def masked_url(url: str) -> str:
    """``url`` with its password masked, for messages and logs (the domain does not load
    kombu for its ``sanitize_url``; this is the same rule)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:  # nothing of it is safe to show
        return "(not a URL)"
    if "://" not in url:
        return "(not a URL)"
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{user.split(':', 1)[0]}:**@{host}").geturl()


# --- how one value is checked ---------------------------------------------------------

Check = Callable[[str, Any], Any]  # (variable name, parsed value) -> value, or raises


def _url(*schemes: str) -> Check:
    def check(name: str, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.netloc:
            raise SettingsError(f"{name}={value!r} is not a URL ({'/'.join(schemes)}://host...)")
        return value.rstrip("/") if "http" in schemes else value

    return check


def _regions(name: str, codes: frozenset[str]) -> frozenset[str]:
    codes = frozenset(code.upper() for code in codes)
    unknown = sorted(codes - phonenumbers.SUPPORTED_REGIONS)
    if unknown:
        raise SettingsError(f"{name}: unknown region code(s) {', '.join(unknown)}")
    return codes


def _region(name: str, code: str | None) -> str | None:
    if code is None:
        return None
    code = code.upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise SettingsError(f"{name}: unknown region code {code}")
    return code


def _line_types(name: str, names: frozenset[str]) -> frozenset[str]:
    names = frozenset(n.upper() for n in names)
    unknown = sorted(names - set(TYPE_BY_NAME))
    if unknown:
        raise SettingsError(
            f"{name}: unknown line type(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(TYPE_BY_NAME))})"
        )
    return names


def _existing_file(name: str, path: str) -> str:
    if path and not Path(path).is_file():
        raise SettingsError(f"{name}: no such file {path}")
    return path


def _pattern(regex: str, example: str) -> Check:
    def check(name: str, value: str) -> str:
        if value and not re.fullmatch(regex, value):
            raise SettingsError(f"{name}={value!r}: expected like {example}")
        return value

    return check


_HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")


def _host_names(name: str, entries: frozenset[str]) -> frozenset[str]:
    """Hosts whose certificates are not verified, compared with a URL's bare host: an
    entry with a scheme, port, path or wildcard would never match, so it is refused."""
    hosts: set[str] = set()
    for raw in entries:
        entry = raw.lower()
        bare = entry[1:-1] if entry.startswith("[") and entry.endswith("]") else entry
        try:
            hosts.add(str(ipaddress.ip_address(bare)))
            continue
        except ValueError:
            pass
        if not _HOST_NAME.match(entry):
            raise SettingsError(
                f"{name}: {raw!r} is not a bare host name (no scheme, port, path or"
                " wildcard), e.g. lab.example or 10.0.0.5"
            )
        hosts.add(entry)
    return frozenset(hosts)


def _broker_url(name: str, value: str) -> str:
    if not value:
        return value
    schemes = ("amqp", "amqps", "redis", "rediss")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        parts = urlsplit("")
    if parts.scheme not in schemes or not parts.hostname:
        raise SettingsError(
            f"{name}={masked_url(value)!r} is not a broker URL ({'/'.join(schemes)}://host...)"
        )
    return value


@dataclass(frozen=True)
class Spec:
    """What the declaration says of one setting, beyond its type and default."""

    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    check: Check | None = None
    #: how the README shows the default when the value itself says too little
    shown_default: str | None = None


def setting(
    default: Any,
    help: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] = (),
    check: Check | None = None,
    shown_default: str | None = None,
) -> Any:
    spec = Spec(help, minimum, maximum, choices, check, shown_default)
    return field(default=default, metadata={"spec": spec})


@dataclass(frozen=True)
class Settings:
    """Every setting of the service; the variable is ``CXSWEEP_`` + the upper-case name."""

    backend: str = setting(
        "v2", "`v2` (the campaign contract) or `cxone` (docs/cxone.md)", choices=("v2", "cxone")
    )
    api_url: str = setting("", "base URL of the contact-list API", check=_url("http", "https"))
    token_url: str = setting(
        "",
        "OAuth token endpoint",
        check=_url("http", "https"),
        shown_default="`{API_URL}/oauth/token`",
    )
    client_id: str = setting("", "OAuth client id")
    client_secret: Secret = setting(NO_SECRET, "OAuth client secret")
    redis_url: str = setting(
        "redis://127.0.0.1:6379/0",
        "results, token cache, locks, rate limit and run state (and the broker by default)",
        check=_url("redis", "rediss", "unix"),
    )
    broker_url: str = setting(
        "",
        "where task messages go: `amqp://...` (RabbitMQ) for a fleet; a dead worker's"
        " messages come back when its connection drops (README: Brokers)",
        check=_broker_url,
        shown_default="`CXSWEEP_REDIS_URL`",
    )
    allow_volatile_redis: bool = setting(
        False,
        "`1`: runs write although Redis neither persists nor refuses eviction",
    )
    aggregator_url: str = setting(
        "", "webhook receiver; no webhook when unset", check=_url("http", "https")
    )
    webhook_secret: Secret = setting(
        NO_SECRET,
        "signs the webhook: `X-Cxsweep-Signature: sha256=HMAC(timestamp.body)`; unset, webhooks"
        " go out unsigned and the worker warns once",
    )
    audit_log: str = setting(
        "sanitization_audit.log", "JSON-lines audit log, on the worker that records the run"
    )
    allowed_regions: frozenset[str] = setting(
        frozenset({"US", "GB", "CA"}),
        "regions a number may belong to (from the number itself)",
        check=_regions,
        shown_default="`US,GB,CA`",
    )
    blocked_types: frozenset[str] = setting(
        frozenset({"VOIP", "TOLL_FREE"}),
        "libphonenumber line types to reject",
        check=_line_types,
        shown_default="`VOIP,TOLL_FREE`",
    )
    default_region: str | None = setting(
        "US",
        "region for numbers written without a country code (empty: reject them)",
        check=_region,
    )
    policy_file: str = setting(
        "", "TOML policy with per-list directives (README: Phone policy)", check=_existing_file
    )
    lookup_url: str = setting(
        "https://lookups.twilio.com",
        "line-type look-up service (optional, paid)",
        check=_url("http", "https"),
    )
    twilio_account_sid: str = setting("", "look-up account; the look-up is used when both are set")
    twilio_auth_token: Secret = setting(NO_SECRET, "look-up token")
    connect_timeout: float = setting(
        5.0, "seconds to connect, per request", minimum=0.1, maximum=300
    )
    read_timeout: float = setting(30.0, "seconds to wait for an answer", minimum=0.1, maximum=600)
    max_response_bytes: int = setting(
        20 * 1024 * 1024,
        "larger answers fail the step (a CXone list download is streamed, with its own caps)",
        minimum=1024,
        maximum=2**30,
    )
    breaker_threshold: int = setting(
        5, "consecutive 5xx on writes that halt a run", minimum=1, maximum=1000
    )
    # A chord of every write chunk (10,000 at 1,000,000 contacts) made the worker that sent
    # it hold a message, a result and a subscription per task at once (+90 MB, issue 15);
    # waves of 500 keep that to a few MB while giving each of a fleet's 32 to 100 thread
    # slots 5 or more tasks a wave, so the wait at a wave's end (its last tasks running,
    # the other slots empty) stays a few percent of the writes. Raise it with the fleet.
    write_wave: int = setting(
        500,
        "write tasks sent at once, a chord each; the next wave when it ends (about 5x the"
        " fleet's worker slots or more); also how many the re-read before writing sends"
        " as it goes",
        minimum=1,
        maximum=100_000,
    )
    run_deadline_seconds: int = setting(
        6 * 3600, "the watchdog fails runs older than this", minimum=10, maximum=WEEK
    )
    run_stall_seconds: int = setting(
        15 * 60,
        "... and runs whose counters have not moved for this long",
        minimum=60,
        maximum=WEEK,
    )
    visibility_timeout: int = setting(
        3600,
        "Redis broker: when the messages of a dead worker are delivered again",
        minimum=1020,
        maximum=WEEK,
    )
    http_pool_size: int = setting(
        32, "pooled connections per worker process", minimum=1, maximum=1024
    )
    # Sizes the removal tasks (``cxsweep.runs.writes.removals_per_task``): about two a
    # slot, so every slot is busy without a task's overhead repeated every few removals.
    write_slots: int = setting(
        32,
        "worker slots that take write tasks, summed over the fleet (the I/O workers'"
        " threads): removals are cut into about two tasks a slot, 10 to 100 contacts each,"
        " updates into about two a slot, up to 1,000 each",
        minimum=1,
        maximum=100_000,
    )
    sweep_schedule: str = setting(
        "",
        "crontab of beat's sweep of every list",
        shown_default="policy's `[default]` schedule, else `0 2 * * *`",
    )
    max_concurrent_runs: int = setting(
        4, "runs a scheduled sweep keeps going at once", minimum=1, maximum=1000
    )
    metrics_port: int = setting(
        9808, "Prometheus metrics of each worker (0: none)", minimum=0, maximum=65535
    )
    log_format: str = setting(
        "text", "`json` for JSON lines with run, list and task ids", choices=("text", "json")
    )
    tls_insecure_hosts: frozenset[str] = setting(
        frozenset(),
        "hosts whose TLS certificates are not verified, named one by one (bare names or"
        " addresses); elsewhere a certificate that does not verify fails the step at once",
        check=_host_names,
    )
    rate_limit: float = setting(
        10.0,
        "requests/s for the whole fleet, shared through Redis (0: none of ours)",
        minimum=0,
        maximum=100_000,
    )
    rate_burst: int = setting(
        0, "requests allowed at once (0: half a second's worth)", minimum=0, maximum=1_000_000
    )
    cxone_auth_url: str = setting(
        "https://cxone.niceincontact.com",
        "CXone: where the token endpoint and tenant discovery are found",
        check=_url("http", "https"),
    )
    cxone_access_key_id: str = setting("", "CXone: the API user's access key id")
    cxone_access_key_secret: Secret = setting(NO_SECRET, "CXone: the access key's secret")
    cxone_api_version: str = setting(
        "v31.0", "CXone: Admin API version", check=_pattern(r"v\d+\.\d+", "v31.0")
    )
    cxone_external_id_column: str = setting(
        "ExternalId", "CXone: the calling list's unique-id column"
    )
    cxone_phone_columns: tuple[str, ...] = setting(
        ("PhoneNumber",), "CXone: the columns holding phone numbers", shown_default="`PhoneNumber`"
    )
    cxone_page_size: int = setting(500, "CXone: records per page", minimum=1, maximum=10_000)
    cxone_upload_batch: int = setting(
        1000, "CXone: records per correction upload", minimum=1, maximum=100_000
    )
    cxone_remove_batch: int = setting(
        100, "CXone: records per removeProspects call", minimum=1, maximum=10_000
    )
    cxone_job_poll_seconds: float = setting(
        2.0, "CXone: how often a running upload job is asked after", minimum=0.1, maximum=300
    )
    cxone_skill_id: str = setting("", "CXone: skill of uploads", check=_pattern(r"\d+", "12345"))
    cxone_dnc_group_id: str = setting(
        "", "CXone: DNC group removed numbers are pushed to", check=_pattern(r"\d+", "12345")
    )

    cxone_auth: str = setting(
        "password",
        "CXone: `password` (a registered app's password grant) or `access-key` (no app)",
        choices=("password", "access-key"),
    )
    cxone_client_auth: str = setting(
        "client_secret_basic",
        "CXone: how the app presents its secret",
        choices=("client_secret_basic", "client_secret_post"),
    )
    cxone_list_expiration_days: int = setting(
        30,
        "CXone: uploads carry the list's expiration date, else this many days ahead",
        minimum=1,
        maximum=3650,
    )
    cxone_include_inactive: bool = setting(
        False, "CXone: scheduled sweeps also sweep lists whose status is Inactive"
    )
    cxone_dnc_search: bool = setting(
        True,
        "CXone: look each number up (`POST dnc-groups/search`, a request per number) and"
        " push to the DNC group only those it does not hold yet",
    )

    @property
    def broker(self) -> str:
        """The Celery broker's URL: CXSWEEP_BROKER_URL, else the Redis."""
        return self.broker_url or self.redis_url

    @property
    def broker_is_amqp(self) -> bool:
        return urlsplit(self.broker).scheme in ("amqp", "amqps")

    @property
    def twilio_configured(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token)

    def require_api(self) -> None:
        """Raise unless everything needed to talk to the contact-list API is set."""
        if self.backend == "cxone":
            # The API base is discovered from the tenant, so API_URL is optional here.
            # The access-key endpoint needs no registered app, so no client id either.
            required: tuple[tuple[str, object], ...] = (
                ("CXONE_ACCESS_KEY_ID", self.cxone_access_key_id),
                ("CXONE_ACCESS_KEY_SECRET", self.cxone_access_key_secret),
            )
            if self.cxone_auth == "password":
                required = (
                    ("CLIENT_ID", self.client_id),
                    ("CLIENT_SECRET", self.client_secret),
                    *required,
                )
        else:
            required = (
                ("API_URL", self.api_url),
                ("CLIENT_ID", self.client_id),
                ("CLIENT_SECRET", self.client_secret),
            )
        for name, value in required:
            if not value:
                raise SettingsError(f"{PREFIX}{name} is not set")


def variable(name: str) -> str:
    return PREFIX + name.upper()


# --- parsing by declared type ------------------------------------------------------------


def _parse(name: str, raw: str, kind: Any) -> Any:
    """The text of one variable as the declared type (before the spec's own checks)."""
    if kind is Secret:
        return Secret(raw)
    if kind is bool:
        flag = raw.lower()
        if flag not in ("1", "0", "true", "false", "yes", "no"):
            raise SettingsError(f"{name}={raw!r}: expected 1 or 0")
        return flag in ("1", "true", "yes")
    if kind in (frozenset[str], tuple[str, ...]):
        items = [item.strip() for item in raw.split(",") if item.strip()]
        return frozenset(items) if kind == frozenset[str] else tuple(dict.fromkeys(items))
    if kind == str | None:
        return raw or None
    if kind in (int, float):
        try:
            number = kind(raw)
        except ValueError:
            raise SettingsError(
                f"{name}={raw!r} is not {'a whole' if kind is int else 'a'} number"
            ) from None
        if not math.isfinite(number):
            raise SettingsError(f"{name}={raw!r} is not a finite number")
        return number
    return raw


def _checked(name: str, value: Any, spec: Spec) -> Any:
    if spec.choices:
        value = value.lower()
        if value not in spec.choices:
            raise SettingsError(f"{name}={value!r}: expected {' or '.join(spec.choices)}")
    if spec.minimum is not None and not spec.minimum <= value <= (spec.maximum or math.inf):
        raise SettingsError(
            f"{name}={value:g} must be between {spec.minimum:g} and {spec.maximum:g}"
        )
    return spec.check(name, value) if spec.check else value


def read_env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines (``export`` and quotes allowed, ``#`` comments)."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if not sep:
            raise SettingsError(f"{path}:{number}: expected NAME=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _declared() -> list[tuple[dataclasses.Field[Any], Any, Spec]]:
    hints = typing.get_type_hints(Settings, globalns=globals())
    return [(f, hints[f.name], f.metadata["spec"]) for f in dataclasses.fields(Settings)]


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build and validate settings; raises ``SettingsError`` naming the bad variable."""
    env = dict(os.environ if environ is None else environ)
    env_file = Path(env.get(f"{PREFIX}ENV_FILE", ".env"))
    if env_file.is_file():
        for key, value in read_env_file(env_file).items():
            env.setdefault(key, value)
    values: dict[str, Any] = {}
    for declared, kind, spec in _declared():
        name = variable(declared.name)
        if name not in env:
            continue
        raw = env[name].strip()
        if not raw and kind in (int, float, bool):
            continue  # an empty number means "the default", as an unset one does
        values[declared.name] = _checked(name, _parse(name, raw, kind), spec)
    settings = Settings(**values)
    return _cross_checked(settings)


def _cross_checked(settings: Settings) -> Settings:
    """Rules between settings, and defaults derived from others."""
    if not settings.token_url and settings.api_url:
        settings = dataclasses.replace(settings, token_url=f"{settings.api_url}/oauth/token")
    if not settings.cxone_phone_columns:
        raise SettingsError(f"{PREFIX}CXONE_PHONE_COLUMNS names no column")
    if not settings.cxone_external_id_column:
        raise SettingsError(f"{PREFIX}CXONE_EXTERNAL_ID_COLUMN is empty")
    if settings.cxone_external_id_column in settings.cxone_phone_columns:
        raise SettingsError(
            f"{PREFIX}CXONE_EXTERNAL_ID_COLUMN={settings.cxone_external_id_column!r}"
            " is also a phone column"
        )
    return settings


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (tests that change the environment call
    ``get_settings.cache_clear()``)."""
    return load_settings()


# --- the README's table ------------------------------------------------------------------


def _shown(default: Any, spec: Spec) -> str:
    if spec.shown_default is not None:
        return spec.shown_default
    if isinstance(default, Secret) or default in ("", None, frozenset(), ()):
        return "(none)"
    if isinstance(default, frozenset | tuple):
        return "`" + ",".join(sorted(default)) + "`"
    if isinstance(default, float) and default.is_integer():
        default = int(default)
    return f"`{default}`"


def markdown_table() -> str:
    """The settings table of the README, made from the declaration."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for declared, _, spec in _declared():
        rows.append(
            f"| `{variable(declared.name)}` | {_shown(declared.default, spec)} | {spec.help} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown"]:
        print(markdown_table())
    else:
        sys.exit("usage: python -m cxsweep.settings --markdown")
