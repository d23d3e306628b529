"""Progress a user can see: ``kubectl get datasets`` columns (Ready, Degraded, pieces and bytes
ready/total, ETA) from the status the reconciler writes, the ETA from the bytes-ready rate it
observes, and per-DataSet gauges (in-memory API, simulated agents, worlds.py)."""

from __future__ import annotations

import re
from typing import Any

import yaml

from dataplane.reconciler.planning import human_bytes
from dataplane.reconciler.progress import ProgressMeter, eta_text
from kube.api import DATASETS
from tests.dataplane.reconciler.worlds import T0, World, dataset
from tests.manifests.shipped import CRDS
from topology.datasets import Erasure
from topology.times import parse_time

GIB = 2**30


def columns() -> list[dict[str, Any]]:
    crd = yaml.safe_load((CRDS / "datasets.kbl.io.yaml").read_text())
    out: list[dict[str, Any]] = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    return out


def column(obj: Any, path: str) -> Any:
    """A printer column's JSONPath on an object, as kubectl reads it (fields and ``[?(@.k=="v")]``)."""
    node = obj
    for name, key, value in re.findall(r'\.(\w+)(?:\[\?\(@\.(\w+)=="([^"]*)"\)\])?', path):
        node = node.get(name) if isinstance(node, dict) else None
        if key and isinstance(node, list):
            node = next((item for item in node if isinstance(item, dict) and item.get(key) == value), None)
    return node


def table(obj: dict[str, Any]) -> dict[str, Any]:
    return {c["name"]: column(obj, c["jsonPath"]) for c in columns()}


def test_kubectl_get_shows_ready_degraded_pieces_bytes_and_an_eta_that_tracks_the_observed_rate_until_ready() -> None:
    world = World()
    world.add_dataset(dataset(shards=60))  # 3 replicas of 60 shards of 1 GiB
    reconciler = world.reconciler(eta_sample_s=10.0, eta_smoothing_s=300.0)
    reconciler.reconcile_once()
    seen: list[dict[str, Any]] = []
    etas: set[str] = set()
    for step in range(1, 100):
        world.agent_step(per_step=1)  # 12 agents, one 1 GiB piece each per 20 s: 0.6 GiB/s
        world.now = T0 + 20 * step
        reconciler.reconcile_once()
        row = table(world.get())
        seen.append(row)
        if row["ETA"] is not None:
            etas.add(row["ETA"])
        if row["Ready"] == "True":
            break
    first, last = seen[0], seen[-1]
    assert first["Ready"] == "False"
    assert first["Degraded"] == "False"
    assert last["Ready"] == "True"
    assert last["Pieces"] == "180/180"
    assert last["Bytes"] == f"{human_bytes(180 * GIB)}/{human_bytes(180 * GIB)}" == "180.0Gi/180.0Gi"
    assert last["ETA"] is None  # nothing remains
    status = world.get()["status"]
    assert status["bytes"] == {"ready": 180 * GIB, "total": 180 * GIB}
    ready_bytes = [int(float(r["Bytes"].split("/")[0].rstrip("Gi"))) for r in seen]
    assert ready_bytes == sorted(ready_bytes)
    # The rate is constant: the estimate is right and, being kept while it only wiggles, written once or twice.
    assert 1 <= len(etas) <= 2
    truth = T0 + 20 * len(seen)
    assert all(abs(parse_time(e) - truth) <= 60 + 0.1 * (truth - T0) for e in etas)  # type: ignore[operator]


def test_erasure_bytes_count_a_fragment_as_its_share_of_the_shard() -> None:
    world = World()
    world.add_dataset(dataset(shards=10, redundancy=Erasure(4, 2), failure_domain="host"))
    reconciler = world.reconciler()
    world.settle(reconciler)
    status = world.get()["status"]
    assert status["pieces"] == {"ready": 60, "total": 60}
    assert status["bytes"] == {"ready": 10 * 6 * GIB // 4, "total": 10 * 6 * GIB // 4}  # 1.5x the data


def test_an_eta_that_only_wiggles_is_not_rewritten_and_one_that_moves_is() -> None:
    now = T0
    kept = eta_text(now + 3600, "2027-01-15T08:00:00Z", now)
    assert kept is not None
    written = eta_text(now + 3600, None, now)
    assert written is not None
    assert eta_text(now + 3600 + 300, written, now) == written  # 5 min on 1 h: within 10%
    assert eta_text(now + 3600 + 600, written, now) != written  # 10 min on 1 h: moved
    assert eta_text(now + 30, written, now) != written
    assert eta_text(None, written, now) is None  # unknown: removed


def test_a_stall_drives_the_smoothed_rate_down_and_short_samples_are_not_taken() -> None:
    meter = ProgressMeter(smoothing_s=300.0, sample_s=10.0)
    assert meter.observe("ns/d", 0, 0.0) is None
    assert meter.observe("ns/d", 500, 5.0) is None  # too soon: no sample
    assert meter.observe("ns/d", 1000, 10.0) == 100.0
    rate = 100.0
    for t in range(40, 1300, 30):  # nothing more becomes ready
        got = meter.observe("ns/d", 1000, float(t))
        assert got is not None
        assert got < rate
        rate = got
    assert rate < 2.0


def test_per_dataset_gauges_show_bytes_remaining_and_throughput_and_go_with_the_dataset() -> None:
    world = World()
    world.add_dataset(dataset("a", shards=30))
    world.add_dataset(dataset("b", shards=30))
    reconciler = world.reconciler()
    reconciler.reconcile_once()
    for step in range(1, 4):
        world.agent_step(per_step=1)
        world.now = T0 + 20 * step
        reconciler.reconcile_once()
    registry = reconciler.metrics.registry
    remaining = registry.get_sample_value("kbl_reconciler_dataset_bytes_remaining", {"namespace": "default", "name": "a"})
    status = world.get("a")["status"]["bytes"]
    assert remaining == status["total"] - status["ready"] > 0
    rate = registry.get_sample_value("kbl_reconciler_dataset_bytes_per_second", {"namespace": "default", "name": "a"})
    assert rate is not None
    assert rate > 0
    world.memory.delete(DATASETS, "a", namespace="default")
    reconciler.reconcile_once()
    assert registry.get_sample_value("kbl_reconciler_dataset_bytes_remaining", {"namespace": "default", "name": "a"}) is None
    assert registry.get_sample_value("kbl_reconciler_dataset_bytes_per_second", {"namespace": "default", "name": "a"}) is None
    assert registry.get_sample_value("kbl_reconciler_dataset_bytes_remaining", {"namespace": "default", "name": "b"}) is not None
