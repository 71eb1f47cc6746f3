"""NICE CXone's Admin API as a ``cxsweep.platforms.base.Backend`` (docs/cxone-api.md §2).

Like ``V2Client`` it makes one attempt per call and turns every answer into a value or a
typed error; it never sleeps and never loops on the platform's behalf. The one place the
platform is asynchronous, an upload job, is followed by raising ``JobPending`` so that the
Celery task comes back later; the job id is remembered in Redis so that the retry polls
the job instead of uploading again. A job reports only its status, so what a write did is
read back from the list before it is counted (``read_back``). A list downloads whole, in
one answer of up to 500,000 records: it is parsed as it streams in (ijson) and spooled to
a local file that pages are served from (``read_page``).

What cxsweep knows of this API comes from public sources, not from a tenant: every
behaviour marked "Assumed" below is listed in docs/cxone.md and should be checked
against the NICE developer portal before a production sweep.

Long because one class speaks one wire contract (auth, discovery, the streamed download,
uploads and their jobs, removals, read-back): splitting it by call is the next step.
"""

from __future__ import annotations

import base64
import binascii
import csv
import datetime
import hashlib
import io
import ipaddress
import json
import logging
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import ijson
import redis
import requests

from cxsweep.errors import (
    ApiError,
    CredentialsRefused,
    ForeignOrigin,
    MalformedResponse,
    NotFound,
    NotYet,
    RetryableApiError,
)
from cxsweep.platforms.base import Change, Page, WriteOutcome, contact_id_problem, writable_ids
from cxsweep.platforms.http import (
    ResponseObserver,
    Transport,
    error_field,
    origin_of,
    parse_json,
    path_of,
    raise_for_status,
    require_same_origin,
    short,
    show_origin,
)
from cxsweep.platforms.ratelimit import RateLimiter
from cxsweep.platforms.token import TokenCache
from cxsweep.redisconn import text
from cxsweep.runs import keys
from cxsweep.settings import Settings

log = logging.getLogger(__name__)

# Discovery answers change when NICE moves a tenant, which is rare: a day is plenty.
DISCOVERY_TTL = 24 * 3600
TENANT_TTL = 30 * 24 * 3600
# A worker that claimed an upload and died before sending it frees the claim this soon.
UPLOAD_CLAIM_SECONDS = 120
# After a job ends its result is kept a little, for a retry of the same chunk.
JOB_RESULT_SECONDS = 900
MAX_JOB_POLL_SECONDS = 60.0
# Assumed: a missing expires_in is unheard of; an hour is what NICE documents.
DEFAULT_EXPIRES_IN = 3600.0
MAX_LIST_PAGES = 10_000
# NICE caps a calling list at 256 MB and a record at 512 characters (of data: the values,
# not the JSON around them). A record gets twice that as slack; the answer as a whole is
# also capped in bytes, against an endless stream.
MAX_RECORD_CHARS = 1024
MAX_LIST_CHARS = 256 * 1024 * 1024
MAX_ANSWER_BYTES = 1024 * 1024 * 1024
# A download is spooled here as JSON lines (one record a line) and paged from the file;
# a spool left behind by a dead worker is swept away after a day.
SPOOL_DIR = Path(tempfile.gettempdir()) / "cxsweep-cxone"
SPOOL_MAX_AGE = 24 * 3600
_SPOOL_TOKEN = re.compile(r"^[0-9a-f]{16}$")
# One worker reads the list back for every write waiting for it; a dead one frees it.
READ_BACK_LOCK_SECONDS = 600


class JobPending(NotYet):
    """An upload job has not ended yet: the task should come back in ``retry_after`` s."""

    def __init__(self, message: str, *, job_id: str, retry_after: float) -> None:
        super().__init__(message, retry_after=retry_after)
        self.job_id = job_id


@dataclass(frozen=True)
class Grant:
    access_token: str
    expires_in: float
    refresh_token: str | None = None
    id_token: str | None = None


def jwt_claims(token: str | None) -> dict[str, Any]:
    """The payload of a JWT, *unverified*.

    No signature check: the token came straight from the token endpoint over TLS, and
    cxsweep only reads the tenant id from it to find its own API base; it never grants
    anything on the strength of these claims.
    """
    if not token or token.count(".") != 2:
        return {}
    payload = token.split(".")[1]
    try:
        value = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


class SessionTokenCache(TokenCache):
    """``TokenCache`` whose grants come with a refresh token, kept in the same Redis hash.

    The base class calls the grant under its Redis lock, so the refresh token is read and
    replaced by one worker of the fleet at a time, and the hash (access token, refresh
    time, refresh token) is written together.
    """

    def __init__(
        self,
        client: redis.Redis,
        identity: str,
        grant: Callable[[str | None], Grant],
        on_grant: Callable[[Grant], None],
    ) -> None:
        super().__init__(client, identity, self._grant_with_refresh)
        self._session_grant = grant
        self._on_grant = on_grant

    def _grant_with_refresh(self) -> tuple[str, float]:
        stored = self._redis.hget(self._key, "refresh_token")
        grant = self._session_grant(text(stored) or None)
        if grant.refresh_token:
            self._redis.hset(self._key, "refresh_token", grant.refresh_token)
        else:
            self._redis.hdel(self._key, "refresh_token")
        self._on_grant(grant)
        return grant.access_token, grant.expires_in


def _is_not_found(code: str) -> bool:
    # Assumed: the platform's per-record code for an absent record says "not found" in
    # some spelling (NotFound, RECORD_NOT_FOUND, "Record not found").
    return "notfound" in re.sub(r"[^a-z]", "", code.lower())


def _digits(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return "".join(ch for ch in value if ch.isdigit()) if isinstance(value, str) else ""


def as_number(value: str) -> int | str:
    """A number-typed field (removeProspects' externalId, a DNC phoneNumber): a number
    when the text is one, digit for digit; text otherwise (a leading zero would be lost)."""
    digits = value.isascii() and value.isdigit()
    return int(value) if digits and str(int(value)) == value else value


class _AnswerReader:
    """A streamed answer as a file for ijson: capped, and a connection that breaks off
    is a retryable failure like any other."""

    def __init__(self, call: str, response: requests.Response) -> None:
        self._call = call
        self._chunks = response.iter_content(chunk_size=256 * 1024)
        self._size = 0

    def read(self, size: int = -1) -> bytes:
        if size == 0:  # ijson's probe for bytes or text
            return b""
        try:
            chunk = next(self._chunks, b"")
        except requests.RequestException as exc:
            raise RetryableApiError(f"{self._call}: the answer broke off ({short(exc)})") from None
        self._size += len(chunk)
        if self._size > MAX_ANSWER_BYTES:
            raise MalformedResponse(f"{self._call}: answer exceeds {MAX_ANSWER_BYTES} bytes")
        return chunk


class CxoneBackend:
    """Calling lists of a NICE CXone tenant, through the Admin API."""

    name = "cxone"
    # The list comes whole in one answer (no skip/top in NICE's schema): pages follow
    # one another from the spool of that answer.
    parallel_pages = False
    # An upload overwrites whole records, so updates carry the record as read.
    update_needs_record = True

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
        self.redis = redis_client
        self.http = Transport(settings, session=session, observer=observer, limiter=limiter)
        self.phone_fields: tuple[str, ...] = settings.cxone_phone_columns
        self.external_id_column = settings.cxone_external_id_column
        self.update_batch_size = settings.cxone_upload_batch
        self.remove_batch_size = settings.cxone_remove_batch
        self._auth_url = settings.cxone_auth_url.rstrip("/")
        # Secrets are part of the identity (hashed, never stored) so that a worker with a
        # wrong secret is refused rather than handed the fleet's token or tenant.
        identity = "|".join(
            (
                self._auth_url,
                settings.client_id,
                settings.client_secret.reveal(),
                settings.cxone_access_key_id,
                settings.cxone_access_key_secret.reveal(),
            )
        )
        self._keys = keys.CxoneKeys(hashlib.sha256(identity.encode()).hexdigest()[:16])
        self.tokens = SessionTokenCache(
            redis_client, f"cxone|{identity}", self._grant, self._remember_tenant
        )
        self._api_base: str | None = None

    # --- authentication ---------------------------------------------------------------

    def token_endpoint(self) -> str:
        """The token endpoint the issuer announces (cached in Redis for the fleet)."""
        key = keys.cxone_oidc(hashlib.sha256(self._auth_url.encode()).hexdigest()[:16])
        cached = text(self.redis.get(key))
        if cached:
            return cached
        url = f"{self._auth_url}/.well-known/openid-configuration"
        call = f"GET {path_of(url)}"
        response = self.http.send("oidc", call, "GET", url)
        raise_for_status(call, response)
        body = parse_json(call, response)
        endpoint = body.get("token_endpoint") if isinstance(body, dict) else None
        if not isinstance(endpoint, str) or urlsplit(endpoint).scheme not in ("http", "https"):
            raise MalformedResponse(f"{call}: no absolute 'token_endpoint'")
        # The access key's secret is posted there: only to the issuer itself.
        require_same_origin(call, "token_endpoint", endpoint, self._auth_url)
        self.redis.set(key, endpoint, ex=DISCOVERY_TTL)
        return endpoint

    def _grant(self, refresh_token: str | None) -> Grant:
        if self.settings.cxone_auth == "access-key":
            # No registered app: no refresh grant either, the key is asked again.
            return self._access_key_grant()
        if refresh_token:
            grant = self._token_request(
                {"grant_type": "refresh_token", "refresh_token": refresh_token}, refresh=True
            )
            if grant is not None:
                return grant
            log.info("CXone refused the refresh token: asking for a new password grant")
        grant = self._token_request(
            {
                "grant_type": "password",
                "username": self.settings.cxone_access_key_id,
                "password": self.settings.cxone_access_key_secret.reveal(),
            },
            refresh=False,
        )
        if grant is None:  # a refused password grant raises; this is for the type checker
            raise CredentialsRefused("the CXone token endpoint refused the password grant")
        return grant

    def access_key_endpoint(self) -> str:
        """NICE's access-key token endpoint. Assumed: it is served by the issuer's host
        (NICE's pages show https://na1.nice-incontact.com; an open client also uses
        https://cxone.niceincontact.com); the API host is then discovered as usual."""
        return f"{self._auth_url}/authentication/v1/token/access-key"

    def _access_key_grant(self) -> Grant:
        url = self.access_key_endpoint()
        call = f"POST {path_of(url)}"
        body = {
            "accessKeyId": self.settings.cxone_access_key_id,
            "accessKeySecret": self.settings.cxone_access_key_secret.reveal(),
        }
        response = self.http.send("token", call, "POST", url, json_body=body)
        if response.status_code in (400, 401, 403):
            raise CredentialsRefused(
                f"the CXone access-key endpoint refused the access key"
                f" {self.settings.cxone_access_key_id!r}"
                f" ({error_field(response) or response.status_code}):"
                " check CXSWEEP_CXONE_ACCESS_KEY_ID/_SECRET",
                status=response.status_code,
            )
        return self._grant_from(call, response)

    def _token_request(self, form: dict[str, str], *, refresh: bool) -> Grant | None:
        """One token request; None when a refresh token is refused (fall back to a grant)."""
        url = self.token_endpoint()
        call = f"POST {path_of(url)}"
        auth: tuple[str, str] | None = None
        client = (self.settings.client_id, self.settings.client_secret.reveal())
        if self.settings.cxone_client_auth == "client_secret_post":
            form = {**form, "client_id": client[0], "client_secret": client[1]}
        else:
            auth = client
        response = self.http.send("token", call, "POST", url, data=form, auth=auth)
        if response.status_code in (400, 401, 403):
            if refresh:
                return None
            error = error_field(response)
            raise CredentialsRefused(
                "the CXone token endpoint refused the access key"
                f" {self.settings.cxone_access_key_id!r} or client id"
                f" {self.settings.client_id!r} ({error or response.status_code}):"
                " check CXSWEEP_CXONE_ACCESS_KEY_ID/_SECRET, CXSWEEP_CLIENT_ID/_SECRET"
                " and CXSWEEP_CXONE_CLIENT_AUTH",
                status=response.status_code,
            )
        return self._grant_from(call, response)

    @staticmethod
    def _grant_from(call: str, response: requests.Response) -> Grant:
        raise_for_status(call, response)
        body = parse_json(call, response)
        if not isinstance(body, dict):
            raise MalformedResponse(f"{call}: answer is not a JSON object")
        token = body.get("access_token")
        expires_in = body.get("expires_in", DEFAULT_EXPIRES_IN)
        if not isinstance(token, str) or not token:
            raise MalformedResponse(f"{call}: answer has no access_token")
        if isinstance(expires_in, str) and expires_in.isdigit():
            expires_in = int(expires_in)
        if (
            not isinstance(expires_in, int | float)
            or isinstance(expires_in, bool)
            or expires_in <= 0
        ):
            raise MalformedResponse(f"{call}: expires_in is not a positive number")
        new_refresh = body.get("refresh_token")
        id_token = body.get("id_token")
        return Grant(
            access_token=token,
            expires_in=float(expires_in),
            refresh_token=new_refresh if isinstance(new_refresh, str) and new_refresh else None,
            id_token=id_token if isinstance(id_token, str) else None,
        )

    def _remember_tenant(self, grant: Grant) -> None:
        tenant = jwt_claims(grant.id_token).get("tenantId") or jwt_claims(grant.access_token).get(
            "tenantId"
        )
        if isinstance(tenant, str) and tenant:
            self.redis.set(self._keys.tenant, tenant, ex=TENANT_TTL)

    def check_credentials(self) -> None:
        """Obtain (or reuse) the shared token and find the API: fails fast when refused."""
        self.tokens.get()
        self.api_base()

    # --- discovery --------------------------------------------------------------------

    def tenant_id(self) -> str:
        key = self._keys.tenant
        tenant = text(self.redis.get(key))
        if tenant:
            return tenant
        token = self.tokens.get()
        tenant = text(self.redis.get(key))
        if tenant:
            return tenant
        # A cached token from before the tenant key was written: its claims may say.
        claimed = jwt_claims(token).get("tenantId")
        if isinstance(claimed, str) and claimed:
            self.redis.set(key, claimed, ex=TENANT_TTL)
            return claimed
        raise MalformedResponse(
            "CXone's tokens carry no tenantId claim: set CXSWEEP_API_URL to the Admin API base"
        )

    def api_base(self) -> str:
        """The Admin API base, ending in ``/inContactAPI/services/vNN.0``."""
        if self._api_base is not None:
            return self._api_base
        explicit = self.settings.api_url
        if explicit:
            # A bare host is completed with the usual path; a URL with a path is used as is.
            if urlsplit(explicit).path.strip("/"):
                base = explicit.rstrip("/")
            else:
                version = self.settings.cxone_api_version
                base = f"{explicit.rstrip('/')}/inContactAPI/services/{version}"
            self._api_base = base
            return base
        key = self._keys.api_base(self.settings.cxone_api_version)
        cached = text(self.redis.get(key))
        if cached:
            self._api_base = cached
            return cached
        tenant = self.tenant_id()
        url = f"{self._auth_url}/.well-known/cxone-configuration"
        call = f"GET {path_of(url)}"
        response = self.http.send("discovery", call, "GET", url, params={"tenantId": tenant})
        raise_for_status(call, response)
        body = parse_json(call, response)
        if not isinstance(body, dict):
            raise MalformedResponse(f"{call}: answer is not a JSON object")
        endpoint = body.get("api_endpoint")
        if not (isinstance(endpoint, str) and urlsplit(endpoint).scheme in ("http", "https")):
            area, domain = body.get("area"), body.get("domain") or "niceincontact.com"
            if not isinstance(area, str) or not area or not isinstance(domain, str):
                raise MalformedResponse(f"{call}: neither 'api_endpoint' nor 'area' in answer")
            endpoint = f"https://api-{area}.{domain}"
        self._check_api_endpoint(call, endpoint)
        base = f"{endpoint.rstrip('/')}/inContactAPI/services/{self.settings.cxone_api_version}"
        self.redis.set(key, base, ex=DISCOVERY_TTL)
        self._api_base = base
        return base

    def _check_api_endpoint(self, call: str, endpoint: str) -> None:
        """The discovered API must be the issuer's own: https (unless the issuer itself is
        plain http, as a simulator is), on the issuer's host or a sibling in its domain
        (``cxone.niceincontact.com`` announces ``api-na1.niceincontact.com``)."""
        try:
            scheme, host, _ = origin_of(endpoint)
        except ValueError:
            raise MalformedResponse(f"{call}: 'api_endpoint' is not an absolute URL") from None
        auth_scheme, auth_host, _ = origin_of(self._auth_url)
        sibling = False
        try:
            ipaddress.ip_address(auth_host)
        except ValueError:
            parent = auth_host.split(".", 1)[1] if auth_host.count(".") >= 2 else ""
            sibling = bool(parent) and host.endswith("." + parent)
        if (scheme == "https" or auth_scheme == "http") and (host == auth_host or sibling):
            return
        raise ForeignOrigin(
            f"{call}: 'api_endpoint' points to {show_origin(endpoint)}, not the issuer"
            f" {show_origin(self._auth_url)} or its domain: refusing to follow it (set"
            " CXSWEEP_API_URL to the Admin API base if that host is right)"
        )

    # --- reading ----------------------------------------------------------------------

    def _list_url(self, list_id: str) -> str:
        return f"{self.api_base()}/lists/call-lists/{quote(list_id, safe='')}"

    def contact_id(self, contact: Mapping[str, Any]) -> str:
        return str(contact[self.external_id_column])

    def page_cursor(self, list_id: str, page_no: int, page_size: int) -> str:
        raise NotImplementedError("CXone answers a list whole: pages are not addressable")

    def iter_lists(self) -> Iterator[dict[str, Any]]:
        """The tenant's calling lists; Inactive ones only with CXONE_INCLUDE_INACTIVE."""
        url: str | None = f"{self.api_base()}/lists/call-lists"
        params: dict[str, Any] | None = {"top": self.settings.cxone_page_size}
        seen: set[str] = set()
        while url and url not in seen and len(seen) < MAX_LIST_PAGES:
            seen.add(url)
            call = f"GET {path_of(url)}"
            body = self._call("lists", call, "GET", url, params=params)
            lists = body.get("callingLists") if isinstance(body, dict) else None
            if not isinstance(lists, list) or not all(
                isinstance(item, dict) and isinstance(item.get("listId"), str | int)
                for item in lists
            ):
                raise MalformedResponse(f"{call}: 'callingLists' is missing or malformed")
            for item in lists:
                if item.get("status") == "Inactive" and not self.settings.cxone_include_inactive:
                    continue
                yield {**item, "id": str(item["listId"]), "name": str(item.get("listName", ""))}
            if not lists:
                return
            url = self._next_link(body)
            params = None  # the next link carries its own query

    def _next_link(self, body: Mapping[str, Any]) -> str | None:
        links = body.get("_links")
        nxt = links.get("next") if isinstance(links, dict) else None
        if not isinstance(nxt, str) or not nxt:
            return None
        url = urljoin(self.api_base() + "/", nxt)
        return require_same_origin("GET call-lists", "_links.next", url, self.api_base())

    def read_page(self, list_id: str, cursor: str | None) -> Page:
        """Page ``cursor`` of the list, from a local spool of one download.

        CXone answers a list whole (up to 500,000 records). The answer is parsed as it
        streams in and written to a spool file of JSON lines; pages are then served from
        the file, so neither the worker nor Redis ever holds the list. The cursor names
        the spool, how many records were served and where the next page starts; a task on
        another host (or after the spool was swept away) downloads again and skips that
        many records.
        """
        token, served, offset = self._parse_cursor(cursor)
        total: int | None = None
        path = SPOOL_DIR / f"{token}.jsonl"
        if not token or not path.exists():
            token, total = self._download(list_id)
            path = SPOOL_DIR / f"{token}.jsonl"
            offset = 0
            with path.open("rb") as spool:
                for _ in range(served):
                    spool.readline()
                offset = spool.tell()
        records: list[dict[str, Any]] = []
        with path.open("rb") as spool:
            spool.seek(offset)
            for _ in range(self.settings.cxone_page_size):
                line = spool.readline()
                if not line:
                    break
                records.append(json.loads(line))
            offset = spool.tell()
            more = bool(spool.read(1))
        if self.settings.cxone_dnc_group_id and records:
            self._remember_phones(list_id, records)
        served += len(records)
        if not more:
            path.unlink(missing_ok=True)
            return Page(contacts=records, next_cursor=None, total=total)
        return Page(contacts=records, next_cursor=f"{token}:{served}:{offset}", total=total)

    @staticmethod
    def _parse_cursor(cursor: str | None) -> tuple[str, int, int]:
        if not cursor:
            return "", 0, 0
        token, _, rest = cursor.partition(":")
        served, _, offset = rest.partition(":")
        if not _SPOOL_TOKEN.match(token) or not served.isdigit() or not offset.isdigit():
            raise ApiError(f"not a CXone page cursor: {cursor[:40]!r}")
        return token, int(served), int(offset)

    def _download(self, list_id: str) -> tuple[str, int]:
        """Stream the list into a new spool file; its token and how many records."""
        SPOOL_DIR.mkdir(mode=0o700, exist_ok=True)
        cutoff = time.time() - SPOOL_MAX_AGE
        for old in SPOOL_DIR.iterdir():
            if old.stat().st_mtime < cutoff:
                old.unlink(missing_ok=True)
        token = secrets.token_hex(8)
        part = SPOOL_DIR / f"{token}.part"
        info: dict[str, Any] = {}
        count = 0
        try:
            # The records hold personal data: readable by this user only.
            part.touch(mode=0o600)
            with part.open("w", encoding="utf-8") as out:
                for record in self.stream_list(list_id, info):
                    out.write(json.dumps(record, separators=(",", ":")) + "\n")
                    count += 1
            part.rename(SPOOL_DIR / f"{token}.jsonl")
        finally:
            part.unlink(missing_ok=True)
        self._remember_list(list_id, info)
        return token, count

    def stream_list(self, list_id: str, info: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The list's records as the download answer arrives (``GET lists/call-lists/
        {listId}?includeRecords=true``, parsed with ijson): memory stays flat however
        long the list. ``info`` receives the answer's other fields once it is read."""
        url = self._list_url(list_id)
        call = f"GET {path_of(url)}"
        params = {"finalized": "false", "includeRecords": "true"}
        require_same_origin(call, "the request URL", url, self.api_base())
        response = self.http.authorized(
            self.tokens, "read", call, "GET", url, params=params, stream=True
        )
        reader = _AnswerReader(call, response)
        builder: ijson.ObjectBuilder | None = None
        count = chars = 0
        found_records = False
        skills: list[str] = []
        try:
            for prefix, event, value in ijson.parse(reader, use_float=True):
                # Assumed: the list is wrapped in "resultSet" (the schema says so); a bare
                # object is accepted too.
                field = prefix[len("resultSet.") :] if prefix.startswith("resultSet.") else prefix
                if builder is not None:
                    builder.event(event, value)
                    if field == "contactRecords.item" and event == "end_map":
                        record = builder.value
                        builder = None
                        size = self._check_record(call, count, record)
                        count += 1
                        chars += size
                        if chars > MAX_LIST_CHARS:
                            raise MalformedResponse(
                                f"{call}: the list holds more than {MAX_LIST_CHARS} characters"
                            )
                        yield record
                    continue
                if field == "contactRecords.item":
                    if event != "start_map":
                        raise MalformedResponse(f"{call}: record #{count} is not an object")
                    builder = ijson.ObjectBuilder()
                    builder.event(event, value)
                elif field == "contactRecords" and event == "start_array":
                    found_records = True
                elif field == "skills.item.skillId" and event in ("number", "string"):
                    skills.append(str(value))  # Assumed: a list's skills carry skillId
                elif field in ("listName", "listExpirationDate", "status", "totalRecords"):
                    info[field] = value
        except ijson.JSONError:
            raise MalformedResponse(f"{call}: answer is not valid JSON") from None
        finally:
            response.close()
        if not found_records:
            raise MalformedResponse(f"{call}: 'contactRecords' is missing or not a list")
        total = info.get("totalRecords")
        if isinstance(total, int) and total != count:
            # A short answer would sweep part of the list as if it were all of it.
            raise MalformedResponse(f"{call}: {total} records announced, {count} returned")
        info["skills"] = skills
        info["count"] = count

    def _remember_list(self, list_id: str, info: Mapping[str, Any]) -> None:
        """What writes need later (the name for removeProspects, the expiration date for
        uploads), and warnings about what would keep dialing."""
        for field, key in (
            ("listName", self._keys.list_name(list_id)),
            ("listExpirationDate", self._keys.list_expiry(list_id)),
        ):
            value = info.get(field)
            if isinstance(value, str) and value:
                self.redis.set(key, value, ex=DISCOVERY_TTL)
        skills = set(info.get("skills") or ())
        if self.settings.cxone_skill_id:
            skills.add(self.settings.cxone_skill_id)
        for skill in sorted(skills):
            self._check_running(list_id, skill)
        if self.settings.cxone_dnc_group_id and skills:
            self._check_scrubbed(list_id, skills)

    def _check_running(self, list_id: str, skill: str) -> None:
        """Warn when the list's skill is running: uploads to it are dialed whatever
        ``startSkill`` says. Assumed: ``GET skills/{id}`` answers ``skills[0].isRunning``
        (an open client reads that field); a skill that cannot be read is not judged."""
        url = f"{self.api_base()}/skills/{quote(skill, safe='')}"
        try:
            body = self._call("skill", f"GET {path_of(url)}", "GET", url)
        except NotFound:
            return
        found = body.get("skills") if isinstance(body, dict) else None
        first = found[0] if isinstance(found, list) and found else body
        if isinstance(first, dict) and first.get("isRunning") is True:
            log.warning(
                "list %s: skill %s is running: corrected records uploaded to it are dialed"
                " at once; sweep lists whose skill is paused",
                list_id,
                skill,
            )

    def _check_scrubbed(self, list_id: str, skills: set[str]) -> None:
        """Warn when the list's skill is not scrubbed against the DNC group: numbers
        pushed to the group would not stop that skill from dialing them."""
        group = quote(self.settings.cxone_dnc_group_id, safe="")
        url = f"{self.api_base()}/dnc-groups/{group}/scrubbed-skills"
        body = self._call("dnc", f"GET {path_of(url)}", "GET", url)
        scrubbed = body.get("scrubbedSkills") if isinstance(body, dict) else None
        ids = {str(s.get("skillId")) for s in scrubbed or [] if isinstance(s, dict)}
        missing = sorted(skills - ids)
        if missing:
            log.warning(
                "list %s: skill(s) %s not scrubbed against DNC group %s: numbers cxsweep"
                " adds to the group will not stop that skill dialing them",
                list_id,
                ", ".join(missing),
                self.settings.cxone_dnc_group_id,
            )

    def _check_record(self, call: str, position: int, record: Any) -> int:
        """Check one record; its size in characters of data."""
        if not isinstance(record, dict):
            raise MalformedResponse(f"{call}: record #{position} is not an object")
        key = record.get(self.external_id_column)
        if isinstance(key, bool) or not isinstance(key, str | int) or key == "":
            raise MalformedResponse(
                f"{call}: record #{position} has no {self.external_id_column!r} value"
            )
        for column in self.phone_fields:
            value = record.get(column)
            if isinstance(value, int) and not isinstance(value, bool):
                # Assumed possible: a CSV-born column read back as a JSON number.
                record[column] = str(value)
            elif value is not None and not isinstance(value, str):
                raise MalformedResponse(f"{call}: record #{position} {column!r} is not a string")
        size = sum(len(str(v)) for v in record.values() if v is not None)
        if size > MAX_RECORD_CHARS:
            raise MalformedResponse(
                f"{call}: record #{position} holds {size} characters (CXone allows 512)"
            )
        return size

    def _remember_phones(self, list_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        # remove_contacts gets only external ids; the DNC push needs the numbers.
        key = self._keys.phones(list_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(
            key,
            mapping={
                self.contact_id(r): json.dumps([r.get(c) for c in self.phone_fields if r.get(c)])
                for r in records
            },
        )
        pipe.expire(key, self.settings.run_deadline_seconds)
        pipe.execute()

    # --- verifying writes -------------------------------------------------------------

    def _now(self) -> float:
        """Redis's clock: every worker compares times on the same one."""
        seconds, micros = self.redis.time()
        return seconds + micros / 1e6

    def read_back(
        self, list_id: str, ids: Sequence[str], since: float
    ) -> dict[str, dict[str, Any] | None]:
        """The phone columns of ``ids`` (None: not in the list) as a read of the list
        started after ``since`` shows them.

        CXone's write answers do not say what landed (an upload job carries only its
        status), so writes are checked against the list itself. Reading a 500,000-record
        list per upload would be ruinous: the ids wait in Redis, one worker at a time
        reads the list for every write waiting, the others raise ``NotYet`` and come back.
        """
        want, seen = self._keys.read_back(list_id, "want"), self._keys.read_back(list_id, "seen")
        self.redis.sadd(want, *ids)
        self.redis.expire(want, self.settings.run_deadline_seconds)
        found = self._seen_since(seen, ids, since)
        if found is None and self.redis.set(
            self._keys.read_back(list_id, "lock"), 1, nx=True, ex=READ_BACK_LOCK_SECONDS
        ):
            try:
                self._read_for_waiting(list_id, want, seen)
            finally:
                self.redis.delete(self._keys.read_back(list_id, "lock"))
            found = self._seen_since(seen, ids, since)
        if found is None:
            # Half as long as the last read took: hundreds of writes waiting on a long
            # list must not spin the workers (and starve the read) by asking every second.
            took = float(self.redis.get(self._keys.read_back(list_id, "took")) or 0)
            raise NotYet(
                f"waiting for a read of list {list_id} to verify {len(ids)} write(s)",
                retry_after=max(self.settings.cxone_job_poll_seconds, min(took / 2, 60.0)),
            )
        # Redis keeps what waits, not what was verified.
        self.redis.srem(want, *ids)
        self.redis.hdel(seen, *ids)
        return found

    def _seen_since(
        self, seen: str, ids: Sequence[str], since: float
    ) -> dict[str, dict[str, Any] | None] | None:
        found: dict[str, dict[str, Any] | None] = {}
        for cid, raw in zip(ids, self.redis.hmget(seen, list(ids)), strict=True):
            if raw is None:
                return None
            started, values = json.loads(raw)
            if started <= since:
                return None
            columns = None if values is None else zip(self.phone_fields, values, strict=False)
            found[cid] = None if columns is None else dict(columns)
        return found

    def _read_for_waiting(self, list_id: str, want: str, seen: str) -> None:
        started = self._now()
        pending = {text(x) for x in self.redis.smembers(want)}
        rows: dict[str, str] = {}
        def flush() -> None:
            # What was seen no longer waits: Redis holds each id once, not twice.
            pipe = self.redis.pipeline(transaction=False)
            pipe.hset(seen, mapping=rows)  # type: ignore[arg-type]
            pipe.srem(want, *rows)
            pipe.execute()
            rows.clear()

        for record in self.stream_list(list_id, {}):
            cid = self.contact_id(record)
            if cid in pending:
                pending.discard(cid)
                rows[cid] = json.dumps([started, [record.get(c) for c in self.phone_fields]])
            if len(rows) >= 1000:
                flush()
        rows.update({cid: json.dumps([started, None]) for cid in pending})
        if rows:
            flush()
        self.redis.expire(seen, self.settings.run_deadline_seconds)
        took_key = self._keys.read_back(list_id, "took")
        self.redis.set(took_key, self._now() - started, ex=self.settings.run_deadline_seconds)

    # --- removing ---------------------------------------------------------------------

    def _list_name(self, list_id: str) -> str:
        """removeProspects addresses a list by name: cached from reads, else asked for."""
        key = self._keys.list_name(list_id)
        name = text(self.redis.get(key))
        if name:
            return name
        url = self._list_url(list_id)
        call = f"GET {path_of(url)}"
        body = self._call("read", call, "GET", url, params={"includeRecords": "false"})
        wrapped = body.get("resultSet") if isinstance(body, dict) else None
        result = wrapped if isinstance(wrapped, dict) else body
        found = result.get("listName") if isinstance(result, dict) else None
        if not isinstance(found, str) or not found:
            raise MalformedResponse(f"{call}: answer has no 'listName'")
        self.redis.set(key, found, ex=DISCOVERY_TTL)
        return found

    def remove_contacts(self, list_id: str, contact_ids: Sequence[str]) -> WriteOutcome:
        if len(contact_ids) > self.remove_batch_size:
            raise ValueError(f"at most {self.remove_batch_size} records per removeProspects")
        contact_ids, refused = writable_ids(contact_ids)
        outcome = WriteOutcome(failed=refused)
        if not contact_ids:
            return outcome
        name = self._list_name(list_id)
        if self.settings.cxone_dnc_group_id:
            # Before the removal: a retry after a failed removal pushes again (harmless),
            # whereas pushing after could lose the numbers of records already gone.
            self.push_dnc(list_id, contact_ids)
        url = f"{self.api_base()}/lists/call-lists/{quote(name, safe='')}/removeProspects"
        call = f"DELETE {path_of(url)}"
        body = self._call(
            "remove",
            call,
            "DELETE",
            url,
            json_body={
                "prospectsToRemove": [{"externalId": as_number(cid)} for cid in contact_ids]
            },
        )
        since = self._now()
        if not isinstance(body, dict):
            raise MalformedResponse(f"{call}: answer is not a JSON object")
        ok, failed = body.get("successfulRecords") or [], body.get("failedRecords") or []
        if not isinstance(ok, list) or not isinstance(failed, list):
            raise MalformedResponse(f"{call}: successfulRecords/failedRecords are not lists")
        wanted = set(contact_ids)
        answered: set[str] = set()
        for item in ok:
            cid = str(item.get("externalId")) if isinstance(item, dict) else None
            if cid in wanted and cid not in answered:
                answered.add(cid)
                outcome.done.append(cid)
        for item in failed:
            cid = str(item.get("externalId")) if isinstance(item, dict) else None
            if cid not in wanted or cid in answered:
                continue
            answered.add(cid)
            code = str(item.get("resultCode") or item.get("error") or "failed")
            if _is_not_found(code):
                outcome.missing.append(cid)
            else:
                outcome.failed[cid] = f"removeProspects: {code}"
        unanswered = [cid for cid in contact_ids if cid not in answered]
        if unanswered:
            # Neither list names them: the list itself says whether they are gone. (Until
            # it has been read this raises NotYet; the retry sends the batch again, and
            # records removed meanwhile come back as not found.)
            observed = self.read_back(list_id, unanswered, since)
            for cid in unanswered:
                if observed.get(cid) is None:
                    outcome.done.append(cid)
                else:
                    outcome.failed[cid] = (
                        "removeProspects gave no result and the record is still in the list"
                    )
        return outcome

    def push_dnc(self, list_id: str, contact_ids: Sequence[str]) -> int:
        """Add the numbers of ``contact_ids`` (as read) to the DNC group; how many sent.

        Per-record refusals (a malformed number, say) are logged, not raised: the DNC
        push is a courtesy on top of the removal, which must not wait on it.
        """
        raw = self.redis.hmget(self._keys.phones(list_id), list(contact_ids))
        numbers: dict[str, None] = {}
        for value in raw:
            for phone in json.loads(text(value) or "[]"):
                digits = _digits(phone)
                if len(digits) >= 7:
                    numbers[digits] = None
        if not numbers:
            return 0
        group = quote(self.settings.cxone_dnc_group_id, safe="")
        url = f"{self.api_base()}/dnc-groups/{group}/records"
        call = f"POST {path_of(url)}"
        body = self._call(
            "dnc",
            call,
            "POST",
            url,
            json_body={"dncGroupRecords": [{"phoneNumber": as_number(n)} for n in numbers]},
        )
        result = body.get("resultSet") if isinstance(body, dict) else None
        errors = result.get("errorCount") if isinstance(result, dict) else None
        if isinstance(errors, int) and errors:
            log.warning("%s: %d of %d numbers refused by DNC group", call, errors, len(numbers))
        return len(numbers)

    # --- correcting -------------------------------------------------------------------

    def update_contacts(self, list_id: str, changes: Sequence[Change]) -> WriteOutcome:
        """Upload the corrected records (whole) and follow the job; see ``JobPending``."""
        if len(changes) > self.update_batch_size:
            raise ValueError(f"at most {self.update_batch_size} records per upload")
        outcome = WriteOutcome()
        rows: list[dict[str, Any]] = []
        for change in changes:
            problem = contact_id_problem(change.contact_id)
            if problem is not None:
                outcome.failed[change.contact_id] = problem
                continue
            if not change.record:
                # Without the record an upload would blank every other column.
                outcome.failed[change.contact_id] = "the record as read is not known"
                continue
            rows.append({**change.record, **change.phones})
        if not rows:
            return outcome
        failures = self._upload_and_follow(list_id, rows)
        for row in rows:
            cid = self.contact_id(row)
            if cid in failures:
                outcome.failed[cid] = failures[cid]
            else:
                outcome.done.append(cid)
        return outcome

    def create_contacts(self, list_id: str, contacts: Sequence[Mapping[str, Any]]) -> WriteOutcome:
        """Restore: upload the records as they were (the same job handling as updates)."""
        ids, refused = writable_ids([self.contact_id(c) for c in contacts])
        if not ids:
            return WriteOutcome(failed=refused)
        rows = [dict(c) for c in contacts if self.contact_id(c) not in refused]
        failures = self._upload_and_follow(list_id, rows)
        return WriteOutcome(
            done=[i for i in ids if i not in failures], failed={**refused, **failures}
        )

    @staticmethod
    def to_csv(rows: Sequence[Mapping[str, Any]]) -> bytes:
        header: dict[str, None] = {}
        for row in rows:
            header.update(dict.fromkeys(row))
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else str(row.get(c)) for c in header])
        return out.getvalue().encode("utf-8")

    def _upload_and_follow(self, list_id: str, rows: list[dict[str, Any]]) -> dict[str, str]:
        """Per-record failures of the upload of ``rows``, once its job has ended and the
        list has been read back.

        The same rows always map to the same Redis key, so a retried task (or a second
        worker handed the same chunk) polls the job already submitted.
        """
        canonical = json.dumps([list_id, rows], sort_keys=True, default=str)
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:24]
        key = self._keys.upload(digest)
        job_id = text(self.redis.hget(key, "job_id"))
        if not job_id:
            if not self.redis.hsetnx(key, "state", "uploading"):
                raise JobPending(
                    "another worker is uploading this chunk",
                    job_id="",
                    retry_after=self.settings.cxone_job_poll_seconds,
                )
            self.redis.expire(key, UPLOAD_CLAIM_SECONDS)
            try:
                job_id = self._upload(list_id, rows, digest)
            except BaseException:
                self.redis.delete(key)
                raise
            pipe = self.redis.pipeline()
            pipe.hset(key, mapping={"job_id": job_id, "state": "submitted", "polls": 0})
            pipe.expire(key, self.settings.run_deadline_seconds)
            pipe.execute()
        ids = [self.contact_id(row) for row in rows]
        ended_at = text(self.redis.hget(key, "ended_at"))
        if not ended_at:
            try:
                job = self._job(job_id)
            except NotFound:
                # The platform forgot the job: upload again (an overwrite is idempotent).
                self.redis.delete(key)
                raise JobPending(
                    f"upload job {job_id} is unknown to CXone: uploading again",
                    job_id=job_id,
                    retry_after=self.settings.cxone_job_poll_seconds,
                ) from None
            if job.get("isCancelled") is True:
                self.redis.expire(key, JOB_RESULT_SECONDS)
                return dict.fromkeys(ids, f"upload job {job_id} was cancelled")
            if job.get("isComplete") is not True:
                polls = int(self.redis.hincrby(key, "polls", 1))
                wait = min(
                    self.settings.cxone_job_poll_seconds * 2 ** (polls - 1), MAX_JOB_POLL_SECONDS
                )
                raise JobPending(
                    f"upload job {job_id} is still running", job_id=job_id, retry_after=wait
                )
            # When this worker saw it end: a read started later shows what it did.
            self.redis.hsetnx(key, "ended_at", self._now())
            ended_at = text(self.redis.hget(key, "ended_at"))
        # The job answers only its status: what landed is read from the list itself.
        observed = self.read_back(list_id, ids, float(ended_at))
        self.redis.expire(key, JOB_RESULT_SECONDS)
        failures: dict[str, str] = {}
        for cid, row in zip(ids, rows, strict=True):
            got = observed.get(cid)
            if got is None:
                failures[cid] = f"upload job {job_id} ended but the record is not in the list"
                continue
            # Assumed: CXone may reformat a number; the same digits count as landed.
            wrong = [c for c in self.phone_fields if _digits(row.get(c)) != _digits(got.get(c))]
            if wrong:
                column = wrong[0]
                failures[cid] = (
                    f"upload job {job_id} ended but the list holds {column}="
                    f"{got.get(column)!r}, not {row.get(column)!r}"
                )
        return failures

    def _expiration_date(self, list_id: str) -> str:
        """Uploads must carry one: the list's own, else CXONE_LIST_EXPIRATION_DAYS ahead."""
        key = self._keys.list_expiry(list_id)
        own = text(self.redis.get(key))
        if own:
            try:
                when = datetime.datetime.fromisoformat(own.replace("Z", "+00:00"))
            except ValueError:
                when = None
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=datetime.UTC)
                if when > datetime.datetime.now(datetime.UTC):
                    return own
        days = datetime.timedelta(days=self.settings.cxone_list_expiration_days)
        # Assumed: a date in ISO form (as the open client that uploads sends it).
        return (datetime.datetime.now(datetime.UTC) + days).date().isoformat()

    def _upload(self, list_id: str, rows: list[dict[str, Any]], digest: str) -> str:
        url = f"{self._list_url(list_id)}/upload"
        call = f"POST {path_of(url)}"
        body: dict[str, Any] = {
            "listFile": base64.b64encode(self.to_csv(rows)).decode("ascii"),
            "fileName": f"cxsweep-{list_id}-{digest[:12]}.csv",
            # Assumed: overwrite replaces the records with the same external id.
            "forceOverwrite": True,
            "expirationDate": self._expiration_date(list_id),
            # Not a safeguard: a skill already running dials what is uploaded to it
            # (docs/cxone.md); false only keeps a paused skill paused.
            "startSkill": False,
            "sendEmail": False,
        }
        if self.settings.cxone_skill_id:
            body["skillId"] = int(self.settings.cxone_skill_id)
        answer = self._call("upload", call, "POST", url, json_body=body)
        job_id = answer.get("jobId") if isinstance(answer, dict) else None
        if isinstance(job_id, bool) or not isinstance(job_id, str | int) or job_id == "":
            raise MalformedResponse(f"{call}: answer has no 'jobId'")
        return str(job_id)

    def _job(self, job_id: str) -> dict[str, Any]:
        url = f"{self.api_base()}/lists/call-lists/jobs/{quote(job_id, safe='')}"
        call = f"GET {path_of(url)}"
        body = self._call("job", call, "GET", url)
        jobs = body.get("uploadJobs") if isinstance(body, dict) else None
        if not isinstance(jobs, list) or not jobs or not all(isinstance(j, dict) for j in jobs):
            raise MalformedResponse(f"{call}: 'uploadJobs' is missing or empty")
        for job in jobs:
            if str(job.get("jobId")) == job_id:
                return job
        raise MalformedResponse(f"{call}: 'uploadJobs' does not name job {job_id}")

    # --- plumbing ---------------------------------------------------------------------

    def _call(
        self,
        kind: str,
        call: str,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
    ) -> Any:
        # Whatever the URL came from, the token goes only to the API base.
        require_same_origin(call, "the request URL", url, self.api_base())
        # On a 401 the fleet refreshes (refresh token first), then one retry.
        response = self.http.authorized(
            self.tokens, kind, call, method, url, params=params, json_body=json_body
        )
        if not response.content:
            return {}
        return parse_json(call, response)
