"""Prototype images: a long-Ready patched node is protected, imaged once, and the group rolled."""

from __future__ import annotations

import pytest

from controller.baking import PROTOTYPE_ANNOTATION, prototype_image
from controller.providers import NodeGroupSpec, ProviderError
from kube.api import KBLS, NODES
from placement import capacity as cap
from tests.controller.test_reconciling import World
from tests.placement.scenarios import kbl_object
from topology.errors import KblError


def grown(world: World, n: int = 3) -> str:
    world.kube.put(KBLS, kbl_object("k"))
    name = cap.group_name("default/k", "us-east-1a")
    world.cloud.create_group(NodeGroupSpec(name, "default/k", "us-east-1a", "m6i.xlarge", n, 5, labels={"kbl.io/kbl": "k"}), "t")
    world.advance(7200)
    return name


def test_the_newest_kubelet_among_long_ready_nodes_is_imaged_and_the_group_rolled() -> None:
    world = World(ready_delay_s=60)
    group = grown(world)
    nodes, _ = world.kube.list(NODES, label_selector=f"kbl.io/node-group={group}")
    patched = nodes[1]["metadata"]["name"]
    obj = world.kube.get(NODES, patched)
    assert obj is not None
    obj["status"]["nodeInfo"]["kubeletVersion"] = "v1.99.0-eks"
    world.kube.put(NODES, obj)
    result = prototype_image(world.kube, world.cloud, kbl_key="default/k", group=group, clock=lambda: world.now)
    assert result.node == patched
    assert result.version == "2"
    assert world.cloud.groups[group].image == result.image
    after = world.kube.get(NODES, patched)
    assert after is not None
    assert PROTOTYPE_ANNOTATION not in after["metadata"]["annotations"]  # protection lifted when done
    again = prototype_image(world.kube, world.cloud, kbl_key="default/k", group=group, clock=lambda: world.now)
    assert again.skipped.startswith("rate limited")
    assert len(world.cloud.calls_of("create_image")) == 1


def test_a_failed_roll_is_retried_with_the_same_image_and_the_node_stays_protected_meanwhile() -> None:
    world = World(ready_delay_s=60)
    group = grown(world)
    world.cloud.inject("roll_group", ProviderError("ThrottlingException", "slow down", retryable=True))
    with pytest.raises(ProviderError):
        prototype_image(world.kube, world.cloud, kbl_key="default/k", group=group, clock=lambda: world.now)
    protected = [n for n in world.kube.list(NODES)[0] if n["metadata"]["annotations"].get("kbl.io/do-not-disrupt") == "true"]
    assert len(protected) == 1
    result = prototype_image(world.kube, world.cloud, kbl_key="default/k", group=group, clock=lambda: world.now)
    assert result.node == protected[0]["metadata"]["name"]
    assert len(set(world.cloud.images.values())) == 1


def test_no_node_ready_long_enough_is_a_clear_error() -> None:
    world = World(ready_delay_s=60)
    group = grown(world)
    with pytest.raises(KblError, match="not Ready for"):
        prototype_image(world.kube, world.cloud, kbl_key="default/k", group=group, clock=lambda: world.now, min_ready_s=10**6)
