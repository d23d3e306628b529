"""Pre-warming on Karpenter: placeholders for a blueprint stage appear early enough for its nodes.

Measured on the controller loop with the in-memory API and a modelled Karpenter: a placeholder
that pends at time t gives a Ready node at t + ``NODE_READY_S`` (Karpenter's launch plus the
node's boot, the planner's default estimate). The controller reconciles every 10 s.
"""

from __future__ import annotations

from controller import Controller, ControllerSettings
from controller.providers.karpenter import KarpenterProvider, placeholder_name
from kube.api import DEPLOYMENTS, KBLS, NODES
from kube.memory import MemoryApi
from placement import capacity as cap
from tests.placement.scenarios import T0, base_nodes, kbl_object
from topology.times import format_time

NODE_READY_S = 120.0
STAGE_IN_S = 900.0


def test_placeholders_for_a_stage_are_requested_so_capacity_is_ready_before_it_starts() -> None:
    api = MemoryApi()
    for node in base_nodes():
        api.put(NODES, node)
    stage = {"name": "align", "start": format_time(T0 + STAGE_IN_S), "durationSeconds": 1800, "needs": {"nodes": 2}}
    api.put(KBLS, kbl_object("genomics", stages=[stage]))
    now = [T0]
    controller = Controller(api, KarpenterProvider(api), ControllerSettings(cluster_name="prewarm"), clock=lambda: now[0])
    group = cap.group_name("default/genomics", "us-east-1a")
    requested: dict[int, float] = {}  # placeholder number -> when it was first wanted
    while now[0] < T0 + STAGE_IN_S:
        controller.reconcile_once()
        found = api.get(DEPLOYMENTS, placeholder_name(group), namespace="kbl-system")
        for i in range(int(found["spec"]["replicas"]) if found else 0):
            requested.setdefault(i, now[0])
        now[0] += 10.0
    assert sorted(requested) == [0, 1]
    ready_at = max(requested.values()) + NODE_READY_S
    lead_s = T0 + STAGE_IN_S - ready_at
    settings = cap.CapacitySettings()
    expected_lead = settings.default_node_ready_s * settings.prewarm_factor + settings.prewarm_margin_s - NODE_READY_S
    assert 0 < lead_s <= expected_lead + 10.0  # ready before the stage, not absurdly early
    print(f"capacity ready {lead_s:.0f} s before the stage (placeholders at start - {T0 + STAGE_IN_S - max(requested.values()):.0f} s)")
