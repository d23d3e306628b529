"""End to end over HTTP: the controller with the Karpenter provider against kmock's API emulator.

The test plays Karpenter itself (there is no Karpenter here): for every pending placeholder it
creates a NodeClaim (checked against Karpenter's published NodeClaim CRD) and a Node of the
NodePool; when kbl deletes a NodeClaim it deletes the Node, as Karpenter's termination does.
Every NodePool the controller stores is checked against Karpenter's published NodePool CRD.
"""

from __future__ import annotations

import time
from typing import Any

from controller import Controller, ControllerSettings
from controller.disrupting import KARPENTER_DO_NOT_DISRUPT, mark_nodes
from controller.providers.karpenter import NODEPOOL_LABEL, KarpenterProvider, placeholder_name
from kube.api import DEPLOYMENTS, NODECLAIMS, NODEPOOLS, NODES
from kube.client import KubeClient
from placement import capacity as cap
from tests.controller.karpenter.crds import validator
from tests.kube.emulators import Emulator
from tests.placement.scenarios import base_nodes, kbl_object, placed_dataset, pod_object
from topology import labels
from topology.examples import make_node

KARPENTER_RESOURCES = (
    "karpenter.sh/v1/nodepools", "karpenter.sh/v1/nodeclaims", "apps/v1/deployments", "scheduling.k8s.io/v1/priorityclasses",
)
GROUP = cap.group_name("default/genomics", "us-east-1b")


def seed(emulator: Emulator) -> None:
    for key in KARPENTER_RESOURCES:
        emulator.kmock.resources[key] = {}
    for node in base_nodes():
        emulator.post("/api/v1/nodes", node)
    # the data the KBL reads lives in us-east-1b
    emulator.post("/apis/kbl.io/v1alpha1/namespaces/default/datasets", placed_dataset("reads", [["gen-b0", "gen-b1"]] * 4))
    emulator.post("/apis/kbl.io/v1alpha1/namespaces/default/kbls", kbl_object("genomics", instance_types=("m6i.xlarge",), max_size=6))
    for i in range(3):  # 3 CPUs each: fits on no general node, one per m6i.xlarge
        emulator.post("/api/v1/namespaces/default/pods", pod_object(f"p{i}", kbl="genomics", cpu="3", dataset="reads"))


def karpenter_launches(emulator: Emulator, client: KubeClient, count: int) -> list[str]:
    """Karpenter, played by the test: a NodeClaim and a joined Node per pending placeholder."""
    names = []
    for i in range(count):
        name = f"{GROUP[:40]}-{i}"
        provider_id = f"aws:///us-east-1b/i-0karp{i:012d}"
        claim: dict[str, Any] = {
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": {"name": name, "labels": {NODEPOOL_LABEL: GROUP}},
            "spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
                "requirements": [{"key": labels.ZONE, "operator": "In", "values": ["us-east-1b"]}],
                "taints": [{"key": labels.DEDICATED_TAINT, "value": "genomics", "effect": "NoSchedule"}],
            },
            "status": {"providerID": provider_id, "nodeName": name},
        }
        assert validator("NodeClaim").errors(claim) == []
        emulator.post("/apis/karpenter.sh/v1/nodeclaims", claim)
        node = make_node(
            name, zone="us-east-1b", cpu_m=3920, memory_b=15 * 2**30,
            extra_labels={
                NODEPOOL_LABEL: GROUP, labels.NODE_GROUP_LABEL: GROUP, labels.KBL_LABEL: "genomics", labels.INSTANCE_TYPE: "m6i.xlarge",
            },
            taints=[{"key": labels.DEDICATED_TAINT, "value": "genomics", "effect": "NoSchedule"}],
        )
        node["spec"]["providerID"] = provider_id
        node["metadata"]["labels"].pop("eks.amazonaws.com/nodegroup", None)  # the template is a managed node; Karpenter's are not
        emulator.post("/api/v1/nodes", node)
        names.append(name)
    return names


def karpenter_terminates(emulator: Emulator, client: KubeClient) -> None:
    """Karpenter, played by the test: a Node whose NodeClaim was deleted goes."""
    claims = {c["metadata"]["name"] for c in client.list(NODECLAIMS)[0]}
    for node in client.list(NODES)[0]:
        name = node["metadata"]["name"]
        if NODEPOOL_LABEL in (node["metadata"].get("labels") or {}) and name not in claims:
            emulator.delete(f"/api/v1/nodes/{name}")


def test_kbl_whose_pods_fit_nowhere_gets_a_nodepool_in_its_datas_zone_nodes_join_and_idle_it_goes(emulator: Emulator) -> None:
    seed(emulator)
    client = KubeClient.from_url(emulator.url)
    now = [time.time()]  # the emulator stamps Nodes with the real time: node age needs the same clock
    try:
        provider = KarpenterProvider(client)
        controller = Controller(client, provider, ControllerSettings(cluster_name="emu"), clock=lambda: now[0])
        plan = controller.reconcile_once()
        assert [(a.kind, getattr(a, "zone", "")) for a in plan.actions] == [("CreateNodeGroup", "us-east-1b")]
        pool = client.get(NODEPOOLS, GROUP)
        assert pool is not None
        assert validator("NodePool").errors(pool) == []
        zone = [r for r in pool["spec"]["template"]["spec"]["requirements"] if r["key"] == labels.ZONE]
        assert zone == [{"key": labels.ZONE, "operator": "In", "values": ["us-east-1b"]}]
        placeholders = client.get(DEPLOYMENTS, placeholder_name(GROUP), namespace="kbl-system")
        assert placeholders is not None
        assert placeholders["spec"]["replicas"] == 3

        joined = karpenter_launches(emulator, client, 3)
        for i, name in enumerate(joined):  # the pods preempt the placeholders and run there
            emulator.delete(f"/api/v1/namespaces/default/pods/p{i}")
            emulator.post("/api/v1/namespaces/default/pods", pod_object(f"p{i}", kbl="genomics", cpu="3", dataset="reads", node=name))
        now[0] += 60
        plan = controller.reconcile_once()
        assert plan.of(cap.CreateNodeGroup) == []
        assert plan.of(cap.RemoveNode) == []
        assert [g.name for g in provider.list_groups()] == [GROUP]

        # a piece lands on a kbl node: Karpenter must not disrupt it until it has moved
        emulator.post("/apis/kbl.io/v1alpha1/namespaces/default/datasets", placed_dataset("scratch", [[joined[0], "gen-b0"]]))
        assert [(m.node, m.protect) for m in mark_nodes(client)] == [(joined[0], True)]
        node0 = client.get(NODES, joined[0])
        assert node0 is not None
        assert node0["metadata"]["annotations"][KARPENTER_DO_NOT_DISRUPT] == "true"
        emulator.delete("/apis/kbl.io/v1alpha1/namespaces/default/datasets/scratch")
        assert [(m.node, m.protect) for m in mark_nodes(client)] == [(joined[0], False)]

        # idle: the pods finish; placeholders go to zero, nodes are cordoned, their NodeClaims deleted
        for i in range(3):
            emulator.delete(f"/api/v1/namespaces/default/pods/p{i}")
        for _ in range(4):
            now[0] += 600
            controller.reconcile_once()
            karpenter_terminates(emulator, client)
        assert client.list(NODECLAIMS)[0] == []
        assert not [n for n in client.list(NODES)[0] if NODEPOOL_LABEL in (n["metadata"].get("labels") or {})]
        placeholders = client.get(DEPLOYMENTS, placeholder_name(GROUP), namespace="kbl-system")
        assert placeholders is not None
        assert placeholders["spec"]["replicas"] == 0

        # the KBL is gone: so is its NodePool
        emulator.delete("/apis/kbl.io/v1alpha1/namespaces/default/kbls/genomics")
        now[0] += 600
        plan = controller.reconcile_once()
        assert [a.kind for a in plan.actions if a.kind == "DeleteNodeGroup"] == ["DeleteNodeGroup"]
        assert client.get(NODEPOOLS, GROUP) is None
        assert client.get(DEPLOYMENTS, placeholder_name(GROUP), namespace="kbl-system") is None
    finally:
        client.close()
