"""cxsweep.phone.disposable: burner-number files loaded, validated and refreshed in
place."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cxsweep.errors import SettingsError
from cxsweep.phone.disposable import DisposableList, disposable_list, load_numbers


def test_a_line_file_with_comments_and_punctuation(tmp_path: Path) -> None:
    data = tmp_path / "burners.txt"
    data.write_text("# burners\n+1 (650) 253-0000  # one\n\n447911123456\n", encoding="utf-8")
    assert load_numbers(data) == frozenset({"+16502530000", "+447911123456"})


def test_json_object_keys_and_json_arrays(tmp_path: Path) -> None:
    as_object = tmp_path / "number-list.json"
    as_object.write_text(json.dumps({"16502530000": {"x": 1}, "447911123456": {}}))
    as_array = tmp_path / "list.json"
    as_array.write_text(json.dumps(["+16502530001", 16502530002]))
    assert load_numbers(as_object) == frozenset({"+16502530000", "+447911123456"})
    assert load_numbers(as_array) == frozenset({"+16502530001", "+16502530002"})


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ("+16502530000\nnot-a-number\n", "'not-a-number' is not an E.164 number"),
        ('{"1650": 1,', "invalid JSON at line 1"),
        ("[true]", "'True' is not an E.164 number"),
        ("+0123456789", "is not an E.164 number"),
    ],
)
def test_an_unusable_file_is_a_one_line_settings_error(
    tmp_path: Path, content: str, complaint: str
) -> None:
    data = tmp_path / "bad.txt"
    data.write_text(content, encoding="utf-8")
    with pytest.raises(SettingsError) as refused:
        load_numbers(data)
    assert complaint in str(refused.value) and "\n" not in str(refused.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_numbers(tmp_path / "nowhere.txt")


def test_refresh_picks_up_a_changed_file_and_keeps_the_last_good_one(tmp_path: Path) -> None:
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("+16502530000\n")
    second.write_text("+16502530001\n")
    burners = DisposableList([str(first), str(second)], check_interval=3600)
    assert len(burners) == 2 and "+16502530001" in burners
    assert burners.refresh() is False  # nothing changed on disk

    first.write_text("+16502530009\n")
    os.utime(first, ns=(1, 1))  # a new mtime, whatever the file system's resolution
    assert burners.maybe_refresh() is False  # not due yet: no stat
    assert burners.refresh() is True
    assert burners.numbers == frozenset({"+16502530009", "+16502530001"})

    first.write_text("garbage\n")
    os.utime(first, ns=(2, 2))
    assert burners.refresh() is False
    assert "+16502530009" in burners  # a running sweep keeps the last good contents
    assert burners.last_error is not None and "garbage" in burners.last_error


def test_the_process_wide_list_is_loaded_once_per_file_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "once.txt"
    data.write_text("+16502530000\n")
    monkeypatch.chdir(tmp_path)
    by_absolute = disposable_list([str(data)])
    assert disposable_list(["once.txt"]) is by_absolute  # the same file, however named
    assert "+16502530000" in by_absolute
