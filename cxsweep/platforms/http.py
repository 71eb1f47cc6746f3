"""The HTTP plumbing every backend shares: the shared rate limit, capped reads, and one
mapping from answers to typed errors (the pooled session: ``http_session``).

One attempt per call, no sleeping for retries, no loops: retrying is Celery's business.
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import requests

from cxsweep import jsoncodec
from cxsweep.errors import (
    ApiError,
    ForeignOrigin,
    MalformedResponse,
    NotFound,
    RateLimited,
    RetryableApiError,
    TlsRefused,
)
from cxsweep.platforms.http_curl import BodyTooLarge
from cxsweep.platforms.http_session import ResolvedSession, shared_session
from cxsweep.platforms.ratelimit import RateLimiter
from cxsweep.settings import Settings

log = logging.getLogger("cxsweep.platforms.http")

# (call kind, HTTP status or None for a transport failure, seconds)
ResponseObserver = Callable[[str, int | None, float], None]

# Calls that take the shared rate's first free moment (``RateLimiter.acquire``).
PRIORITY_KINDS = frozenset({"read"})


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def path_of(url: str) -> str:
    return urlsplit(url).path or "/"


_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an absolute URL, the port made explicit; ValueError if
    it has no http(s) scheme or host, or a bad port."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port  # ValueError for a port out of range or not a number
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"not an absolute http(s) URL: {scheme or 'no scheme'}")
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def show_origin(url: str) -> str:
    """scheme://host:port of ``url``, for messages: never its path or query (a cursor
    or a token may ride there)."""
    try:
        scheme, host, port = origin_of(url)
    except ValueError:
        return "an unparsable URL"
    return f"{scheme}://{host}:{port}"


def require_same_origin(call: str, what: str, url: Any, expected: str) -> str:
    """``url`` when it is an absolute URL on ``expected``'s origin, else ``ForeignOrigin``:
    a link the platform announces is followed only to the platform itself (an https
    link that turned http is another origin too)."""
    if not isinstance(url, str):
        raise MalformedResponse(f"{call}: {what!r} is not a URL")
    try:
        announced = origin_of(url)
    except ValueError:
        raise MalformedResponse(f"{call}: {what!r} is not an absolute http(s) URL") from None
    if announced != origin_of(expected):
        raise ForeignOrigin(
            f"{call}: {what!r} points to {show_origin(url)}, not {show_origin(expected)}:"
            " refusing to follow it"
        )
    return url


def certificate_refused(exc: BaseException) -> bool:
    """Whether a TLS failure is the peer's certificate failing verification (as opposed
    to a handshake cut short, which may pass on the next try)."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        # requests and urllib3 wrap the ssl error in args and in .reason.
        nested = [*current.args, getattr(current, "reason", None)]
        nested += [current.__cause__, current.__context__]
        pending.extend(e for e in nested if isinstance(e, BaseException))
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


def _root_cause(exc: BaseException) -> BaseException:
    """The failure under requests' and urllib3's wrappers: MaxRetryError keeps it in
    ``reason``, NewConnectionError in ``__cause__``, ProtocolError as its last arg."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException):
            inner = exc.__cause__
        if inner is None and exc.args and isinstance(exc.args[-1], BaseException):
            inner = exc.args[-1]
        if inner is None:
            break
        exc = inner
    return exc


# RFC 6750's b64token: what a bearer token may hold. Anything else (a line break above
# all) would be sent inside our Authorization header.
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def bearer_token_problem(token: object) -> str | None:
    """Why a granted access token cannot be sent as a bearer token (None: it can). The
    reason never shows the token."""
    if not isinstance(token, str) or not token:
        return "answer has no access_token"
    if _BEARER_TOKEN.fullmatch(token) is None:
        return "access_token holds characters a bearer token may not (RFC 6750)"
    return None


def short(exc: Exception, url: str = "") -> str:
    """What failed and where, in a few words: ``ConnectionRefusedError from
    127.0.0.1:9: Connection refused``, rather than the head of urllib3's nested repr."""
    root = _root_cause(exc)
    if isinstance(root, OSError) and root.strerror:
        text = root.strerror
    else:
        text = str(root).splitlines()[0] if str(root) else ""
    try:
        _, host, port = origin_of(url)
        where = f" from {host}:{port}"
    except ValueError:
        where = ""
    return f"{type(root).__name__}{where}" + (f": {text[:120]}" if text else "")


def error_field(response: requests.Response) -> str:
    try:
        body = json.loads(response.content or b"{}")
    except (ValueError, RecursionError):
        return ""
    if isinstance(body, dict):
        return str(body.get("error_description") or body.get("error") or "")
    return ""


def raise_for_status(call: str, response: requests.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    if status < 200:
        # An interim answer (103 Early Hints) handed over as the answer: what the call
        # did is unknown (urllib3 stops at the first status line; the real one may be a
        # 500). Never a success: the task tries again, and a removal is confirmed by the
        # list's re-read anyway.
        raise RetryableApiError(
            f"{call}: an interim answer ({status}) came as the answer", status=status
        )
    if status == 429:
        raise RateLimited(
            f"{call}: 429 Too Many Requests",
            status=429,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    if status >= 500:
        raise RetryableApiError(f"{call}: server error {status}", status=status)
    if status == 404:
        raise NotFound(f"{call}: not found (404)", status=404)
    if 300 <= status < 400:
        where = urlsplit(urljoin(response.url or "", response.headers.get("Location", "")))
        raise ApiError(
            f"{call}: answered a redirect ({status}) to {where.hostname or '?'}{where.path}:"
            " not followed",
            status=status,
        )
    error = error_field(response)
    invalid: list[str] = []
    try:
        body = json.loads(response.content or b"{}")
        if isinstance(body, dict) and isinstance(body.get("invalid"), list):
            invalid = [str(i) for i in body["invalid"]]
    except (ValueError, RecursionError):
        pass
    raise ApiError(f"{call}: {status} {error or response.reason}", status=status, invalid=invalid)


def parse_json(call: str, response: requests.Response) -> Any:
    try:
        return jsoncodec.loads(response.content)
    except ValueError:
        raise MalformedResponse(f"{call}: answer is not valid JSON") from None
    except RecursionError:
        # A small answer can nest deeper than the decoder's recursion limit ([[[...]]]).
        raise MalformedResponse(f"{call}: answer nests too deep to be a contract's JSON") from None


class TokenSource(Protocol):
    def get(self) -> str: ...

    def invalidate(self, rejected: str) -> str: ...


class Transport:
    """Sends one request: waits for the tenant's shared rate, reads the body capped,
    turns transport failures into ``RetryableApiError`` and reports to the observer."""

    def __init__(
        self,
        settings: Settings,
        *,
        session: requests.Session | None = None,
        observer: ResponseObserver | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.session = session or shared_session(settings.http_pool_size)
        self.observer = observer
        self.limiter = limiter
        self.max_bytes = settings.max_response_bytes
        self.insecure_hosts = settings.tls_insecure_hosts
        self.timeout = (settings.connect_timeout, settings.read_timeout)
        self._ours = isinstance(self.session, ResolvedSession)

    def send(
        self,
        kind: str,
        call: str,
        method: str,
        url: str,
        *,
        token: str | None = None,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        data: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """One request. With ``stream`` a successful answer's body is left unread for the
        caller to consume (and close); error answers are read, capped, as always."""
        if self.limiter is not None:
            # A page read goes ahead of queued writes: a run's writes wait for its reads.
            self.limiter.acquire(priority=kind in PRIORITY_KINDS)
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        # Our own session reads a plain call's answer itself, capped (over libcurl).
        read_here: dict[str, Any] = (
            {"response_cap": self.max_bytes} if not stream and self._ours else {}
        )
        started = time.perf_counter()
        status: int | None = None
        try:
            response = self.session.request(
                method,
                url,
                headers=headers,
                params=params,
                json=json_body,
                data=data,
                auth=auth,
                timeout=self.timeout,
                stream=True,
                # A redirect is a URL the platform gives too: not followed (see
                # raise_for_status), so a DELETE never lands on another host.
                allow_redirects=False,
                verify=(urlsplit(url).hostname or "").lower() not in self.insecure_hosts,
                **read_here,
            )
            status = response.status_code
            if stream and status < 300:
                return response
            # Read the body here, capped, so that a slow or endless answer fails this call.
            response._content = self._read_capped(call, response)
            if status == 429 and self.limiter is not None:
                self.limiter.penalize(parse_retry_after(response.headers.get("Retry-After")))
            return response
        except BodyTooLarge as exc:
            raise MalformedResponse(f"{call}: {exc}") from None
        except requests.exceptions.SSLError as exc:
            if not certificate_refused(exc):
                raise RetryableApiError(f"{call}: TLS failed ({short(exc, url)})") from None
            # A certificate that does not verify will not verify on the next try either.
            raise TlsRefused(
                f"{call}: the TLS certificate of {show_origin(url)} did not verify; fix the"
                " certificate, or name the host in CXSWEEP_TLS_INSECURE_HOSTS (tests only)"
            ) from None
        except requests.Timeout as exc:
            raise RetryableApiError(f"{call}: timed out ({type(exc).__name__})") from None
        except requests.ConnectionError as exc:
            raise RetryableApiError(f"{call}: connection failed ({short(exc, url)})") from None
        except requests.RequestException as exc:
            raise RetryableApiError(f"{call}: {type(exc).__name__} ({short(exc, url)})") from None
        finally:
            elapsed = time.perf_counter() - started
            log.debug("%s -> %s in %.1f ms", call, status, elapsed * 1000)
            if self.observer is not None:
                self.observer(kind, status, elapsed)

    def authorized(
        self,
        tokens: TokenSource,
        kind: str,
        call: str,
        method: str,
        url: str,
        **request: Any,
    ) -> requests.Response:
        """Send with the fleet's token; on a 401 the fleet gets one new token and the call
        is tried once more, as the contracts say. Answers >= 300 raise typed errors.

        A second 401 is retryable: the platform may have revoked the new token too while
        the call waited for the shared rate (tokens revoked every few seconds), and a
        retried task asks for another. A token that is never accepted spends the task's
        budget and fails the run; refused credentials fail at the token endpoint."""
        token = tokens.get()
        response = self.send(kind, call, method, url, token=token, **request)
        if response.status_code == 401:
            token = tokens.invalidate(token)
            response = self.send(kind, call, method, url, token=token, **request)
            if response.status_code == 401:
                raise RetryableApiError(f"{call}: a fresh token was refused (401)", status=401)
        raise_for_status(call, response)
        return response

    def _read_capped(self, call: str, response: requests.Response) -> bytes:
        cap = self.max_bytes
        if getattr(response, "_content_consumed", False) and isinstance(response._content, bytes):
            # Read already (libcurl, at most cap + 1 bytes): only the cap to check.
            if len(response._content) > cap:
                raise MalformedResponse(f"{call}: answer exceeds the {cap} byte cap")
            return response._content
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            response.close()
            raise MalformedResponse(f"{call}: answer of {declared} bytes exceeds the {cap} cap")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(chunk_size=65536):
            size += len(chunk)
            if size > cap:
                response.close()
                raise MalformedResponse(f"{call}: answer exceeds the {cap} byte cap")
            chunks.append(chunk)
        return b"".join(chunks)
