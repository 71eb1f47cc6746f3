"""Every failure an operator or a task needs to tell apart, in one place."""

from __future__ import annotations


class CxsweepError(Exception):
    """Base class: the message is one line, fit to show an operator as it is."""


class SettingsError(CxsweepError):
    """A setting is missing or malformed; raised before any call is made."""


class OperatorError(CxsweepError):
    """What the operator asked for cannot be done as asked (an unknown run, a blank list
    id): exit 2, like a usage error, whichever command met it."""


class ListBusy(CxsweepError):
    """Another run holds the list's lock."""


class ApiError(CxsweepError):
    """An API call failed for good (do not retry)."""

    def __init__(
        self, message: str, *, status: int | None = None, invalid: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        #: the ids a 400 named as the reason it refused the whole batch
        self.invalid = invalid or []


class CredentialsRefused(ApiError):
    """The token endpoint refused the client id or secret."""


class MalformedResponse(ApiError):
    """The server answered, but not in the shape of the contract."""


class NotFound(ApiError):
    """404: the list or contact is not there."""


class ForeignOrigin(MalformedResponse):
    """The platform announced a URL on another origin (scheme, host, port) than its own:
    following it would hand our token, and our writes, to whoever serves it."""


class TlsRefused(ApiError):
    """The server's TLS certificate did not verify: a configuration or an attack, never
    a transient failure, so it is not retried."""


class RetryableApiError(CxsweepError):
    """A transient failure: 5xx, 429, time-out, dropped connection.

    ``retry_after`` is the server's own wish (seconds) when it gave one.
    """

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    @property
    def is_server_error(self) -> bool:
        return self.status is not None and self.status >= 500


class RateLimited(RetryableApiError):
    """429 Too Many Requests."""


class NotYet(RetryableApiError):
    """Nothing failed: the platform (an upload job) or our own rate limiter asks us to
    come back in ``retry_after`` seconds. Such waits do not spend a task's retries."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, status=None, retry_after=retry_after)
