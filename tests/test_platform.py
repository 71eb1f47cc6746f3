"""A hostile or shifting platform, at the client: links to other origins, ids that are
not ids, a PATCH refused for some of its contacts. Real sockets, the simulator's fault
rules, a real worker for the whole-run cases."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from console import launch
from cxsweep.errors import ApiError, ForeignOrigin, MalformedResponse
from cxsweep.platforms.base import Change, contact_id_problem
from cxsweep.platforms.cxone import CxoneBackend
from cxsweep.platforms.http import require_same_origin
from cxsweep.platforms.v2 import V2Client
from cxsweep.settings import get_settings, load_settings
from devtools.simulator import Simulator
from tests.conftest import audit_lines

CONTACTS = "/api/v2/campaigns/contactlists"


@pytest.fixture
def elsewhere() -> Iterator[Simulator]:
    """Another server, on another address: it records any request that reaches it."""
    with Simulator(host="127.0.0.2") as other:
        yield other


def client(redis_client: redis.Redis) -> V2Client:
    return V2Client(get_settings(), redis_client)


def sweep(list_id: str, timeout: float = 120) -> tuple[str, dict[str, Any]]:
    settings = launch.settings_for_run()
    run_id = launch.start_run(settings, list_id, dry_run=False)
    return run_id, launch.wait_for_run(settings, run_id, timeout=timeout, quiet=True)


def new_list_id() -> str:
    return f"list-{uuid.uuid4().hex[:8]}"


# --- origin -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("announced", "same"),
    [
        ("https://api.example/next?c=1", True),
        ("https://API.example:443/x", True),
        ("http://api.example/next", False),  # a downgrade is another origin
        ("https://api.example:8443/next", False),
        ("https://api.example.evil.test/next", False),
        ("https://evil.test/https://api.example/", False),
    ],
)
def test_same_origin_means_scheme_host_and_port(announced: str, same: bool) -> None:
    if same:
        assert require_same_origin("GET /x", "nextPageUri", announced, "https://api.example")
        return
    with pytest.raises(ForeignOrigin) as refused:
        require_same_origin("GET /x", "nextPageUri", announced, "https://api.example")
    message = str(refused.value)
    assert "https://api.example:443" in message and "\n" not in message
    assert "next" not in message.split("nextPageUri")[1]  # the origin only, no path


def test_next_page_uri_on_another_host_is_never_followed(
    simulator: Simulator, elsewhere: Simulator, redis_client: redis.Redis
) -> None:
    list_id = new_list_id()
    simulator.put_list(list_id, count=30)
    simulator.configure(page_size=10)
    v2 = client(redis_client)
    first = v2.read_page(list_id, None)
    assert len(first.contacts) == 10 and first.next_cursor is not None
    rule = {"method": "GET", "path": "/contactlists", "action": "foreign_link"}
    simulator.add_faults([{**rule, "origin": elsewhere.url}])
    with pytest.raises(ForeignOrigin, match=r"'nextPageUri' points to http://127\.0\.0\.2:"):
        v2.read_page(list_id, first.next_cursor)
    # A cursor that is already foreign (kept from an older version, say) is refused too.
    with pytest.raises(ForeignOrigin):
        v2.read_page(list_id, f"{elsewhere.url}{CONTACTS}/{list_id}?cursor=x")
    with pytest.raises(ForeignOrigin):
        list(v2.iter_lists())
    assert elsewhere.requests_seen() == []


@pytest.mark.usefixtures("sweep_worker")
def test_a_run_fails_before_following_a_foreign_next_page_uri(
    simulator: Simulator, elsewhere: Simulator, audit_log_path: Path
) -> None:
    list_id = new_list_id()
    simulator.put_list(list_id, count=60, seed=5)
    before = simulator.get_list(list_id)
    simulator.configure(page_size=20)
    simulator.add_faults(
        [
            {
                "method": "GET",
                "path": f"/{list_id}$",
                "action": "foreign_link",
                "origin": elsewhere.url,
                "after": 1,
                "times": 1,
            }
        ]
    )
    run_id, record = sweep(list_id)
    assert record["status"] == "failed"
    assert "nextPageUri" in record["message"] and "127.0.0.2" in record["message"]
    assert elsewhere.requests_seen() == []
    assert simulator.get_list(list_id) == before  # nothing written
    assert [line["status"] for line in audit_lines(audit_log_path, run_id)] == ["failed"]


def test_a_redirect_from_the_api_is_not_followed(
    simulator: Simulator, elsewhere: Simulator, redis_client: redis.Redis
) -> None:
    list_id = new_list_id()
    simulator.put_list(list_id, [{"id": "c1", "phone": "12"}])
    simulator.add_faults([{"method": "DELETE", "action": "redirect", "origin": elsewhere.url}])
    with pytest.raises(ApiError, match=r"redirect \(307\) to 127\.0\.0\.2/api/v2/.*not followed"):
        client(redis_client).remove_contacts(list_id, ["c1"])
    assert elsewhere.requests_seen() == []
    assert [c["id"] for c in simulator.get_list(list_id)] == ["c1"]


# --- ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "..\\x", "ab\x00", "a\nb", "\x7f"])
def test_ids_that_are_not_ids_are_refused(bad: str) -> None:
    assert (contact_id_problem(bad) or "").startswith("invalid contact id")


@pytest.mark.parametrize("good", ["c1", "...", ".a", "a.b", "ü-7", "a b", "%2e%2e"])
def test_ordinary_ids_pass(good: str) -> None:
    assert contact_id_problem(good) is None


def test_v2_writes_never_address_an_invalid_id(
    simulator: Simulator, redis_client: redis.Redis
) -> None:
    list_id = new_list_id()
    simulator.put_list(list_id, [{"id": "ok", "phone": "+16502530000"}])
    v2 = client(redis_client)
    outcome = v2.remove_contacts(list_id, ["", ".", "..", "a/b"])
    assert outcome.done == [] and outcome.missing == []
    assert set(outcome.failed) == {"", ".", "..", "a/b"}
    assert all(why.startswith("invalid contact id") for why in outcome.failed.values())
    changes = [Change("..", {"phone": "+16502530001"}), Change("ok", {"phone": "+16502530002"})]
    patched = v2.update_contacts(list_id, changes)
    assert patched.done == ["ok"] and list(patched.failed) == [".."]
    writes = {(r["method"], r["path"]) for r in simulator.requests_seen()} - {
        ("POST", "/oauth/token")
    }
    assert writes == {("PATCH", f"{CONTACTS}/{list_id}/contacts")}  # and no DELETE at all


@pytest.mark.usefixtures("sweep_worker")
def test_a_sweep_reports_invalid_ids_and_deletes_only_contact_urls(
    simulator: Simulator, audit_log_path: Path
) -> None:
    list_id = new_list_id()
    # Enough good contacts that the purge guard lets the removals through.
    keep = {f"k{i}": f"+1650253{i:04d}" for i in range(40)}
    good = [{"id": cid, "phone": phone} for cid, phone in keep.items()]
    good += [{"id": "fix", "phone": "(650) 253-9001"}, {"id": "drop", "phone": "12"}]
    simulator.put_list(list_id, good)
    odd = [{"id": cid, "phone": "not a number"} for cid in ("", ".", "..")]
    simulator.add_faults(
        [{"method": "GET", "path": f"/{list_id}$", "action": "inject_contacts", "contacts": odd}]
    )
    run_id, record = sweep(list_id)
    deletes = [r["path"] for r in simulator.requests_seen() if r["method"] == "DELETE"]
    assert deletes == ["/api/v2/campaigns/contacts/drop"]
    assert {c["id"]: c["phone"] for c in simulator.get_list(list_id)} == {
        **keep,
        "fix": "+16502539001",
    }
    assert record["failure_count"] == 3, record
    assert record["purge_count"] == 1
    (line,) = audit_lines(audit_log_path, run_id)
    assert line["failure_count"] == 3


# --- partial batches ---------------------------------------------------------------------


def _batch_list(simulator: Simulator, size: int) -> tuple[str, list[Change]]:
    list_id = new_list_id()
    simulator.put_list(list_id, [{"id": f"u{i}", "phone": f"650253{i:04d}"} for i in range(size)])
    return list_id, [Change(f"u{i}", {"phone": f"+1650253{i:04d}"}) for i in range(size)]


def test_a_patch_refused_for_named_ids_is_sent_again_without_them(
    simulator: Simulator, redis_client: redis.Redis
) -> None:
    list_id, changes = _batch_list(simulator, 100)
    simulator.add_faults(
        [{"method": "PATCH", "path": "/contacts$", "action": "refuse_ids", "ids": ["u7", "u42"]}]
    )
    outcome = client(redis_client).update_contacts(list_id, changes)
    assert sorted(outcome.failed) == ["u42", "u7"]
    assert "400 invalid contacts (refused)" in outcome.failed["u7"]
    assert len(outcome.done) == 98 and "u7" not in outcome.done
    phones = {c["id"]: c["phone"] for c in simulator.get_list(list_id)}
    assert (phones["u7"], phones["u42"]) == ("6502530007", "6502530042")
    assert phones["u8"] == "+16502530008" and phones["u99"] == "+16502530099"
    patches = [r["status"] for r in simulator.requests_seen() if r["method"] == "PATCH"]
    assert [status for status in patches if status != 401] == [400, 200]


def test_a_patch_refused_without_ids_or_for_strangers_fails_the_batch(
    simulator: Simulator, redis_client: redis.Redis
) -> None:
    list_id, changes = _batch_list(simulator, 5)
    before = simulator.get_list(list_id)
    v2 = client(redis_client)
    simulator.add_faults(
        [
            {
                "method": "PATCH",
                "path": "/contacts$",
                "action": "refuse_ids",
                "ids": ["ghost"],
                "always": True,
                "times": 1,
            }
        ]
    )
    with pytest.raises(MalformedResponse, match="names ids that were not sent"):
        v2.update_contacts(list_id, changes)
    simulator.add_faults([{"method": "PATCH", "path": "/contacts$", "action": 400, "times": 1}])
    with pytest.raises(ApiError, match="400") as refused:
        v2.update_contacts(list_id, changes)
    assert refused.value.invalid == []
    assert simulator.get_list(list_id) == before
    patches = [r["status"] for r in simulator.requests_seen() if r["method"] == "PATCH"]
    assert [status for status in patches if status != 401] == [400, 400]  # never again


@pytest.mark.usefixtures("sweep_worker")
def test_a_sweep_writes_the_rest_of_a_refused_batch(
    simulator: Simulator, audit_log_path: Path
) -> None:
    list_id, changes = _batch_list(simulator, 40)
    simulator.add_faults(
        [{"method": "PATCH", "path": "/contacts$", "action": "refuse_ids", "ids": ["u3"]}]
    )
    run_id, record = sweep(list_id)
    phones = {c["id"]: c["phone"] for c in simulator.get_list(list_id)}
    assert phones.pop("u3") == "6502530003"
    assert phones == {c.contact_id: c.phones["phone"] for c in changes if c.contact_id != "u3"}
    assert record["success_count"] == 39 and record["failure_count"] == 1, record
    (line,) = audit_lines(audit_log_path, run_id)
    assert line["failure_count"] == 1


# --- origin on CXone -------------------------------------------------------------------------


@pytest.fixture
def cxone(simulator: Simulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CXone backend against the simulator, discovering its API (no CXSWEEP_API_URL);
    a fresh access key gives the test its own Redis namespace."""
    key_id, key_secret = f"key-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    simulator.configure(access_keys={key_id: key_secret})
    monkeypatch.setenv("CXSWEEP_BACKEND", "cxone")
    monkeypatch.setenv("CXSWEEP_CXONE_AUTH_URL", simulator.url)
    monkeypatch.setenv("CXSWEEP_CXONE_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("CXSWEEP_CXONE_ACCESS_KEY_SECRET", key_secret)
    monkeypatch.delenv("CXSWEEP_API_URL")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.mark.usefixtures("cxone")
@pytest.mark.parametrize(
    ("announcing", "what"),
    [("openid-configuration", "token_endpoint"), ("cxone-configuration", "api_endpoint")],
)
def test_cxone_never_follows_an_issuer_to_another_host(
    simulator: Simulator,
    elsewhere: Simulator,
    redis_client: redis.Redis,
    announcing: str,
    what: str,
) -> None:
    # The issuer's answer is cached for a day under the issuer's URL, which every test of
    # the session shares: this one must ask the issuer.
    issuer = hashlib.sha256(simulator.url.encode()).hexdigest()[:16]
    redis_client.delete(f"cxsweep:cxone:oidc:{issuer}")
    simulator.add_faults([{"path": announcing, "action": "foreign_link", "origin": elsewhere.url}])
    backend = CxoneBackend(get_settings(), redis_client)
    with pytest.raises(ForeignOrigin, match=rf"'{what}' points to http://127\.0\.0\.2:\d+, not"):
        backend.check_credentials()
    assert elsewhere.requests_seen() == []  # neither the access key nor a token went there


@pytest.mark.usefixtures("cxone")
def test_cxone_list_links_stay_on_the_api(
    simulator: Simulator, elsewhere: Simulator, redis_client: redis.Redis
) -> None:
    simulator.put_call_list("4711", count=2)
    simulator.add_faults(
        [{"path": "call-lists$", "action": "foreign_link", "origin": elsewhere.url}]
    )
    backend = CxoneBackend(get_settings(), redis_client)
    with pytest.raises(ForeignOrigin, match=r"_links\.next"):
        list(backend.iter_lists())
    assert elsewhere.requests_seen() == []


@pytest.mark.parametrize(
    ("endpoint", "followed"),
    [
        ("https://api-na1.niceincontact.com", True),
        ("https://cxone.niceincontact.com", True),
        ("http://api-na1.niceincontact.com", False),  # a downgrade
        ("https://api-na1.niceincontact.com.evil.test", False),
        ("https://evil.test", False),
    ],
)
def test_cxone_discovery_stays_in_the_issuers_domain(
    redis_client: redis.Redis, endpoint: str, followed: bool
) -> None:
    settings = load_settings(
        {
            "CXSWEEP_ENV_FILE": "/dev/null",
            "CXSWEEP_BACKEND": "cxone",
            "CXSWEEP_CLIENT_ID": "app",
            "CXSWEEP_CLIENT_SECRET": "app-secret",
            "CXSWEEP_CXONE_ACCESS_KEY_ID": "key",
            "CXSWEEP_CXONE_ACCESS_KEY_SECRET": "key-secret",
        }
    )
    backend = CxoneBackend(settings, redis_client)
    if followed:
        backend._check_api_endpoint("GET /.well-known/cxone-configuration", endpoint)
        return
    with pytest.raises(ForeignOrigin, match="set CXSWEEP_API_URL"):
        backend._check_api_endpoint("GET /.well-known/cxone-configuration", endpoint)
