"""Where the workers' CPU went: a summary of py-spy's collapsed stacks.

    python bench/_profile.py FILE... [--top N]

FILEs are what ``bench/sweep.py --py-spy DIR`` leaves (``py-spy record --format raw``:
one ``frame;frame;...;leaf count`` line per distinct stack, CPU samples only). Prints the
share of samples

- inside a task's body (``tasks/``) or outside any (Celery and kombu receiving the
  message, acking it, storing the result, counting the chord);
- by the innermost frame that belongs to a known library (a ``socket.send`` under
  redis-py counts for redis-py; ``json`` under cxsweep counts for json);
- by task function, and by leaf function (self time).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter

# Checked from the leaf up; the first frame whose file matches names the sample's owner.
OWNERS = [
    ("redis-py", ("/redis/",)),
    ("requests/urllib3/http.client", ("/requests/", "/urllib3/", "http/client.py")),
    ("json", ("/json/",)),
    ("logging", ("/logging/",)),
    ("prometheus_client", ("/prometheus_client/",)),
    ("phonenumbers", ("/phonenumbers/",)),
    ("cxsweep (project code)", ("/cxsweep/", "/tasks/", "/workers/")),
    ("kombu", ("/kombu/",)),
    ("celery/billiard", ("/celery/", "/billiard/")),
]
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")
TASK_FRAME = re.compile(r"^(?P<func>\w+) \(.*/tasks/\w+\.py(?::\d+)?\)$")


def parse(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rstrip("\n").rpartition(" ")
    return stack.split(";"), int(count)


def owner(frames: list[str]) -> str:
    for frame in reversed(frames):
        match = FRAME.match(frame)
        path = match.group("file") if match else frame
        for name, needles in OWNERS:
            if any(needle in path for needle in needles):
                return name
    return "other (stdlib, interpreter)"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)
    total = 0
    owners: Counter[str] = Counter()
    tasks: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for path in args.files:
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                if not line.strip():
                    continue
                frames, count = parse(line)
                total += count
                owners[owner(frames)] += count
                task = next((m.group("func") for f in frames if (m := TASK_FRAME.match(f))), None)
                tasks[task or "(outside any task: Celery/kombu plumbing)"] += count
                leaves[frames[-1]] += count
    if not total:
        print("no samples")
        return 1
    print(f"{total:,} CPU samples")

    def show(title: str, counter: Counter[str], top: int) -> None:
        print(f"\n{title}")
        for name, count in counter.most_common(top):
            print(f"  {100 * count / total:5.1f}%  {name}")

    show("by owner (innermost known library)", owners, len(OWNERS) + 1)
    show("by outermost task function", tasks, args.top)
    show("by leaf function (self time)", leaves, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
