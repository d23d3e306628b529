"""The companion controller's part of ``kbl demo``: a KBL whose pods fit on no existing node.

After the locality run, :func:`node_group_requests` adds to the demo's cluster a KBL that wants a
dedicated node group (``r6i.4xlarge``, a two-stage blueprint) and six pods that read shards of
one of the demo's datasets. The pods select the KBL's dedicated nodes (``kbl.io/kbl``), which no
existing node carries, so kube-scheduler marks them Unschedulable. The real controller
(:class:`~controller.Controller`, its pure planner
:func:`~placement.capacity.plan_capacity`) then runs once, in-process, on the in-memory
Kubernetes API and the simulated cloud (:class:`~controller.providers.fake.FakeProvider`): no
cluster, no cloud account. It asks for the group in the zone that holds most of the bytes the
pods read, and pre-warms the blueprint's next stage, which starts within the measured lead time
(``lead = node-ready time x 1.2 + 30 s``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from rich.table import Table

from controller import Controller, ControllerSettings
from controller.providers.fake import FakeProvider
from kube.api import DATASETS, KBLS, NODES, PODS
from kube.memory import MemoryApi
from placement import capacity as cap
from topology import labels
from topology.clusters import Cluster
from topology.datasets import DataSet
from topology.examples import make_kbl, make_pod
from topology.localities import Level
from topology.nodes import Node
from topology.shards import parse_shards
from topology.times import format_time

#: The simulated clock of the controller run (epoch seconds).
NOW_S = 1_795_000_000.0
KBL_NAME = "variant-calling"
INSTANCE_TYPE = "r6i.4xlarge"
PODS_WANTED = 6
#: The blueprint's next stage starts this long after "now" (inside the pre-warm lead of 174 s).
NEXT_STAGE_IN_S = 150.0
NEXT_STAGE_NODES = 8


@dataclass(frozen=True, slots=True)
class NodeGroupRequest:
    """One planned node-group request, as the demo shows it."""

    group: str
    instance_type: str
    count: int
    zone: str
    why: str


@dataclass(frozen=True, slots=True)
class CapacityDemo:
    """What the controller did on the demo's cluster."""

    kbl: str
    dataset: str
    shards: str
    pods: int
    matching_nodes: int
    bytes_by_zone: dict[str, int]
    requests: list[NodeGroupRequest]
    cloud_groups: list[tuple[str, str, int]]  # (group, zone, desired) in the fake cloud afterwards

    def as_dict(self) -> dict[str, Any]:
        return {
            "kbl": self.kbl, "dataset": self.dataset, "shards": self.shards, "pods": self.pods,
            "existing_nodes_matching": self.matching_nodes, "bytes_by_zone": self.bytes_by_zone,
            "requests": [asdict(r) for r in self.requests],
            "cloud_groups": [list(g) for g in self.cloud_groups],
        }  # fmt: skip


def kbl_object(namespace: str, dataset: str) -> dict[str, Any]:
    """The demo's KBL: a dedicated group of r6i.4xlarge and a two-stage blueprint."""
    stages = [
        {"name": "align", "start": format_time(NOW_S - 600), "durationSeconds": 3600, "needs": {"nodes": 0}},
        {"name": "call", "start": format_time(NOW_S + NEXT_STAGE_IN_S), "durationSeconds": 1800, "needs": {"nodes": NEXT_STAGE_NODES}},
    ]
    return make_kbl(
        KBL_NAME, namespace=namespace, instance_types=[INSTANCE_TYPE], max_size=12, stages=stages, annotations={cap.KBL_DATASET: dataset}
    )


def pod_object(name: str, namespace: str, dataset: str, shards: str) -> dict[str, Any]:
    """An align pod: 12 CPUs and 96 GiB, on the KBL's dedicated nodes only; kube-scheduler found none."""
    return make_pod(
        name,
        namespace=namespace,
        kbl=KBL_NAME,
        dataset=dataset,
        shards=shards,
        cpu="12",
        memory="96Gi",
        container="align",
        node_selector={labels.KBL_LABEL: KBL_NAME},
        tolerations=[{"key": labels.DEDICATED_TAINT, "operator": "Equal", "value": KBL_NAME, "effect": "NoSchedule"}],
        created=None,
        unschedulable=True,
    )


def _matches(node: Node, selector: dict[str, str]) -> bool:
    return all(node.labels.get(k) == v for k, v in selector.items())


def node_group_requests(node_objects: list[dict[str, Any]], nodes: list[Node], datasets: list[DataSet]) -> CapacityDemo:
    """Run the controller once on the demo's cluster plus the KBL and its pods (module docstring).

    Raises
    ------
    KblError
        When the demo's cluster has no dataset to read.
    """
    from topology.errors import KblError

    if not datasets:
        raise KblError("the demo's cluster has no dataset for the KBL to read")
    cluster = Cluster()
    for node in nodes:
        cluster.set_node(node)
    for ds in datasets:
        cluster.set_dataset(ds)

    def imbalance(ds: DataSet) -> tuple[int, str]:  # the data should clearly live somewhere
        by_zone = _bytes_by_zone(cluster, nodes, ds, _shards(ds))
        return (max(by_zone.values(), default=0) - min(by_zone.values(), default=0), ds.key)

    dataset = max(datasets, key=imbalance)
    namespace, _, name = dataset.key.partition("/")
    shards = _shards(dataset)
    kube = MemoryApi()
    for obj in node_objects:
        kube.put(NODES, obj)
    for ds in datasets:
        kube.put(DATASETS, ds.to_object())
    kube.put(KBLS, kbl_object(namespace, name))
    pods = [pod_object(f"align-{i}", namespace, name, shards) for i in range(PODS_WANTED)]
    for pod in pods:
        kube.put(PODS, pod)
    matching = sum(_matches(n, pods[0]["spec"]["nodeSelector"]) for n in nodes)
    cloud = FakeProvider(lambda: NOW_S)
    controller = Controller(kube, cloud, ControllerSettings(cluster_name="demo"), clock=lambda: NOW_S)
    plan = controller.reconcile_once()
    by_zone = _bytes_by_zone(cluster, nodes, dataset, shards)
    requests = [
        NodeGroupRequest(a.group, a.instance_type, a.desired, a.zone, a.reason)
        for a in plan.actions if isinstance(a, cap.CreateNodeGroup)
    ] + [
        NodeGroupRequest(a.group, _instance(cloud, a.group), a.desired, _zone(cloud, a.group), a.reason)
        for a in plan.actions if isinstance(a, cap.ResizeNodeGroup)
    ]  # fmt: skip
    groups = [(g.name, g.zone, g.desired) for g in cloud.list_groups()]
    return CapacityDemo(f"{namespace}/{KBL_NAME}", dataset.key, shards, len(pods), matching, by_zone, requests, groups)


def _instance(cloud: FakeProvider, group: str) -> str:
    found = cloud.describe_group(group)
    return found.instance_type if found else "?"


def _zone(cloud: FakeProvider, group: str) -> str:
    found = cloud.describe_group(group)
    return found.zone if found else "?"


def _shards(dataset: DataSet) -> str:
    return f"0-{min(dataset.spec.shards, 8) - 1}"


def _bytes_by_zone(cluster: Cluster, nodes: list[Node], dataset: DataSet, shards: str) -> dict[str, int]:
    """Bytes of ``shards`` a pod can read without leaving each zone (node, rack and zone levels of
    :meth:`~topology.clusters.Cluster.level_bytes`, the same for every node of a zone)."""
    wanted = parse_shards(shards, dataset.spec.shards)
    found = cluster.level_bytes(dataset.key, wanted)
    row = {int(node_id): r for r, node_id in enumerate(found.ids)}
    out: dict[str, int] = {}
    for node, node_id in zip(nodes, cluster.node_ids([n.name for n in nodes]), strict=True):
        zone = (node.domain("zone") or "?").rsplit("/", 1)[-1]
        if zone not in out and int(node_id) in row:
            out[zone] = int(found.table[row[int(node_id)], : int(Level.ZONE) + 1].sum())
    return dict(sorted(out.items()))


def requests_table(demo: CapacityDemo) -> Table:
    """The planned node-group requests as a rich table."""
    table = Table(title=f"companion controller: node groups for KBL {demo.kbl} ({demo.pods} pods fit on none of the existing nodes)")
    for column in ("node group", "instance type", "count", "zone", "why"):
        table.add_column(column, justify="right" if column == "count" else "left")
    for r in demo.requests:
        table.add_row(r.group, r.instance_type, str(r.count), r.zone, r.why)
    return table


def markdown(demo: CapacityDemo) -> str:
    """The report section on the controller."""
    zones = ", ".join(f"{z} {b / 2**30:.0f} GiB" for z, b in demo.bytes_by_zone.items())
    lines = [
        "## Companion controller",
        "",
        f"The KBL `{demo.kbl}` wants a dedicated `{INSTANCE_TYPE}` group and has a blueprint whose next stage "
        f"(`call`, {NEXT_STAGE_NODES} nodes) starts in {NEXT_STAGE_IN_S:.0f} s. Its {demo.pods} pods read shards "
        f"{demo.shards} of `{demo.dataset}` and select the KBL's dedicated nodes; {demo.matching_nodes} existing "
        f"nodes qualify, so kube-scheduler marked them Unschedulable. Bytes of those shards readable inside each zone: {zones}. "
        "The controller ran once, in-process, on the in-memory API and the simulated cloud, and asked for:",
        "",
        "| node group | instance type | count | zone | why |",
        "|---|---|---:|---|---|",
    ]
    lines += [f"| {r.group} | {r.instance_type} | {r.count} | {r.zone} | {r.why} |" for r in demo.requests]
    held = ", ".join(f"`{g}` ({z}, {n} nodes)" for g, z, n in demo.cloud_groups)
    lines += ["", f"Afterwards the simulated cloud holds: {held}.", ""]
    return "\n".join(lines)
