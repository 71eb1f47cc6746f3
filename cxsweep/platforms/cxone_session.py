"""The CXone session every part of the backend speaks through: the token (password or
access-key grant, shared by the fleet in Redis), discovery of the tenant's Admin API, and
the one authorized call (``_call``) that sends the token only to that API.

The parts of the backend (``cxone_download``, ``cxone_upload``, ``cxone_remove``) are
subclasses of ``CxoneSession``; ``cxsweep.platforms.cxone.CxoneBackend`` puts them together.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import ipaddress
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import redis
import requests

from cxsweep.errors import (
    CredentialsRefused,
    ForeignOrigin,
    MalformedResponse,
)
from cxsweep.platforms.http import (
    ResponseObserver,
    Transport,
    bearer_token_problem,
    error_field,
    origin_of,
    parse_json,
    path_of,
    raise_for_status,
    require_same_origin,
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
# How long a worker trusts its own copy of the discovered API base before asking Redis.
LOCAL_API_BASE_TTL = 300.0
TENANT_TTL = 30 * 24 * 3600
# Assumed: a missing expires_in is unheard of; an hour is what NICE documents.
DEFAULT_EXPIRES_IN = 3600.0


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


def phone_digits(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return "".join(ch for ch in value if ch.isdigit()) if isinstance(value, str) else ""


def as_number(value: str) -> int | str:
    """A number-typed field (removeProspects' externalId, a DNC phoneNumber): a number
    when the text is one, digit for digit; text otherwise (a leading zero would be lost)."""
    digits = value.isascii() and value.isdigit()
    return int(value) if digits and str(int(value)) == value else value


def platform_time(value: Any) -> datetime.datetime | None:
    """A date-time the platform sends (ISO 8601, ``Z`` allowed; UTC unless it says
    otherwise), or None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=datetime.UTC)


class CxoneSession:
    """Authentication, discovery and the authorized call of one CXone account."""

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
        # A backend lives as long as its worker process (tasks._deps): a discovered base
        # is looked up in Redis again now and then, so a re-discovery reaches it.
        self._api_base_until = 0.0

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
        problem = bearer_token_problem(token)
        if problem is not None or not isinstance(token, str):
            raise MalformedResponse(f"{call}: {problem}")
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
        if self._api_base is not None and time.monotonic() < self._api_base_until:
            return self._api_base
        explicit = self.settings.api_url
        if explicit:
            # A bare host is completed with the usual path; a URL with a path is used as is.
            if urlsplit(explicit).path.strip("/"):
                base = explicit.rstrip("/")
            else:
                version = self.settings.cxone_api_version
                base = f"{explicit.rstrip('/')}/inContactAPI/services/{version}"
            self._api_base, self._api_base_until = base, math.inf
            return base
        key = self._keys.api_base(self.settings.cxone_api_version)
        cached = text(self.redis.get(key))
        if cached:
            self._api_base, self._api_base_until = cached, time.monotonic() + LOCAL_API_BASE_TTL
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
        self._api_base, self._api_base_until = base, time.monotonic() + LOCAL_API_BASE_TTL
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

    # --- plumbing ---------------------------------------------------------------------

    def _list_url(self, list_id: str) -> str:
        return f"{self.api_base()}/lists/call-lists/{quote(list_id, safe='')}"

    def contact_id(self, contact: Mapping[str, Any]) -> str:
        return str(contact[self.external_id_column])

    def _now(self) -> float:
        """Redis's clock: every worker compares times on the same one."""
        seconds, micros = self.redis.time()
        return seconds + micros / 1e6

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
