"""HTTP client for the v2 campaign contract (docs/cxone-api.md §1).

It makes one attempt per call and turns every answer into either a value or a typed
error: ``RetryableApiError``/``RateLimited`` (the Celery task retries with backoff or
the server's ``Retry-After``), ``NotFound``, ``MalformedResponse``, ``ApiError``. It never
sleeps and never loops: retrying belongs to Celery. Connections are pooled by
requests/urllib3, one pool per process.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import redis
import requests

from cxsweep.errors import ApiError, CredentialsRefused, MalformedResponse, NotFound
from cxsweep.platforms.base import Change, Page, WriteOutcome, contact_id_problem, writable_ids
from cxsweep.platforms.http import (
    ResponseObserver,
    Transport,
    bearer_token_problem,
    error_field,
    parse_json,
    path_of,
    raise_for_status,
    require_same_origin,
)
from cxsweep.platforms.ratelimit import RateLimiter
from cxsweep.platforms.token import TokenCache
from cxsweep.settings import Settings

SCOPES = "campaign:contactlist:read campaign:contact:write campaign:contact:delete"
MAX_UPDATE_BATCH = 100


class V2Client:
    """The v2 campaign contract as a ``cxsweep.platforms.base.Backend``."""

    name = "v2"
    phone_fields: tuple[str, ...] = ("phone",)
    update_batch_size = MAX_UPDATE_BATCH
    # DELETE addresses one contact: a batch of one keeps the breaker's check before each.
    remove_batch_size = 1
    parallel_pages = False  # nextPageUri is opaque: pages come one after another
    read_ahead = True  # ...so the next one is asked for while this one is judged
    update_needs_record = False

    def __init__(
        self,
        settings: Settings,
        redis_client: redis.Redis,
        *,
        session: requests.Session | None = None,
        observer: ResponseObserver | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        settings.require_api()
        self.settings = settings
        self.http = Transport(settings, session=session, observer=observer, limiter=limiter)
        # The secret is part of the cache identity (hashed by TokenCache): a client holding
        # a wrong secret must be refused, not handed the fleet's good token.
        self.tokens = TokenCache(
            redis_client,
            f"{settings.token_url}|{settings.client_id}|{settings.client_secret.reveal()}",
            self._grant,
        )

    # --- authentication -------------------------------------------------------------

    def _grant(self) -> tuple[str, float]:
        call = f"POST {urlsplit(self.settings.token_url).path or '/'}"
        response = self.http.send(
            "token",
            call,
            "POST",
            self.settings.token_url,
            data={
                "grant_type": "client_credentials",
                "client_id": self.settings.client_id,
                "client_secret": self.settings.client_secret.reveal(),
                "scope": SCOPES,
            },
        )
        if response.status_code in (400, 401, 403):
            error = error_field(response)
            raise CredentialsRefused(
                f"the token endpoint refused client id {self.settings.client_id!r}"
                f" ({error or response.status_code}): check CXSWEEP_CLIENT_ID and"
                " CXSWEEP_CLIENT_SECRET",
                status=response.status_code,
            )
        raise_for_status(call, response)
        body = parse_json(call, response)
        token = body.get("access_token") if isinstance(body, dict) else None
        expires_in = body.get("expires_in", 1800) if isinstance(body, dict) else None
        problem = bearer_token_problem(token)
        if problem is not None or not isinstance(token, str):
            raise MalformedResponse(f"{call}: {problem}")
        if not isinstance(expires_in, int | float) or expires_in <= 0:
            raise MalformedResponse(f"{call}: expires_in is not a positive number")
        return token, float(expires_in)

    def check_credentials(self) -> None:
        """Obtain (or reuse) the shared token: fails fast on refused credentials."""
        self.tokens.get()

    # --- the contract ---------------------------------------------------------------

    def list_url(self, list_id: str) -> str:
        return f"{self.settings.api_url}/api/v2/campaigns/contactlists/{quote(list_id, safe='')}"

    def contact_id(self, contact: Mapping[str, Any]) -> str:
        return str(contact["id"])

    def page_cursor(self, list_id: str, page_no: int, page_size: int) -> str:
        raise NotImplementedError("the v2 contract pages by opaque nextPageUri only")

    def read_page(self, list_id: str, cursor: str | None) -> Page:
        url = cursor or self.list_url(list_id)
        call = f"GET {path_of(url)}"
        body = self._call("read", call, "GET", url)
        if not isinstance(body, dict):
            raise MalformedResponse(f"{call}: answer is not a JSON object")
        contacts = body.get("contacts")
        if not isinstance(contacts, list):
            raise MalformedResponse(f"{call}: 'contacts' is missing or not a list")
        for position, contact in enumerate(contacts):
            if not isinstance(contact, dict):
                raise MalformedResponse(f"{call}: contact #{position} is not an object")
            if not isinstance(contact.get("id"), str | int) or isinstance(contact.get("id"), bool):
                raise MalformedResponse(f"{call}: contact #{position} has no string 'id'")
            phone = contact.get("phone")
            if phone is not None and not isinstance(phone, str):
                raise MalformedResponse(f"{call}: contact #{position} 'phone' is not a string")
        next_url = body.get("nextPageUri") or None
        if next_url is not None:
            # Refused here, before anything is sent there: the token would go with it.
            require_same_origin(call, "nextPageUri", next_url, self.settings.api_url)
        total = body.get("totalRecords")
        if total is not None and (not isinstance(total, int) or isinstance(total, bool)):
            raise MalformedResponse(f"{call}: 'totalRecords' is not an integer")
        return Page(contacts=contacts, next_cursor=next_url, total=total)

    def iter_lists(self) -> Iterator[dict[str, Any]]:
        url: str | None = f"{self.settings.api_url}/api/v2/campaigns/contactlists"
        while url:
            call = f"GET {path_of(url)}"
            body = self._call("lists", call, "GET", url)
            lists = body.get("contactLists") if isinstance(body, dict) else None
            if not isinstance(lists, list) or not all(
                isinstance(item, dict) and isinstance(item.get("id"), str) for item in lists
            ):
                raise MalformedResponse(f"{call}: 'contactLists' is missing or malformed")
            yield from lists
            url = body.get("nextPageUri") or None
            if url is not None:
                require_same_origin(call, "nextPageUri", url, self.settings.api_url)

    def update_contacts(self, list_id: str, changes: Sequence[Change]) -> WriteOutcome:
        """PATCH at most 100 numbers; atomic on the server's side (all or none).

        A 400 that names the ids it refused (``invalid``, contract §1) refused the whole
        batch for them: the batch is sent once more without them, and they are reported
        as failed with the server's reason. A 400 naming no ids, or ids we did not send,
        fails the batch.
        """
        if len(changes) > MAX_UPDATE_BATCH:
            raise ValueError(f"at most {MAX_UPDATE_BATCH} contacts per PATCH")
        outcome = WriteOutcome()
        for change in changes:
            problem = contact_id_problem(change.contact_id)
            if problem is not None:
                outcome.failed[change.contact_id] = problem
        sendable = [c for c in changes if c.contact_id not in outcome.failed]
        if not sendable:
            return outcome
        url = f"{self.list_url(list_id)}/contacts"
        call = f"PATCH {path_of(url)}"
        try:
            self._patch(call, url, sendable)
        except ApiError as exc:
            refused = set(exc.invalid)
            sent = {c.contact_id for c in sendable}
            if exc.status != 400 or not refused:
                raise
            if not refused <= sent:
                strangers = ", ".join(repr(i) for i in sorted(refused - sent)[:3])
                raise MalformedResponse(
                    f"{call}: the 400 names ids that were not sent ({strangers})"
                ) from None
            for contact_id in refused:
                outcome.failed[contact_id] = f"refused: {exc}"
            sendable = [c for c in sendable if c.contact_id not in refused]
            if sendable:
                self._patch(call, url, sendable)
        outcome.done.extend(c.contact_id for c in sendable)
        return outcome

    def _patch(self, call: str, url: str, changes: Sequence[Change]) -> None:
        body = {"contacts": [{"id": c.contact_id, "phone": c.phones["phone"]} for c in changes]}
        self._call("patch", call, "PATCH", url, json_body=body, expect_body=False)

    def remove_contacts(self, list_id: str, contact_ids: Sequence[str]) -> WriteOutcome:
        writable, refused = writable_ids(contact_ids)
        outcome = WriteOutcome(failed=refused)
        for contact_id in writable:
            if self.delete_contact(contact_id):
                outcome.done.append(contact_id)
            else:
                outcome.missing.append(contact_id)
        return outcome

    def delete_contact(self, contact_id: str) -> bool:
        """True when removed now, False when it was already gone (404)."""
        problem = contact_id_problem(contact_id)
        if problem is not None:
            # The URL would address a collection (or another path), not this contact.
            raise ValueError(f"{problem}: not sent")
        url = f"{self.settings.api_url}/api/v2/campaigns/contacts/{quote(contact_id, safe='')}"
        try:
            self._call("delete", f"DELETE {path_of(url)}", "DELETE", url, expect_body=False)
        except NotFound:
            return False
        return True

    def create_contacts(self, list_id: str, contacts: Sequence[Mapping[str, Any]]) -> WriteOutcome:
        """Extension of the contract, for restore: ``POST .../contacts`` re-creates contacts
        (at most 100; atomic; a 400 names ids already present, which count as done)."""
        if len(contacts) > MAX_UPDATE_BATCH:
            raise ValueError(f"at most {MAX_UPDATE_BATCH} contacts per create")
        url = f"{self.list_url(list_id)}/contacts"
        call = f"POST {path_of(url)}"
        ids = [str(c.get("id")) for c in contacts]
        _, refused = writable_ids(ids)
        wanted = [dict(c) for c, cid in zip(contacts, ids, strict=True) if cid not in refused]
        if not wanted:
            return WriteOutcome(failed=refused)
        try:
            self._call(
                "create", call, "POST", url, json_body={"contacts": wanted}, expect_body=False
            )
            return WriteOutcome(done=[str(c["id"]) for c in wanted], failed=refused)
        except ApiError as exc:
            present = set(exc.invalid)
            if exc.status != 400 or not present:
                raise
        # Created by an earlier attempt whose answer was lost: create only the rest.
        rest = [c for c in wanted if str(c["id"]) not in present]
        if rest:
            self._call("create", call, "POST", url, json_body={"contacts": rest}, expect_body=False)
        return WriteOutcome(
            done=[str(c["id"]) for c in rest], missing=sorted(present), failed=refused
        )

    # --- plumbing -------------------------------------------------------------------

    def _call(
        self,
        kind: str,
        call: str,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        expect_body: bool = True,
    ) -> Any:
        # Whatever the URL came from (a cursor kept in Redis, say), the token goes only to
        # the configured API.
        require_same_origin(call, "the request URL", url, self.settings.api_url)
        response = self.http.authorized(self.tokens, kind, call, method, url, json_body=json_body)
        return parse_json(call, response) if expect_body else None
