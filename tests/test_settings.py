"""cxsweep/settings.py: each setting declared once, checked up front, documented from
the declaration."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cxsweep.errors import SettingsError
from cxsweep.settings import Settings, load_settings, markdown_table

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_table_is_the_declaration() -> None:
    assert markdown_table() in README.read_text(), (
        "README's settings table differs from the declaration: paste the output of"
        " `python -m cxsweep.settings --markdown`"
    )


def test_every_number_is_bounded_and_every_setting_explained() -> None:
    for declared in dataclasses.fields(Settings):
        spec = declared.metadata["spec"]
        assert spec.help, declared.name
        if isinstance(declared.default, int | float) and not isinstance(declared.default, bool):
            assert spec.minimum is not None and spec.maximum is not None, declared.name


def test_defaults_load_from_an_empty_environment() -> None:
    settings = load_settings({"CXSWEEP_ENV_FILE": "/nonexistent"})
    assert settings == Settings()
    assert settings.rate_limit == 10.0 and settings.broker == settings.redis_url


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RATE_LIMIT", "nan", "CXSWEEP_RATE_LIMIT='nan' is not a finite number"),
        ("RATE_LIMIT", "-1", "CXSWEEP_RATE_LIMIT=-1 must be between 0 and 100000"),
        ("BREAKER_THRESHOLD", "2.5", "CXSWEEP_BREAKER_THRESHOLD='2.5' is not a whole number"),
        ("BACKEND", "soap", "CXSWEEP_BACKEND='soap': expected v2 or cxone"),
        ("ALLOW_VOLATILE_REDIS", "maybe", "CXSWEEP_ALLOW_VOLATILE_REDIS='maybe': expected 1 or 0"),
        ("ALLOWED_REGIONS", "US,XX", "CXSWEEP_ALLOWED_REGIONS: unknown region code(s) XX"),
        ("API_URL", "ftp://x", "CXSWEEP_API_URL='ftp://x' is not a URL"),
        ("CXONE_API_VERSION", "31", "CXSWEEP_CXONE_API_VERSION='31': expected like v31.0"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"CXSWEEP_ENV_FILE": "/nonexistent", f"CXSWEEP_{name}": value})
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_an_env_file_adds_to_the_environment(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("# ops\nexport CXSWEEP_RATE_LIMIT='25'\nCXSWEEP_BACKEND=cxone\n")
    settings = load_settings({"CXSWEEP_ENV_FILE": str(env), "CXSWEEP_BACKEND": "v2"})
    assert settings.rate_limit == 25.0 and settings.backend == "v2"
