"""The Grafana dashboard: shipped the way the kube-prometheus-stack sidecar loads it, and every
metric its panels query is one kbl's code exports (names read from the source, not a copy)."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from tests.conftest import ROOT
from tests.manifests.shipped import CHART, MANIFESTS, find, generator, load_docs

DASHBOARD: dict[str, Any] = json.loads((CHART / "dashboards" / "kbl.json").read_text())
#: Suffixes the Prometheus exposition adds to a metric's name (counters, histograms, summaries).
SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def exported_metrics() -> set[str]:
    """Every ``kbl_*`` metric name spelled as a string literal in kbl's packages."""
    names: set[str] = set()
    for package in ("extender", "controller", "dataplane", "kube", "kbl"):
        for path in (ROOT / package).rglob("*.py"):
            names.update(re.findall(r"""["'](kbl_[a-z0-9_]+)["']""", path.read_text()))
    return names


def panels() -> list[dict[str, Any]]:
    return [p for p in DASHBOARD["panels"] if p["type"] != "row"]


def queried(prefix: str) -> dict[str, set[str]]:
    """Metric base name -> titles of the panels querying it, for metrics starting with ``prefix``."""
    out: dict[str, set[str]] = {}
    for panel in panels():
        for target in panel["targets"]:
            for name in re.findall(r"\b(kbl_[a-z0-9_]+)", target["expr"]):
                if name.startswith(prefix):
                    base = next((name.removesuffix(s) for s in SUFFIXES if name.endswith(s)), name)
                    out.setdefault(base, set()).add(panel["title"])
    return out


def _missing(prefix: str) -> dict[str, set[str]]:
    exported = exported_metrics()
    return {name: titles for name, titles in queried(prefix).items() if name not in exported}


def test_every_extender_panel_queries_a_metric_the_extender_exports() -> None:
    assert queried("kbl_extender_"), "no extender panel"
    assert _missing("kbl_extender_") == {}


def test_every_controller_panel_queries_a_metric_the_controller_exports() -> None:
    assert queried("kbl_controller_"), "no controller panel"
    assert _missing("kbl_controller_") == {}


def test_panels_are_well_formed_and_use_the_datasource_variable() -> None:
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    assert DASHBOARD["uid"]
    assert DASHBOARD["title"]
    (variable,) = DASHBOARD["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == ("datasource", "datasource", "prometheus")
    for panel in panels():
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_dashboard_configmap_is_labelled_for_the_grafana_sidecar_in_chart_and_plain_yaml() -> None:
    (configmap,) = load_docs(MANIFESTS / "grafana-dashboard.yaml")
    assert configmap["kind"] == "ConfigMap"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["kbl.json"]) == DASHBOARD
    rendered = generator().render({"grafanaDashboard": {"enabled": True, "namespace": "monitoring", "folder": "kbl"}})
    objects = [d for d in yaml.safe_load_all(rendered["grafana-dashboard.yaml"]) if d]
    moved = find(objects, "ConfigMap", "kbl-grafana-dashboard")
    assert moved["metadata"]["namespace"] == "monitoring"
    assert moved["metadata"]["annotations"]["grafana_folder"] == "kbl"
    assert "grafana-dashboard.yaml" not in generator().render({})  # a values toggle, off by default


def test_the_data_plane_row_shows_bytes_remaining_and_throughput_per_dataset_and_the_agents_hydration() -> None:
    reconciler, agent = queried("kbl_reconciler_"), queried("kbl_agent_")
    assert {"kbl_reconciler_dataset_bytes_remaining", "kbl_reconciler_dataset_bytes_per_second"} <= reconciler.keys()
    assert "kbl_agent_hydrated_bytes" in agent
    assert _missing("kbl_reconciler_") == {}
    assert _missing("kbl_agent_") == {}
    rows = [p["title"] for p in DASHBOARD["panels"] if p["type"] == "row"]
    assert "Data plane" in rows
