"""What an operator meets first: settings that are really checked, arguments refused in
one line, the small promises of the README (issue 14)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cxsweep import cli
from cxsweep.demo import worker_command
from cxsweep.errors import SettingsError
from cxsweep.settings import load_settings
from tests._stack import finish, make_stack, wait_until

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


def test_cancel_stops_a_long_run_mid_write(tmp_path: Path) -> None:
    """Ctrl-C in ``cxsweep run`` says how to cancel; ``cxsweep cancel`` ends the run
    ``cancelled``: writes in flight finish, no new one starts, one audit line, a webhook,
    the list freed."""
    stack_iter = make_stack(tmp_path, page_size=100, latency_ms=25.0, seed=2)
    stack = next(stack_iter)
    try:
        stack.extra_env["CXSWEEP_AGGREGATOR_URL"] = f"{stack.sim.url}/_sim/webhook"
        stack.sim.put_list("long-list", count=2000, seed=4)
        stack.start_worker("cancel", pool="threads")
        runner = stack.run_cli("long-list")
        assert wait_until(lambda: len(stack.sim.deleted_ids) >= 5, timeout=120, interval=0.05)
        (run_id,) = [raw.decode() for raw in stack.redis.zrange("cxsweep:runs", 0, -1)]

        runner.send_signal(signal.SIGINT)
        code, _, err = finish(runner, timeout=30)
        assert code == 130
        assert f"`cxsweep cancel {run_id}`" in err and "goes on on the workers" in err

        def cxsweep(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "cxsweep.cli", *args],
                cwd=REPO,
                env=stack.env(),
                capture_output=True,
                text=True,
                timeout=120,
            )

        cancelled = cxsweep("cancel", run_id, "--wait", "--timeout", "90")
        assert cancelled.returncode == 0, cancelled.stderr
        assert f"run {run_id} on list long-list: cancelled" in cancelled.stdout

        (line,) = stack.audit_lines(run_id)
        assert line["status"] == "cancelled"
        assert line["message"].startswith("cancelled by the operator")
        # Every removal that left was answered and counted; the rest never left.
        deleted = len(stack.sim.deleted_ids)
        assert line["purge_count"] == deleted < line["planned_removals"]
        assert not stack.redis.exists("cxsweep:list-lock:long-list")
        assert wait_until(
            lambda: any(w["body"].get("run_id") == run_id for w in stack.sim.webhooks()),
            timeout=30,
            interval=0.1,
        )
        (hook,) = [w["body"] for w in stack.sim.webhooks() if w["body"].get("run_id") == run_id]
        assert hook["event"] == "campaign.sanitization.halted"
        assert hook["metrics"]["status"] == "cancelled"
        time.sleep(1.0)
        assert len(stack.sim.deleted_ids) == deleted, "a write started after the run ended"

        again = cxsweep("cancel", run_id)
        assert again.returncode == 2
        assert again.stderr.strip() == f"cxsweep: run {run_id} has already ended: cancelled"
    finally:
        with contextlib.suppress(StopIteration):
            next(stack_iter)
