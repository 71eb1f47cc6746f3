"""The deployment files pass deploy/check.py, and the check does catch what it claims to."""

from __future__ import annotations

import importlib.util
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


def test_deployment_files_pass_static_checks() -> None:
    report = check.run_checks(ROOT)
    print("\n".join(report.lines))
    for kind, tool in report.tools.items():
        print(f"tool  {kind}: {tool}")
    assert report.failures == []
    assert "kustomize" in report.tools


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
    # The two things other work adds (README, the RedBeat dependency) are given here so
    # that each test sees only the fault it plants.
    (tmp_path / "README.md").write_text("cxsweep\n")
    pyproject = (ROOT / "pyproject.toml").read_text()
    if "celery-redbeat" not in pyproject:
        pyproject = pyproject.replace(
            "dependencies = [\n", 'dependencies = [\n    "celery-redbeat",\n', 1
        )
    (tmp_path / "pyproject.toml").write_text(pyproject)
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
            "module workerz is not importable",
        ),
        (
            "docker-compose.yml",
            '"-P", "threads"',
            '"--pool-size", "threads"',
            "unknown option --pool-size",
        ),
        (
            "docker-compose.yml",
            "./deploy/prometheus.yml",
            "./deploy/prom.yml",
            "bind mount ./deploy/prom.yml",
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
            "      - rabbitmq-data:/var/lib/rabbitmq\n",
            "",
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
    ],
)
def test_check_catches(sandbox: Path, file: str, old: str, new: str, expected: str) -> None:
    _edit(sandbox / file, old, new)
    failures = check.run_checks(sandbox).failures
    assert any(expected in failure for failure in failures), failures


def test_structural_build_without_binaries(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check, "kustomize_binary", lambda: None)
    report = check.run_checks(sandbox)
    assert report.tools["kustomize"].startswith("structural build")
    assert report.failures == []
    _edit(sandbox / "deploy/k8s/base/kustomization.yaml", "- beat.yaml", "- beats.yaml")
    failures = check.run_checks(sandbox).failures
    assert any("resource beats.yaml does not exist" in f for f in failures), failures
