"""cxsweep.phone.numbers: the sanitizer never raises, keeps only E.164, and obeys every
directive field."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phonenumbers import carrier, timezone

from cxsweep.errors import SettingsError
from cxsweep.phone.disposable import DisposableList, disposable_list, load_numbers
from cxsweep.phone.lookup import LineTypeAnswer
from cxsweep.phone.numbers import (
    TYPE_NAMES,
    Directive,
    Reason,
    Sanitizer,
    Verdict,
    _classify,
)

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
US, JM, GB = frozenset({"US"}), frozenset({"JM"}), frozenset({"GB"})
OPEN = Directive(allowed_regions=frozenset(), blocked_types=frozenset())
ALL_DIRECTIVES = [
    Directive(),
    OPEN,
    Directive(default_region=None),
    Directive(extensions="drop", international_prefix_00=True),
    Directive(allowed_regions=frozenset({"JM"}), blocked_types=frozenset(TYPE_NAMES.values())),
]

# Full-width digits too: libphonenumber normalises them, so they must not slip through.
phoneish = st.from_regex("\\A[+0-9\uff10-\uff19()\\-. x#*a-z\t]{0,40}\\Z")
anything = st.one_of(
    st.text(max_size=300),
    phoneish,
    st.none(),
    st.integers(),
    st.floats(allow_nan=True),
    st.binary(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.booleans(),
)


# ---------------------------------------------------------------- properties


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=anything, which=st.integers(min_value=0, max_value=len(ALL_DIRECTIVES) - 1))
def test_no_input_crashes_and_kept_numbers_are_e164(raw: object, which: int) -> None:
    sanitizer = Sanitizer(ALL_DIRECTIVES[which])
    verdict = sanitizer.check(raw)
    assert isinstance(verdict, Verdict)
    assert verdict.kept == (verdict.e164 is not None)
    if verdict.kept:
        assert E164.match(verdict.e164 or "")
    else:
        assert verdict.reason


@settings(max_examples=200, deadline=None)
@given(raws=st.lists(anything, max_size=20))
def test_check_many_keeps_order_and_length(raws: list[object]) -> None:
    verdicts = Sanitizer(OPEN).check_many(raws)
    assert len(verdicts) == len(raws)
    for raw, verdict in zip(raws, verdicts, strict=True):
        if isinstance(raw, str):
            assert verdict.raw == raw


def test_a_string_repeated_in_one_call_is_judged_once_and_alike() -> None:
    raws = ["(650) 253-0000", "not a number", "(650) 253-0000", "not a number", "+44 20 7946 0018"]
    sanitizer = Sanitizer(OPEN)
    verdicts = sanitizer.check_many(raws)
    assert verdicts[0] is verdicts[2] and verdicts[1] is verdicts[3]
    alone = [sanitizer.check(raw) for raw in raws]
    for shared, single in zip(verdicts, alone, strict=True):
        assert (shared.e164, shared.reason) == (single.e164, single.reason)
        assert shared.region == single.region


national = st.text(alphabet="0123456789", min_size=2, max_size=14)
codes = st.sampled_from(sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE))


@settings(max_examples=1500, deadline=None)
@given(code=codes, digits=national)
def test_fast_classification_matches_the_public_calls(code: int, digits: str) -> None:
    number = phonenumbers.parse(f"+{code}{digits}", None) if digits else None
    if number is None:
        return
    region, type_code = _classify(number)
    valid = phonenumbers.is_valid_number(number)
    assert (type_code != phonenumbers.PhoneNumberType.UNKNOWN) == valid
    if valid:
        assert region == phonenumbers.region_code_for_number(number)
        assert type_code == phonenumbers.number_type(number)
        verdict = Sanitizer(OPEN).check(f"+{code}{digits}")
        formatted = phonenumbers.format_number(number, 0)
        if not E164.match(formatted):
            # Valid to libphonenumber yet longer than E.164 allows (a few German ranges).
            assert verdict.reason == Reason.FORMAT
            return
        assert verdict.e164 == formatted
        assert verdict.carrier == (carrier.name_for_number(number, "en") or None)
        assert verdict.time_zones == tuple(timezone.time_zones_for_number(number))


def test_enrichment_matches_the_stock_calls_on_a_messy_list() -> None:
    from devtools.seed import messy_numbers

    raws = messy_numbers(3000, seed=11)
    for raw, verdict in zip(raws, Sanitizer(OPEN).check_many(raws), strict=True):
        if not verdict.kept:
            continue
        number = phonenumbers.parse(raw, "US")
        assert verdict.region == phonenumbers.region_code_for_number(number)
        assert verdict.line_type == TYPE_NAMES[phonenumbers.number_type(number)]
        assert verdict.carrier == (carrier.name_for_number(number, "en") or None)
        assert verdict.time_zones == tuple(timezone.time_zones_for_number(number))


# ---------------------------------------------------------------- directive fields


@pytest.mark.parametrize(
    ("directive", "raw", "reason", "e164", "region"),
    [
        # allowed_regions: +1 876 is Jamaica, not the US, whatever the default region.
        (Directive(allowed_regions=US), "+1 876 555 1234", Reason.REGION, None, "JM"),
        (Directive(allowed_regions=JM), "+1 876 555 1234", None, "+18765551234", "JM"),
        (Directive(allowed_regions=frozenset()), "+1 876 555 1234", None, "+18765551234", "JM"),
        (Directive(allowed_regions=GB), "+44 20 7031 3000", None, "+442070313000", "GB"),
        # default_region: a national number needs one; none means never guess.
        (Directive(default_region="US"), "(415) 555-2671", None, "+14155552671", "US"),
        (Directive(default_region=None), "(415) 555-2671", Reason.NO_COUNTRY_CODE, None, None),
        (Directive(default_region=None), "+1 415 555 2671", None, "+14155552671", "US"),
        (
            Directive(default_region="GB", allowed_regions=frozenset({"GB"})),
            "020 7031 3000",
            None,
            "+442070313000",
            "GB",
        ),
        # blocked_types
        (Directive(), "+1 800 555 1234", Reason.LINE_TYPE, None, "US"),
        (Directive(blocked_types=frozenset()), "+1 800 555 1234", None, "+18005551234", "US"),
        (
            Directive(blocked_types=frozenset({"MOBILE"})),
            "+44 7400 123456",
            Reason.LINE_TYPE,
            None,
            "GB",
        ),
        (
            Directive(blocked_types=frozenset({"FIXED_LINE_OR_MOBILE"})),
            "+1 415 555 2671",
            Reason.LINE_TYPE,
            None,
            "US",
        ),
        # extensions
        (Directive(), "+1 415 555 2671 ext. 12", Reason.EXTENSION, None, "US"),
        (Directive(extensions="drop"), "+1 415 555 2671 ext. 12", None, "+14155552671", "US"),
        (Directive(extensions="drop"), "+1 415 555 2671", None, "+14155552671", "US"),
        # international_prefix_00: the US dials out with 011, most of the world with 00.
        (Directive(), "0044 20 7031 3000", Reason.INVALID, None, None),
        (Directive(), "011 44 20 7031 3000", None, "+442070313000", "GB"),
        (Directive(international_prefix_00=True), "0044 20 7031 3000", None, "+442070313000", "GB"),
        (
            Directive(international_prefix_00=True, default_region=None),
            " 00 1 415 555 2671",
            None,
            "+14155552671",
            "US",
        ),
        # the basics
        (Directive(), "", Reason.MISSING, None, None),
        (Directive(), None, Reason.MISSING, None, None),
        (Directive(), "   ", Reason.MISSING, None, None),
        (Directive(), "call me maybe", Reason.UNPARSEABLE, None, None),
        (Directive(), "+1 415 555 267", Reason.INVALID, None, None),
        (Directive(), 4155552671, None, "+14155552671", "US"),
    ],
)
def test_directive_fields(
    directive: Directive, raw: object, reason: str | None, e164: str | None, region: str | None
) -> None:
    verdict = Sanitizer(directive).check(raw)
    assert (verdict.reason, verdict.e164) == (reason, e164), verdict.detail
    if region is not None:
        assert verdict.region == region


def test_dropped_extension_is_flagged() -> None:
    verdict = Sanitizer(Directive(extensions="drop")).check("+1 415 555 2671 x99")
    assert verdict.kept and verdict.extension_dropped
    assert not Sanitizer(Directive(extensions="drop")).check("+14155552671").extension_dropped


def test_kept_numbers_are_enriched() -> None:
    us, gb_mobile = Sanitizer(
        Directive(allowed_regions=frozenset(), blocked_types=frozenset())
    ).check_many(["+1 212 555 0199", "+44 7400 123456"])
    assert us.line_type == "FIXED_LINE_OR_MOBILE"
    assert us.time_zones == ("America/New_York",)
    assert gb_mobile.line_type == "MOBILE"
    assert gb_mobile.carrier  # libphonenumber knows the GB mobile ranges' carriers
    assert gb_mobile.time_zones == (
        "Europe/Guernsey",
        "Europe/Isle_of_Man",
        "Europe/Jersey",
        "Europe/London",
    )
    plain = Sanitizer(OPEN, enrich=False).check("+1 212 555 0199")
    assert plain.kept and plain.time_zones == () and plain.carrier is None


@pytest.mark.parametrize(
    "bad",
    [
        {"blocked_types": frozenset({"LANDLINE"})},
        {"allowed_regions": frozenset({"XX"})},
        {"default_region": "UK"},
        {"extensions": "keep"},
        {"duplicates": "dedupe"},
        {"lookup": "numverify"},
        {"max_purge_ratio": 2.0},
    ],
)
def test_directive_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Directive(**bad)  # type: ignore[arg-type]


def test_directive_defaults_and_hashability() -> None:
    d = Directive(allowed_regions={"US"}, disposable=["a"])  # type: ignore[arg-type]
    assert d.allowed_regions == frozenset({"US"}) and d.disposable == ("a",)
    assert (d.extensions, d.duplicates, d.lookup, d.international_prefix_00) == (
        "reject",
        "keep_all",
        "none",
        False,
    )
    assert d.max_purge_ratio == 0.2
    hash(d)
    assert Reason.DUPLICATE == "duplicate"


# ---------------------------------------------------------------- disposable numbers


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_disposable_text_and_json_files(tmp_path: Path) -> None:
    text = _write(tmp_path / "burners.txt", "# burners\n+1 415 555 2671\n\n+442070313000\n")
    data = _write(tmp_path / "number-list.json", json.dumps({"12125550199": {"c": "US"}}))
    assert load_numbers(text) == {"+14155552671", "+442070313000"}
    assert load_numbers(data) == {"+12125550199"}
    directive = Directive(allowed_regions=frozenset(), disposable=(str(text), str(data)))
    verdicts = Sanitizer(directive).check_many(
        ["415-555-2671", "+1 212 555 0199", "+44 20 7031 3000", "+1 212 555 0198"]
    )
    assert [v.reason for v in verdicts] == [
        Reason.DISPOSABLE,
        Reason.DISPOSABLE,
        Reason.DISPOSABLE,
        None,
    ]


def test_disposable_refresh_without_restart(tmp_path: Path) -> None:
    path = _write(tmp_path / "burners.txt", "+14155552671\n")
    found = DisposableList([str(path)], check_interval=0.0)
    sanitizer = Sanitizer(Directive(disposable=(str(path),)), disposable=found)
    assert sanitizer.check("+1 212 555 0199").kept
    _write(path, "+14155552671\n+12125550199\n")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert sanitizer.check("+1 212 555 0199").reason == Reason.DISPOSABLE
    # A file broken after start-up keeps its last good contents.
    _write(path, "not a number\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    assert not found.refresh()
    assert "+12125550199" in found and found.last_error


def test_disposable_lists_are_loaded_once_per_process(tmp_path: Path) -> None:
    path = _write(tmp_path / "burners.txt", "+14155552671\n")
    assert disposable_list([str(path)]) is disposable_list([str(path)])


@pytest.mark.parametrize(
    ("name", "text"),
    [("missing.txt", None), ("bad.txt", "+1 415 555 2671\nhello\n"), ("bad.json", "{oops")],
)
def test_bad_disposable_files_are_settings_errors(
    tmp_path: Path, name: str, text: str | None
) -> None:
    path = tmp_path / name
    if text is not None:
        _write(path, text)
    with pytest.raises(SettingsError) as caught:
        load_numbers(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


# ---------------------------------------------------------------- live look-up in the sanitizer


class FakeProvider:
    def __init__(self, answers: dict[str, LineTypeAnswer]) -> None:
        self.answers = answers
        self.asked: list[list[str]] = []

    def lookup_many(self, e164s: list[str]) -> dict[str, LineTypeAnswer]:
        self.asked.append(list(e164s))
        return {n: self.answers[n] for n in e164s if n in self.answers}


def test_provider_answers_refine_the_offline_verdict() -> None:
    provider = FakeProvider(
        {
            "+14155552671": LineTypeAnswer("VOIP", "TextNow - SVR", True, "nonFixedVoip"),
            "+12125550199": LineTypeAnswer("MOBILE", "Verizon Wireless", False, "mobile"),
            "+13125550100": LineTypeAnswer("VOIP", "Vonage", False, "fixedVoip"),
            "+16505550100": LineTypeAnswer(None, None, False, "unknown"),
        }
    )
    sanitizer = Sanitizer(Directive(), lookup=provider)
    raws = [
        "415 555 2671",
        "212 555 0199",
        "312 555 0100",
        "650 555 0100",
        "+1 800 555 1234",
        "nonsense",
        "212 555 0199",
    ]
    verdicts = sanitizer.check_many(raws)
    assert [v.reason for v in verdicts] == [
        Reason.DISPOSABLE,
        None,
        Reason.LINE_TYPE,
        None,
        Reason.LINE_TYPE,
        Reason.UNPARSEABLE,
        None,
    ]
    assert verdicts[1].line_type == "MOBILE" and verdicts[1].carrier == "Verizon Wireless"
    assert verdicts[3].line_type == "FIXED_LINE_OR_MOBILE"  # no opinion: offline type stands
    # One batch, only numbers that passed the offline checks, each once.
    assert provider.asked == [["+14155552671", "+12125550199", "+13125550100", "+16505550100"]]
