"""The deployment files start the processes this code declares.

No container engine or cluster runs here, so these tests check what would
break first when the code moves on: every llmobs command line parses, every
LLMOBS_* variable and config key is a setting of the process that gets it,
the settings load and validate, and the addresses, ports and volumes the
files wire together agree with those settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from llmobs import settings
from llmobs.cli import COMMANDS, build_parser
from sinks.settings import parse_address

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "infra" / "deploy"
K8S = DEPLOY / "k8s"
IMAGE = "llm-observatory"
# Variables every process reads besides its settings.
PROCESS_ENV = {"LLMOBS_CONFIG", "LLMOBS_LOG_LEVEL"}
# Stand-ins for the values operators put in the llmobs-secrets Secret.
SECRET_VALUES = {
    "database_url": "postgresql://llmobs:secret@db.example:5432/llmobs",
    "redis_url": "redis://redis.example:6379/0",
    "s3_access_key_id": "AKIAEXAMPLE",
    "s3_secret_access_key": "example-secret",
    "tempo_auth_token": "example-token",
}


@dataclasses.dataclass
class Process:
    """One llmobs process as a deployment file starts it."""

    where: str
    argv: list[str]
    env: dict[str, str]
    ports: list[int]
    mounts: list[str]


def loaded_settings(
    process: Process,
    monkeypatch: pytest.MonkeyPatch,
    *,
    config: Path | None = None,
    shared_env: bool = False,
) -> dict[str, Any]:
    """Every settings object of ``process``, loaded as the process would.

    Each LLMOBS_* variable must be a setting of the process, or with
    ``shared_env`` (one environment for all processes) of some process.
    """
    for module_name, _ in COMMANDS.values():
        importlib.import_module(module_name)
    parser = build_parser(process.argv[0])
    try:
        args = parser.parse_args(process.argv)
    except SystemExit:
        pytest.fail(f"{process.where}: llmobs {' '.join(process.argv)} does not parse")
    known = _settings_classes(args)
    names = {
        env
        for cls in (settings._REGISTRY if shared_env else known)
        for env in _env_names(cls)
    }
    unknown = sorted(set(process.env) - names - PROCESS_ENV)
    assert not unknown, f"{process.where}: {unknown} are no settings of the process"
    for name in list(_environ()):
        monkeypatch.delenv(name)
    for name, value in process.env.items():
        monkeypatch.setenv(name, value)
    if config is not None:
        monkeypatch.setenv(settings.CONFIG_ENV, str(config))
    return {cls.__name__: settings.load(cls, args) for cls in known}


def _settings_classes(args: argparse.Namespace) -> list[type]:
    dests = set(vars(args))
    registry: list[type] = settings._REGISTRY
    return [
        cls
        for cls in registry
        if all(field.name in dests for field in dataclasses.fields(cls))
    ]


def _env_names(cls: type) -> list[str]:
    return [settings.env_name(field.name) for field in dataclasses.fields(cls)]


def _environ() -> Iterator[str]:
    return (name for name in os.environ if name.startswith(settings.ENV_PREFIX))


def values_named(loaded: dict[str, Any], suffix: str) -> dict[str, Any]:
    """Setting name -> value, of every setting whose name ends with ``suffix``."""
    found: dict[str, Any] = {}
    for obj in loaded.values():
        for field in dataclasses.fields(obj):
            if field.name.endswith(suffix):
                found[field.name] = getattr(obj, field.name)
    return found


def listeners(loaded: dict[str, Any]) -> set[tuple[str, int]]:
    """(host, port) of every endpoint the process serves."""
    found = set()
    for obj in loaded.values():
        for field in dataclasses.fields(obj):
            value = getattr(obj, field.name)
            if field.name.endswith("_port") and value:
                host = getattr(obj, field.name.removesuffix("_port") + "_host")
                found.add((host, value))
            elif field.name.endswith("_address") and value:
                found.add(parse_address(field.name, value))
    return found


def check_listeners(process: Process, loaded: dict[str, Any]) -> None:
    """Published ports are served by the process, on every interface."""
    served = listeners(loaded)
    for port in process.ports:
        assert ("0.0.0.0", port) in served, (
            f"{process.where}: publishes {port}, serves {sorted(served)}"
        )


def check_state_on_volume(process: Process, loaded: dict[str, Any]) -> None:
    """Local state directories lie on a volume, so they outlive the container."""
    for name, path in values_named(loaded, "data_dir").items():
        assert any(Path(path).is_relative_to(m) for m in process.mounts), (
            f"{process.where}: {name} {path} is on no volume ({process.mounts})"
        )


def addresses(loaded: dict[str, Any]) -> dict[str, str]:
    """Setting name -> host of every service address the process connects to."""
    hosts: dict[str, str] = {}
    for name, value in values_named(loaded, "kafka_bootstrap").items():
        hosts[name] = value.split(",")[0].rsplit(":", 1)[0]
    for suffix in ("database_url", "redis_url", "otlp_endpoint", "s3_endpoint_url"):
        for name, value in values_named(loaded, suffix).items():
            if value:
                hosts[name] = urlsplit(value).hostname or ""
    return hosts


# -- Docker Compose ----------------------------------------------------------


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def compose_processes() -> list[Process]:
    found = []
    for name, service in compose()["services"].items():
        if not service.get("image", "").startswith(IMAGE + ":"):
            continue
        found.append(
            Process(
                where=f"compose service {name}",
                argv=[str(a) for a in service["command"]],
                env={k: str(v) for k, v in service.get("environment", {}).items()},
                ports=[int(p.rsplit(":", 1)[1]) for p in service.get("ports", [])],
                mounts=[v.split(":")[1] for v in service.get("volumes", [])],
            )
        )
    return found


def test_compose_runs_every_long_running_process() -> None:
    started = {p.argv[0] for p in compose_processes()}
    stack = (REPO / "infra" / "stack.sh").read_text()
    local = re.search(r"^PROCESSES=\((.*)\)$", stack, re.M)
    assert local is not None
    assert set(local.group(1).split()) | {"topics", "migrate"} <= started


@pytest.mark.parametrize("process", compose_processes(), ids=lambda p: p.where)
def test_compose_processes_load_their_settings(
    process: Process, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = loaded_settings(process, monkeypatch, shared_env=True)

    check_listeners(process, loaded)
    check_state_on_volume(process, loaded)
    services = set(compose()["services"])
    for name, host in addresses(loaded).items():
        assert host in services, f"{process.where}: {name} points at {host!r}"


def test_compose_references_resolve() -> None:
    data = compose()
    services = data["services"]
    for name, service in services.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: unpinned"
        for needed in service.get("depends_on", {}):
            assert needed in services, f"{name} depends on unknown {needed}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} is missing"
            else:
                assert source in data["volumes"], f"{name}: volume {source} undeclared"


# -- Kubernetes --------------------------------------------------------------


def kustomization() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return data


def k8s_objects() -> list[dict[str, Any]]:
    objects = []
    for name in kustomization()["resources"]:
        objects.extend(d for d in yaml.safe_load_all((K8S / name).read_text()) if d)
    return objects


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    template = obj.get("spec", {}).get("template")
    return template["spec"] if template else None


def k8s_processes() -> list[tuple[Process, dict[str, Any]]]:
    found = []
    for obj in k8s_objects():
        spec = pod_spec(obj)
        if spec is None:
            continue
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        claims = {
            c["metadata"]["name"] for c in obj["spec"].get("volumeClaimTemplates", [])
        }
        for container in spec.get("initContainers", []) + spec["containers"]:
            if container["image"] != IMAGE:
                continue
            mounts = [
                m["mountPath"]
                for m in container.get("volumeMounts", [])
                if m["name"] in volumes or m["name"] in claims
            ]
            process = Process(
                where=f"{obj['kind']} {obj['metadata']['name']}/{container['name']}",
                argv=container["args"],
                env={e["name"]: _k8s_value(e) for e in container.get("env", [])},
                ports=[p["containerPort"] for p in container.get("ports", [])],
                mounts=mounts,
            )
            found.append((process, container))
    return found


def _k8s_value(env: dict[str, Any]) -> str:
    if "value" in env:
        return str(env["value"])
    ref = env["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "llmobs-secrets", f"{env['name']}: unknown Secret"
    return SECRET_VALUES[ref["key"]]


@pytest.mark.parametrize(
    ("process", "container"),
    [pytest.param(p, c, id=p.where) for p, c in k8s_processes()],
)
def test_k8s_processes_load_their_settings(
    process: Process, container: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = Path(process.env.pop(settings.CONFIG_ENV))
    assert config_path.parent.as_posix() in process.mounts, (
        f"{process.where}: config {config_path} is not mounted"
    )
    generated = kustomization()["configMapGenerator"][0]["files"]
    assert config_path.name in generated

    loaded = loaded_settings(process, monkeypatch, config=K8S / config_path.name)

    check_listeners(process, loaded)
    check_state_on_volume(process, loaded)
    names = {p["name"] for p in container.get("ports", [])}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if probe in container:
            assert container[probe]["httpGet"]["port"] in names, process.where


# The fields of a container and of a probe these manifests may use; a key
# indented one level off lands in the wrong one and is dropped or refused.
CONTAINER_FIELDS = {
    "name",
    "image",
    "args",
    "env",
    "ports",
    "startupProbe",
    "readinessProbe",
    "livenessProbe",
    "resources",
    "securityContext",
    "volumeMounts",
}
PROBE_FIELDS = {
    "httpGet",
    "periodSeconds",
    "failureThreshold",
    "initialDelaySeconds",
    "timeoutSeconds",
}


def test_k8s_containers_hold_only_container_fields() -> None:
    for process, container in k8s_processes():
        assert set(container) <= CONTAINER_FIELDS, process.where
        assert "resources" in container, f"{process.where}: no requests or limits"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert set(container.get(probe, {})) <= PROBE_FIELDS, (
                f"{process.where}: {probe} has {sorted(container[probe])}"
            )


def test_k8s_scrape_annotations_name_a_served_port() -> None:
    for obj in k8s_objects():
        spec = pod_spec(obj)
        if spec is None:
            continue
        annotations = obj["spec"]["template"]["metadata"].get("annotations", {})
        if "prometheus.io/port" not in annotations:
            continue
        ports = {p["containerPort"] for c in spec["containers"] for p in c["ports"]}
        assert int(annotations["prometheus.io/port"]) in ports, obj["metadata"]


def test_k8s_secret_keys_are_the_documented_ones() -> None:
    instructions = (K8S / "kustomization.yaml").read_text()
    for process, container in k8s_processes():
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref and not ref.get("optional"):
                assert f"{ref['key']}=" in instructions, (
                    f"{process.where}: Secret key {ref['key']} is not in the "
                    "set-up instructions"
                )


def test_k8s_services_reach_their_pods() -> None:
    objects = k8s_objects()
    for service in (o for o in objects if o["kind"] == "Service"):
        selector = service["spec"]["selector"]
        pods = [
            pod_spec(o)
            for o in objects
            if pod_spec(o) is not None
            and selector.items() <= o["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert pods, f"Service {service['metadata']['name']} selects no pods"
        ports = {
            p["name"]
            for spec in pods
            if spec is not None
            for c in spec["containers"]
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, service["metadata"]["name"]


def test_k8s_image_runs_as_the_dockerfiles_user() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    user = re.search(r"^USER (\d+)$", dockerfile, re.M)
    assert user is not None
    for obj in k8s_objects():
        spec = pod_spec(obj)
        if spec is not None:
            assert spec["securityContext"]["runAsUser"] == int(user.group(1))


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_builds_the_manifests() -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(K8S)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert built.returncode == 0, built.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(built.stdout) if d]
    assert kinds.count("ConfigMap") == 1
    assert {"Job", "Deployment", "StatefulSet", "Service"} <= set(kinds)


# -- The image ---------------------------------------------------------------


def test_the_image_holds_every_package() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = [
        name.rstrip("*")
        for name in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()

    for package in packages:
        assert f"COPY {package} {package}" in dockerfile, package
        assert f"!{package}" in ignore, package
