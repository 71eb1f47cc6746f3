"""Settings from ``CXSWEEP_*`` environment variables, optionally added to by a ``.env`` file.

Validated once, up front: a bad value raises ``SettingsError`` with a one-line message
that names the variable, before any network call is made.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import phonenumbers
from kombu.utils.url import sanitize_url

from cxsweep.errors import SettingsError
from cxsweep.phone import TYPE_BY_NAME, Directive

PREFIX = "CXSWEEP_"
# A run's keys live a week (cxsweep.runs.DATA_TTL): no run time-out may outlast them.
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


@dataclass(frozen=True)
class Settings:
    backend: str = "v2"
    api_url: str = ""
    token_url: str = ""
    client_id: str = ""
    client_secret: Secret = field(default_factory=lambda: Secret(""))
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Where task messages go ("": CXSWEEP_REDIS_URL). amqp:// for a fleet: RabbitMQ hands
    # a dead worker's messages back when its connection drops, not after the visibility
    # timeout. Redis keeps results, locks, tokens, the rate limit and run state either way.
    broker_url: str = ""
    aggregator_url: str = ""
    webhook_secret: Secret = field(default_factory=lambda: Secret(""))
    audit_log: str = "sanitization_audit.log"
    allowed_regions: frozenset[str] = frozenset({"US", "GB", "CA"})
    blocked_types: frozenset[str] = frozenset({"VOIP", "TOLL_FREE"})
    default_region: str | None = "US"
    policy_file: str = ""
    # Line-type look-up (optional, paid): used only when both credentials are set.
    lookup_url: str = "https://lookups.twilio.com"
    twilio_account_sid: str = ""
    twilio_auth_token: Secret = field(default_factory=lambda: Secret(""))
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_response_bytes: int = 20 * 1024 * 1024
    breaker_threshold: int = 5
    run_deadline_seconds: int = 6 * 3600
    # A run whose counters have not moved for this long is failed by the watchdog (a
    # chord lost to a Redis restart; celery#4207).
    run_stall_seconds: int = 15 * 60
    # After this long, the message of a worker that died is delivered again. Must exceed
    # the longest task (time limit) plus the longest retry countdown.
    visibility_timeout: int = 3600
    # Let runs write although Redis neither persists nor refuses to evict (a lab's Redis):
    # a restart mid-write then loses the run's plan and archive.
    allow_volatile_redis: bool = False
    http_pool_size: int = 32
    # Beat's sweep of every list ("" : the policy's [default] schedule, else nightly).
    sweep_schedule: str = ""
    max_concurrent_runs: int = 4
    metrics_port: int = 9808
    log_format: str = "text"
    # Hosts whose TLS certificates are not verified (a lab's self-signed proxy): named
    # one by one, never a blanket switch.
    tls_insecure_hosts: frozenset[str] = frozenset()
    # The tenant's request rate, shared by every worker (0: no limit of ours).
    rate_limit: float = 10.0
    rate_burst: int = 0  # 0: one second's worth
    # NICE CXone Admin API (CXSWEEP_BACKEND=cxone; docs/cxone.md). The app's client id and
    # secret are CLIENT_ID / CLIENT_SECRET; the API user's access key is below.
    cxone_auth_url: str = "https://cxone.niceincontact.com"
    cxone_access_key_id: str = ""
    cxone_access_key_secret: Secret = field(default_factory=lambda: Secret(""))
    cxone_api_version: str = "v31.0"
    cxone_external_id_column: str = "ExternalId"
    cxone_phone_columns: tuple[str, ...] = ("PhoneNumber",)
    cxone_page_size: int = 500
    cxone_upload_batch: int = 1000
    cxone_remove_batch: int = 100
    cxone_job_poll_seconds: float = 2.0
    cxone_skill_id: str = ""
    cxone_dnc_group_id: str = ""
    # "password" (the registered app's OAuth password grant) or "access-key" (NICE's
    # access-key token endpoint: no registered app); how the app authenticates.
    cxone_auth: str = "password"
    cxone_client_auth: str = "client_secret_basic"
    # Uploads must carry an expiration date: the list's own, else this many days ahead.
    cxone_list_expiration_days: int = 30
    # Scheduled sweeps skip lists whose status is Inactive unless this is set.
    cxone_include_inactive: bool = False

    @property
    def broker(self) -> str:
        """The Celery broker's URL: CXSWEEP_BROKER_URL, else the Redis."""
        return self.broker_url or self.redis_url

    @property
    def broker_is_amqp(self) -> bool:
        return urlsplit(self.broker).scheme in ("amqp", "amqps")

    @property
    def directive(self) -> Directive:
        """The default phone directive, built from the plain settings."""
        return Directive(
            allowed_regions=self.allowed_regions,
            blocked_types=self.blocked_types,
            default_region=self.default_region,
        )

    @property
    def twilio_configured(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token)

    def require_api(self) -> None:
        """Raise unless everything needed to talk to the contact-list API is set."""
        if self.backend == "cxone":
            # The API base is discovered from the tenant, so API_URL is optional here; the
            # access-key endpoint needs no registered app, so no client id either.
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
            for name, value in required:
                if not value:
                    raise SettingsError(f"{PREFIX}{name} is not set")
            return
        for name, value in (
            ("API_URL", self.api_url),
            ("CLIENT_ID", self.client_id),
            ("CLIENT_SECRET", self.client_secret),
        ):
            if not value:
                raise SettingsError(f"{PREFIX}{name} is not set")


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :]
        key, sep, value = line.partition("=")
        if not sep:
            raise SettingsError(f"{path}:{number}: expected NAME=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _url(name: str, value: str, schemes: tuple[str, ...] = ("http", "https")) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        raise SettingsError(
            f"{PREFIX}{name}={value!r} is not a URL ({'/'.join(schemes)}://host...)"
        )
    return value.rstrip("/") if schemes != ("redis", "rediss", "unix") else value


def masked_url(url: str) -> str:
    """``url`` with its password masked, for messages and logs (kombu's own masking)."""
    try:
        return sanitize_url(url) if "://" in url else "(not a URL)"
    except ValueError:  # a port that is not a number: nothing of it is safe to show
        return "(not a URL)"


def _broker_url(value: str) -> str:
    schemes = ("amqp", "amqps", "redis", "rediss")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        parts = urlsplit("")
    if parts.scheme not in schemes or not parts.hostname:
        raise SettingsError(
            f"{PREFIX}BROKER_URL={masked_url(value)!r} is not a broker URL"
            f" ({'/'.join(schemes)}://host...)"
        )
    return value


def _regions(name: str, value: str) -> frozenset[str]:
    codes = frozenset(code.strip().upper() for code in value.split(",") if code.strip())
    unknown = sorted(codes - phonenumbers.SUPPORTED_REGIONS)
    if unknown:
        raise SettingsError(f"{PREFIX}{name}: unknown region code(s) {', '.join(unknown)}")
    return codes


def _types(name: str, value: str) -> frozenset[str]:
    names = frozenset(t.strip().upper() for t in value.split(",") if t.strip())
    unknown = sorted(names - set(TYPE_BY_NAME))
    if unknown:
        raise SettingsError(
            f"{PREFIX}{name}: unknown line type(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(TYPE_BY_NAME))})"
        )
    return names


def _number(
    name: str,
    value: str,
    kind: type[int] | type[float],
    minimum: float,
    maximum: float,
) -> float:
    try:
        number = kind(value)
    except ValueError:
        raise SettingsError(f"{PREFIX}{name}={value!r} is not a number") from None
    # float() takes "nan" and "inf": nan compares false with every bound (a NaN rate
    # limit would pass a lone minimum check and throttle nothing).
    if not math.isfinite(number):
        raise SettingsError(f"{PREFIX}{name}={value!r} is not a finite number")
    if not minimum <= number <= maximum:
        raise SettingsError(f"{PREFIX}{name}={value!r} must be between {minimum:g} and {maximum:g}")
    return number


_HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")


def _insecure_hosts(value: str) -> frozenset[str]:
    """Hosts whose certificates are not verified, compared with a URL's bare host: an
    entry with a scheme, port, path or wildcard would never match, so it is refused."""
    hosts: set[str] = set()
    for raw in value.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        bare = entry[1:-1] if entry.startswith("[") and entry.endswith("]") else entry
        try:
            hosts.add(str(ipaddress.ip_address(bare)))
            continue
        except ValueError:
            pass
        if not _HOST_NAME.match(entry):
            raise SettingsError(
                f"{PREFIX}TLS_INSECURE_HOSTS: {raw.strip()!r} is not a bare host name (no"
                " scheme, port, path or wildcard), e.g. lab.example or 10.0.0.5"
            )
        hosts.add(entry)
    return frozenset(hosts)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build and validate settings; raises ``SettingsError`` naming the bad variable."""
    env = dict(os.environ if environ is None else environ)
    env_file = Path(env.get(f"{PREFIX}ENV_FILE", ".env"))
    if env_file.is_file():
        for key, value in _read_env_file(env_file).items():
            env.setdefault(key, value)

    def get(name: str, default: str = "") -> str:
        return env.get(PREFIX + name, default).strip()

    api_url = get("API_URL")
    if api_url:
        api_url = _url("API_URL", api_url)
    token_url = get("TOKEN_URL")
    token_url = (
        _url("TOKEN_URL", token_url) if token_url else (f"{api_url}/oauth/token" if api_url else "")
    )
    redis_url = _url(
        "REDIS_URL", get("REDIS_URL", "redis://127.0.0.1:6379/0"), ("redis", "rediss", "unix")
    )
    broker_url = get("BROKER_URL")
    if broker_url:
        broker_url = _broker_url(broker_url)
    aggregator_url = get("AGGREGATOR_URL")
    if aggregator_url:
        aggregator_url = _url("AGGREGATOR_URL", aggregator_url)
    lookup_url = _url("LOOKUP_URL", get("LOOKUP_URL", "https://lookups.twilio.com"))

    default_region: str | None = get("DEFAULT_REGION", "US").upper() or None
    if default_region is not None and default_region not in phonenumbers.SUPPORTED_REGIONS:
        raise SettingsError(f"{PREFIX}DEFAULT_REGION: unknown region code {default_region}")

    policy_file = get("POLICY_FILE")
    if policy_file and not Path(policy_file).is_file():
        raise SettingsError(f"{PREFIX}POLICY_FILE: no such file {policy_file}")

    log_format = get("LOG_FORMAT", "text").lower() or "text"
    if log_format not in ("text", "json"):
        raise SettingsError(f"{PREFIX}LOG_FORMAT={log_format!r}: expected text or json")
    metrics_port = int(_number("METRICS_PORT", get("METRICS_PORT", "9808"), int, 0, 65535))

    backend = get("BACKEND", "v2").lower()
    if backend not in ("v2", "cxone"):
        raise SettingsError(f"{PREFIX}BACKEND={backend!r}: expected v2 or cxone")

    phone_columns = tuple(
        dict.fromkeys(c.strip() for c in get("CXONE_PHONE_COLUMNS", "PhoneNumber").split(","))
    )
    phone_columns = tuple(c for c in phone_columns if c)
    if not phone_columns:
        raise SettingsError(f"{PREFIX}CXONE_PHONE_COLUMNS names no column")
    external_id_column = get("CXONE_EXTERNAL_ID_COLUMN", "ExternalId")
    if not external_id_column:
        raise SettingsError(f"{PREFIX}CXONE_EXTERNAL_ID_COLUMN is empty")
    if external_id_column in phone_columns:
        raise SettingsError(
            f"{PREFIX}CXONE_EXTERNAL_ID_COLUMN={external_id_column!r} is also a phone column"
        )
    api_version = get("CXONE_API_VERSION", "v31.0")
    if not re.fullmatch(r"v\d+\.\d+", api_version):
        raise SettingsError(f"{PREFIX}CXONE_API_VERSION={api_version!r}: expected like v31.0")
    skill_id = get("CXONE_SKILL_ID")
    if skill_id and not skill_id.isdigit():
        raise SettingsError(f"{PREFIX}CXONE_SKILL_ID={skill_id!r} is not a number")
    dnc_group_id = get("CXONE_DNC_GROUP_ID")
    if dnc_group_id and not dnc_group_id.isdigit():
        raise SettingsError(f"{PREFIX}CXONE_DNC_GROUP_ID={dnc_group_id!r} is not a number")
    cxone_auth = get("CXONE_AUTH", "password").lower()
    if cxone_auth not in ("password", "access-key"):
        raise SettingsError(f"{PREFIX}CXONE_AUTH={cxone_auth!r}: expected password or access-key")
    client_auth = get("CXONE_CLIENT_AUTH", "client_secret_basic").lower()
    if client_auth not in ("client_secret_basic", "client_secret_post"):
        raise SettingsError(
            f"{PREFIX}CXONE_CLIENT_AUTH={client_auth!r}:"
            " expected client_secret_basic or client_secret_post"
        )
    include_inactive = get("CXONE_INCLUDE_INACTIVE", "false").lower()
    if include_inactive not in ("true", "false", "1", "0", "yes", "no"):
        raise SettingsError(
            f"{PREFIX}CXONE_INCLUDE_INACTIVE={include_inactive!r}: expected true or false"
        )

    allow_volatile = get("ALLOW_VOLATILE_REDIS", "0").lower()
    if allow_volatile not in ("0", "1", "true", "false", "yes", "no", ""):
        raise SettingsError(f"{PREFIX}ALLOW_VOLATILE_REDIS={allow_volatile!r}: expected 1 or 0")

    return Settings(
        backend=backend,
        allow_volatile_redis=allow_volatile in ("1", "true", "yes"),
        api_url=api_url,
        token_url=token_url,
        client_id=get("CLIENT_ID"),
        client_secret=Secret(get("CLIENT_SECRET")),
        redis_url=redis_url,
        broker_url=broker_url,
        aggregator_url=aggregator_url,
        webhook_secret=Secret(get("WEBHOOK_SECRET")),
        audit_log=get("AUDIT_LOG", "sanitization_audit.log"),
        allowed_regions=_regions("ALLOWED_REGIONS", get("ALLOWED_REGIONS", "US,GB,CA")),
        blocked_types=_types("BLOCKED_TYPES", get("BLOCKED_TYPES", "VOIP,TOLL_FREE")),
        default_region=default_region,
        policy_file=policy_file,
        lookup_url=lookup_url,
        twilio_account_sid=get("TWILIO_ACCOUNT_SID"),
        twilio_auth_token=Secret(get("TWILIO_AUTH_TOKEN")),
        connect_timeout=_number("CONNECT_TIMEOUT", get("CONNECT_TIMEOUT", "5"), float, 0.1, 300),
        read_timeout=_number("READ_TIMEOUT", get("READ_TIMEOUT", "30"), float, 0.1, 600),
        max_response_bytes=int(
            _number(
                "MAX_RESPONSE_BYTES",
                get("MAX_RESPONSE_BYTES", str(20 * 1024 * 1024)),
                int,
                1024,
                2**30,
            )
        ),
        breaker_threshold=int(
            _number("BREAKER_THRESHOLD", get("BREAKER_THRESHOLD", "5"), int, 1, 1000)
        ),
        run_deadline_seconds=int(
            _number(
                "RUN_DEADLINE_SECONDS", get("RUN_DEADLINE_SECONDS", str(6 * 3600)), int, 10, WEEK
            )
        ),
        sweep_schedule=get("SWEEP_SCHEDULE"),
        max_concurrent_runs=int(
            _number("MAX_CONCURRENT_RUNS", get("MAX_CONCURRENT_RUNS", "4"), int, 1, 1000)
        ),
        metrics_port=metrics_port,
        log_format=log_format,
        tls_insecure_hosts=_insecure_hosts(get("TLS_INSECURE_HOSTS")),
        rate_limit=_number("RATE_LIMIT", get("RATE_LIMIT", "10"), float, 0, 100_000),
        rate_burst=int(_number("RATE_BURST", get("RATE_BURST", "0"), int, 0, 1_000_000)),
        run_stall_seconds=int(
            _number("RUN_STALL_SECONDS", get("RUN_STALL_SECONDS", str(15 * 60)), int, 60, WEEK)
        ),
        visibility_timeout=int(
            _number("VISIBILITY_TIMEOUT", get("VISIBILITY_TIMEOUT", "3600"), int, 1020, WEEK)
        ),
        http_pool_size=int(_number("HTTP_POOL_SIZE", get("HTTP_POOL_SIZE", "32"), int, 1, 1024)),
        cxone_auth_url=_url(
            "CXONE_AUTH_URL", get("CXONE_AUTH_URL", "https://cxone.niceincontact.com")
        ),
        cxone_access_key_id=get("CXONE_ACCESS_KEY_ID"),
        cxone_access_key_secret=Secret(get("CXONE_ACCESS_KEY_SECRET")),
        cxone_api_version=api_version,
        cxone_external_id_column=external_id_column,
        cxone_phone_columns=phone_columns,
        cxone_page_size=int(
            _number("CXONE_PAGE_SIZE", get("CXONE_PAGE_SIZE", "500"), int, 1, 10_000)
        ),
        cxone_upload_batch=int(
            _number("CXONE_UPLOAD_BATCH", get("CXONE_UPLOAD_BATCH", "1000"), int, 1, 100_000)
        ),
        cxone_remove_batch=int(
            _number("CXONE_REMOVE_BATCH", get("CXONE_REMOVE_BATCH", "100"), int, 1, 10_000)
        ),
        cxone_job_poll_seconds=_number(
            "CXONE_JOB_POLL_SECONDS", get("CXONE_JOB_POLL_SECONDS", "2"), float, 0.1, 300
        ),
        cxone_skill_id=skill_id,
        cxone_dnc_group_id=dnc_group_id,
        cxone_auth=cxone_auth,
        cxone_client_auth=client_auth,
        cxone_list_expiration_days=int(
            _number(
                "CXONE_LIST_EXPIRATION_DAYS",
                get("CXONE_LIST_EXPIRATION_DAYS", "30"),
                int,
                1,
                3650,
            )
        ),
        cxone_include_inactive=include_inactive in ("true", "1", "yes"),
    )


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (workers read them once; tests call ``cache_clear``)."""
    return load_settings()
