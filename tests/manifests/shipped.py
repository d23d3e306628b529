"""The shipped files under ``manifests/``, loaded as they are (never copies).

Paths to the plain YAML, the chart, the examples and the IAM policies, and small loaders that
turn them into Kubernetes objects so the tests can look objects up by kind and name.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from tests.conftest import ROOT

MANIFESTS = ROOT / "manifests"
CHART = MANIFESTS / "helm" / "kbl"
EXAMPLES = MANIFESTS / "examples"
IAM = MANIFESTS / "iam"
CRDS = MANIFESTS / "crds"
#: The plain YAML a user applies, in install order (README.md follows the same order).
INSTALL_ORDER = (
    "crds/datasets.kbl.io.yaml",
    "crds/kbls.kbl.io.yaml",
    "crds/nodeholdings.kbl.io.yaml",
    "crds/placementslices.kbl.io.yaml",
    "namespace.yaml",
    "extender.yaml",
    "scheduler.yaml",
    "controller.yaml",
    "agent.yaml",
)
#: Optional plain YAML (cert-manager's and the webhook's need cert-manager's CRDs; the dashboard is for a Grafana sidecar).
OPTIONAL_FILES = ("agent-tls.yaml", "cert-manager.yaml", "grafana-dashboard.yaml", "webhook.yaml")
NAMESPACE = "kbl-system"

Obj = dict[str, Any]


def load_docs(path: Path) -> list[Obj]:
    """Every non-empty YAML document of a file, each required to be a Kubernetes object."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for doc in docs:
        assert isinstance(doc, dict), f"{path}: a document is not a mapping"
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), f"{path}: a document is not a Kubernetes object"
    return docs


def plain_objects(files: tuple[str, ...] = INSTALL_ORDER) -> list[tuple[str, Obj]]:
    """``(file, object)`` for every object of the plain install files."""
    return [(rel, obj) for rel in files for obj in load_docs(MANIFESTS / rel)]


def example_objects() -> list[tuple[str, Obj]]:
    """``(file, object)`` for every object under ``manifests/examples/``."""
    return [(p.name, obj) for p in sorted(EXAMPLES.glob("*.yaml")) for obj in load_docs(p)]


def find(objects: list[Obj] | list[tuple[str, Obj]], kind: str, name: str) -> Obj:
    """The one object of ``kind`` named ``name`` (fails the test if absent or duplicated)."""
    found = [o for o in _objs(objects) if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind}/{name}, found {len(found)}"
    return found[0]


def of_kind(objects: list[Obj] | list[tuple[str, Obj]], kind: str) -> list[Obj]:
    """All objects of one kind."""
    return [o for o in _objs(objects) if o["kind"] == kind]


def _objs(objects: list[Obj] | list[tuple[str, Obj]]) -> Iterator[Obj]:
    for item in objects:
        yield item[1] if isinstance(item, tuple) else item


def pod_spec(workload: Obj) -> Obj:
    """The pod spec of a Deployment or Job."""
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def generator() -> ModuleType:
    """``manifests/generate.py`` itself, imported from its path."""
    spec = importlib.util.spec_from_file_location("kbl_manifests_generate", MANIFESTS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scheduler_config() -> Obj:
    """The KubeSchedulerConfiguration inside the shipped kbl-scheduler ConfigMap."""
    cm = find(load_docs(MANIFESTS / "scheduler.yaml"), "ConfigMap", "kbl-scheduler-config")
    config: Obj = yaml.safe_load(cm["data"]["config.yaml"])
    return config
