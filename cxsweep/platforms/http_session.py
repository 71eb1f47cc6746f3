"""The process's pooled HTTP session: the operator's environment read once, and our
common calls sent to urllib3's pool without requests' per-call preparation.

A common call whose answer the transport reads at once (``response_cap``) goes over
libcurl instead (``http_curl``): the same request, sent once, at a fraction of the CPU.

Kept for operators: ``HTTP(S)_PROXY``/``ALL_PROXY`` with ``NO_PROXY`` (decided once per
origin), and ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` (else certifi's) as the
certificates that verify. What the session sends is what requests would send
(tests/test_http.py compares the two on the wire).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from json import dumps as json_dumps
from typing import Any
from urllib.parse import urlencode, urlsplit
from urllib.request import getproxies

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import DEFAULT_CA_BUNDLE_PATH, get_encoding_from_headers, should_bypass_proxies

from cxsweep.platforms import http_curl

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
        """requests' ``Session.request``; ``response_cap`` (ours: the answer is read here,
        at most that many bytes and one) lets a plain call go over libcurl."""
        response_cap = kwargs.pop("response_cap", None)
        if kwargs.get("proxies") is None:
            kwargs["proxies"] = self.proxies_for(url if isinstance(url, str) else url.decode())
        if args or kwargs.get("allow_redirects", True) or not _FAST_KEYS.issuperset(kwargs):
            return super().request(method, url, *args, **kwargs)
        if _direct_ok(str(url), kwargs):
            return self._send_direct(str(method), str(url), response_cap=response_cap, **kwargs)
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
        response_cap: int | None = None,
        **_unused: Any,
    ) -> requests.Response:
        """Our common call (no proxy, no Basic auth, no form, a plain URL) handed to the
        adapter's urllib3 pool as the adapter would hand it, without preparing a
        ``PreparedRequest`` or building the response through the cookie jar: a third of
        a DELETE's CPU (bench/PROFILE.md). Same pool, same TLS settings, same timeouts,
        same errors as ``HTTPAdapter.send``; anything unusual takes ``_send_prepared``.
        With ``response_cap`` (the answer read here, capped) it goes over libcurl, with
        the adapter's CA bundle (``http_curl.send``)."""
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
        if (
            response_cap is not None
            and http_curl.available()
            and adapter.ca_found
            and not (body is not None and method in ("GET", "HEAD"))
        ):
            # Answer read here, capped: over libcurl, at a fraction of urllib3's CPU, sent
            # once as urllib3 sends it (http_curl).
            return http_curl.send(
                method,
                url,
                sent,
                body,
                timeout=timeout,
                verify=verify,
                ca_bundle=adapter.ca_bundle,
                ca_is_dir=adapter.ca_is_dir,
                cap=response_cap,
            )
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
                and all(isinstance(k, str) and type(v) in _PLAIN_PARAM for k, v in params.items())
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
