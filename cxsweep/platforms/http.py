"""The HTTP plumbing every backend shares: pooled sessions, the shared rate limit,
capped reads, and one mapping from answers to typed errors.

One attempt per call, no sleeping for retries, no loops: retrying is Celery's business.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from json import dumps as json_dumps
from typing import Any, Protocol
from urllib.parse import urlencode, urljoin, urlsplit
from urllib.request import getproxies

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import DEFAULT_CA_BUNDLE_PATH, get_encoding_from_headers, should_bypass_proxies

from cxsweep.errors import (
    ApiError,
    ForeignOrigin,
    MalformedResponse,
    NotFound,
    RateLimited,
    RetryableApiError,
    TlsRefused,
)
from cxsweep.platforms.ratelimit import RateLimiter
from cxsweep.settings import Settings

log = logging.getLogger("cxsweep.platforms.http")

# (call kind, HTTP status or None for a transport failure, seconds)
ResponseObserver = Callable[[str, int | None, float], None]

# Calls that take the shared rate's first free moment (``RateLimiter.acquire``).
PRIORITY_KINDS = frozenset({"read"})

_sessions: dict[tuple[int, int], requests.Session] = {}
_sessions_lock = threading.Lock()


class _ResolvedAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose CA bundle was located once: requests checks that the
    bundle exists and whether it is a directory on every call to an https URL."""

    def __init__(self, ca_bundle: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ca_bundle = ca_bundle
        self.ca_is_dir = os.path.isdir(ca_bundle)
        self.ca_found = self.ca_is_dir or os.path.exists(ca_bundle)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        if verify is True and self.ca_found and not cert and url.lower().startswith("https"):
            conn.cert_reqs = "CERT_REQUIRED"
            if self.ca_is_dir:
                conn.ca_cert_dir = self.ca_bundle
            else:
                conn.ca_certs = self.ca_bundle
            return
        # verify=False, plain http, or a bundle that was missing at start: requests'
        # own handling (a missing bundle fails the call, as it always did).
        super().cert_verify(conn, url, self.ca_bundle if verify is True else verify, cert)


class ResolvedSession(requests.Session):
    """A pooled session that reads its environment once, when it is made, instead of on
    every call: requests' ``trust_env`` looks up ``~/.netrc``, every proxy variable and
    the CA bundle variables per request (~6% of a worker's CPU in the write phase,
    bench/PROFILE.md).

    Kept for operators: ``HTTP(S)_PROXY``/``ALL_PROXY`` with ``NO_PROXY`` (decided once
    per origin), and ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` (else certifi's) as the
    certificates that verify. ``~/.netrc`` is not read: requests would put its Basic
    credentials in place of the Bearer token on every call.
    """

    def __init__(self, pool_size: int) -> None:
        super().__init__()
        self.trust_env = False
        self.env_proxies = {k: v for k, v in getproxies().items() if k != "no"}
        self.no_proxy = os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or ""
        self._by_origin: dict[tuple[str, str, int | None], dict[str, str]] = {}
        self._origin_lock = threading.Lock()
        ca_bundle = (
            os.environ.get("REQUESTS_CA_BUNDLE")
            or os.environ.get("CURL_CA_BUNDLE")
            or DEFAULT_CA_BUNDLE_PATH
        )
        # No urllib3 retries: a retry is a Celery decision (backoff, Retry-After, breaker).
        adapter = _ResolvedAdapter(
            ca_bundle, pool_connections=8, pool_maxsize=pool_size, max_retries=0
        )
        self.mount("http://", adapter)
        self.mount("https://", adapter)
        self.adapter = adapter
        # (scheme, netloc, verify) -> the adapter's pool key arguments, worked out once.
        self._pool_args: dict[tuple[str, str, bool], tuple[Any, Any]] = {}

    def proxies_for(self, url: str) -> dict[str, str]:
        """The proxies for ``url``'s origin, decided on its first call."""
        parts = urlsplit(url)
        origin = (parts.scheme.lower(), (parts.hostname or "").lower(), parts.port)
        found = self._by_origin.get(origin)
        if found is None:
            with self._origin_lock:
                bypass = not self.env_proxies or should_bypass_proxies(url, self.no_proxy)
                found = {} if bypass else dict(self.env_proxies)
                self._by_origin[origin] = found
        return found

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("proxies") is None:
            kwargs["proxies"] = self.proxies_for(url if isinstance(url, str) else url.decode())
        if args or kwargs.get("allow_redirects", True) or not _FAST_KEYS.issuperset(kwargs):
            return super().request(method, url, *args, **kwargs)
        if _direct_ok(str(url), kwargs):
            return self._send_direct(str(method), str(url), **kwargs)
        return self._send_prepared(str(method), str(url), **kwargs)

    def _send_direct(
        self,
        method: str,
        url: str,
        *,
        proxies: dict[str, str],
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        timeout: tuple[float, float],
        verify: bool = True,
        **_unused: Any,
    ) -> requests.Response:
        """Our common call (no proxy, no Basic auth, no form, a plain URL) handed to the
        adapter's urllib3 pool as the adapter would hand it, without preparing a
        ``PreparedRequest`` or building the response through the cookie jar: a third of
        a DELETE's CPU (bench/PROFILE.md). Same pool, same TLS settings, same timeouts,
        same errors as ``HTTPAdapter.send``; anything unusual takes ``_send_prepared``."""
        parts = urlsplit(url)
        adapter = self.adapter
        key = (parts.scheme, parts.netloc, verify)
        pool_args = self._pool_args.get(key)
        if pool_args is None:
            # Worked out by the adapter itself, from a request to this origin, once.
            origin = requests.Request("GET", f"{parts.scheme}://{parts.netloc}/").prepare()
            pool_args = adapter.build_connection_pool_key_attributes(origin, verify)
            self._pool_args[key] = pool_args
        host_params, pool_kwargs = pool_args
        target = parts.path or "/"
        query = "&".join(q for q in (parts.query, urlencode(params) if params else "") if q)
        if query:
            target = f"{target}?{query}"
        if params:
            url = f"{parts.scheme}://{parts.netloc}{target}"
        sent = {**self.headers, **(headers or {})}
        body: bytes | None = None
        if json is not None:
            # As requests encodes it: no NaN or Infinity, which are not JSON.
            body = json_dumps(json, allow_nan=False).encode("utf-8")
            sent["Content-Type"] = "application/json"
            sent["Content-Length"] = str(len(body))
        elif method not in ("GET", "HEAD"):
            sent["Content-Length"] = "0"
        try:
            pool = adapter.poolmanager.connection_from_host(**host_params, pool_kwargs=pool_kwargs)
            adapter.cert_verify(pool, url, verify, None)
            answer = pool.urlopen(
                method=method,
                url=target,
                body=body,
                headers=sent,
                redirect=False,
                assert_same_host=False,
                preload_content=False,
                decode_content=False,
                retries=adapter.max_retries,
                timeout=_timeout(timeout),
                chunked=False,
            )
        except Exception as exc:
            mapped = _as_requests_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        response = requests.Response()
        response.status_code = answer.status
        response.headers = CaseInsensitiveDict(answer.headers)
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = answer
        response.reason = answer.reason
        response.url = url
        response.connection = adapter
        return response

    def _send_prepared(
        self,
        method: str,
        url: str,
        *,
        proxies: dict[str, str],
        headers: Mapping[str, str] | None = None,
        params: Any = None,
        json: Any = None,
        data: Any = None,
        auth: Any = None,
        timeout: Any = None,
        stream: bool = False,
        verify: bool | str = True,
        allow_redirects: bool = False,
    ) -> requests.Response:
        """What ``Session.request`` does for our calls, without its per-call merging of
        session settings (a fifth of a request's CPU, bench/PROFILE.md): the request is
        prepared with the session's default headers and sent by the adapter. No cookies
        are kept or sent: the contracts authenticate every call by its token."""
        prepared = requests.PreparedRequest()
        prepared.prepare(
            method=method.upper(),
            url=url,
            headers={**self.headers, **(headers or {})},
            params=params or {},
            json=json,
            data=data or {},
            auth=auth,
        )
        adapter = self.get_adapter(url)
        return adapter.send(
            prepared, stream=stream, timeout=timeout, verify=verify, cert=None, proxies=proxies
        )


# The keyword arguments ``ResolvedSession`` sends without ``Session.request`` (those the
# ``Transport`` passes); any other call takes requests' own path.
_FAST_KEYS = frozenset(
    {"proxies", "headers", "params", "json", "data", "auth", "timeout", "stream", "verify"}
    | {"allow_redirects"}
)


# A URL our direct path sends as it is: http(s), a lower-case host name or address, an
# optional port, and only characters that are legal unescaped in a path or query (so
# requests' re-quoting would leave it as it is). Anything else is prepared by requests.
_PLAIN_URL = re.compile(
    r"https?://(?:[a-z0-9.-]+|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?"
    r"(?:/(?:[A-Za-z0-9._~!$&'()*+,;=:@/-]|%[0-9A-Fa-f]{2})*)?"
    r"(?:\?(?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?"
)
_PLAIN_PARAM = (str, int)


def _direct_ok(url: str, kwargs: Mapping[str, Any]) -> bool:
    """Whether ``ResolvedSession._send_direct`` sends this call exactly as requests would."""
    params = kwargs.get("params")
    return (
        not kwargs.get("proxies")
        and kwargs.get("auth") is None
        and not kwargs.get("data")
        and isinstance(kwargs.get("verify", True), bool)
        and isinstance(kwargs.get("timeout"), tuple)
        and (
            not params
            or (
                isinstance(params, Mapping)
                and all(
                    isinstance(k, str) and type(v) in _PLAIN_PARAM for k, v in params.items()
                )
            )
        )
        and _PLAIN_URL.fullmatch(url) is not None
    )


_timeouts: dict[tuple[float, float], urllib3.Timeout] = {}


def _timeout(pair: tuple[float, float]) -> urllib3.Timeout:
    found = _timeouts.get(pair)
    if found is None:
        found = _timeouts[pair] = urllib3.Timeout(connect=pair[0], read=pair[1])
    return found


def _as_requests_error(exc: Exception) -> Exception:
    """urllib3's error as ``HTTPAdapter.send`` turns it into requests' (the transport's
    callers and ``short`` read requests' exceptions)."""
    from urllib3 import exceptions as u3

    if isinstance(exc, (u3.ProtocolError, OSError)):
        return requests.ConnectionError(exc)
    if isinstance(exc, u3.MaxRetryError):
        reason = exc.reason
        if isinstance(reason, u3.ConnectTimeoutError) and not isinstance(
            reason, u3.NewConnectionError
        ):
            return requests.exceptions.ConnectTimeout(exc)
        if isinstance(reason, u3.ResponseError):
            return requests.exceptions.RetryError(exc)
        if isinstance(reason, u3.ProxyError):
            return requests.exceptions.ProxyError(exc)
        if isinstance(reason, u3.SSLError):
            return requests.exceptions.SSLError(exc)
        return requests.ConnectionError(exc)
    if isinstance(exc, u3.ClosedPoolError):
        return requests.ConnectionError(exc)
    if isinstance(exc, u3.ProxyError):
        return requests.exceptions.ProxyError(exc)
    if isinstance(exc, u3.SSLError):
        return requests.exceptions.SSLError(exc)
    if isinstance(exc, u3.ReadTimeoutError):
        return requests.exceptions.ReadTimeout(exc)
    if isinstance(exc, u3.InvalidHeader):
        return requests.exceptions.InvalidHeader(exc)
    if isinstance(exc, u3.LocationValueError):
        return requests.exceptions.InvalidURL(exc)
    return exc


def shared_session(pool_size: int) -> requests.Session:
    """The process's pooled session (keep-alive connections reused across tasks); a
    forked child makes its own rather than share its parent's sockets."""
    key = (os.getpid(), pool_size)
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            session = _sessions[key] = ResolvedSession(pool_size)
        return session


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
    if status < 300:
        return
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
        return json.loads(response.content)
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
            )
            status = response.status_code
            if stream and status < 300:
                return response
            # Read the body here, capped, so that a slow or endless answer fails this call.
            response._content = self._read_capped(call, response)
            if status == 429 and self.limiter is not None:
                self.limiter.penalize(parse_retry_after(response.headers.get("Retry-After")))
            return response
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
