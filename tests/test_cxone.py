"""The CXone backend: client-level behaviour, and whole sweeps through a real worker.

Settings are process-wide: each test points them at the session simulator through the
environment and clears ``get_settings``' cache before and after, so the in-process worker
(which reads ``get_settings()`` per task) sweeps through the CXone backend too.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from console import cli, launch
from cxsweep.errors import CxsweepError
from cxsweep.runs.store import RunStore
from cxsweep.settings import get_settings
from tests._cxone import DNC_GROUP, PHONES, expected, new_list_id

# --- the whole sweep -----------------------------------------------------------------------


@pytest.mark.usefixtures("sweep_worker")
def test_full_sweep_through_cxone(
    cxone: dict[str, str],
    simulator: Any,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Discovery, not an explicit API URL; removed numbers go to a DNC group.
    monkeypatch.delenv("CXSWEEP_API_URL")
    monkeypatch.setenv("CXSWEEP_CXONE_DNC_GROUP_ID", DNC_GROUP)
    simulator.configure(page_size=50, job_delay=1.0)
    list_id = "4100021"  # fixed: the seeded mix of good and bad numbers depends on it
    simulator.put_call_list(list_id, count=400, seed=21)
    original = simulator.get_call_list(list_id)
    get_settings.cache_clear()
    changes, removed = expected(original)
    by_id = {r["ExternalId"]: r for r in original}
    # The seed must hold records with a good and a bad number, or this proves little.
    mixed = [cid for cid, after in changes.items() if "" in after.values() and cid not in removed]
    assert len(mixed) >= 10 and len(removed) >= 10
    # Two rejects whose numbers the group holds already: nothing is pushed for them.
    suppressed = [cid for cid in sorted(removed) if digits_of(by_id[cid])][1:3]
    simulator.add_dnc_group(
        DNC_GROUP, numbers=[n for cid in suppressed for n in digits_of(by_id[cid])]
    )
    # The list's skill dials what is uploaded to it: the operator must hear of it.
    simulator.set_skill_running(4001)

    locked = sorted(removed)[0]
    refused = sorted(mixed)[0]
    simulator.fail_records(remove={locked: "ProspectLocked"}, upload={refused: "InvalidRecord"})
    simulator.add_faults(
        [
            {
                "method": "GET",
                "path": "/call-lists/",
                "action": 429,
                "after": 2,
                "times": 1,
                "retry_after": "1",
            },
            {"method": "GET", "path": "/call-lists/", "action": 503, "after": 4, "times": 1},
            {"method": "POST", "path": "/upload$", "action": 502, "times": 1},
            {"method": "DELETE", "path": "/removeProspects$", "action": 503, "times": 1},
        ]
    )

    settings = launch.settings_for_run()
    assert settings.backend == "cxone" and not settings.api_url
    run_id = launch.start_run(settings, list_id, dry_run=False)
    time.sleep(0.3)
    simulator.revoke_tokens()  # workers get a 401 and refresh through the refresh token
    record = launch.wait_for_run(settings, run_id, timeout=180, quiet=True)

    # Two records were refused by the platform: the run says so, everything else is done.
    failures = RunStore(redis_client, run_id).failures()
    assert record["status"] == "failed", record
    assert "e.g." in record["message"], record  # a record's reason reaches the audit line
    assert set(failures) == {locked, refused}, failures
    assert failures[refused].startswith("upload job "), failures
    assert record["failure_count"] == 2, record
    assert record["total_processed"] == len(original)
    assert record["purge_count"] == len(removed) - 1
    assert record["success_count"] == len(changes) - 1
    assert record["already_suppressed"] == len(suppressed)
    assert len(record["warnings"]) == 1 and "skill 4001 is running" in record["warnings"][0]
    assert cli.main(["status", run_id]) == 0
    assert "WARNING: list 4100021: skill 4001 is running" in capsys.readouterr().out

    final = {r["ExternalId"]: r for r in simulator.get_call_list(list_id)}
    assert set(final) == (set(by_id) - removed) | {locked}
    for cid, rec in final.items():
        if cid in changes and cid != refused:
            assert rec == {**by_id[cid], **changes[cid]}, cid
        else:
            assert rec == by_id[cid], cid
    # A record with one good and one bad number keeps the good one and blanks the bad.
    sample = next(cid for cid in sorted(mixed) if cid != refused)
    assert "" in [final[sample][c] for c in PHONES if by_id[sample][c]]
    assert any(final[sample][c].startswith("+") for c in PHONES)

    stats = simulator.stats()
    assert stats["requests"]["discovery"] == 1
    assert stats["password_grants"] == 1 and stats["refresh_grants"] >= 1
    # One download (the faults may cost a retry), then the list read back for the uploads:
    # far fewer reads than upload chunks, as one read serves every write waiting for it;
    # and the run's two re-reads of the list (before writing, after removing), each a
    # download of its own.
    uploads = -(-len(changes) // 60)
    assert 2 <= stats["requests"]["cxone_read"] <= 1 + uploads + 2 + 2, stats["requests"]
    assert set(stats["uploaded"]) == set(changes) - {refused}
    assert all(times == 1 for times in stats["uploaded"].values())
    assert stats["statuses"].get("429", 0) >= 1 and stats["statuses"].get("401", 0) >= 1

    dnc = set(simulator.dnc_numbers(DNC_GROUP))
    assert stats["dnc_rewritten"] == 0
    for cid in removed - {locked}:
        for column in PHONES:
            digits = "".join(ch for ch in by_id[cid][column] if ch.isdigit())
            if len(digits) >= 7:
                assert digits in dnc, (cid, column)


@pytest.mark.usefixtures("sweep_worker")
def test_dry_run_through_cxone_writes_nothing(cxone: dict[str, str], simulator: Any) -> None:
    list_id = new_list_id()
    simulator.put_call_list(list_id, count=120, seed=22)
    original = simulator.get_call_list(list_id)
    settings = launch.settings_for_run()
    run_id = launch.start_run(settings, list_id, dry_run=True)
    record = launch.wait_for_run(settings, run_id, timeout=60, quiet=True)
    changes, removed = expected(original)
    assert record["status"] == "completed"
    assert record["planned_removals"] == len(removed)
    assert record["planned_updates"] == len(changes)
    stats = simulator.stats()
    assert stats["requests"]["upload"] == 0 and stats["requests"]["remove_prospects"] == 0
    assert simulator.get_call_list(list_id) == original


def test_cli_refuses_bad_access_key_fast(
    cxone: dict[str, str], simulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CXSWEEP_CXONE_ACCESS_KEY_SECRET", "wrong")
    get_settings.cache_clear()
    with pytest.raises(CxsweepError, match="refused"):
        launch.start_run(launch.settings_for_run(), new_list_id(), dry_run=True)


@pytest.mark.usefixtures("sweep_worker")
def test_purge_guard_counts_blanked_secondary_numbers(
    cxone: dict[str, str], simulator: Any
) -> None:
    """A policy that blanks many secondary numbers destroys data while removing few
    records: the guard weighs phone values too, and the run halts before writing."""
    list_id = new_list_id()
    records = []
    for i in range(100):
        record = {"ExternalId": f"{list_id}-{i:03d}", "FirstName": "Pat"}
        record["PhoneNumber"] = "not a number" if i < 5 else f"+1650253{i:04d}"
        record["MobileNumber"] = "+33123456789" if 5 <= i < 65 else ""  # outside the regions
        record["WorkNumber"] = "+33123456780" if 5 <= i < 45 else ""
        records.append(record)
    simulator.put_call_list(list_id, records)
    original = simulator.get_call_list(list_id)
    settings = launch.settings_for_run()
    run_id = launch.start_run(settings, list_id, dry_run=False)
    record = launch.wait_for_run(settings, run_id, timeout=60, quiet=True)
    assert record["status"] == "halted", record
    # 5 of 100 records (5%) is under the guard of 20%; 105 of 200 values is not.
    assert "remove 5 of 100 contacts (5.0%)" in record["message"]
    assert "destroy 105 of 200 phone values (52.5%)" in record["message"]
    assert "--allow-purge-ratio" in record["message"]
    stats = simulator.stats()
    assert stats["requests"]["upload"] == 0 and stats["requests"]["remove_prospects"] == 0
    assert simulator.get_call_list(list_id) == original


@pytest.mark.usefixtures("sweep_worker")
def test_cxsweep_run_against_the_published_schema(
    cxone: dict[str, str],
    simulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Acceptance: `cxsweep run` against a server following NICE's schema (the list whole
    in one answer, uploads refused without expirationDate, status-only jobs), the API
    found by discovery: every good record corrected in place, every reject removed."""
    import json

    monkeypatch.delenv("CXSWEEP_API_URL")
    # Small pages: many more than the reading window, so reading waits for sanitizing.
    monkeypatch.setenv("CXSWEEP_CXONE_PAGE_SIZE", "10")
    list_id = "4100031"
    simulator.put_call_list(list_id, count=300, seed=31)
    original = {r["ExternalId"]: r for r in simulator.get_call_list(list_id)}
    get_settings.cache_clear()
    changes, removed = expected(list(original.values()))
    assert len(changes) >= 50 and len(removed) >= 5

    code = cli.main(["run", list_id, "--json", "--quiet", "--timeout", "180"])
    record = json.loads(capsys.readouterr().out)
    assert code == 0 and record["status"] == "completed", record
    assert record["success_count"] == len(changes) and record["purge_count"] == len(removed)

    final = {r["ExternalId"]: r for r in simulator.get_call_list(list_id)}
    assert set(final) == set(original) - removed
    for cid, rec in final.items():
        assert rec == {**original[cid], **changes.get(cid, {})}, cid
    stats = simulator.stats()
    assert stats["requests"]["discovery"] == 1
    assert all(times == 1 for times in stats["uploaded"].values())


def test_new_settings_are_validated() -> None:
    from cxsweep.errors import SettingsError
    from cxsweep.settings import load_settings

    base = {"CXSWEEP_ENV_FILE": "/dev/null", "CXSWEEP_BACKEND": "cxone"}
    for name, value in (
        ("CXSWEEP_CXONE_AUTH", "token"),
        ("CXSWEEP_CXONE_CLIENT_AUTH", "private_key_jwt"),
        ("CXSWEEP_CXONE_LIST_EXPIRATION_DAYS", "0"),
        ("CXSWEEP_CXONE_INCLUDE_INACTIVE", "maybe"),
    ):
        with pytest.raises(SettingsError, match=name.removeprefix("CXSWEEP_")):
            load_settings({**base, name: value})
    access_key = load_settings(
        {
            **base,
            "CXSWEEP_CXONE_AUTH": "access-key",
            "CXSWEEP_CXONE_ACCESS_KEY_ID": "k",
            "CXSWEEP_CXONE_ACCESS_KEY_SECRET": "s",
        }
    )
    access_key.require_api()  # no client id needed
    with pytest.raises(SettingsError, match="CLIENT_ID"):
        load_settings({**base, "CXSWEEP_CXONE_ACCESS_KEY_ID": "k"}).require_api()


def digits_of(record: dict[str, Any]) -> list[str]:
    found = ("".join(ch for ch in record[c] if ch.isdigit()) for c in PHONES)
    return [d for d in found if len(d) >= 7]
