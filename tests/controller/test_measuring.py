"""Utilization feedback sources: metrics-server NodeMetrics and a Prometheus query, end to end."""

from __future__ import annotations

import httpx

from controller import Controller, ControllerSettings
from controller.measuring import NODE_METRICS, MetricsServerUtilization, PrometheusUtilization
from controller.providers import NodeGroupSpec
from kube.api import KBLS, NODES, PODS
from placement import capacity as cap
from tests.controller.test_reconciling import World
from tests.placement.scenarios import kbl_object, pod_object
from topology.kbls import KBL
from topology.nodes import Node


def busy_group(world: World, annotations: dict[str, str] | None = None) -> list[str]:
    world.kube.put(KBLS, kbl_object("u", annotations=annotations))
    name = cap.group_name("default/u", "us-east-1a")
    world.cloud.create_group(NodeGroupSpec(name, "default/u", "us-east-1a", "m6i.xlarge", 2, 6, labels={"kbl.io/kbl": "u"}), "t")
    world.advance(3600)
    nodes = [n["metadata"]["name"] for n in world.kube.list(NODES, label_selector="kbl.io/kbl=u")[0]]
    for i, node in enumerate(nodes):
        world.kube.put(PODS, pod_object(f"w{i}", kbl="u", node=node))
    return nodes


def test_high_node_cpu_from_metrics_server_grows_the_group() -> None:
    world = World(ready_delay_s=60)
    nodes = busy_group(world)
    for node in nodes:
        world.kube.put(NODE_METRICS, {"kind": "NodeMetrics", "metadata": {"name": node}, "usage": {"cpu": "3600m", "memory": "10Gi"}})
    reader = MetricsServerUtilization(world.kube)
    ctl = Controller(world.kube, world.cloud, ControllerSettings(cluster_name="t"), clock=lambda: world.now, utilization=reader)
    plan = ctl.reconcile_once()
    assert any(isinstance(a, cap.ResizeNodeGroup) and a.desired > 2 for a in plan.actions)
    kbl = world.kube.get(KBLS, "u")
    assert kbl is not None
    assert kbl["status"]["nodeGroups"][0]["lastUtilizationScale"] == world.now  # the cooldown starts now
    assert not [a for a in ctl.reconcile_once().actions if isinstance(a, cap.ResizeNodeGroup)]  # held by the cooldown


def test_prometheus_query_value_drives_the_kbl_with_its_own_thresholds() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.params["query"])
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": [{"value": [0, "250"]}]}})

    reader = PrometheusUtilization("http://prometheus:9090", client=httpx.Client(transport=httpx.MockTransport(answer)))
    kbl = KBL.from_object(kbl_object("q", annotations={cap.PROMETHEUS_QUERY: "sum(queue_depth)"}))
    assert reader([kbl], []) == {"default/q": cap.Utilization(metric=250.0)}
    assert seen == ["sum(queue_depth)"]


def test_a_failing_prometheus_leaves_the_kbl_without_feedback() -> None:
    reader = PrometheusUtilization("http://p", client=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(503))))
    kbl = KBL.from_object(kbl_object("q", annotations={cap.PROMETHEUS_QUERY: "up"}))
    assert reader([kbl], list[Node]()) == {}


def test_growth_is_clamped_by_the_groups_own_cloud_maximum() -> None:
    world = World(ready_delay_s=60)
    nodes = busy_group(world)  # the KBL allows 10, the cloud group was made with max 6
    for node in nodes:
        world.kube.put(NODE_METRICS, {"kind": "NodeMetrics", "metadata": {"name": node}, "usage": {"cpu": "60000m", "memory": "10Gi"}})
    ctl = Controller(world.kube, world.cloud, ControllerSettings(cluster_name="t"), clock=lambda: world.now,
                     utilization=MetricsServerUtilization(world.kube))
    ctl.reconcile_once()
    assert ctl.actor.log.refused == []
    assert [g.desired for g in world.cloud.list_groups()] == [6]
