"""Workload traces for the locality benchmark: seeded, generated, and the same for every policy.

A :class:`Trace` is a cluster and a stream of pods:

* **Topology**: ``zones x racks x hosts`` nodes made by :func:`topology.examples.make_cluster_nodes`
  from the real EKS node object (``hpc7g.16xlarge``: 63,770 mCPU, ~121 GiB allocatable).
* **Datasets** of different sizes and redundancy (see :data:`DATASETS`): 3x replicas on hosts,
  2x replicas across zones, erasure 4+2 across racks, erasure 6+3 across hosts, each placed by the
  placement engine (:func:`placement.place`) and recorded in ``status.placement``.
* **KBLs**, one per dataset, whose pods read a subset of the dataset's shards. Shards are drawn
  without replacement with Zipf-like weights ``1 / rank ** zipf_s`` over a seeded random ranking
  of the shards, so a few *hot* shards are read by many pods.
* **Arrivals in bursts**: each KBL submits bursts of ``burst_pods`` pods; burst start times form a
  Poisson process over ``span_s``; pods of one burst arrive within ``burst_spread_s``. Run
  times are log-normal around ``mean_duration_s``.
* **Load**: every pod requests ``pod_cpu_m`` and ``pod_memory_b`` (one shape, so that capacity
  is counted in pod slots: 7 per node by default), and the arrival rate is set so the expected
  number of running pods is ``load`` times the cluster's slots. With hot shards, the nodes
  holding them fill up first: capacity on the best node is often gone.

Everything derives from ``seed``: the same settings give the same trace, byte for byte.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from benchmarks.driving import PodArrival
from topology import labels
from topology.clusters import Cluster
from topology.datasets import DataSet, DataSetSpec, Erasure, Redundancy, Replicas, ShardPlacement, dataset_object
from topology.examples import make_cluster_nodes, make_pod
from topology.nodes import Node
from topology.pods import Pod
from topology.shards import format_shards

GiB = 2**30

#: A placer: ``(nodes, spec, seed) -> ShardPlacement``.
Placer = Callable[[Sequence[Node], DataSetSpec, int], ShardPlacement]


@dataclass(frozen=True, slots=True)
class DataSetShape:
    """One dataset of a trace: name, shard count and size, redundancy, failure domain, and how
    many shards each of its pods reads (``reads`` = (min, max))."""

    name: str
    shards: int
    shard_gib: float
    redundancy: Redundancy
    failure_domain: str
    reads: tuple[int, int]


#: The trace's datasets: different sizes, replicas and erasure coding, host/rack/zone domains.
DATASETS: tuple[DataSetShape, ...] = (
    DataSetShape("images", 96, 4.0, Replicas(3), "host", (2, 6)),
    DataSetShape("genomes", 48, 16.0, Replicas(2), "zone", (1, 3)),
    DataSetShape("logs", 64, 6.0, Erasure(4, 2), "rack", (2, 5)),
    DataSetShape("features", 128, 2.0, Erasure(6, 3), "host", (4, 10)),
)


@dataclass(frozen=True, slots=True)
class TraceSettings:
    """Knobs of a generated trace (units in the names)."""

    zones: int = 3
    racks_per_zone: int = 4
    hosts_per_rack: int = 5
    datasets: tuple[DataSetShape, ...] = DATASETS
    pods: int = 900
    burst_pods: int = 30
    burst_spread_s: float = 20.0
    mean_duration_s: float = 600.0
    duration_sigma: float = 0.5
    load: float = 0.7
    zipf_s: float = 1.1
    pod_cpu_m: int = 9000
    pod_memory_b: int = 16 * GiB
    namespace: str = "bench"
    seed: int = 0

    def quick(self) -> TraceSettings:
        """A smaller trace for smoke runs and the quick demo (same shape, fewer pods and nodes)."""
        return replace(self, racks_per_zone=2, hosts_per_rack=4, pods=240, burst_pods=20)


@dataclass(slots=True)
class Trace:
    """A generated workload: node objects, placed datasets, the cluster model, the pods."""

    settings: TraceSettings
    node_objects: list[dict[str, Any]]
    nodes: list[Node]
    datasets: list[DataSet]
    arrivals: list[PodArrival]
    cluster: Cluster = field(repr=False)

    @property
    def slots(self) -> int:
        """Pods of the trace's shape that fit on the cluster at once."""
        return sum(pod_slots(n, self.settings) for n in self.nodes)

    def dataset_objects(self) -> list[dict[str, Any]]:
        return [d.to_object() for d in self.datasets]


def pod_slots(node: Node, settings: TraceSettings) -> int:
    """How many of the trace's pods fit on an empty ``node`` (the binding resource decides)."""
    alloc = node.allocatable
    return max(0, min(alloc.cpu_m // settings.pod_cpu_m, alloc.memory_b // settings.pod_memory_b, alloc.pods))


def engine_placer(nodes: Sequence[Node], spec: DataSetSpec, seed: int) -> ShardPlacement:
    """Place with kbl's placement engine (:func:`placement.place`)."""
    from placement import place

    return place(nodes, spec, seed=seed).placement


def pod_object(
    name: str, namespace: str, uid: str, *, kbl: str, dataset: str, shards: Sequence[int], cpu_m: int, memory_b: int
) -> dict[str, Any]:
    """A Pod object as the API server would serve it, with the kbl annotations."""
    return make_pod(
        name,
        namespace=namespace,
        uid=uid,
        kbl=kbl,
        dataset=dataset,
        shards=format_shards(list(shards)),
        locality="preferred",
        cpu=f"{cpu_m}m",
        memory=str(memory_b),
        image="public.ecr.aws/docker/library/python:3.12-slim",
        container="reader",
        pod_labels={"app": kbl, labels.POD_KBL: kbl},
        restart_policy="Never",
        created=None,
    )


def _zipf_sample(rng: random.Random, weights: list[float], k: int) -> list[int]:
    """``k`` distinct indexes drawn without replacement with probability proportional to ``weights``."""
    chosen: set[int] = set()
    pool = list(range(len(weights)))
    w = list(weights)
    while len(chosen) < k:
        (pick,) = rng.choices(pool, weights=w)
        chosen.add(pick)
        w[pool.index(pick)] = 0.0
    return sorted(chosen)


def make_trace(settings: TraceSettings | None = None, *, placer: Placer = engine_placer, arrivals_seed: int | None = None) -> Trace:
    """Generate a trace (deterministic for ``settings.seed``); see the module docstring.

    Parameters
    ----------
    settings:
        The trace's knobs.
    placer:
        How datasets are placed; kbl's placement engine by default.
    arrivals_seed:
        When set, the bursts (times, datasets, shards, run times) are drawn from this seed
        instead of continuing ``settings.seed``'s stream: the same cluster, placement and shard
        popularity (the workload's distribution), another draw of it. ``None``: the trace of
        ``settings.seed``, byte for byte as before.

    Returns
    -------
    Trace
    """
    s = settings or TraceSettings()
    rng = random.Random(s.seed)
    node_objects = make_cluster_nodes(zones=s.zones, racks_per_zone=s.racks_per_zone, hosts_per_rack=s.hosts_per_rack, seed=s.seed)
    nodes = [Node.from_object(o) for o in node_objects]
    cluster = Cluster()
    for node in nodes:
        cluster.set_node(node)
    datasets: list[DataSet] = []
    for i, shape in enumerate(s.datasets):
        obj = dataset_object(
            shape.name,
            namespace=s.namespace,
            shards=shape.shards,
            shard_size=int(shape.shard_gib * GiB),
            redundancy=shape.redundancy,
            failure_domain=shape.failure_domain,
        )
        spec = DataSet.from_object(obj).spec
        dataset = DataSet(spec, placer(nodes, spec, s.seed + i))
        datasets.append(dataset)
        cluster.set_dataset(dataset)
    slots = sum(pod_slots(n, s) for n in nodes)
    # Expected running pods = arrival rate x mean run time = load x slots.
    mean_run = s.mean_duration_s * math.exp(s.duration_sigma**2 / 2)
    span_s = s.pods * mean_run / max(1.0, s.load * slots)
    popularity: list[list[float]] = []
    for shape in s.datasets:
        ranking = list(range(shape.shards))
        rng.shuffle(ranking)
        weights = [0.0] * shape.shards
        for rank, shard in enumerate(ranking):
            weights[shard] = 1.0 / (rank + 1) ** s.zipf_s
        popularity.append(weights)
    if arrivals_seed is not None:
        rng = random.Random(arrivals_seed)
    arrivals: list[PodArrival] = []
    n_bursts = max(1, -(-s.pods // s.burst_pods))
    starts = sorted(rng.uniform(0.0, span_s) for _ in range(n_bursts))
    count = 0
    for b, start in enumerate(starts):
        d = rng.randrange(len(s.datasets))
        shape = s.datasets[d]
        for _ in range(min(s.burst_pods, s.pods - count)):
            k = rng.randint(*shape.reads)
            shards = _zipf_sample(rng, popularity[d], min(k, shape.shards))
            name = f"{shape.name}-b{b:03d}-{count:05d}"
            obj = pod_object(
                name,
                s.namespace,
                f"uid-{s.seed}-{count:05d}",
                kbl=f"kbl-{shape.name}",
                dataset=shape.name,
                shards=shards,
                cpu_m=s.pod_cpu_m,
                memory_b=s.pod_memory_b,
            )
            arrival = round(start + rng.uniform(0.0, s.burst_spread_s), 3)
            duration = round(s.mean_duration_s * math.exp(rng.gauss(0.0, s.duration_sigma)), 3)
            arrivals.append(PodArrival(obj, Pod.from_object(obj), arrival, duration))
            count += 1
    arrivals.sort(key=lambda a: (a.arrival_s, a.pod.name))
    return Trace(s, node_objects, nodes, datasets, arrivals, cluster)
