"""Per-list phone directives from a TOML policy file, validated once at start-up.

    [default]                      # every key optional; missing ones come from CXSWEEP_*
    allowed_regions = ["US", "CA"]
    blocked_types = ["VOIP", "TOLL_FREE"]
    default_region = "US"          # "" or "none": numbers without a country code are rejected
    extensions = "reject"          # or "drop"
    duplicates = "keep_all"        # or "keep_first"
    disposable = ["burners.txt"]   # relative to the policy file
    international_prefix_00 = false
    lookup = "none"                # or "twilio" (needs CXSWEEP_TWILIO_* credentials)
    max_purge_ratio = 0.2

    [[lists]]
    match = "uk-*"                 # a list id, or a glob; exact ids win, then file order
    allowed_regions = ["GB"]
    schedule = "0 3 * * *"         # for the scheduler
    exclude = false                # true: never sweep this list

A bad entry raises ``SettingsError`` with one line naming the file, entry and field.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import phonenumbers

from cxsweep.errors import SettingsError
from cxsweep.phone.disposable import load_numbers
from cxsweep.phone.numbers import (
    DUPLICATE_MODES,
    EXTENSION_MODES,
    LOOKUP_MODES,
    TYPE_BY_NAME,
    Directive,
)
from cxsweep.settings import Settings

DIRECTIVE_KEYS = tuple(f.name for f in dataclasses.fields(Directive))
LIST_ONLY_KEYS = ("match",)
SCHEDULE_KEYS = ("schedule", "exclude")
_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?LW#]+$")


@dataclass(frozen=True)
class ListRule:
    """One ``[[lists]]`` entry, resolved against the file's default."""

    match: str
    directive: Directive
    schedule: str | None = None
    exclude: bool = False

    @property
    def is_glob(self) -> bool:
        return any(ch in self.match for ch in "*?[")


@dataclass(frozen=True)
class Policy:
    default: Directive
    rules: tuple[ListRule, ...] = ()
    default_schedule: str | None = None
    source: str | None = None
    _exact: Mapping[str, ListRule] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        exact: dict[str, ListRule] = {}
        for rule in self.rules:
            if not rule.is_glob:
                exact.setdefault(rule.match, rule)
        object.__setattr__(self, "_exact", exact)

    def rule_for(self, list_id: str) -> ListRule | None:
        """The entry for this list: its exact id first, then globs in file order."""
        found = self._exact.get(list_id)
        if found is not None:
            return found
        for rule in self.rules:
            if rule.is_glob and fnmatch.fnmatchcase(list_id, rule.match):
                return rule
        return None

    def directive_for(self, list_id: str) -> Directive:
        rule = self.rule_for(list_id)
        return self.default if rule is None else rule.directive

    def schedule_for(self, list_id: str) -> str | None:
        rule = self.rule_for(list_id)
        if rule is None or rule.schedule is None:
            return self.default_schedule
        return rule.schedule

    def excluded(self, list_id: str) -> bool:
        rule = self.rule_for(list_id)
        return rule is not None and rule.exclude


class _Reader:
    """Validates one table of the file, raising errors that name file/entry/field."""

    def __init__(self, path: Path, entry: str) -> None:
        self.path = path
        self.entry = entry

    def fail(self, key: str, message: str) -> SettingsError:
        return SettingsError(f"policy file {self.path}: {self.entry}: {key}: {message}")

    def _strings(self, key: str, value: object) -> list[str]:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, "expected a list of strings")
        return [v.strip() for v in value]

    def value(self, key: str, value: object) -> Any:
        if key == "allowed_regions":
            codes = frozenset(v.upper() for v in self._strings(key, value))
            unknown = sorted(codes - phonenumbers.SUPPORTED_REGIONS)
            if unknown:
                raise self.fail(key, f"unknown region code(s) {', '.join(unknown)}")
            return codes
        if key == "blocked_types":
            names = frozenset(v.upper() for v in self._strings(key, value))
            unknown = sorted(names - set(TYPE_BY_NAME))
            if unknown:
                raise self.fail(
                    key,
                    f"unknown line type(s) {', '.join(unknown)} "
                    f"(known: {', '.join(sorted(TYPE_BY_NAME))})",
                )
            return names
        if key == "default_region":
            if value is False or (isinstance(value, str) and value.strip().lower() in ("", "none")):
                return None
            if not isinstance(value, str):
                raise self.fail(key, 'expected a region code, or "none"')
            code = value.strip().upper()
            if code not in phonenumbers.SUPPORTED_REGIONS:
                raise self.fail(key, f"unknown region code {code}")
            return code
        if key in ("extensions", "duplicates", "lookup"):
            allowed = {
                "extensions": EXTENSION_MODES,
                "duplicates": DUPLICATE_MODES,
                "lookup": LOOKUP_MODES,
            }[key]
            if value not in allowed:
                raise self.fail(key, f"expected one of {', '.join(allowed)}, not {value!r}")
            return value
        if key == "disposable":
            paths = []
            for item in self._strings(key, value):
                resolved = Path(item).expanduser()
                if not resolved.is_absolute():
                    resolved = self.path.parent / resolved
                try:
                    load_numbers(resolved)
                except SettingsError as exc:
                    raise self.fail(key, str(exc)) from None
                paths.append(str(resolved.resolve()))
            return tuple(paths)
        if key in ("international_prefix_00", "exclude"):
            if not isinstance(value, bool):
                raise self.fail(key, "expected true or false")
            return value
        if key == "max_purge_ratio":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self.fail(key, "expected a number between 0 and 1")
            if not 0.0 <= float(value) <= 1.0:
                raise self.fail(key, f"{value} is not between 0 and 1")
            return float(value)
        if key == "schedule":
            if not isinstance(value, str):
                raise self.fail(key, 'expected a crontab string such as "0 3 * * *"')
            fields = value.split()
            if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
                raise self.fail(key, f"{value!r} is not a 5-field crontab expression")
            return value
        if key == "match":
            if not isinstance(value, str) or not value.strip():
                raise self.fail(key, "expected a list id or glob pattern")
            return value.strip()
        known = ", ".join((*LIST_ONLY_KEYS, *DIRECTIVE_KEYS, *SCHEDULE_KEYS))
        raise self.fail(key, f"unknown key (known: {known})")

    def table(self, data: object, base: Directive, *, is_list: bool) -> tuple[Directive, dict]:
        if not isinstance(data, Mapping):
            raise SettingsError(f"policy file {self.path}: {self.entry}: expected a table")
        changes: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            if key == "match" and not is_list:
                raise self.fail(key, "only [[lists]] entries take match")
            parsed = self.value(key, value)
            (changes if key in DIRECTIVE_KEYS else extra)[key] = parsed
        try:
            return dataclasses.replace(base, **changes), extra
        except ValueError as exc:
            raise SettingsError(f"policy file {self.path}: {self.entry}: {exc}") from None


def settings_directive(settings: Settings) -> Directive:
    """The directive of every list when no policy file says otherwise: the plain settings."""
    return Directive(
        allowed_regions=settings.allowed_regions,
        blocked_types=settings.blocked_types,
        default_region=settings.default_region,
    )


def _check_lookup(settings: Settings, reader: _Reader, directive: Directive) -> None:
    if directive.lookup == "twilio" and not settings.twilio_configured:
        raise reader.fail(
            "lookup",
            '"twilio" needs CXSWEEP_TWILIO_ACCOUNT_SID and CXSWEEP_TWILIO_AUTH_TOKEN',
        )


def load_policy(settings: Settings) -> Policy:
    """The policy in ``settings.policy_file``, or the plain settings' directive for all lists."""
    if not settings.policy_file:
        return Policy(default=settings_directive(settings))
    path = Path(settings.policy_file)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise SettingsError(f"policy file {path} does not exist") from None
    except OSError as exc:
        raise SettingsError(f"policy file {path} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"policy file {path}: not valid TOML: {exc}") from None

    for key in data:
        if key not in ("default", "lists"):
            raise SettingsError(
                f"policy file {path}: unknown top-level key {key!r} (expected [default], [[lists]])"
            )
    reader = _Reader(path, "[default]")
    default, default_extra = reader.table(
        data.get("default", {}), settings_directive(settings), is_list=False
    )
    if default_extra.get("exclude"):
        raise reader.fail("exclude", "the default cannot be excluded; exclude lists instead")
    _check_lookup(settings, reader, default)

    raw_lists = data.get("lists", [])
    if not isinstance(raw_lists, list):
        raise SettingsError(f"policy file {path}: lists: expected [[lists]] entries")
    rules: list[ListRule] = []
    for index, entry in enumerate(raw_lists, 1):
        label = entry.get("match") if isinstance(entry, Mapping) else None
        reader = _Reader(path, f"[[lists]] #{index}" + (f" ({label!r})" if label else ""))
        directive, extra = reader.table(entry, default, is_list=True)
        if "match" not in extra:
            raise reader.fail("match", "missing (a list id or glob pattern)")
        _check_lookup(settings, reader, directive)
        rules.append(
            ListRule(
                match=extra["match"],
                directive=directive,
                schedule=extra.get("schedule"),
                exclude=bool(extra.get("exclude", False)),
            )
        )
    return Policy(
        default=default,
        rules=tuple(rules),
        default_schedule=default_extra.get("schedule"),
        source=str(path),
    )
