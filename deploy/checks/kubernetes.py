"""deploy/k8s, as `kubectl kustomize` builds it and kubernetes-validate checks it."""

from __future__ import annotations

import base64
import functools
import math
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from deploy.checks.app import INSTALL_HINT, App, Report, env_errors, run_tool
from deploy.checks.commands import check_run, queues_of
from deploy.checks.dockerfile import dockerfile_cmd

K8S_DIR = "deploy/k8s"
K8S_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def kubectl_binary() -> str | None:
    local = Path(sys.executable).parent / "kubectl"
    return str(local) if local.is_file() else shutil.which("kubectl")


@functools.cache
def kustomize_version(kubectl: str) -> str:
    version = subprocess.run(
        [kubectl, "version", "--client"], capture_output=True, text=True, timeout=60
    )
    found = re.search(r"Kustomize Version:\s*(\S+)", version.stdout)
    return found[1] if found else "?"


def kustomize_build(root: Path, report: Report) -> list[dict[str, Any]]:
    kubectl = kubectl_binary()
    if kubectl is None:
        report.fail(f"no kubectl to build {K8S_DIR}: {INSTALL_HINT}")
        return []
    label = f"kubectl kustomize {K8S_DIR} ({kubectl}, kustomize {kustomize_version(kubectl)})"
    report.tools["kustomize"] = label
    result = run_tool([kubectl, "kustomize", str(root / K8S_DIR)], root)
    if not report.check(
        result.returncode == 0,
        f"`{label}` builds",
        f"`kubectl kustomize {K8S_DIR}`: {result.stderr.strip()}",
    ):
        return []
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def validate_schemas(docs: Iterable[Mapping[str, Any]], report: Report) -> bool:
    """Whether every object with a bundled schema is valid against it."""
    try:
        import kubernetes_validate
    except ImportError:
        report.fail(f"kubernetes-validate is not installed: {INSTALL_HINT}")
        return False
    valid = True
    version = kubernetes_validate.latest_version()
    release = kubernetes_validate.version.__version__
    report.tools["schemas"] = f"kubernetes-validate {release} (Kubernetes {version}, strict)"
    for doc in docs:
        what = f"{doc['kind']} {doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(dict(doc), version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            report.note(f"{what}: no bundled schema for {doc['apiVersion']} (cross-checked below)")
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(map(str, exc.path)) or "(top)"
            report.fail(f"{what}: {where}: {exc.message}")
            valid = False
        else:
            report.ok(f"{what}: valid against the Kubernetes {version} schema")
    return valid


def object_data(obj: Mapping[str, Any] | None) -> dict[str, str]:
    """A ConfigMap's or Secret's keys and values (a Secret's ``data`` is base64)."""
    obj = obj or {}
    data = dict(obj.get("data") or {})
    if obj.get("kind") == "Secret":
        data = {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
    return {**data, **(obj.get("stringData") or {})}


def _cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def container_env(
    container: Mapping[str, Any],
    by_kind: Mapping[str, Mapping[str, Any]],
    where: str,
    report: Report,
) -> dict[str, str | None]:
    """The container's environment as the kubelet builds it (None: known only at run
    time), checking that every ConfigMap, Secret and key it names is in the build."""
    env: dict[str, str | None] = {}
    for source in container.get("envFrom") or []:
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        ref = source.get("configMapRef") or source["secretRef"]
        if report.check(
            ref["name"] in by_kind.get(kind, {}) or bool(ref.get("optional")),
            f"{where}: envFrom {kind} {ref['name']}",
            f"{where}: envFrom {kind} {ref['name']} is not in the build",
        ):
            env.update(object_data(by_kind.get(kind, {}).get(ref["name"])))
    for var in container.get("env") or []:
        source = var.get("valueFrom") or {}
        env[var["name"]] = var.get("value")
        ref = source.get("secretKeyRef") or source.get("configMapKeyRef")
        if ref:
            kind = "Secret" if "secretKeyRef" in source else "ConfigMap"
            data = object_data(by_kind.get(kind, {}).get(ref["name"]))
            report.check(
                ref["key"] in data or bool(ref.get("optional")),
                f"{where}: {var['name']} from {kind} {ref['name']}/{ref['key']}",
                f"{where}: {var['name']}: {kind} {ref['name']} has no key {ref['key']}",
            )
            env[var["name"]] = data.get(ref["key"])
        # e.g. limits.cpu: the kubelet gives the quantity over the divisor, rounded up.
        field = source.get("resourceFieldRef") or {}
        bound, _, resource = str(field.get("resource")).partition(".")
        quantity = ((container.get("resources") or {}).get(bound) or {}).get(resource)
        if resource == "cpu" and quantity:
            divisor = _cpu(str(field.get("divisor", "1")))
            env[var["name"]] = str(math.ceil(_cpu(str(quantity)) / divisor))
    return env


def expand(arg: str, env: Mapping[str, str | None]) -> str:
    """$(VAR) as the kubelet expands it (kept as typed when unknown until run time)."""
    return K8S_VAR.sub(lambda m: env.get(m[1]) or m[0], arg)


def check_manifests(root: Path, app: App, report: Report) -> dict[str, list[str]] | None:
    """Returns {Deployment: worker queues}, or None when the build or its schemas fail
    (the cross-checks read what the schemas guarantee)."""
    docs = kustomize_build(root, report)
    if not docs or not validate_schemas(docs, report):
        return None
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    for kind in ("ConfigMap", "Secret"):
        for name, obj in by_kind.get(kind, {}).items():
            errors = env_errors(object_data(obj))
            report.check(
                not errors, f"{kind} {name}: settings", f"{kind} {name}: " + "; ".join(errors)
            )

    queues_by_deployment: dict[str, list[str]] = {}
    #: {Deployment running celery: (Secret, key) of its CXSWEEP_BROKER_URL, or None}
    broker_refs: dict[str, tuple[str, str] | None] = {}
    flower_labels: list[dict[str, str]] = []
    for name, deployment in by_kind.get("Deployment", {}).items():
        template = deployment["spec"]["template"]
        pod = template["spec"]
        security = pod.get("securityContext") or {}
        # The image's USER is numeric so that the kubelet can verify runAsNonRoot.
        report.check(
            security.get("runAsNonRoot") is True and security.get("runAsUser", 1) != 0,
            f"Deployment {name}: pod runs as non-root",
            f"Deployment {name}: pod securityContext lacks runAsNonRoot/runAsUser",
        )
        for container in pod["containers"]:
            where = f"Deployment {name}/{container['name']}"
            env = container_env(container, by_kind, where, report)
            errors = env_errors(env)
            report.check(not errors, f"{where}: environment", f"{where}: " + "; ".join(errors))
            argv = [str(a) for a in [*container.get("command", []), *container.get("args", [])]]
            argv = argv or dockerfile_cmd(root)
            # The kubelet expands $(VAR) from the container's env, and leaves others as typed.
            undefined = [var for var in K8S_VAR.findall(" ".join(argv)) if var not in env]
            report.check(
                not undefined,
                f"{where}: every $(VAR) is defined",
                f"{where}: $({', '.join(undefined)}) is used but not defined in env",
            )
            check_run(where, [expand(a, env) for a in argv], app, report)
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if "exec" in (container.get(probe) or {}):
                    check_run(f"{where} {probe}", container[probe]["exec"]["command"], app, report)
            if argv[:1] != ["celery"]:
                continue
            broker: dict[str, Any] = next(
                (e for e in container.get("env", []) if e["name"] == "CXSWEEP_BROKER_URL"), {}
            )
            ref = (broker.get("valueFrom") or {}).get("secretKeyRef")
            broker_refs[name] = (ref["name"], ref["key"]) if ref else None
            if "worker" in argv:
                queues_by_deployment[name] = queues_of(argv)
            if "flower" in argv:
                flower_labels.append(template["metadata"].get("labels") or {})
            if "beat" in argv and deployment["spec"].get("replicas", 1) > 1:
                report.check(
                    "redbeat.RedBeatScheduler" in argv,
                    f"Deployment {name}: beat replicas behind RedBeat's lock",
                    f"Deployment {name}: several beat replicas without RedBeat would fire "
                    "every schedule more than once",
                )
    for name, service in by_kind.get("Service", {}).items():
        selector = service["spec"].get("selector") or {}
        if any(selector.items() <= labels.items() for labels in flower_labels):
            # Flower's /metrics answers without auth: nothing outside the cluster reaches it.
            kind = service["spec"].get("type", "ClusterIP")
            report.check(
                kind == "ClusterIP",
                f"Service {name}: Flower behind ClusterIP",
                f"Service {name}: Flower exposed as {kind}",
            )

    refs = set(broker_refs.values())
    listing = ", ".join(f"{n}: {r}" for n, r in sorted(broker_refs.items()))
    report.check(
        len(refs) <= 1,
        f"{K8S_DIR}: celery Deployments share one CXSWEEP_BROKER_URL",
        f"{K8S_DIR}: CXSWEEP_BROKER_URL differs between celery Deployments ({listing})",
    )
    broker_ref = next(iter(refs)) if len(refs) == 1 else None
    check_scaled_objects(by_kind, broker_ref, queues_by_deployment, app, report)
    return queues_by_deployment


def check_scaled_objects(
    by_kind: Mapping[str, Mapping[str, Any]],
    broker_ref: tuple[str, str] | None,
    queues_by_deployment: Mapping[str, list[str]],
    app: App,
    report: Report,
) -> None:
    """Each KEDA trigger measures a queue its Deployment consumes, on the workers' broker."""
    # KEDA's kinds have no bundled schema: every field is read as possibly missing.
    secrets, auths = by_kind.get("Secret", {}), by_kind.get("TriggerAuthentication", {})
    scaled = {name: obj.get("spec") or {} for name, obj in by_kind.get("ScaledObject", {}).items()}
    host_refs: dict[str, list[tuple[str, str]]] = {}
    for name, auth in auths.items():
        for ref in (auth.get("spec") or {}).get("secretTargetRef") or []:
            secret, key = str(ref.get("name")), str(ref.get("key"))
            report.check(
                key in object_data(secrets.get(secret)),
                f"TriggerAuthentication {name}: {ref.get('parameter')} from Secret {secret}",
                f"TriggerAuthentication {name}: Secret {secret} has no key {key}",
            )
            if ref.get("parameter") == "host":
                host_refs.setdefault(name, []).append((secret, key))
    redis_dbs = {
        urlsplit(url).path.strip("/") or "0"
        for secret in secrets.values()
        if (url := object_data(secret).get("CXSWEEP_REDIS_URL"))
    }
    for name, spec in scaled.items():
        target = str((spec.get("scaleTargetRef") or {}).get("name"))
        if not report.check(
            target in by_kind.get("Deployment", {}),
            f"ScaledObject {name}: scales Deployment {target}",
            f"ScaledObject {name}: Deployment {target} is not in the build",
        ):
            continue
        consumed = queues_by_deployment.get(target, [])
        for trigger in spec.get("triggers") or []:
            meta, kind = trigger.get("metadata") or {}, trigger.get("type")
            queue = meta.get("queueName") or meta.get("listName")
            if kind in ("rabbitmq", "redis"):
                report.check(
                    queue in app.queues and queue in consumed,
                    f"ScaledObject {name}: queue {queue} is the queue {target} consumes",
                    f"ScaledObject {name}: queue {queue} is not a queue Deployment {target} "
                    f"consumes ({consumed})",
                )
            if kind == "redis":
                report.check(
                    broker_ref is None,
                    f"ScaledObject {name}: Redis list trigger on the Redis broker",
                    f"ScaledObject {name}: a redis trigger measures a Redis list, but the "
                    "broker is CXSWEEP_BROKER_URL (use a rabbitmq trigger)",
                )
                report.check(
                    not redis_dbs or str(meta.get("databaseIndex", "0")) in redis_dbs,
                    f"ScaledObject {name}: databaseIndex is CXSWEEP_REDIS_URL's",
                    f"ScaledObject {name}: databaseIndex {meta.get('databaseIndex')} is not "
                    f"the database of CXSWEEP_REDIS_URL ({redis_dbs})",
                )
            if kind != "rabbitmq":
                continue
            report.check(
                meta.get("mode", "QueueLength") == "QueueLength" and "value" in meta,
                f"ScaledObject {name}: scales on queue length",
                f"ScaledObject {name}: rabbitmq trigger without mode QueueLength and a value",
            )
            auth = str((trigger.get("authenticationRef") or {}).get("name"))
            hosts = host_refs.get(auth, [])
            report.check(
                broker_ref is not None and hosts == [broker_ref],
                f"ScaledObject {name}: KEDA reads the workers' broker {broker_ref}",
                f"ScaledObject {name}: TriggerAuthentication {auth} host {hosts} is not the "
                f"workers' CXSWEEP_BROKER_URL {broker_ref}",
            )
    for name in queues_by_deployment:
        report.check(
            any((s.get("scaleTargetRef") or {}).get("name") == name for s in scaled.values()),
            f"Deployment {name}: autoscaled by a ScaledObject",
            f"Deployment {name}: worker without a ScaledObject",
        )
