"""What a line-type provider answers, apart from the providers (``cxsweep.phone.lookup``):
the sanitizer judges answers without importing the providers, which import it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class LineTypeAnswer:
    """One provider's answer. ``line_type`` None means "no opinion": keep the offline type."""

    line_type: str | None
    carrier: str | None = None
    disposable: bool = False
    provider_type: str | None = None
    error_code: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> LineTypeAnswer:
        data = json.loads(text)
        return cls(
            line_type=data.get("line_type"),
            carrier=data.get("carrier"),
            disposable=bool(data.get("disposable", False)),
            provider_type=data.get("provider_type"),
            error_code=data.get("error_code"),
        )


@runtime_checkable
class LineTypeProvider(Protocol):
    def lookup_many(self, e164s: list[str]) -> dict[str, LineTypeAnswer]:
        """Answers keyed by E.164; a number may be missing when there is no answer."""
        ...
