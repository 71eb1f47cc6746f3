"""Disposable (burner) number lists: loaded once per process, refreshable in place.

A data file is either one E.164 number a line (``#`` comments allowed) or a JSON
object keyed by E.164 digits without the "+" (the shape of the public iP1SMS
``number-list.json``); a JSON array of numbers is accepted too.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from cxsweep.errors import SettingsError

DEFAULT_CHECK_INTERVAL = 30.0
_DIGITS = re.compile(r"^\+?([1-9]\d{1,14})$")
_STRIP = re.compile(r"[\s().\-]")


def _e164(entry: object) -> str | None:
    if not isinstance(entry, str | int) or isinstance(entry, bool):
        return None
    match = _DIGITS.match(_STRIP.sub("", str(entry)))
    return f"+{match.group(1)}" if match else None


def load_numbers(path: str | os.PathLike[str]) -> frozenset[str]:
    """Read one data file into a set of E.164 strings; ``SettingsError`` if unusable."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"disposable-number file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"disposable-number file {path} cannot be read: {exc}") from None
    stripped = text.lstrip()
    entries: Iterable[object]
    if stripped[:1] in ("{", "["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingsError(
                f"disposable-number file {path}: invalid JSON at line {exc.lineno}: {exc.msg}"
            ) from None
        entries = data.keys() if isinstance(data, dict) else data
    else:
        entries = (line.split("#", 1)[0].strip() for line in text.splitlines())
        entries = [entry for entry in entries if entry]
    numbers: set[str] = set()
    for entry in entries:
        e164 = _e164(entry)
        if e164 is None:
            raise SettingsError(
                f"disposable-number file {path}: {str(entry)[:40]!r} is not an E.164 number"
            )
        numbers.add(e164)
    return frozenset(numbers)


class DisposableList:
    """The union of some data files, reloaded when a file's mtime changes.

    ``maybe_refresh`` stats the files at most every ``check_interval`` seconds, so the
    sanitizer may call it on every page. A file that vanishes or turns malformed after
    start-up keeps its last good contents rather than failing a running sweep.
    """

    def __init__(
        self, paths: Iterable[str], *, check_interval: float = DEFAULT_CHECK_INTERVAL
    ) -> None:
        self.paths = tuple(paths)
        self.check_interval = check_interval
        self._lock = threading.Lock()
        self._by_path: dict[str, frozenset[str]] = {}
        self._mtimes: dict[str, float] = {}
        self._numbers: frozenset[str] = frozenset()
        self._checked = 0.0
        self.last_error: str | None = None
        for path in self.paths:
            self._mtimes[path] = os.stat(path).st_mtime_ns if os.path.exists(path) else -1
            self._by_path[path] = load_numbers(path)
        self._numbers = frozenset().union(*self._by_path.values())
        self._checked = time.monotonic()

    def __contains__(self, e164: object) -> bool:
        return e164 in self._numbers

    def __len__(self) -> int:
        return len(self._numbers)

    @property
    def numbers(self) -> frozenset[str]:
        return self._numbers

    def maybe_refresh(self) -> bool:
        if time.monotonic() - self._checked < self.check_interval:
            return False
        return self.refresh()

    def refresh(self) -> bool:
        """Reload every file whose mtime changed; True if the set was rebuilt."""
        with self._lock:
            self._checked = time.monotonic()
            changed = False
            for path in self.paths:
                try:
                    mtime = os.stat(path).st_mtime_ns
                except OSError as exc:
                    self.last_error = f"{path}: {exc.strerror}"
                    continue
                if mtime == self._mtimes.get(path):
                    continue
                try:
                    self._by_path[path] = load_numbers(path)
                except SettingsError as exc:
                    self.last_error = str(exc)
                    continue
                self._mtimes[path] = mtime
                changed = True
            if changed:
                self._numbers = frozenset().union(*self._by_path.values())
            return changed


_LISTS: dict[tuple[str, ...], DisposableList] = {}
_LISTS_LOCK = threading.Lock()


def disposable_list(paths: Iterable[str]) -> DisposableList:
    """The process-wide list for these files: each worker loads a file set once."""
    key = tuple(os.path.abspath(p) for p in paths)
    with _LISTS_LOCK:
        found = _LISTS.get(key)
        if found is None:
            found = _LISTS[key] = DisposableList(key)
        return found


def refresh() -> bool:
    """Re-check every list this process has loaded; True if any changed."""
    with _LISTS_LOCK:
        lists = list(_LISTS.values())
    return any([found.refresh() for found in lists])
