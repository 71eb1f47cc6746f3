"""What an operator meets first: settings that are really checked, arguments refused in
one line, the small promises of the README (issue 14)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import cast

import pytest
import requests

from console import cli, summary
from console.demo import worker_command
from console.report import render_html
from cxsweep.errors import RetryableApiError, SettingsError
from cxsweep.platforms.http import Transport
from cxsweep.runs import audit, latency
from cxsweep.settings import load_settings
from devtools.localredis import free_port
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
    # Values parsed, nothing built: no limiter or metrics server is switched off here.
    settings = load_settings(
        {"CXSWEEP_ENV_FILE": os.devnull, "CXSWEEP_RATE_LIMIT": "2.5", "CXSWEEP_METRICS_PORT": "0"}
    )
    assert settings.rate_limit == 2.5 and settings.metrics_port == 0


def test_a_nan_rate_limit_stops_the_cli_and_the_worker_naming_the_variable() -> None:
    env = clean_env(CXSWEEP_RATE_LIMIT="nan")
    done = subprocess.run(
        [sys.executable, "-m", "console.cli", "run", "list-1"],
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
        runs = cast(list[bytes], stack.redis.zrange("cxsweep:runs", 0, -1))
        (run_id,) = [raw.decode() for raw in runs]

        runner.send_signal(signal.SIGINT)
        code, _, err = finish(runner, timeout=30)
        assert code == 130
        assert f"`cxsweep cancel {run_id}`" in err and "goes on on the workers" in err

        def cxsweep(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "console.cli", *args],
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


# --- API latency: a histogram per request kind ----------------------------------------


def test_latency_buckets_give_percentiles_within_a_bucket() -> None:
    edges = [latency.upper_ms(i) for i in range(latency.LAST_BUCKET + 1)]
    assert edges == sorted(edges) and edges[-1] > 600_000, "covers the longest read time-out"
    for ms in (0.1, 0.3, 1.0, 4.2, 17.0, 250.0, 9_999.0):
        index = latency.bucket_of(ms / 1000)
        assert latency.lower_ms(index) < ms <= latency.upper_ms(index) or index == 0
    assert latency.bucket_of(float("nan")) == 0 and latency.bucket_of(-1.0) == 0
    assert latency.bucket_of(1e9) == latency.LAST_BUCKET
    # 900 answers at 5 ms, 90 at 40 ms, 10 at 400 ms.
    buckets: dict[int, int] = {}
    for ms, count in ((5.0, 900), (40.0, 90), (400.0, 10)):
        buckets[latency.bucket_of(ms / 1000)] = count
    found = latency.percentiles(buckets)
    assert found["requests"] == 1000
    width = 2 ** (1 / latency.PER_DOUBLING)
    assert 5.0 / width <= found["p50"] <= 5.0 * width
    assert 40.0 / width <= found["p95"] <= 40.0 * width
    assert 40.0 / width <= found["p99"] <= 40.0 * width
    assert latency.percentiles({}) == {"requests": 0.0}


def test_the_audit_line_names_its_times_and_counts_every_request(tmp_path: Path) -> None:
    """Percentiles per request kind from the run's histogram in Redis; the request count
    of the summary is the platform's (the CLI's token grant included)."""
    stack_iter = make_stack(tmp_path, page_size=100, latency_ms=15.0, seed=3)
    stack = next(stack_iter)
    try:
        stack.sim.put_list("timed-list", count=600, seed=5)
        stack.start_worker("timed", pool="threads")
        code, record, err = finish(stack.run_cli("timed-list"), timeout=120)
        assert code == 0 and record is not None, err
        assert record["api_requests"] == stack.sim.total_requests()
        by_kind = record["api_latency_ms"]
        assert {"token", "read", "patch", "delete", "all"} <= set(by_kind)
        assert by_kind["all"]["requests"] == record["api_requests"]
        assert (
            sum(row["requests"] for kind, row in by_kind.items() if kind != "all")
            == (record["api_requests"])
        )
        for kind, row in by_kind.items():
            # The simulator waits 15 ms before every answer.
            assert 15.0 / 1.2 <= row["p50"] <= row["p95"] <= row["p99"], (kind, row)
        assert record["avg_latency_ms"] >= 15.0
        assert 0 < record["check_us_per_number"] < 15_000
        assert "avg_latency_us" not in record
        (line,) = stack.audit_lines(record["run_id"])
        assert line["api_latency_ms"] == by_kind
        page = render_html(record)
        assert "API latency by request kind" in page and "<td>Delete</td>" in page
    finally:
        with contextlib.suppress(StopIteration):
            next(stack_iter)


# --- the README's promises --------------------------------------------------------------


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console.cli", *args],
        cwd=REPO,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_readme_policy_is_the_shipped_example_and_it_loads() -> None:
    readme = (REPO / "README.md").read_text()
    shipped = (REPO / "examples" / "policy.toml").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    assert block.strip() in shipped and block.startswith("[default]")
    done = run_cli(
        "check",
        "--list",
        "uk-spring",
        "+447400123456",
        "+447400123457",
        CXSWEEP_POLICY_FILE="examples/policy.toml",
    )
    assert done.returncode == 0, done.stderr
    listed, other = done.stdout.splitlines()
    assert "rejected: disposable" in listed and "kept" in other


def test_check_with_a_list_but_no_policy_file_says_it_uses_the_defaults() -> None:
    done = run_cli("check", "--list", "uk-spring", "+447400123456")
    assert done.returncode == 0
    assert "no policy file" in done.stderr and "settings' defaults" in done.stderr
    assert run_cli("check", "+447400123456").stderr == ""


def test_the_simulator_prints_its_list_ids() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "simulator", "--port", str(port), "--lists", "2"],
        cwd=REPO,
        env=clean_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline() for _ in range(3)]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert f"simulator on http://127.0.0.1:{port}" in lines[0]
    assert lines[1].strip() == "v2 lists: list-1, list-2"
    assert lines[2].strip() == "CXone calling lists: 1001"


def test_a_connection_failure_says_what_and_where_in_a_few_words() -> None:
    settings = load_settings({"CXSWEEP_ENV_FILE": os.devnull, "CXSWEEP_READ_TIMEOUT": "5"})
    transport = Transport(settings, session=requests.Session())
    port = free_port()  # nothing listens there
    with pytest.raises(RetryableApiError) as refused:
        transport.send("read", "GET /lists", "GET", f"http://127.0.0.1:{port}/lists")
    assert str(refused.value) == (
        f"GET /lists: connection failed (ConnectionRefusedError from 127.0.0.1:{port}:"
        " Connection refused)"
    )
    # A server that accepts and hangs up without an answer.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        hang_up = threading.Thread(target=lambda: server.accept()[0].close(), daemon=True)
        hang_up.start()
        url = f"http://127.0.0.1:{server.getsockname()[1]}/lists"
        with pytest.raises(RetryableApiError) as dropped:
            transport.send("read", "GET /lists", "GET", url)
    message = str(dropped.value)
    assert "HTTPConnection(" not in message and "from 127.0.0.1:" in message, message
    assert message.endswith(")") and len(message) < 200, message


def test_version() -> None:
    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout.startswith("cxsweep ")
    assert done.stdout.split()[1][0].isdigit()


@pytest.mark.parametrize(
    "command",
    [["status"], ["restore"], ["cancel"], ["archive", "export"], ["report"]],
    ids=" ".join,
)
def test_an_unknown_run_id_is_exit_2_for_every_command(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([*command, "20990101T000000Z-00000000"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cxsweep: ") and "20990101T000000Z-00000000" in err
    assert err.count("\n") == 1


def test_the_demo_starts_redis_on_the_configured_port_and_prints_no_vanishing_path(
    tmp_path: Path,
) -> None:
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "console.cli", "demo", "--contacts", "300", "--workers", "1"],
        cwd=tmp_path,
        env=clean_env(CXSWEEP_REDIS_URL=f"redis://127.0.0.1:{port}/2"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"started a private redis-server at redis://127.0.0.1:{port}/2" in done.stdout
    printed = [word.strip("()'\",") for word in done.stdout.split() if word.startswith(("/", "("))]
    for path in printed:
        if path.startswith("/"):
            assert Path(path).exists(), f"the demo printed {path}, then removed it"
    assert (tmp_path / "sanitization_audit.log").exists()


def test_localredis_prints_the_pid_of_a_server_it_started_for_ci_to_stop(tmp_path: Path) -> None:
    """``.ci/run`` stops the redis-server it started (a trap on exit) by this pid."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    started = subprocess.run(
        [sys.executable, "-m", "devtools.localredis", url],
        env=clean_env(TMPDIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    pid = int(started.stdout)
    try:
        assert f"(pid {pid})" in started.stderr
        again = subprocess.run(
            [sys.executable, "-m", "devtools.localredis", url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert again.stdout == "", "nothing to stop when a Redis already answered"
    finally:
        os.kill(pid, signal.SIGTERM)
    ci = (REPO / ".ci" / "run").read_text()
    assert 'trap \'kill "$REDIS_PID"' in ci


@pytest.mark.parametrize("guard", ["", "the plan would remove 5 of 10 contacts (50.0%)"])
def test_a_dry_run_says_nothing_was_written_once(
    guard: str, capsys: pytest.CaptureFixture[str]
) -> None:
    meta = {"run_id": "r-dry", "list_id": "l-dry", "dry_run": "1", "started_at": "1"}
    message = "dry run: nothing was written" + (f"; {guard}" if guard else "")
    record = audit.build_record(
        meta, {"fetched": 10}, status="completed", removed=0, finished_at=2.0, message=message
    )
    page = render_html(record)
    note_box = page.split('<div class="note"', 1)[1].split("</div>", 1)[0]
    assert note_box.lower().count("nothing was written") == 1
    assert guard in page
    summary.print_summary(record)
    out = capsys.readouterr().out
    assert "(dry run)" in out and "nothing was written" not in out
    assert ("note       " + guard in out) if guard else ("note" not in out)


# --- Flower: loopback unless told otherwise -------------------------------------------


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses listening on ``port``, from /proc/net/tcp."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def test_flower_as_the_readme_starts_it_listens_on_loopback_only(redis_url: str) -> None:
    readme = (REPO / "README.md").read_text()
    (line,) = [line for line in readme.splitlines() if "celery -A workers flower" in line]
    assert "--address=127.0.0.1" in line
    port = free_port()
    env = clean_env(CXSWEEP_REDIS_URL=redis_url, FLOWER_BASIC_AUTH="ops:test-password")
    command = ["celery", "-A", "workers", "flower", "--address=127.0.0.1", f"--port={port}"]
    flower = subprocess.Popen(
        [sys.executable, "-m", *command],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until(lambda: listening_addresses(port), timeout=60, interval=0.2)
        assert listening_addresses(port) == {"127.0.0.1"}
    finally:
        # Flower keeps nothing worth a graceful stop here (and takes seconds to stop).
        flower.kill()
        flower.wait()


def test_flower_in_containers_listens_inside_and_is_published_on_loopback() -> None:
    import yaml

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    flower = compose["services"]["flower"]
    assert "--address=0.0.0.0" in flower["command"]
    assert flower["ports"] == ["127.0.0.1:5555:5555"]
    docs = list(yaml.safe_load_all((REPO / "deploy/k8s/base/flower.yaml").read_text()))
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (service,) = [d for d in docs if d["kind"] == "Service"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "--address=0.0.0.0" in container["args"]
    assert service["spec"]["type"] == "ClusterIP"
    operations = (REPO / "docs/operations.md").read_text()
    assert "**`/metrics` is unauthenticated.**" in operations


def test_cancel_while_reading_stops_reading_and_writes_nothing(tmp_path: Path) -> None:
    stack_iter = make_stack(tmp_path, page_size=50, latency_ms=60.0, seed=2)
    stack = next(stack_iter)
    try:
        stack.sim.put_list("read-list", count=3000, seed=4)
        stack.start_worker("cancel-read", pool="threads")
        runner = stack.run_cli("read-list")

        def run_ids() -> list[str]:
            runs = cast(list[bytes], stack.redis.zrange("cxsweep:runs", 0, -1))
            return [raw.decode() for raw in runs]

        assert wait_until(
            lambda: any(
                int(stack.redis.hget(f"cxsweep:run:{r}:counts", "pages_read") or 0) >= 2
                for r in run_ids()
            ),
            timeout=120,
            interval=0.05,
        )
        (run_id,) = run_ids()
        cancelled = subprocess.run(
            [sys.executable, "-m", "console.cli", "cancel", run_id],
            cwd=REPO,
            env=stack.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cancelled.returncode == 0, cancelled.stderr
        code, record, err = finish(runner, timeout=120)
        assert code == 1 and record is not None, err
        assert record["status"] == "cancelled"
        assert record["pages"] < 3000 // 50, "reading stopped"
        assert record["success_count"] == record["purge_count"] == 0
        assert stack.sim.deleted_ids == [] and stack.sim.patch_values == {}
        assert len(stack.audit_lines(run_id)) == 1
        assert not stack.redis.exists("cxsweep:list-lock:read-list")
    finally:
        with contextlib.suppress(StopIteration):
            next(stack_iter)


def test_the_cli_starts_without_what_only_some_commands_need() -> None:
    # Jinja2 (reports) and libphonenumber's carrier and time-zone data (enrichment) cost
    # a tenth of a second each at every start; `cxsweep run` needs neither (issue 15).
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, console.cli; print(' '.join(sys.modules))"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "console.cli" in loaded
    for heavy in ("jinja2", "phonenumbers.carrier", "phonenumbers.timezone"):
        assert heavy not in loaded


def test_the_program_exits_with_main_s_code() -> None:
    # `python -m console.cli` and the `cxsweep` script go through cli.entry.
    done = subprocess.run(
        [sys.executable, "-m", "console.cli", "run", " "],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == cli.EXIT_USAGE
    assert done.stderr.strip() == "cxsweep: list id ' ' is empty"
