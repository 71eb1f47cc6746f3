"""The CXone session (cxsweep/platforms/cxone_session.py): password, refresh and access-key
grants shared by the fleet, client_secret_post, discovery of the API, refused keys."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from cxsweep.errors import CredentialsRefused
from cxsweep.platforms.cxone_session import jwt_claims
from tests._cxone import backend, new_list_id


def test_password_grant_discovery_and_cached_api_base(
    cxone: dict[str, str],
    simulator: Any,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CXSWEEP_API_URL")
    list_id = new_list_id()
    simulator.put_call_list(list_id, count=5, seed=1)
    first = backend(redis_client)
    first.check_credentials()
    assert first.api_base() == f"{simulator.url}/inContactAPI/services/v31.0"
    assert first.tenant_id() == simulator.config.tenant_id
    lists = {item["id"]: item for item in first.iter_lists()}
    assert lists[list_id]["name"] == f"Calling list {list_id}"
    # A second backend (another task, another worker) reuses token, tenant and base.
    second = backend(redis_client)
    page = second.read_page(list_id, None)
    assert page.total == 5 and len(page.contacts) == 5
    stats = simulator.stats()
    assert stats["requests"]["discovery"] == 1
    assert stats["password_grants"] == 1 and stats["token_grants"] == 1


def test_id_token_claims_hold_the_tenant(cxone: dict[str, str], simulator: Any) -> None:
    import requests

    response = requests.post(
        f"{simulator.url}/auth/token",
        data={
            "grant_type": "password",
            "username": cxone["CXSWEEP_CXONE_ACCESS_KEY_ID"],
            "password": cxone["CXSWEEP_CXONE_ACCESS_KEY_SECRET"],
        },
        auth=("test-client", "test-secret-value-9f2"),
        timeout=5,
    )
    body = response.json()
    assert response.status_code == 200 and body["refresh_token"]
    assert jwt_claims(body["id_token"])["tenantId"] == simulator.config.tenant_id
    # Without client credentials (Basic or client_secret_post) the grant is refused.
    refused = requests.post(
        f"{simulator.url}/auth/token", data={"grant_type": "password"}, timeout=5
    )
    assert refused.status_code == 401


def test_client_secret_post(
    cxone: dict[str, str],
    simulator: Any,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CXSWEEP_CXONE_CLIENT_AUTH", "client_secret_post")
    list_id = new_list_id()
    simulator.put_call_list(list_id, count=3, seed=1)
    assert len(backend(redis_client).read_page(list_id, None).contacts) == 3
    assert simulator.stats()["password_grants"] == 1


def test_access_key_endpoint_needs_no_app_and_discovers_the_api(
    cxone: dict[str, str],
    simulator: Any,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CXSWEEP_CXONE_AUTH", "access-key")
    monkeypatch.delenv("CXSWEEP_CLIENT_ID")
    monkeypatch.delenv("CXSWEEP_CLIENT_SECRET")
    monkeypatch.delenv("CXSWEEP_API_URL")
    list_id = new_list_id()
    simulator.put_call_list(list_id, count=3, seed=1)
    client = backend(redis_client)
    assert client.api_base() == f"{simulator.url}/inContactAPI/services/v31.0"
    assert len(client.read_page(list_id, None).contacts) == 3
    stats = simulator.stats()
    assert stats["access_key_grants"] == 1 and stats["password_grants"] == 0
    assert stats["requests"]["discovery"] == 1

    monkeypatch.setenv("CXSWEEP_CXONE_ACCESS_KEY_SECRET", "not-the-secret")
    with pytest.raises(CredentialsRefused, match="CXSWEEP_CXONE_ACCESS_KEY_ID") as refused:
        backend(redis_client).check_credentials()
    assert "not-the-secret" not in str(refused.value)


def test_refresh_token_then_password_grant_fallback(
    cxone: dict[str, str], simulator: Any, redis_client: redis.Redis
) -> None:
    list_id = new_list_id()
    simulator.put_call_list(list_id, count=3, seed=2)
    simulator.configure(token_lifetime=2)
    client = backend(redis_client)
    client.read_page(list_id, None)
    time.sleep(1.1)  # past the refresh time (half of a 2 s token)
    client.read_page(list_id, None)
    stats = simulator.stats()
    assert (stats["password_grants"], stats["refresh_grants"]) == (1, 1)

    simulator.revoke_tokens()  # a 401: one refresh for the fleet, then the call again
    client.read_page(list_id, None)
    stats = simulator.stats()
    assert (stats["password_grants"], stats["refresh_grants"]) == (1, 2)

    simulator.revoke_tokens()
    simulator.revoke_refresh_tokens()  # the refresh is refused: a new password grant
    client.read_page(list_id, None)
    stats = simulator.stats()
    assert (stats["password_grants"], stats["refresh_grants"]) == (2, 2)


def test_wrong_access_key_is_refused(
    cxone: dict[str, str],
    simulator: Any,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CXSWEEP_CXONE_ACCESS_KEY_SECRET", "not-the-secret")
    with pytest.raises(CredentialsRefused) as refused:
        backend(redis_client).check_credentials()
    assert "CXSWEEP_CXONE_ACCESS_KEY_ID" in str(refused.value)
    assert "not-the-secret" not in str(refused.value)


def test_platform_time_reads_iso_dates_as_utc_unless_they_say() -> None:
    import datetime

    from cxsweep.platforms.cxone_session import platform_time

    utc = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.UTC)
    assert platform_time("2026-11-28T12:00:00Z") == utc
    assert platform_time("2026-11-28T12:00:00") == utc
    assert platform_time("2026-11-28T13:00:00+01:00") == utc
    assert platform_time("next tuesday") is None and platform_time(1764331200) is None
