"""Phone policy: parse, normalise to E.164 and judge one number against a directive.

Plain Python (phonenumbers only): the pipeline calls ``Sanitizer.check_many`` on a page
of raw strings and gets one ``Verdict`` per string, in order. An optional live
line-type provider (``cxsweep.phone.lookup``) is consulted, in one batch per page, only for
the numbers that already passed every offline check.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import phonenumbers
from phonenumbers import PhoneNumberType
from phonenumbers import phonenumberutil as _pnu
from phonenumbers.phonemetadata import PhoneMetadata
from phonenumbers.re_util import re_compile

if TYPE_CHECKING:
    from cxsweep.phone.disposable import DisposableList
    from cxsweep.phone.linetype import LineTypeAnswer, LineTypeProvider

# The library recompiles ~1,200 metadata regexes through re's 512-entry cache unless told
# to keep them; this alone is a ~4x speed-up (phonenumbers >= 9.0.43).
if hasattr(phonenumbers, "enable_pattern_cache"):
    phonenumbers.enable_pattern_cache()

E164_RE = re.compile(r"^\+[1-9]\d{1,14}$")

TYPE_NAMES: dict[int, str] = {
    value: name
    for name, value in vars(PhoneNumberType).items()
    if name.isupper() and isinstance(value, int)
}
TYPE_BY_NAME: dict[str, int] = {name: value for value, name in TYPE_NAMES.items()}

EXTENSION_MODES = ("reject", "drop")
DUPLICATE_MODES = ("keep_all", "keep_first")
LOOKUP_MODES = ("none", "twilio")

_UNKNOWN = PhoneNumberType.UNKNOWN
_NON_GEO = phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY
# carrier.name_for_number answers only for these types; asking only for them keeps the
# answers identical while skipping its second number_type computation.
_CARRIER_TYPES = frozenset(
    {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE, PhoneNumberType.PAGER}
)
_TYPE_HELPER = getattr(_pnu, "_number_type_helper", None)
_REGIONS_BY_CODE = phonenumbers.COUNTRY_CODE_TO_REGION_CODE
_LEADING_JUNK = " \t\r\n\"'(["


class Reason:
    """Why a contact is rejected. Stable strings: they appear in audit lines and webhooks."""

    MISSING = "missing"
    UNPARSEABLE = "unparseable"
    INVALID = "invalid"
    REGION = "region"
    LINE_TYPE = "line_type"
    FORMAT = "format"
    NO_COUNTRY_CODE = "no_country_code"
    EXTENSION = "extension"
    DISPOSABLE = "disposable"
    # Applied by the pipeline, which alone sees the whole list.
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Directive:
    """What a list may dial. Empty ``allowed_regions`` means every region.

    ``default_region`` None means a number without a country code is rejected
    (``no_country_code``) rather than guessed. ``disposable`` names data files of
    burner numbers. ``international_prefix_00`` reads a leading ``00`` as ``+`` even
    where the region's own international prefix differs (the US uses 011).
    """

    allowed_regions: frozenset[str] = frozenset({"US", "GB", "CA"})
    blocked_types: frozenset[str] = frozenset({"VOIP", "TOLL_FREE"})
    default_region: str | None = "US"
    extensions: Literal["reject", "drop"] = "reject"
    duplicates: Literal["keep_all", "keep_first"] = "keep_all"
    disposable: tuple[str, ...] = ()
    international_prefix_00: bool = False
    lookup: Literal["none", "twilio"] = "none"
    max_purge_ratio: float = 0.2

    def __post_init__(self) -> None:
        # Callers may hand in lists or sets; the directive must stay hashable.
        object.__setattr__(self, "allowed_regions", frozenset(self.allowed_regions))
        object.__setattr__(self, "blocked_types", frozenset(self.blocked_types))
        object.__setattr__(self, "disposable", tuple(self.disposable))
        unknown = sorted(set(self.blocked_types) - set(TYPE_BY_NAME))
        if unknown:
            raise ValueError(f"unknown line type(s) {', '.join(unknown)}")
        regions = set(self.allowed_regions)
        if self.default_region is not None:
            regions.add(self.default_region)
        bad_regions = sorted(regions - phonenumbers.SUPPORTED_REGIONS)
        if bad_regions:
            raise ValueError(f"unknown region code(s) {', '.join(bad_regions)}")
        for name, value, allowed in (
            ("extensions", self.extensions, EXTENSION_MODES),
            ("duplicates", self.duplicates, DUPLICATE_MODES),
            ("lookup", self.lookup, LOOKUP_MODES),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        if not 0.0 <= self.max_purge_ratio <= 1.0:
            raise ValueError(f"max_purge_ratio must be between 0 and 1, not {self.max_purge_ratio}")


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome for one raw string. ``e164`` is set exactly when the number is kept.

    ``line_type`` is libphonenumber's type name, or the live provider's answer mapped
    onto those names when a provider was consulted.
    """

    raw: str | None
    e164: str | None
    reason: str | None
    region: str | None = None
    line_type: str | None = None
    latency_us: float = 0.0
    detail: str = field(default="", compare=False)
    carrier: str | None = None
    time_zones: tuple[str, ...] = ()
    extension_dropped: bool = False

    @property
    def kept(self) -> bool:
        return self.reason is None


# The carrier and time-zone data (a tenth of a second to import) are loaded only by an
# enriching sanitizer: the pipeline and every CLI command that imports this module
# (for ``Reason``) never use them.


@functools.cache
def _enrichment_data() -> tuple[Any, Any, Any]:
    """phonenumbers' carrier and time-zone modules, and the country-level time-zone
    look-up (None where the library lacks it), imported on first use, then kept."""
    from phonenumbers import carrier, timezone

    return carrier, timezone, getattr(timezone, "_country_level_time_zones_for_number", None)


def _carrier_name(numobj: phonenumbers.PhoneNumber) -> str:
    carrier, _, _ = _enrichment_data()
    return str(carrier.name_for_valid_number(numobj, "en"))


def _time_zones(numobj: phonenumbers.PhoneNumber, type_code: int) -> tuple[str, ...]:
    """``timezone.time_zones_for_number`` without recomputing the number type."""
    _, timezone, country_time_zones = _enrichment_data()
    if country_time_zones is None:
        return tuple(timezone.time_zones_for_number(numobj))
    if type_code == _UNKNOWN:
        return (timezone.UNKNOWN_TIMEZONE,)
    if _pnu.is_number_type_geographical(type_code, numobj.country_code or 0):
        return tuple(timezone.time_zones_for_geographical_number(numobj))
    return tuple(country_time_zones(numobj))


def _classify(numobj: phonenumbers.PhoneNumber) -> tuple[str | None, int]:
    """(region, type) with type UNKNOWN exactly when ``is_valid_number`` is False.

    ``is_valid_number``, ``number_type`` and ``region_code_for_number`` each work out
    the region and the type again (for +1 the region means trying the patterns of
    region after region); this does it once, keeping the type the region search has
    already computed. Same answers as the public calls (the benchmark and the tests
    compare them); falls back to them if the private helper ever disappears.
    """
    if _TYPE_HELPER is None:
        found = phonenumbers.region_code_for_number(numobj)
        if not phonenumbers.is_valid_number(numobj):
            return found, _UNKNOWN
        return found, phonenumbers.number_type(numobj)
    country_code = numobj.country_code or 0
    regions = _REGIONS_BY_CODE.get(country_code)
    if regions is None:
        return None, _UNKNOWN
    nsn = _pnu.national_significant_number(numobj)
    region: str | None = regions[0] if len(regions) == 1 else None
    if region is None:
        for candidate in regions:
            metadata = PhoneMetadata.metadata_for_region(candidate.upper(), None)
            if metadata is None:
                continue
            if metadata.leading_digits is not None:
                if re_compile(metadata.leading_digits).match(nsn):
                    region = candidate
                    break
                continue
            type_code = _TYPE_HELPER(nsn, metadata)
            if type_code != _UNKNOWN:
                # The metadata is_valid_number and number_type would use for this
                # region: the type they would compute is this one.
                return candidate, type_code
        if region is None:
            return None, _UNKNOWN
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    if metadata is None or (
        region != _NON_GEO and country_code != _pnu.country_code_for_valid_region(region)
    ):
        return region, _UNKNOWN
    return region, _TYPE_HELPER(nsn, metadata)


class Sanitizer:
    """Judges raw strings against one directive. Never raises on any input.

    ``enrich`` adds carrier and time zones to kept numbers. A ``lookup`` provider's
    errors (``RetryableApiError`` and friends) do propagate from ``check_many``: they
    are about the provider, not the input, and the task layer retries on them.
    """

    def __init__(
        self,
        directive: Directive,
        *,
        lookup: LineTypeProvider | None = None,
        enrich: bool = True,
        disposable: DisposableList | None = None,
    ) -> None:
        self.directive = directive
        self.lookup = lookup
        self.enrich = enrich
        self._blocked = frozenset(TYPE_BY_NAME[name] for name in directive.blocked_types)
        self._blocked_names = frozenset(directive.blocked_types)
        self._allowed = frozenset(directive.allowed_regions)
        self._region = directive.default_region
        self._drop_extensions = directive.extensions == "drop"
        self._rewrite_00 = directive.international_prefix_00
        if disposable is None and directive.disposable:
            from cxsweep.phone.disposable import disposable_list

            disposable = disposable_list(directive.disposable)
        self._disposable = disposable

    def check(self, raw: object) -> Verdict:
        return self.check_many([raw])[0]

    def check_many(self, raws: Iterable[object]) -> list[Verdict]:
        if self._disposable is not None:
            self._disposable.maybe_refresh()
        # A string met again in the same call gets the verdict already made: judging is
        # a pure function of the string and the directive (the disposable list is only
        # refreshed above, between calls), and a page repeats numbers (households,
        # switchboards, a contact's phone twice in its fields).
        judged: dict[str, Verdict] = {}
        verdicts = []
        for raw in raws:
            if not isinstance(raw, str):
                verdicts.append(self._timed(raw))
                continue
            verdict = judged.get(raw)
            if verdict is None:
                verdict = judged[raw] = self._timed(raw)
            verdicts.append(verdict)
        if self.lookup is not None:
            verdicts = self._apply_lookup(verdicts, self.lookup)
        return verdicts

    def _timed(self, raw: object) -> Verdict:
        started = time.perf_counter_ns()
        try:
            verdict = self._judge(raw, started)
        except Exception as exc:  # the sanitizer's promise is never to raise
            text = raw if isinstance(raw, str) else None
            verdict = Verdict(text, None, Reason.UNPARSEABLE, detail=f"{type(exc).__name__}")
        # Kept verdicts already carry their latency (built once on the hot path).
        return verdict if verdict.reason is None else _with_latency(verdict, started)

    def _judge(self, raw: object, started: int) -> Verdict:
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = str(raw)
        if not isinstance(raw, str):
            if raw is None:
                return Verdict(None, None, Reason.MISSING)
            return Verdict(None, None, Reason.UNPARSEABLE, detail=f"not text: {type(raw).__name__}")
        if not raw.strip():
            return Verdict(raw, None, Reason.MISSING)
        text = raw
        if self._rewrite_00:
            stripped = raw.lstrip(_LEADING_JUNK)
            if stripped.startswith("00"):
                text = "+" + stripped[2:]
        try:
            number = phonenumbers.parse(text, self._region)
        except phonenumbers.NumberParseException as exc:
            if (
                self._region is None
                and exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE
                and "+" not in text
            ):
                return Verdict(
                    raw,
                    None,
                    Reason.NO_COUNTRY_CODE,
                    detail="no country code and no default region",
                )
            return Verdict(raw, None, Reason.UNPARSEABLE, detail=str(exc))
        region, type_code = _classify(number)
        if type_code == _UNKNOWN:
            return Verdict(raw, None, Reason.INVALID, region, detail="not a valid number")
        type_name = TYPE_NAMES.get(type_code, "UNKNOWN")
        allowed = self._allowed
        if allowed and region not in allowed:
            return Verdict(
                raw,
                None,
                Reason.REGION,
                region,
                type_name,
                detail=f"region {region} not in {', '.join(sorted(allowed))}",
            )
        if type_code in self._blocked:
            return Verdict(
                raw, None, Reason.LINE_TYPE, region, type_name, detail=f"{type_name} is blocked"
            )
        extension_dropped = False
        if number.extension:
            if not self._drop_extensions:
                return Verdict(
                    raw,
                    None,
                    Reason.EXTENSION,
                    region,
                    type_name,
                    detail=f"has extension {number.extension}",
                )
            extension_dropped = True
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        if not E164_RE.match(e164):
            return Verdict(
                raw, None, Reason.FORMAT, region, type_name, detail=f"formatted as {e164}"
            )
        if self._disposable is not None and e164 in self._disposable:
            return Verdict(
                raw,
                None,
                Reason.DISPOSABLE,
                region,
                type_name,
                detail="listed in a disposable-number file",
            )
        # Enrichment (carrier, time zones) is optional: the pipeline turns it off.
        carrier_name = ""
        time_zones: tuple[str, ...] = ()
        if self.enrich:
            if type_code in _CARRIER_TYPES:
                carrier_name = _carrier_name(number)
            time_zones = _time_zones(number, type_code)
        return Verdict(
            raw,
            e164,
            None,
            region,
            type_name,
            (time.perf_counter_ns() - started) / 1000.0,
            carrier=carrier_name or None,
            time_zones=time_zones,
            extension_dropped=extension_dropped,
        )

    def _apply_lookup(self, verdicts: list[Verdict], provider: LineTypeProvider) -> list[Verdict]:
        wanted = list(dict.fromkeys(v.e164 for v in verdicts if v.e164 is not None))
        if not wanted:
            return verdicts
        started = time.perf_counter_ns()
        answers = provider.lookup_many(wanted)
        share_us = (time.perf_counter_ns() - started) / 1000.0 / len(wanted)
        out: list[Verdict] = []
        for verdict in verdicts:
            answer = answers.get(verdict.e164) if verdict.e164 is not None else None
            out.append(verdict if answer is None else self._judge_answer(verdict, answer, share_us))
        return out

    def _judge_answer(self, verdict: Verdict, answer: LineTypeAnswer, share_us: float) -> Verdict:
        line_type = answer.line_type or verdict.line_type
        changes: dict[str, object] = {
            "line_type": line_type,
            "carrier": answer.carrier or verdict.carrier,
            "latency_us": verdict.latency_us + share_us,
        }
        if answer.disposable:
            changes.update(
                e164=None,
                reason=Reason.DISPOSABLE,
                detail=f"provider says {answer.provider_type} (disposable)",
            )
        elif line_type in self._blocked_names:
            changes.update(
                e164=None,
                reason=Reason.LINE_TYPE,
                detail=f"provider says {answer.provider_type}: {line_type} is blocked",
            )
        return dataclasses.replace(verdict, **changes)  # type: ignore[arg-type]


def _with_latency(verdict: Verdict, started: int) -> Verdict:
    return Verdict(
        verdict.raw,
        verdict.e164,
        verdict.reason,
        verdict.region,
        verdict.line_type,
        (time.perf_counter_ns() - started) / 1000.0,
        verdict.detail,
        verdict.carrier,
        verdict.time_zones,
        verdict.extension_dropped,
    )
