"""deploy/Dockerfile: what it copies and runs, and as whom."""

from __future__ import annotations

import fnmatch
import json
import shlex
import tomllib
from pathlib import Path

from deploy.checks.app import App, Report, env_errors
from deploy.checks.commands import check_run

DOCKERFILE = "deploy/Dockerfile"


def dockerfile_instructions(root: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, argument) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    buffer = ""
    for line in (root / DOCKERFILE).read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        buffer += stripped.removesuffix("\\") + " "
        if not stripped.endswith("\\"):
            instruction, _, argument = buffer.strip().partition(" ")
            out.append((instruction.upper(), argument.strip()))
            buffer = ""
    return out


def _exec_form(argument: str) -> list[str]:
    argument = argument.strip()
    return (
        [str(a) for a in json.loads(argument)]
        if argument.startswith("[")
        else ["sh", "-c", argument]
    )


def dockerfile_cmd(root: Path) -> list[str]:
    cmds = [arg for ins, arg in dockerfile_instructions(root) if ins == "CMD"]
    return _exec_form(cmds[-1]) if cmds else []


def dockerignore_allows(root: Path, relative: str) -> bool:
    """Whether `.dockerignore` lets a path into the build context (last match wins; a
    pattern matching a parent directory matches everything in it)."""
    path = root / ".dockerignore"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    parts = Path(relative).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    allowed = True
    for line in (s.strip() for s in lines):
        if line and not line.startswith("#"):
            pattern = line.lstrip("!").rstrip("/")
            if pattern == "**" or any(fnmatch.fnmatch(p, pattern) for p in prefixes):
                allowed = line.startswith("!")
    return allowed


def check_dockerfile(root: Path, app: App, report: Report) -> None:
    if not (root / DOCKERFILE).is_file():
        report.fail(f"{DOCKERFILE}: missing")
        return
    instructions = dockerfile_instructions(root)
    final = instructions[max(i for i, (ins, _) in enumerate(instructions) if ins == "FROM") :]
    user = next((arg for ins, arg in reversed(final) if ins == "USER"), None)
    report.check(
        user is not None and user.split(":")[0] not in ("root", "0"),
        f"{DOCKERFILE}: runs as non-root user {user}",
        f"{DOCKERFILE}: final stage runs as root",
    )
    health = next((arg for ins, arg in reversed(final) if ins == "HEALTHCHECK"), "")
    _, has_cmd, health_cmd = f" {health}".partition(" CMD ")
    check_run(f"{DOCKERFILE} HEALTHCHECK", _exec_form(health_cmd) if has_cmd else [], app, report)
    check_run(f"{DOCKERFILE} CMD", dockerfile_cmd(root), app, report)
    copied: set[str] = set()
    for ins, arg in instructions:
        if ins != "COPY" or "--from=" in arg:
            continue
        words = _exec_form(arg) if arg.startswith("[") else arg.split()
        for source in [w for w in words if not w.startswith("--")][:-1]:
            copied.add(source.rstrip("/"))
            exists = (root / source).exists()
            report.check(
                exists and dockerignore_allows(root, source.rstrip("/")),
                f"{DOCKERFILE}: COPY {source} is in the build context",
                f"{DOCKERFILE}: COPY {source}: "
                + ("missing from the repository" if not exists else "excluded by .dockerignore"),
            )
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    found = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in sorted({p.split(".")[0].rstrip("*") for p in found}):
        report.check(
            package in copied,
            f"{DOCKERFILE}: copies package {package}",
            f"{DOCKERFILE}: does not COPY package {package}: `pip install .` in the image "
            "would leave it out",
        )
    env: dict[str, str | None] = {}
    for words in (shlex.split(arg) for ins, arg in final if ins == "ENV"):
        # ENV KEY=value ... or the legacy ENV KEY value
        pairs = [w.partition("=")[::2] for w in words] if "=" in words[0] else [words[:2]]
        env.update((key, value) for key, value in pairs)
    errors = env_errors(env)
    report.check(
        not errors, f"{DOCKERFILE}: ENV settings", f"{DOCKERFILE}: ENV: " + "; ".join(errors)
    )
