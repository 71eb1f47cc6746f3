"""What an operator meets first: settings that are really checked, arguments refused in
one line, the small promises of the README (issue 14)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cxsweep import cli
from cxsweep.demo import worker_command
from cxsweep.errors import SettingsError
from cxsweep.settings import load_settings

REPO = Path(__file__).resolve().parent.parent

NUMERIC = (
    "RATE_LIMIT",
    "RATE_BURST",
    "CONNECT_TIMEOUT",
    "READ_TIMEOUT",
    "MAX_RESPONSE_BYTES",
    "BREAKER_THRESHOLD",
    "RUN_DEADLINE_SECONDS",
    "RUN_STALL_SECONDS",
    "VISIBILITY_TIMEOUT",
    "MAX_CONCURRENT_RUNS",
    "METRICS_PORT",
    "HTTP_POOL_SIZE",
    "CXONE_PAGE_SIZE",
    "CXONE_UPLOAD_BATCH",
    "CXONE_REMOVE_BATCH",
    "CXONE_JOB_POLL_SECONDS",
)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXSWEEP_")}
    env.update({"CXSWEEP_ENV_FILE": os.devnull, **extra})
    return env


@pytest.mark.parametrize("name", NUMERIC)
@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e999", "-1", "99999999999"])
def test_every_numeric_setting_is_finite_and_in_range(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"CXSWEEP_ENV_FILE": os.devnull, f"CXSWEEP_{name}": value})
    message = str(caught.value)
    assert f"CXSWEEP_{name}=" in message and "\n" not in message


def test_numeric_settings_in_range_still_load() -> None:
    settings = load_settings(
        {"CXSWEEP_ENV_FILE": os.devnull, "CXSWEEP_RATE_LIMIT": "2.5", "CXSWEEP_METRICS_PORT": "0"}
    )
    assert settings.rate_limit == 2.5 and settings.metrics_port == 0


def test_a_nan_rate_limit_stops_the_cli_and_the_worker_naming_the_variable() -> None:
    env = clean_env(CXSWEEP_RATE_LIMIT="nan")
    done = subprocess.run(
        [sys.executable, "-m", "cxsweep.cli", "run", "list-1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "cxsweep: CXSWEEP_RATE_LIMIT='nan' is not a finite number"
    worker = subprocess.run(
        worker_command("nan-check", pool="solo", concurrency=1),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode != 0
    assert "cxsweep: CXSWEEP_RATE_LIMIT='nan' is not a finite number" in worker.stderr
    assert "Traceback" not in worker.stderr


@pytest.mark.parametrize("list_id", ["", "   ", "list\x1b[2J", "a\nb", "tab\there"])
def test_a_blank_or_control_list_id_is_refused_with_exit_2(
    list_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["run", list_id]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cxsweep: list id ") and err.count("\n") == 1


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0", "soon"])
def test_a_timeout_must_be_a_positive_number_of_seconds(value: str) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.build_parser().parse_args(["run", "list-1", "--timeout", value])
    assert caught.value.code == 2
