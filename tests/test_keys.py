"""Every Redis key and counter name comes from cxsweep/runs/keys.py: no other module of
the service spells a ``cxsweep:`` key, and the names written by one module and parsed
back by another are the same constant."""

from __future__ import annotations

import re
from pathlib import Path

import redis

from cxsweep.runs import keys
from cxsweep.runs.latency import RequestTally
from cxsweep.runs.store import RunStore
from cxsweep.runs.sweeps import SweepStore

ROOT = Path(__file__).resolve().parent.parent
# The service's code: the domain, the tasks, the workers, the operator edge, the benches.
PACKAGES = ("cxsweep", "tasks", "workers", "console", "bench", "devtools")
# A Redis key of ours as a string literal: "cxsweep:..." (an f-string too), or a prefix
# glued to a key suffix ("{prefix}:meta"). "cxsweep: " followed by a space is a message.
KEY_LITERAL = re.compile(r"""(?:["']cxsweep:[^\s"']|prefix\}:)""")
COUNTER_PREFIX_LITERAL = re.compile(r"""["'](?:calls|status|reason|region|type):["'{]""")


def service_modules() -> list[Path]:
    found = [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]
    assert len(found) > 40, "the source tree was not found"
    return [p for p in found if p != ROOT / "cxsweep" / "runs" / "keys.py"]


def test_no_module_but_keys_spells_a_redis_key() -> None:
    offending = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in service_modules()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if KEY_LITERAL.search(line) or COUNTER_PREFIX_LITERAL.search(line)
    ]
    assert offending == []


def test_the_grep_finds_what_it_looks_for() -> None:
    """The patterns above catch the spellings they are meant to (else the test above
    passes on any tree)."""
    for line in (
        'key = f"cxsweep:run:{run_id}:meta"',
        "RUN_INDEX = 'cxsweep:runs'",
        'return f"{self.prefix}:meta"',
        'counts[f"reason:{why}"] += 1',
        'if k.startswith("status:")',
    ):
        assert KEY_LITERAL.search(line) or COUNTER_PREFIX_LITERAL.search(line), line
    assert not KEY_LITERAL.search('print(f"cxsweep: {exc}", file=sys.stderr)')


def test_a_run_keeps_its_keys_under_its_own_prefix() -> None:
    run = keys.RunKeys("20260101T000000Z-abcd1234")
    names = [value for value in vars(run).values() if isinstance(value, str)]
    names += [run.claim("fetch"), run.once("begin"), run.done("page", 3), run.page(3)]
    names += [run.page_read(3), run.recheck_pass("verify"), run.task_failures("t-1")]
    assert all(name.startswith("cxsweep:run:20260101T000000Z-abcd1234") for name in names)
    assert len(set(names)) == len(names), "two of a run's keys collide"
    assert not keys.RunKeys("a").meta.startswith(keys.RunKeys("a:b").prefix)
    assert run.done("duplicates") == run.duplicates_done
    sweep = keys.SweepKeys("s1")
    assert {sweep.meta, sweep.pending, sweep.active}.isdisjoint(vars(run).values())


def test_the_stores_use_the_keys_module(redis_client: redis.Redis) -> None:
    store, run = RunStore(redis_client, "r1"), keys.RunKeys("r1")
    assert (store.meta_key, store.counts_key) == (run.meta, run.counts)
    assert SweepStore(redis_client, "s1").meta_key == keys.SweepKeys("s1").meta


def test_request_counters_are_read_back_under_the_prefixes_they_were_written() -> None:
    tally = RequestTally()
    tally.observe("list_page", 200, 0.01)
    tally.observe("list_page", 429, 0.02)
    tally.observe("delete", None, 0.5)
    counts = dict(tally.counts)
    assert keys.by_prefix(counts, keys.CALLS_PREFIX) == {"list_page": 2, "delete": 1}
    assert keys.by_prefix(counts, keys.STATUS_PREFIX) == {"200": 1, "429": 1, "error": 1}
    assert counts[keys.API_REQUESTS] == 3


def test_the_lua_moves_only_counters_named_in_keys() -> None:
    from cxsweep.runs import scripts

    lua = "\n".join(v for k, v in vars(scripts).items() if k.isupper() and isinstance(v, str))
    # Moved directly, or through a script's own helper (``move('stale', 1)``).
    moved = set(re.findall(r"HINCRBY', KEYS\[\d\], '([a-z_0-9]+)'", lua))
    moved |= set(re.findall(r"move\('([a-z_0-9]+)'", lua))
    assert moved >= {keys.TO_REMOVE, keys.TO_UPDATE, keys.STALE, keys.CHUNKS_DONE}
    named = {v for k, v in vars(keys).items() if k.isupper() and isinstance(v, str)}
    assert moved <= named, moved - named
    assert f"'{keys.STALE_PREFIX}' .." in lua
