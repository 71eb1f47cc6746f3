"""The simulator keeps the v2 contract (docs/cxone-api.md section 1) over real sockets."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from cxsweep.phone.numbers import Directive, Sanitizer
from devtools.seed import messy_contacts, messy_numbers
from devtools.simulator import SimConfig, Simulator

CONTACTS = "/api/v2/campaigns/contactlists"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(page_size=100)) as simulator:
        yield simulator


def grant(sim: Simulator, session: requests.Session | None = None) -> str:
    http = session or requests
    resp = http.post(
        f"{sim.url}/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "demo-client",
            "client_secret": "demo-secret",
        },
        timeout=5,
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def authed(sim: Simulator) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {grant(sim, session)}"
    return session


def read_all(session: requests.Session, url: str) -> tuple[list[dict[str, Any]], int]:
    contacts: list[dict[str, Any]] = []
    pages = 0
    next_url: str | None = url
    while next_url:
        resp = session.get(next_url, timeout=5)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        contacts.extend(body["contacts"])
        next_url = body.get("nextPageUri")
        pages += 1
    return contacts, pages


# --- authentication ---------------------------------------------------------------------


def test_token_grant_by_form_and_basic(sim: Simulator) -> None:
    resp = requests.post(
        f"{sim.url}/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "demo-client",
            "client_secret": "demo-secret",
            "scope": "campaign:contactlist:read",
        },
        timeout=5,
    )
    body = resp.json()
    assert resp.status_code == 200
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 1800
    assert isinstance(body["access_token"], str) and len(body["access_token"]) >= 20

    basic = requests.post(
        f"{sim.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("demo-client", "demo-secret"),
        timeout=5,
    )
    assert basic.status_code == 200
    assert basic.json()["access_token"] != body["access_token"]
    assert sim.stats()["token_grants"] == 2


def test_token_refused_for_bad_credentials(sim: Simulator) -> None:
    bad = requests.post(
        f"{sim.url}/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "demo-client",
            "client_secret": "wrong",
        },
        timeout=5,
    )
    assert bad.status_code == 401
    assert bad.json() == {"error": "invalid_client"}
    unknown = requests.post(
        f"{sim.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("nobody", "demo-secret"),
        timeout=5,
    )
    assert unknown.status_code == 401
    assert sim.stats()["token_grants"] == 0


def test_api_refuses_missing_unknown_expired_and_revoked_tokens(sim: Simulator) -> None:
    sim.put_list("L1", count=10)
    url = f"{sim.url}{CONTACTS}/L1"
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 401

    session = authed(sim)
    assert session.get(url, timeout=5).status_code == 200
    assert sim.revoke_tokens() == 1
    assert session.get(url, timeout=5).status_code == 401
    session.headers["Authorization"] = f"Bearer {grant(sim)}"
    assert session.get(url, timeout=5).status_code == 200

    sim.configure(token_lifetime=0.2)
    session.headers["Authorization"] = f"Bearer {grant(sim)}"
    assert session.get(url, timeout=5).status_code == 200
    time.sleep(0.3)
    assert session.get(url, timeout=5).status_code == 401


def test_revoke_over_control_api(sim: Simulator) -> None:
    sim.put_list("L1", count=3)
    session = authed(sim)
    assert requests.post(f"{sim.url}/_sim/revoke", timeout=5).json() == {"revoked": 1}
    assert session.get(f"{sim.url}{CONTACTS}/L1", timeout=5).status_code == 401


# --- reading --------------------------------------------------------------------------------


def test_paging_follows_next_page_uri_to_the_end(sim: Simulator) -> None:
    sim.put_list("L1", count=1234, seed=3)
    session = authed(sim)
    first = session.get(f"{sim.url}{CONTACTS}/L1", timeout=5).json()
    assert len(first["contacts"]) == 100
    assert first["nextPageUri"].startswith(f"{sim.url}{CONTACTS}/L1?")
    assert "totalRecords" not in first

    contacts, pages = read_all(session, f"{sim.url}{CONTACTS}/L1")
    assert pages == 13
    assert [c["id"] for c in contacts] == [c["id"] for c in sim.get_list("L1")]
    assert contacts == messy_contacts("L1", 1234, seed=3)


def test_last_page_has_no_next_and_total_records_is_optional(sim: Simulator) -> None:
    sim.configure(total_records=True)
    sim.put_list("L1", count=200)
    session = authed(sim)
    second = session.get(session.get(f"{sim.url}{CONTACTS}/L1").json()["nextPageUri"]).json()
    assert len(second["contacts"]) == 100
    assert second["nextPageUri"] is None
    assert second["totalRecords"] == 200

    sim.put_list("EMPTY", [])
    empty = session.get(f"{sim.url}{CONTACTS}/EMPTY", timeout=5).json()
    assert empty == {"contacts": [], "nextPageUri": None, "totalRecords": 0}


def test_paging_is_robust_to_deletions_between_pages(sim: Simulator) -> None:
    sim.put_list("L1", count=450)
    all_ids = [c["id"] for c in sim.get_list("L1")]
    session = authed(sim)
    page = session.get(f"{sim.url}{CONTACTS}/L1", timeout=5).json()
    seen = [c["id"] for c in page["contacts"]]

    # Purge half of what was served and every third of what was not, as a sweep would.
    doomed = set(seen[::2]) | set(all_ids[100::3])
    for cid in doomed:
        assert session.delete(f"{sim.url}/api/v2/campaigns/contacts/{cid}").status_code == 204

    rest, _ = read_all(session, page["nextPageUri"])
    seen += [c["id"] for c in rest]
    expected = all_ids[:100] + [cid for cid in all_ids[100:] if cid not in doomed]
    assert seen == expected
    assert len(seen) == len(set(seen))


def test_paging_cursor_stays_valid_when_the_next_contact_is_deleted(sim: Simulator) -> None:
    sim.put_list("L1", count=250)
    all_ids = [c["id"] for c in sim.get_list("L1")]
    session = authed(sim)
    page = session.get(f"{sim.url}{CONTACTS}/L1", timeout=5).json()
    for cid in all_ids[100:110]:
        session.delete(f"{sim.url}/api/v2/campaigns/contacts/{cid}")
    rest, _ = read_all(session, page["nextPageUri"])
    assert [c["id"] for c in rest] == all_ids[110:]


def test_unknown_list_is_404_and_bad_cursor_is_400(sim: Simulator) -> None:
    session = authed(sim)
    assert session.get(f"{sim.url}{CONTACTS}/nope", timeout=5).status_code == 404
    sim.put_list("L1", count=5)
    resp = session.get(f"{sim.url}{CONTACTS}/L1?cursor=%%%garbage", timeout=5)
    assert resp.status_code == 400


def test_list_of_lists_is_paged(sim: Simulator) -> None:
    sim.configure(page_size=2)
    for i in range(5):
        sim.put_list(f"L{i}", count=1, name=f"Campaign {i}")
    session = authed(sim)
    lists: list[dict[str, Any]] = []
    url: str | None = f"{sim.url}{CONTACTS}"
    pages = 0
    while url:
        body = session.get(url, timeout=5).json()
        lists += body["contactLists"]
        url = body.get("nextPageUri")
        pages += 1
    assert pages == 3
    assert lists == [{"id": f"L{i}", "name": f"Campaign {i}"} for i in range(5)]
    assert sim.stats()["requests"]["lists"] == 3


# --- writing --------------------------------------------------------------------------------


def test_patch_applies_only_the_phone(sim: Simulator) -> None:
    sim.put_list("L1", count=5)
    before = sim.get_list("L1")
    session = authed(sim)
    resp = session.patch(
        f"{sim.url}{CONTACTS}/L1/contacts",
        json={"contacts": [{"id": before[0]["id"], "phone": "+16502530000", "notes": "x"}]},
        timeout=5,
    )
    assert resp.status_code == 200
    after = sim.get_list("L1")
    assert after[0] == {**before[0], "phone": "+16502530000"}
    assert after[1:] == before[1:]
    assert sim.stats()["patched"] == {before[0]["id"]: 1}


def test_patch_is_atomic(sim: Simulator) -> None:
    sim.put_list("L1", count=5)
    before = sim.get_list("L1")
    ids = [c["id"] for c in before]
    session = authed(sim)
    url = f"{sim.url}{CONTACTS}/L1/contacts"

    bad_phone = session.patch(
        url,
        json={
            "contacts": [
                {"id": ids[0], "phone": "+16502530000"},
                {"id": ids[1], "phone": "(650) 253-0001"},
                {"id": ids[2], "phone": "+16502530002"},
            ]
        },
    )
    assert bad_phone.status_code == 400
    assert bad_phone.json()["invalid"] == [ids[1]]

    unknown = session.patch(
        url,
        json={
            "contacts": [
                {"id": ids[0], "phone": "+16502530000"},
                {"id": "ghost", "phone": "+16502530003"},
            ]
        },
    )
    assert unknown.status_code == 400
    assert unknown.json()["invalid"] == ["ghost"]

    garbled = session.patch(
        url, data=b'{"contacts": [', headers={"Content-Type": "application/json"}
    )
    assert garbled.status_code == 400
    assert "error" in garbled.json()

    assert sim.get_list("L1") == before
    assert sim.stats()["patched"] == {}


def test_patch_caps_batches_at_100(sim: Simulator) -> None:
    sim.put_list("L1", count=101)
    contacts = sim.get_list("L1")
    session = authed(sim)
    url = f"{sim.url}{CONTACTS}/L1/contacts"
    batch = [{"id": c["id"], "phone": f"+1650253{i:04d}"} for i, c in enumerate(contacts)]
    too_many = session.patch(url, json={"contacts": batch})
    assert too_many.status_code == 400
    assert sim.get_list("L1") == contacts
    assert session.patch(url, json={"contacts": batch[:100]}).status_code == 200
    stats = sim.stats()
    assert stats["max_patch_batch"] == 101
    assert len(stats["patched"]) == 100
    assert stats["statuses"] == {"200": 2, "400": 1}


def test_patch_unknown_list_is_404(sim: Simulator) -> None:
    session = authed(sim)
    resp = session.patch(f"{sim.url}{CONTACTS}/nope/contacts", json={"contacts": []})
    assert resp.status_code == 404


def test_delete_then_404(sim: Simulator) -> None:
    sim.put_list("L1", count=3)
    cid = sim.get_list("L1")[1]["id"]
    session = authed(sim)
    url = f"{sim.url}/api/v2/campaigns/contacts/{cid}"
    first = session.delete(url, timeout=5)
    assert first.status_code == 204
    assert first.content == b""
    assert session.delete(url, timeout=5).status_code == 404
    assert cid not in {c["id"] for c in sim.get_list("L1")}
    stats = sim.stats()
    assert (stats["deleted"], stats["delete_404"], stats["requests"]["delete"]) == (1, 1, 2)


def test_restore_recreates_contacts_at_the_end(sim: Simulator) -> None:
    sim.put_list("L1", count=3)
    original = sim.get_list("L1")
    session = authed(sim)
    session.delete(f"{sim.url}/api/v2/campaigns/contacts/{original[0]['id']}")
    url = f"{sim.url}{CONTACTS}/L1/contacts"
    created = session.post(url, json={"contacts": [original[0]]})
    assert created.status_code == 201
    assert sim.get_list("L1") == [*original[1:], original[0]]
    duplicate = session.post(url, json={"contacts": [original[1]]})
    assert duplicate.status_code == 400
    assert duplicate.json()["invalid"] == [original[1]["id"]]
    assert sim.stats()["requests"]["create"] == 2


# --- misbehaviour ---------------------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(sim: Simulator) -> None:
    sim.put_list("L1", count=1)
    session = authed(sim)
    sim.configure(rate_limit=2, rate_burst=2)
    statuses = [session.get(f"{sim.url}{CONTACTS}/L1", timeout=5) for _ in range(6)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    assert all(int(r.headers["Retry-After"]) >= 1 for r in limited)
    assert statuses[0].status_code == 200
    assert sim.stats()["requests"]["read"] == 6
    # The bucket refills: after Retry-After the next call gets through.
    time.sleep(int(limited[0].headers["Retry-After"]))
    assert session.get(f"{sim.url}{CONTACTS}/L1", timeout=5).status_code == 200


def test_scripted_503_rule_with_after_and_times(sim: Simulator) -> None:
    sim.put_list("L1", count=1)
    session = authed(sim)
    sim.add_faults(
        [{"method": "GET", "path": r"/contactlists/L1$", "action": 503, "after": 1, "times": 2}]
    )
    codes = [session.get(f"{sim.url}{CONTACTS}/L1", timeout=5).status_code for _ in range(4)]
    assert codes == [200, 503, 503, 200]
    stats = sim.stats()
    assert stats["faults_fired"] == 2
    assert stats["requests"]["read"] == 4
    assert stats["statuses"]["503"] == 2
    assert sim.faults()[0]["spent"] is True


def test_faulted_patch_changes_nothing_and_rules_apply_over_http(sim: Simulator) -> None:
    sim.put_list("L1", count=2)
    before = sim.get_list("L1")
    session = authed(sim)
    rules = {
        "rules": [
            {"method": "PATCH", "path": "contacts$", "action": 429, "retry_after": "2", "times": 1}
        ]
    }
    assert requests.post(f"{sim.url}/_sim/faults", json=rules, timeout=5).status_code == 200
    body = {"contacts": [{"id": before[0]["id"], "phone": "+16502530000"}]}
    limited = session.patch(f"{sim.url}{CONTACTS}/L1/contacts", json=body)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "2"
    assert sim.get_list("L1") == before
    assert session.patch(f"{sim.url}{CONTACTS}/L1/contacts", json=body).status_code == 200
    assert requests.delete(f"{sim.url}/_sim/faults", timeout=5).status_code == 204
    assert sim.faults() == []


def test_bad_json_fault(sim: Simulator) -> None:
    sim.put_list("L1", count=20)
    session = authed(sim)
    sim.add_faults([{"method": "GET", "path": "contactlists/L1", "action": "bad_json", "times": 1}])
    resp = session.get(f"{sim.url}{CONTACTS}/L1", timeout=5)
    assert resp.status_code == 200
    with pytest.raises(ValueError):
        resp.json()
    assert session.get(f"{sim.url}{CONTACTS}/L1", timeout=5).json()["contacts"]


def test_shape_faults(sim: Simulator) -> None:
    sim.put_list("L1", count=20)
    session = authed(sim)
    sim.add_faults(
        [
            {"path": "contactlists/L1", "action": "missing_contacts", "times": 1},
            {"path": "contactlists/L1", "action": "wrong_types", "times": 2},
        ]
    )
    assert session.get(f"{sim.url}{CONTACTS}/L1").json() == {"nextPageUri": None}
    assert isinstance(session.get(f"{sim.url}{CONTACTS}/L1").json()["contacts"], str)
    odd = session.get(f"{sim.url}{CONTACTS}/L1").json()["contacts"]
    assert isinstance(odd[0]["id"], dict)
    assert len(session.get(f"{sim.url}{CONTACTS}/L1").json()["contacts"]) == 20


def test_drop_and_hang_faults(sim: Simulator) -> None:
    sim.put_list("L1", count=1)
    session = authed(sim)
    sim.add_faults(
        [
            {"method": "GET", "path": "L1", "action": "drop", "times": 1},
            {"method": "GET", "path": "L1", "action": "hang", "seconds": 0.3, "times": 1},
        ]
    )
    with pytest.raises(requests.ConnectionError):
        session.get(f"{sim.url}{CONTACTS}/L1", timeout=5)
    started = time.monotonic()
    resp = session.get(f"{sim.url}{CONTACTS}/L1", timeout=5)
    assert resp.status_code == 200
    assert time.monotonic() - started >= 0.3
    with pytest.raises(requests.Timeout):
        sim.add_faults([{"method": "GET", "path": "L1", "action": "hang", "seconds": 1}])
        session.get(f"{sim.url}{CONTACTS}/L1", timeout=0.2)


# --- the fake API's misbehaviours (issue: a hostile or shifting platform) ----------------


def test_foreign_link_moves_next_page_uri_to_another_origin(sim: Simulator) -> None:
    sim.put_list("L1", count=150)
    sim.put_list("ONE", count=3)
    session = authed(sim)
    sim.add_faults(
        [
            {
                "method": "GET",
                "path": "/contactlists/",
                "action": "foreign_link",
                "origin": "http://127.0.0.2:9",
            }
        ]
    )
    first = session.get(f"{sim.url}{CONTACTS}/L1", timeout=5).json()
    assert len(first["contacts"]) == 100
    assert first["nextPageUri"].startswith(f"http://127.0.0.2:9{CONTACTS}/L1?cursor=")
    # The real cursor is kept: on the simulator's own origin it reads page 2.
    own = sim.url + first["nextPageUri"].removeprefix("http://127.0.0.2:9")
    sim.clear_faults()
    assert len(session.get(own, timeout=5).json()["contacts"]) == 50
    # A last page announces a next one too: a hostile server can always do that.
    sim.add_faults([{"path": "ONE", "action": "foreign_link", "origin": "https://evil.test"}])
    last = session.get(f"{sim.url}{CONTACTS}/ONE", timeout=5).json()
    assert last["nextPageUri"].startswith("https://evil.test/")
    with pytest.raises(ValueError, match="origin"):
        sim.add_faults([{"path": "x", "action": "foreign_link", "origin": "ftp:/x"}])


def test_inject_contacts_serves_odd_ids_on_the_first_page_only(sim: Simulator) -> None:
    sim.put_list("L1", count=150)
    session = authed(sim)
    odd = [{"id": "", "phone": "12"}, {"id": ".", "phone": "x"}, {"id": "..", "phone": "0"}]
    sim.add_faults(
        [{"method": "GET", "path": "/L1$", "action": "inject_contacts", "contacts": odd}]
    )
    for _ in range(2):  # every full read sees them, once
        contacts, pages = read_all(session, f"{sim.url}{CONTACTS}/L1")
        assert pages == 2 and len(contacts) == 153
        assert [c["id"] for c in contacts[:3]] == ["", ".", ".."]
    assert len(sim.get_list("L1")) == 150  # not stored
    # A DELETE of ".." is normalised away by the client: the server sees the collection.
    session.delete(f"{sim.url}/api/v2/campaigns/contacts/..", timeout=5)
    assert sim.requests_seen()[-1] == {
        "method": "DELETE",
        "path": "/api/v2/campaigns/",
        "host": sim.url.removeprefix("http://"),
        "authorization": True,
        "status": 404,
    }


def test_shift_page_repeats_a_contact_on_a_later_page(sim: Simulator) -> None:
    sim.put_list("L1", count=250)
    ids = [c["id"] for c in sim.get_list("L1")]
    session = authed(sim)
    sim.add_faults([{"method": "GET", "path": "/L1$", "action": "shift_page", "times": 1}])
    contacts, pages = read_all(session, f"{sim.url}{CONTACTS}/L1")
    seen = [c["id"] for c in contacts]
    assert pages == 3 and len(seen) == 251
    # The first page's last contact moved to the end: it is read twice.
    assert seen[99] == ids[99] and seen[-1] == ids[99]
    assert sorted(set(seen)) == sorted(ids)
    assert [c["id"] for c in sim.get_list("L1")][-1] == ids[99]


def test_shift_page_on_cxone_moves_the_last_record_first(sim: Simulator) -> None:
    sim.put_call_list("7", count=30)
    token = sim.issue_token()
    url = f"{sim.url}/inContactAPI/services/v31.0/lists/call-lists/7"
    headers = {"Authorization": f"Bearer {token}"}
    sim.add_faults([{"method": "GET", "path": "call-lists/7$", "action": "shift_page", "times": 1}])
    first = requests.get(url, headers=headers, timeout=5).json()["resultSet"]["contactRecords"]
    again = requests.get(url, headers=headers, timeout=5).json()["resultSet"]["contactRecords"]
    assert len(first) == len(again) == 30  # the list is answered whole
    assert again[0]["ExternalId"] == first[-1]["ExternalId"]


def test_edit_and_remove_contact_happen_before_the_matching_request(sim: Simulator) -> None:
    sim.put_list("L1", [{"id": "a", "phone": "+16502530001"}, {"id": "b", "phone": "+1650"}])
    session = authed(sim)
    sim.add_faults(
        [
            {
                "method": "GET",
                "path": "/L1$",
                "action": "edit_contact",
                "after": 1,
                "times": 1,
                "contact": "a",
                "fields": {"phone": "+16502530099"},
            },
            {
                "method": "PATCH",
                "path": "/contacts$",
                "action": "remove_contact",
                "times": 1,
                "contact": "b",
            },
        ]
    )
    first = session.get(f"{sim.url}{CONTACTS}/L1", timeout=5).json()["contacts"]
    assert first[0]["phone"] == "+16502530001"  # after: 1
    again = session.get(f"{sim.url}{CONTACTS}/L1", timeout=5).json()["contacts"]
    assert again[0]["phone"] == "+16502530099"  # the person's edit, seen by a re-read
    # The person deletes b just before our PATCH of it: the contract's 400 names b.
    body = {"contacts": [{"id": "a", "phone": "+16502530002"}, {"id": "b", "phone": "+1"}]}
    refused = session.patch(f"{sim.url}{CONTACTS}/L1/contacts", json=body, timeout=5)
    assert refused.status_code == 400 and refused.json()["invalid"] == ["b"]
    assert [c["id"] for c in sim.get_list("L1")] == ["a"]


def test_edit_contact_on_a_cxone_calling_list(sim: Simulator) -> None:
    sim.put_call_list("7", count=3)
    key = sim.get_call_list("7")[1]["ExternalId"]
    sim.add_faults(
        [
            {
                "path": "call-lists/7",
                "action": "edit_contact",
                "contact": key,
                "fields": {"PhoneNumber": "+442079460000"},
            }
        ]
    )
    headers = {"Authorization": f"Bearer {sim.issue_token()}"}
    url = f"{sim.url}/inContactAPI/services/v31.0/lists/call-lists/7"
    records = requests.get(url, headers=headers, timeout=5).json()["resultSet"]["contactRecords"]
    assert records[1]["PhoneNumber"] == "+442079460000"


def test_refuse_ids_refuses_batches_that_hold_them(sim: Simulator) -> None:
    sim.put_list("L1", [{"id": f"u{i}", "phone": "+16502530000"} for i in range(4)])
    before = sim.get_list("L1")
    session = authed(sim)
    sim.add_faults(
        [{"method": "PATCH", "path": "/contacts$", "action": "refuse_ids", "ids": ["u2"]}]
    )
    url = f"{sim.url}{CONTACTS}/L1/contacts"
    batch = [{"id": f"u{i}", "phone": "+16502530011"} for i in range(4)]
    refused = session.patch(url, json={"contacts": batch}, timeout=5)
    assert refused.status_code == 400 and refused.json()["invalid"] == ["u2"]
    assert sim.get_list("L1") == before  # atomic: nothing applied
    rest = [c for c in batch if c["id"] != "u2"]
    assert session.patch(url, json={"contacts": rest}, timeout=5).status_code == 200
    assert [c["phone"] for c in sim.get_list("L1")].count("+16502530011") == 3
    # "always": the server names an id it was not sent.
    sim.clear_faults()
    sim.add_faults(
        [
            {
                "method": "PATCH",
                "path": "/contacts$",
                "action": "refuse_ids",
                "ids": ["ghost"],
                "always": True,
            }
        ]
    )
    ghost = session.patch(url, json={"contacts": rest}, timeout=5)
    assert ghost.status_code == 400 and ghost.json()["invalid"] == ["ghost"]
    with pytest.raises(ValueError, match="ids"):
        sim.add_faults([{"path": "x", "action": "refuse_ids", "ids": []}])


def test_requests_seen_over_the_control_api(sim: Simulator) -> None:
    sim.put_list("L1", count=1)
    requests.get(f"{sim.url}/api/v2/campaigns/nowhere", timeout=5)
    seen = requests.get(f"{sim.url}/_sim/requests", timeout=5).json()["requests"]
    assert seen == [
        {
            "method": "GET",
            "path": "/api/v2/campaigns/nowhere",
            "host": sim.url.removeprefix("http://"),
            "authorization": False,
            "status": 404,
        }
    ]


def test_a_fault_rule_fires_on_its_share_of_calls(sim: Simulator) -> None:
    sim.put_list("L1", count=1)
    session = authed(sim)
    sim.add_faults(
        [{"method": "GET", "path": "L1", "action": 429, "retry_after": "1", "probability": 0.3}]
    )
    statuses = [session.get(f"{sim.url}{CONTACTS}/L1", timeout=5).status_code for _ in range(200)]
    assert set(statuses) == {200, 429}
    assert 30 <= statuses.count(429) <= 90  # 60 expected; the draw is seeded
    with pytest.raises(ValueError, match="probability"):
        sim.add_faults([{"path": "L1", "action": 503, "probability": 1.5}])


def test_fail_rate_spares_the_token_endpoint(sim: Simulator) -> None:
    sim.put_list("L1", count=1)
    sim.configure(fail_rate=1.0)
    session = authed(sim)
    assert session.get(f"{sim.url}{CONTACTS}/L1", timeout=5).status_code == 503
    sim.configure(fail_rate=0.0)
    assert session.get(f"{sim.url}{CONTACTS}/L1", timeout=5).status_code == 200


def test_latency_and_concurrency(sim: Simulator) -> None:
    sim.put_list("L1", count=10)
    sim.configure(latency_ms=100)
    token = grant(sim)
    results: list[int] = []

    def worker() -> None:
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {token}"
            for _ in range(3):
                results.append(session.get(f"{sim.url}{CONTACTS}/L1", timeout=5).status_code)

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert results == [200] * 24
    # 24 requests of 100 ms each in well under 2.4 s: the latency sleep is not serialised.
    assert elapsed < 1.5
    assert sim.stats()["in_flight_max"] >= 4


def test_connections_are_kept_alive(sim: Simulator) -> None:
    sim.put_list("L1", count=3)
    token = grant(sim)
    host, port = sim.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        for _ in range(3):
            conn.request("GET", f"{CONTACTS}/L1", headers={"Authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            assert resp.status == 200
            resp.read()
            cid = sim.get_list("L1")[0]["id"]
        conn.request(
            "DELETE",
            f"/api/v2/campaigns/contacts/{cid}",
            headers={"Authorization": f"Bearer {token}"},
        )
        resp = conn.getresponse()
        assert resp.status == 204
        resp.read()
        conn.request("GET", f"{CONTACTS}/L1", headers={"Authorization": f"Bearer {token}"})
        assert conn.getresponse().status == 200
    finally:
        conn.close()


# --- Twilio Lookup fake -----------------------------------------------------------------


def test_lookup_is_deterministic_and_auth_checked(sim: Simulator) -> None:
    url = f"{sim.url}/v2/PhoneNumbers/+16502530000?Fields=line_type_intelligence"
    refused = requests.get(url, auth=("ACsimulator", "wrong"), timeout=5)
    assert refused.status_code == 401
    assert refused.json()["code"] == 20003

    first = requests.get(url, auth=("ACsimulator", "sim-token"), timeout=5).json()
    second = requests.get(url, auth=("ACsimulator", "sim-token"), timeout=5).json()
    assert first == second
    assert first["phone_number"] == "+16502530000"
    assert first["valid"] is True
    lti = first["line_type_intelligence"]
    assert lti["type"] in {
        "mobile",
        "landline",
        "fixedVoip",
        "nonFixedVoip",
        "unknown",
        "personal",
        "voicemail",
    }
    assert set(lti) == {
        "type",
        "carrier_name",
        "mobile_country_code",
        "mobile_network_code",
        "error_code",
    }

    toll_free = requests.get(
        f"{sim.url}/v2/PhoneNumbers/%2B18002345678?Fields=line_type_intelligence",
        auth=("ACsimulator", "sim-token"),
        timeout=5,
    ).json()
    assert toll_free["line_type_intelligence"]["type"] == "tollFree"
    assert sim.stats()["requests"]["lookup"] == 4


def test_lookup_types_are_spread(sim: Simulator) -> None:
    types: Counter[str] = Counter()
    with requests.Session() as session:
        session.auth = ("ACsimulator", "sim-token")
        for i in range(200):
            body = session.get(
                f"{sim.url}/v2/PhoneNumbers/+1650253{i:04d}",
                params={"Fields": "line_type_intelligence"},
                timeout=5,
            ).json()
            types[body["line_type_intelligence"]["type"]] += 1
    assert types["mobile"] > types["landline"] > types["nonFixedVoip"] > 0


def test_lookup_is_rate_limited_and_faulted_too(sim: Simulator) -> None:
    sim.add_faults([{"path": "^/v2/PhoneNumbers/", "action": 503, "times": 1}])
    url = f"{sim.url}/v2/PhoneNumbers/+16502530000"
    assert requests.get(url, auth=("ACsimulator", "sim-token"), timeout=5).status_code == 503
    sim.configure(rate_limit=1)
    codes = [
        requests.get(url, auth=("ACsimulator", "sim-token"), timeout=5).status_code
        for _ in range(3)
    ]
    assert 429 in codes


# --- control API ---------------------------------------------------------------------------


def test_control_api_round_trip(sim: Simulator) -> None:
    base = f"{sim.url}/_sim"
    reset = requests.post(
        f"{base}/reset",
        json={
            "page_size": 7,
            "lists": {
                "A": {"count": 20, "seed": 1},
                "B": {"contacts": [{"id": "b1", "phone": "123"}]},
            },
        },
        timeout=5,
    )
    assert reset.status_code == 200
    assert reset.json()["lists"] == {"A": 20, "B": 1}
    assert requests.get(f"{base}/lists/A", timeout=5).json()["contacts"] == messy_contacts(
        "A", 20, seed=1
    )
    put = requests.put(f"{base}/lists/C", json={"count": 3, "seed": 9}, timeout=5)
    assert put.json() == {"id": "C", "count": 3}
    assert requests.delete(f"{base}/lists/C", timeout=5).status_code == 204
    assert requests.get(f"{base}/lists/C", timeout=5).status_code == 404

    config = requests.post(f"{base}/config", json={"latency_ms": 1}, timeout=5).json()
    assert (config["page_size"], config["latency_ms"]) == (7, 1)
    assert requests.post(f"{base}/config", json={"bogus": 1}, timeout=5).status_code == 400
    bad_rule = {"rules": [{"path": "x", "action": "explode"}]}
    assert requests.post(f"{base}/faults", json=bad_rule, timeout=5).status_code == 400

    session = authed(sim)
    assert len(session.get(f"{sim.url}{CONTACTS}/A").json()["contacts"]) == 7
    stats = requests.get(f"{base}/stats", timeout=5).json()
    assert stats["requests"]["token"] == 1
    assert stats["requests"]["read"] == 1
    assert set(stats) >= {
        "requests",
        "token_grants",
        "statuses",
        "patched",
        "max_patch_batch",
        "deleted",
        "delete_404",
        "faults_fired",
        "in_flight_max",
    }

    requests.post(f"{base}/reset", timeout=5)
    assert requests.get(f"{base}/stats", timeout=5).json()["requests"]["read"] == 0
    assert sim.config.page_size == 100
    assert session.get(f"{sim.url}{CONTACTS}/A").status_code == 401


# --- seed data -------------------------------------------------------------------------------


def test_seed_mix_matches_the_brief() -> None:
    contacts = messy_contacts("MIX", 5000, seed=11)
    sanitizer = Sanitizer(Directive())
    outcome: Counter[str] = Counter()
    numbers = []
    for contact in contacts:
        verdict = sanitizer.check(contact["phone"])
        if not verdict.kept:
            outcome["rejected"] += 1
        elif verdict.e164 == contact["phone"]:
            outcome["kept"] += 1
        else:
            outcome["rewritten"] += 1
        if verdict.e164:
            numbers.append(verdict.e164)
    assert 0.06 <= outcome["rejected"] / 5000 <= 0.15
    assert 0.55 <= outcome["rewritten"] / 5000 <= 0.65
    assert 0.25 <= outcome["kept"] / 5000 <= 0.35
    assert len(numbers) == len(set(numbers))
    assert len({c["id"] for c in contacts}) == 5000
    assert contacts[0]["id"] == "MIX-000000"
    for field in ("firstName", "lastName", "email", "accountNumber", "notes"):
        assert all(isinstance(c[field], str) for c in contacts)
    assert all("@" in str(c["email"]) for c in contacts)


def test_seed_is_deterministic() -> None:
    assert messy_contacts("D", 300, seed=5) == messy_contacts("D", 300, seed=5)
    assert messy_contacts("D", 300, seed=5) != messy_contacts("D", 300, seed=6)
    numbers = messy_numbers(4000, seed=2)
    assert numbers == messy_numbers(4000, seed=2)
    assert all(isinstance(n, str) for n in numbers)
    repeats = len(numbers) - len(set(numbers))
    assert 0.03 * 4000 <= repeats <= 0.12 * 4000
    countries = {n[:3] for n in numbers if n.startswith("+")}
    assert len(countries) > 8


def test_webhook_sink_keeps_exact_bytes(sim: Simulator) -> None:
    raw = b'{"event":"campaign.sanitization.complete","run_id":"r1"}'
    resp = requests.post(
        f"{sim.url}/_sim/webhook", data=raw, headers={"X-Cxsweep-Run": "r1"}, timeout=5
    )
    assert resp.status_code == 200
    (hook,) = sim.webhooks()
    assert hook["raw"] == raw
    assert hook["body"]["run_id"] == "r1"
    assert hook["headers"]["X-Cxsweep-Run"] == "r1"
    listed = requests.get(f"{sim.url}/_sim/webhooks", timeout=5).json()["webhooks"]
    assert listed[0]["raw"] == raw.decode()
    assert sum(sim.stats()["requests"].values()) == 0
