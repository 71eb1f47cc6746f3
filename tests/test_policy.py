"""Policy files: per-list directives, validated at load with one-line errors."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest

from cxsweep.errors import SettingsError
from cxsweep.phone.numbers import Directive, Reason, Sanitizer
from cxsweep.phone.policy import Policy, load_policy, settings_directive
from cxsweep.settings import Secret, Settings

BASE = Settings(
    allowed_regions=frozenset({"US", "CA"}),
    blocked_types=frozenset({"VOIP"}),
    default_region="US",
)


def policy_from(tmp_path: Path, text: str, settings: Settings = BASE) -> Policy:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return load_policy(dataclasses.replace(settings, policy_file=str(path)))


def load_error(tmp_path: Path, text: str, settings: Settings = BASE) -> str:
    with pytest.raises(SettingsError) as caught:
        policy_from(tmp_path, text, settings)
    message = str(caught.value)
    assert "\n" not in message
    assert str(tmp_path / "policy.toml") in message
    return message


def test_without_a_file_every_list_gets_the_settings_directive() -> None:
    policy = load_policy(BASE)
    assert policy.default == settings_directive(BASE)
    assert policy.directive_for("anything") == settings_directive(BASE)
    assert policy.schedule_for("anything") is None
    assert not policy.excluded("anything")


def test_per_list_override_changes_that_list_only(tmp_path: Path) -> None:
    policy = policy_from(
        tmp_path,
        """
        [default]
        blocked_types = ["VOIP", "TOLL_FREE"]

        [[lists]]
        match = "caribbean-*"
        allowed_regions = ["US", "JM"]
        """,
    )
    jamaica = "+1 876 555 1234"
    assert Sanitizer(policy.directive_for("caribbean-2024")).check(jamaica).kept
    for other in ("main", "caribbean", "uk-caribbean-1"):
        assert Sanitizer(policy.directive_for(other)).check(jamaica).reason == Reason.REGION
    # Fields the entry leaves out fall back to the file's default, then to the settings.
    caribbean = policy.directive_for("caribbean-2024")
    assert caribbean.blocked_types == frozenset({"VOIP", "TOLL_FREE"})
    assert caribbean.default_region == "US"
    assert policy.default.allowed_regions == frozenset({"US", "CA"})


def test_exact_ids_win_then_globs_in_file_order(tmp_path: Path) -> None:
    policy = policy_from(
        tmp_path,
        """
        [[lists]]
        match = "uk-*"
        allowed_regions = ["GB"]

        [[lists]]
        match = "uk-*-test"
        allowed_regions = ["IE"]

        [[lists]]
        match = "uk-special"
        allowed_regions = ["FR"]
        """,
    )
    assert policy.directive_for("uk-special").allowed_regions == {"FR"}
    assert policy.directive_for("uk-a-test").allowed_regions == {"GB"}  # first glob wins
    assert policy.directive_for("us-main").allowed_regions == {"US", "CA"}


def test_every_field_is_read(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "burners.txt").write_text("+14155552671\n")
    (tmp_path / "number-list.json").write_text('{"12125550199": 1}')
    policy = policy_from(
        tmp_path,
        """
        [default]
        allowed_regions = []
        blocked_types = ["premium_rate"]
        default_region = "none"
        extensions = "drop"
        duplicates = "keep_first"
        disposable = ["data/burners.txt", "number-list.json"]
        international_prefix_00 = true
        lookup = "none"
        max_purge_ratio = 0.5
        schedule = "30 2 * * *"

        [[lists]]
        match = "nightly-*"
        default_region = "GB"
        schedule = "0 3 * * 1-5"

        [[lists]]
        match = "legacy"
        exclude = true
        """,
    )
    d = policy.default
    assert d.allowed_regions == frozenset() and d.blocked_types == {"PREMIUM_RATE"}
    assert d.default_region is None
    assert (d.extensions, d.duplicates, d.international_prefix_00) == ("drop", "keep_first", True)
    assert d.max_purge_ratio == 0.5
    assert d.disposable == (
        str((tmp_path / "data" / "burners.txt").resolve()),
        str((tmp_path / "number-list.json").resolve()),
    )
    assert policy.directive_for("nightly-1").default_region == "GB"
    assert policy.schedule_for("nightly-1") == "0 3 * * 1-5"
    assert policy.schedule_for("other") == "30 2 * * *"
    assert policy.schedule_for("legacy") == "30 2 * * *"
    assert policy.excluded("legacy") and not policy.excluded("nightly-1")
    verdicts = Sanitizer(d).check_many(["+1 415 555 2671", "415 555 0100", "0044 20 7031 3000"])
    assert [v.reason for v in verdicts] == [Reason.DISPOSABLE, Reason.NO_COUNTRY_CODE, None]


def test_malformed_toml_is_one_clear_line(tmp_path: Path) -> None:
    message = load_error(tmp_path, '[default]\nallowed_regions = ["US"\n')
    assert "not valid TOML" in message


def test_missing_data_file_is_one_clear_line(tmp_path: Path) -> None:
    message = load_error(
        tmp_path,
        """
        [[lists]]
        match = "burner-checked"
        disposable = ["nowhere.txt"]
        """,
    )
    assert "[[lists]] #1 ('burner-checked')" in message
    assert "disposable" in message and "nowhere.txt" in message and "does not exist" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[default]\nallowed_regions = ["US", "XX"]', "[default]: allowed_regions: unknown region"),
        ('[default]\nblocked_types = ["LANDLINE"]', "blocked_types: unknown line type(s) LANDLINE"),
        ('[default]\ncolour = "blue"', "[default]: colour: unknown key"),
        ('[default]\ndefault_region = "UK"', "default_region: unknown region code UK"),
        ('[default]\nextensions = "keep"', "extensions: expected one of reject, drop"),
        ('[default]\nduplicates = "dedupe"', "duplicates: expected one of keep_all, keep_first"),
        ('[default]\ninternational_prefix_00 = "yes"', "international_prefix_00: expected true"),
        ("[default]\nmax_purge_ratio = 3", "max_purge_ratio: 3 is not between 0 and 1"),
        ('[[lists]]\nallowed_regions = ["GB"]', "[[lists]] #1: match: missing"),
        ('[[lists]]\nmatch = "x"\nschedule = "daily"', "schedule: 'daily' is not a 5-field"),
        ('[[lists]]\nmatch = "x"\nexclude = 1', "exclude: expected true or false"),
        ('[default]\nmatch = "x"', "[default]: match: only [[lists]] entries take match"),
        ('[defaults]\nlookup = "none"', "unknown top-level key 'defaults'"),
        ('[default]\nlookup = "twilio"', 'lookup: "twilio" needs CXSWEEP_TWILIO_ACCOUNT_SID'),
    ],
)
def test_bad_entries_name_file_entry_and_field(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in load_error(tmp_path, text)


def test_twilio_lookup_needs_credentials_only_where_asked(tmp_path: Path) -> None:
    text = '[[lists]]\nmatch = "paid"\nlookup = "twilio"\n'
    assert "[[lists]] #1 ('paid'): lookup" in load_error(tmp_path, text)
    configured = dataclasses.replace(
        BASE, twilio_account_sid="ACsimulator", twilio_auth_token=Secret("sim-token")
    )
    policy = policy_from(tmp_path, text, configured)
    assert policy.directive_for("paid").lookup == "twilio"
    assert policy.default.lookup == "none"


def test_directive_stays_constructible_from_keywords() -> None:
    assert (
        Directive(
            allowed_regions=frozenset({"US"}), blocked_types=frozenset(), default_region=None
        ).lookup
        == "none"
    )


def _run_check(argv: list[str]) -> int:
    import argparse

    from console.check import add_check_parser

    parser = argparse.ArgumentParser(prog="cxsweep")
    add_check_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_check_explains_verdicts_under_a_lists_directive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[[lists]]\nmatch = "jm-*"\nallowed_regions = ["JM"]\n')
    monkeypatch.setenv("CXSWEEP_POLICY_FILE", str(path))
    assert _run_check(["check", "+1 876 555 1234", "--list", "jm-1"]) == 0
    out = capsys.readouterr().out
    assert "+18765551234  kept" in out and "region=JM" in out and "type=MOBILE" in out
    assert _run_check(["check", "+1 876 555 1234", "+1 800 555 1234", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(v["reason"], v["region"]) for v in lines] == [("region", "JM"), ("line_type", "US")]
    monkeypatch.setattr("sys.stdin", io.StringIO("212 555 0199\n\n+44 20 7031 3000\n"))
    assert _run_check(["check"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 and "America/New_York" in printed[0]


def test_check_reports_a_bad_policy_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[default]\nblocked_types = ["LANDLINE"]\n')
    monkeypatch.setenv("CXSWEEP_POLICY_FILE", str(path))
    assert _run_check(["check", "+12125550199"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cxsweep: policy file ") and err.count("\n") == 1
