"""The scale benchmark on a tiny cluster: the snapshot it writes, its children and its table."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from benchmarks.model import distinct_triples, make_snapshot
from benchmarks.scale import EXHAUSTIVE_SCHEDULER, KBL_SCHEDULER, child_model, child_serve, parse_sizes, render
from topology.snapshots import load_snapshot


def test_distinct_triples_are_distinct_and_in_range() -> None:
    rows = distinct_triples(np.random.default_rng(1), 5000, 7)
    assert rows.shape == (5000, 3)
    assert rows.min() >= 0
    assert rows.max() < 7
    assert all(len(set(r)) == 3 for r in rows.tolist())


def test_snapshot_is_a_kubectl_list_of_real_nodes_and_placed_datasets(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    make_snapshot(path, nodes=40, replicas_total=3000, datasets=2)
    doc = json.loads(path.read_text())
    assert doc["kind"] == "List"
    assert doc["items"][0]["status"]["images"]  # the real node object, image list and all
    snap = load_snapshot(path)
    assert len(snap.nodes) == 40
    assert snap.rejected == []
    assert sum(int((d.placement.pieces >= 0).sum()) for d in snap.datasets if d.placement is not None) == 3000


def test_children_measure_every_phase(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    make_snapshot(path, nodes=60, replicas_total=900, datasets=2)
    model = child_model(str(path))
    assert model["nodes"] == 60
    assert model["replicas"] == 900
    assert model["graph_edges"] < 900  # aggregate edges, not one per replica
    for key in ("load_s", "graph_s", "index_s", "node_join_ms", "placement_change_ms", "peak_rss_mib"):
        assert model[key] >= 0
    serve = child_serve(str(path))
    assert serve["nodes"] == 60
    table = render([{"snapshot_mib": 0.1, "model": model, "serve": serve}])
    assert "| 60 | 900 |" in table


def test_sizes_default_to_the_issue_table() -> None:
    assert parse_sizes(None, False)[-1] == (100_000, 10_000_000)
    assert parse_sizes(None, True)[0][0] < 1000
    assert parse_sizes("10:30,20:60", False) == ((10, 30), (20, 60))


def test_webhook_variant_of_a_trace_carries_the_narrowing_affinity() -> None:
    from benchmarks.driving import NodeAffinity
    from benchmarks.scale import with_locality
    from benchmarks.traces import TraceSettings, make_trace

    trace = make_trace(TraceSettings().quick())
    required = with_locality(trace, "required", True)
    assert all(a.obj["metadata"]["annotations"]["kbl.io/locality"] == "required" for a in required.arrivals)
    narrowed = [NodeAffinity.of(a.obj).names for a in required.arrivals]
    names = {n.name for n in trace.nodes}
    assert any(narrowed)  # pods that some node qualifies for name those nodes (others: nobody holds it all)
    assert all(found <= names for found in narrowed if found is not None)
    preferred = with_locality(trace, "preferred", True)
    assert all(NodeAffinity.of(a.obj).preferred for a in preferred.arrivals)
    assert {a.pod.scheduler_name for a in preferred.arrivals} == {EXHAUSTIVE_SCHEDULER}  # routed: every holder seen
    plain = with_locality(trace, "preferred", False)
    assert all(NodeAffinity.of(a.obj).required is None for a in plain.arrivals)
    assert {a.pod.scheduler_name for a in plain.arrivals} == {KBL_SCHEDULER}
    mixed = with_locality(trace, "mixed", True)
    readers = [a for a in mixed.arrivals if a.pod.data is not None]
    assert len(readers) == (len(mixed.arrivals) + 1) // 2
    assert all(a.pod.scheduler_name == EXHAUSTIVE_SCHEDULER for a in readers)
    assert all(a.pod.scheduler_name == KBL_SCHEDULER for a in mixed.arrivals if a.pod.data is None)  # adaptive speed


def test_quick_sampling_runs_every_locality_and_configuration_in_ci_time() -> None:
    from benchmarks.scale import render_sampling, sampling_rows

    started = time.perf_counter()
    rows = sampling_rows([60], 40)  # what `kbl bench scale --quick` runs
    assert time.perf_counter() - started < 120
    assert [(r["locality"], r["configuration"]) for r in rows] == [
        (locality, label)
        for locality in ("preferred", "required", "mixed")
        for label in ("100%", "adaptive", "adaptive + webhook", "adaptive + webhook + narrowing")
    ]
    assert all(r["cost_vs_100"] == 1.0 for r in rows if r["configuration"] == "100%")
    assert all(r["scheduled"] + r["pending"] == 40 for r in rows)
    # only the routing configuration routes first-time pods; narrowing routes only replacements
    assert all(r["routed"] == 0 for r in rows if r["configuration"] in ("100%", "adaptive"))
    assert all(r["routed"] == r["deleted"] for r in rows if r["configuration"] == "adaptive + webhook + narrowing")
    assert "| 60 | required | 100% |" in render_sampling(rows)


def test_narrowing_rows_offer_few_names_and_the_targets_are_checked() -> None:
    from benchmarks.scale import NARROWING, ROUTING, sampling_rows, sampling_targets

    rows = sampling_rows([60], 40, localities=("preferred",))
    narrowed = next(r for r in rows if r["configuration"] == NARROWING)
    routed = next(r for r in rows if r["configuration"] == ROUTING)
    assert narrowed["offered_per_data_pod"] < routed["offered_per_data_pod"] == 60  # routing offers every node
    assert narrowed["pending"] == 0
    checks = sampling_targets(rows)
    assert checks  # cost and pending at every size
    assert all(isinstance(ok, bool) for _, ok in checks)
    worse = [dict(r, cost_vs_100=1.5) if r["configuration"] == NARROWING else r for r in rows]
    assert not all(ok for _, ok in sampling_targets(worse))  # a miss is reported as one
