"""The controller killed at every step of create, resize, drain and image, then restarted.

A :class:`Killer` counts every mutating call the controller makes, to Kubernetes (patch, status,
eviction, event) and to the cloud (create, resize, remove, delete, image, roll), and kills the
process at call ``k``: *before* it runs (the request never left) or *after* it ran (the answer
was lost). For every ``k`` of a clean run of the phase and both moments, a fresh controller then
runs until the world settles, and the outcome must equal the clean run's: the same groups with
the same sizes (no duplicate, no leak), one creation token per group, the node budget never
exceeded at any moment, no node removed while a shard it holds would drop below ``needed + 1``
pieces, and for images exactly one image, the group rolled to it and no node left protected.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from controller import Controller, ControllerSettings
from controller.baking import PROTOTYPE_ANNOTATION, WAITING, prototype_image
from controller.providers import NodeGroupProvider, ProviderError, instance_id
from kube.api import DATASETS, KBLS, NODES, PODS, KubeApi
from placement import capacity as cap
from tests.controller.test_reconciling import World
from tests.placement.scenarios import kbl_object, placed_dataset, pod_object
from topology import labels
from topology.datasets import DataSet

KUBE_WRITES = ("patch", "patch_status", "create_binding", "evict", "create_event")
CLOUD_WRITES = ("create_group", "set_size", "remove_instance", "delete_group", "create_image", "roll_group")
BUDGET = cap.CapacitySettings(max_nodes_total=5)


class KilledError(BaseException):
    """The controller process dies here (a BaseException: no handler of the controller stops it)."""


@dataclass
class Killer:
    """Kill at mutating call number ``at`` (``None``: never), before or after it runs."""

    at: int | None = None
    after: bool = False
    calls: list[str] = field(default_factory=list)

    def step(self, name: str, run: Callable[[], Any]) -> Any:
        k = len(self.calls)
        self.calls.append(name)
        if k == self.at and not self.after:
            raise KilledError(f"before {name}")
        result = run()
        if k == self.at and self.after:
            raise KilledError(f"after {name}")
        return result


class _Killing:
    def __init__(self, inner: Any, killer: Killer, writes: tuple[str, ...], observe: Callable[[str, tuple[Any, ...]], None]) -> None:
        self._inner, self._killer, self._writes, self._observe = inner, killer, writes, observe

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in self._writes:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            def run() -> Any:
                self._observe(name, args)
                result = attr(*args, **kwargs)
                self._observe(f"after:{name}", args)
                return result

            return self._killer.step(name, run)

        return call


class Watched:
    """A world plus the invariants checked on every cloud write, by whichever controller makes it."""

    def __init__(self) -> None:
        self.world = World(ready_delay_s=30)
        self.peak_nodes = 0
        self.removed: set[str] = set()
        self.violations: list[str] = []

    def observe(self, name: str, args: tuple[Any, ...]) -> None:
        cloud = self.world.cloud
        if name.startswith("after:"):
            self.peak_nodes = max(self.peak_nodes, sum(g.desired for g in cloud.groups.values()))
            return
        if name == "remove_instance":
            node = f"ip-{instance_id(str(args[1]))}"
            self._check_removal(node)
            self.removed.add(node)

    def _check_removal(self, node: str) -> None:
        for raw in self.world.kube.list(DATASETS)[0]:
            dataset = DataSet.from_object(raw)
            if dataset.placement is None:
                continue
            need = dataset.spec.redundancy.needed + 1  # our floor; the controller itself keeps the full width
            for shard in range(dataset.placement.shards):
                holders = [h for h in dataset.placement.holders(shard) if h not in self.removed]
                if node in holders and len(holders) - 1 < need:
                    self.violations.append(f"{node} removed while shard {shard} of {dataset.key} kept {len(holders) - 1} < {need}")

    def kube(self, killer: Killer) -> KubeApi:
        return cast(KubeApi, _Killing(self.world.kube, killer, KUBE_WRITES, lambda _n, _a: None))

    def cloud(self, killer: Killer) -> NodeGroupProvider:
        return cast(NodeGroupProvider, _Killing(self.world.cloud, killer, CLOUD_WRITES, self.observe))

    def controller(self, killer: Killer | None = None) -> Controller:
        killer = killer or Killer()
        settings = ControllerSettings(cluster_name="test", capacity=BUDGET)
        return Controller(self.kube(killer), self.cloud(killer), settings, clock=lambda: self.world.now)

    def settle(self, rounds: int = 8, step_s: float = 200) -> None:
        for _ in range(rounds):
            self.world.advance(step_s)
            self.world.schedule_pending()
            self.controller().reconcile_once()


# ------------------------------------------------------------------ phases
def _prepare_create(w: Watched) -> None:
    w.world.kube.put(KBLS, kbl_object("k", max_size=10))
    for i in range(3):
        w.world.kube.put(PODS, pod_object(f"p{i}", kbl="k", cpu="3"))


def _prepare_resize(w: Watched) -> None:
    _prepare_create(w)
    w.settle(3, 60)
    for i in range(3, 7):  # 7 pods of 3 CPU want 7 nodes; the budget allows 5
        w.world.kube.put(PODS, pod_object(f"p{i}", kbl="k", cpu="3"))


def _prepare_drain(w: Watched) -> None:
    _prepare_create(w)
    w.settle(3, 60)
    group_nodes = sorted(n["metadata"]["name"] for n in w.world.kube.list(NODES)[0] if "kbl.io/node-group" in n["metadata"]["labels"])
    assert len(group_nodes) == 3
    # 3 replicas; a piece of shard 0 lives on the first group node: it must stay (the controller
    # keeps full redundancy: re-replicate first); the two others hold nothing and may go.
    holders = [[group_nodes[0], "gen-a0", "gen-b0"], ["gen-a1", "gen-b1", "gen-c0"]]
    w.world.kube.put(DATASETS, placed_dataset("reads", holders, replicas=3))
    for i in range(3):
        w.world.kube.delete(PODS, f"p{i}")
    # A pod of another workload still runs on one of them: draining evicts it.
    w.world.kube.put(PODS, pod_object("stray", kbl="other", node=group_nodes[2], unschedulable=False))


def _act_reconcile(w: Watched, killer: Killer, rounds: int) -> None:
    for _ in range(rounds):
        w.controller(killer).reconcile_once()
        w.world.advance(200)
        w.world.schedule_pending()


def _prepare_image(w: Watched) -> None:
    _prepare_create(w)
    w.settle(3, 60)
    w.world.advance(7200)


def _act_image(w: Watched, killer: Killer) -> None:
    for _ in range(5):  # a step per run: drain (cordon, data), evict the pods, wait for them to go, image
        done = prototype_image(w.kube(killer), w.cloud(killer), kbl_key="default/k", group=_group(), clock=lambda: w.world.now)
        if not done.skipped.startswith(WAITING):
            return


def _group() -> str:
    return cap.group_name("default/k", "us-east-1a")


PHASES: dict[str, tuple[Callable[[Watched], None], Callable[[Watched, Killer], None]]] = {
    "create": (_prepare_create, lambda w, k: _act_reconcile(w, k, 1)),
    "resize": (_prepare_resize, lambda w, k: _act_reconcile(w, k, 1)),
    "drain": (_prepare_drain, lambda w, k: _act_reconcile(w, k, 6)),
    "image": (_prepare_image, _act_image),
}


def _run(phase: str, killer: Killer) -> Watched:
    prepare, act = PHASES[phase]
    w = Watched()
    prepare(w)
    with contextlib.suppress(KilledError):
        act(w, killer)
    if phase == "image":
        # "a failed or killed run is simply run again"
        _act_image(w, Killer())
    w.settle()
    return w


def _outcome(w: Watched) -> dict[str, Any]:
    groups = w.world.cloud.list_groups()
    kbl = w.world.kube.get(KBLS, "k") or {}
    entries = (kbl.get("status") or {}).get("nodeGroups") or []
    return {
        "groups": [(g.name, g.desired, g.image) for g in groups],
        "status": sorted((e["name"], e.get("phase")) for e in entries),
        "images": sorted(set(w.world.cloud.images.values())),
        "removed": len(w.removed),
    }


CLEAN: dict[str, tuple[int, dict[str, Any]]] = {}


def _clean(phase: str) -> tuple[int, dict[str, Any]]:
    if phase not in CLEAN:
        killer = Killer()
        w = _run(phase, killer)
        assert not w.violations, w.violations
        CLEAN[phase] = (len(killer.calls), _outcome(w))
    return CLEAN[phase]


@pytest.mark.parametrize("phase", list(PHASES))
def test_killed_at_every_step_the_controller_converges_to_the_clean_outcome(phase: str) -> None:
    steps, clean = _clean(phase)
    assert steps > 0
    for at in range(steps):
        for after in (False, True):
            killer = Killer(at, after)
            w = _run(phase, killer)
            where = f"{phase}: killed {'after' if after else 'before'} call {at} ({killer.calls[at] if at < len(killer.calls) else '?'})"
            outcome = _outcome(w)
            assert outcome["groups"] == clean["groups"], where
            assert outcome["status"] == clean["status"], where
            names = [g[0] for g in outcome["groups"]]
            assert len(names) == len(set(names)), where  # no duplicate group
            creations = {(c.args["spec"].name, c.args["token"]) for c in w.world.cloud.calls_of("create_group")}
            assert len(creations) == len({name for name, _ in creations}), where  # one token per group, however often retried
            assert w.peak_nodes <= BUDGET.max_nodes_total, where
            assert w.violations == [], where
            assert outcome["removed"] == clean["removed"], where
            if phase == "image":
                assert len(outcome["images"]) == 1, where
                assert outcome["groups"][0][2] == outcome["images"][0], where
                protected = [
                    n["metadata"]["name"]
                    for n in w.world.kube.list(NODES)[0]
                    if {labels.DO_NOT_DISRUPT, PROTOTYPE_ANNOTATION} & set(n["metadata"].get("annotations") or {})
                ]
                assert protected == [], where


@pytest.mark.parametrize("code", ["ThrottlingException", "InternalFailure", "ServiceUnavailable"])
@pytest.mark.parametrize("op", ["create_group", "set_size", "remove_instance"])
def test_cloud_throttling_and_5xx_leave_no_half_applied_state_and_converge(op: str, code: str) -> None:
    clean = _clean({"create_group": "create", "set_size": "resize", "remove_instance": "drain"}[op])[1]
    phase = {"create_group": "create", "set_size": "resize", "remove_instance": "drain"}[op]
    prepare, act = PHASES[phase]
    w = Watched()
    prepare(w)
    w.world.cloud.inject(op, ProviderError(code, "injected", retryable=True), times=3)
    act(w, Killer())  # the controller logs the refused action and goes on; nothing half-applied
    kbl = w.world.kube.get(KBLS, "k") or {}
    for entry in (kbl.get("status") or {}).get("nodeGroups") or []:
        group = w.world.cloud.groups.get(entry["name"])
        if entry.get("phase") == "Active":
            assert group is not None  # never recorded as created when the cloud did not create it
    w.settle()
    outcome = _outcome(w)
    assert outcome["groups"] == clean["groups"]
    assert outcome["status"] == clean["status"]
    assert w.peak_nodes <= BUDGET.max_nodes_total
    assert w.violations == []
    assert any(e["reason"] == "CapacityActionFailed" and code in e["message"] for e in w.world.kube.events)
