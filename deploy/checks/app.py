"""What the deployment files are checked against: the app's queues, the image's
executables, the declared settings; and the report the checks write to."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Present in python:3.11-slim whatever the project installs.
BASE_IMAGE_EXECUTABLES = {"python", "python3", "python3.11", "pip", "sh", "bash", "env"}
INSTALL_HINT = "pip install -e '.[test]'"


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    tools: dict[str, str] = field(default_factory=dict)

    def ok(self, message: str) -> None:
        self.lines.append(f"ok    {message}")

    def fail(self, message: str) -> None:
        self.lines.append(f"FAIL  {message}")
        self.failures.append(message)

    def note(self, message: str) -> None:
        self.lines.append(f"note  {message}")

    def check(self, condition: bool, message: str, failure: str | None = None) -> bool:
        if condition:
            self.ok(message)
        else:
            self.fail(failure or message)
        return condition


def run_tool(argv: list[str], root: Path) -> subprocess.CompletedProcess[str]:
    # As a fresh clone would see it: none of this shell's settings leak into the check.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CXSWEEP_", "FLOWER_"))}
    return subprocess.run(argv, capture_output=True, text=True, cwd=root, env=env, timeout=120)


def image_executables(project: str = "cxsweep") -> set[str]:
    """Console scripts that `pip install .` puts on PATH: the project's and its
    dependencies' (transitively, as installed here), plus the base image's."""
    found, seen, todo = set(BASE_IMAGE_EXECUTABLES), set(), [project]
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        found.update(ep.name for ep in dist.entry_points if ep.group == "console_scripts")
        # Extras ("; extra == 'test'") are not installed by `pip install .`.
        todo += [
            re.split(r"[\s\[<>=!~;(]", req, maxsplit=1)[0]
            for req in dist.requires or ()
            if "extra ==" not in req
        ]
    return found


@dataclass
class App:
    """What the deployment files are checked against."""

    queues: set[str]
    executables: set[str]


def load_app() -> App:
    from workers import config

    return App({queue.name for queue in config.task_queues}, image_executables())


def env_errors(env: Mapping[str, str | None]) -> list[str]:
    """Variables that are no setting (a typo is silently ignored by the app), and the
    app's own verdict on the values of those that are."""
    from flower.options import options as flower_options

    from cxsweep import settings
    from cxsweep.errors import SettingsError

    declared = {settings.variable(f.name) for f in dataclasses.fields(settings.Settings)}
    declared.add(f"{settings.PREFIX}ENV_FILE")
    errors = [
        f"{name} is not a setting of cxsweep.settings"
        for name in env
        if name.startswith(settings.PREFIX) and name not in declared
    ]
    errors += [
        f"{name} is not a Flower option"
        for name in env
        if name.startswith("FLOWER_") and name[len("FLOWER_") :].lower() not in flower_options
    ]
    values = {k: v for k, v in env.items() if k in declared and v is not None}
    try:
        settings.load_settings({**values, "CXSWEEP_ENV_FILE": os.devnull})
    except SettingsError as exc:
        errors.append(str(exc))
    return errors
