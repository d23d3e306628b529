"""The actions a capacity plan consists of; the controller carries them out in order."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from topology.nodes import Taint


@dataclass(frozen=True, slots=True)
class Action:
    """Base of planned actions; ``to_json()`` gives one line of ``--dry-run`` output."""

    kbl: str

    @property
    def kind(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        return {"action": self.kind, **body}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str)


@dataclass(frozen=True, slots=True)
class CreateNodeGroup(Action):
    group: str
    zone: str
    instance_type: str
    capacity_type: str
    desired: int
    max_size: int
    labels: Mapping[str, str]
    taints: tuple[Taint, ...]
    reason: str
    #: Every type the group may launch, tried in this order (``instance_type`` is the first).
    instance_types: tuple[str, ...] = ()
    #: USD per hour of one node of the first type, when a price is known.
    price_per_hour: float | None = None
    #: Bytes the pending pods it is created for would read from other zones if they all ran on
    #: it (a neighbour zone's cost to the data; an upper bound when nodes on the way take some).
    cross_zone_bytes: float = 0.0


@dataclass(frozen=True, slots=True)
class BackOffNodeGroup(Action):
    """Record a group's launch outcome in the KBL's status: ``failures`` > 0 gives up
    ``given_up`` requested nodes and backs the group off until ``until_s``; 0 resets it."""

    group: str
    failures: int
    until_s: float
    given_up: int
    reason: str


@dataclass(frozen=True, slots=True)
class ResizeNodeGroup(Action):
    group: str
    desired: int
    previous: int
    reason: str


@dataclass(frozen=True, slots=True)
class DeleteNodeGroup(Action):
    group: str
    reason: str


@dataclass(frozen=True, slots=True)
class CordonNode(Action):
    """Step 1 of a node's way out: cordon it and ask for its data to move (``kbl.io/drain``)."""

    group: str
    node: str
    reason: str


@dataclass(frozen=True, slots=True)
class UncordonNode(Action):
    group: str
    node: str
    reason: str


@dataclass(frozen=True, slots=True)
class EvictPods(Action):
    node: str
    pods: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AnnotateNode(Action):
    """Keep Cluster Autoscaler away from a KBL node (its scale-down-disabled annotation)."""

    node: str
    annotations: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class RemoveNode(Action):
    group: str
    node: str
    provider_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class WaitForData(Action):
    """A leaving node waits: its data is not yet safe elsewhere (``reason`` says what is awaited)."""

    group: str
    node: str
    reason: str


@dataclass(frozen=True, slots=True)
class RecordBlueprintStart(Action):
    start_s: float


@dataclass(frozen=True, slots=True)
class PendingVerdict(Action):
    """Not an action: the planner's verdict on unschedulable pods of a KBL.

    ``reason`` is ``helps`` when the planned nodes would take them, else why no new node of the
    group can (``data-elsewhere``, ``taint``, ``node-selector``, ``node-affinity``, ``too-big``,
    ``no-zone``, ``no-instance-type``, ``budget``, ``window-closed``, ``backed-off``); the controller records an Event and a metric.
    """

    pods: tuple[str, ...]
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Note(Action):
    """Not an action: a reason why something was not done (kept in the plan for operators)."""

    message: str




@dataclass(frozen=True, slots=True)
class Plan:
    """The planned actions, in execution order."""

    actions: tuple[Action, ...]
    verdicts: tuple[PendingVerdict, ...] = ()

    def of(self, kind: type[Action]) -> list[Action]:
        return [a for a in self.actions if isinstance(a, kind)]

    def to_json_lines(self) -> str:
        return "".join(a.to_json() + "\n" for a in self.actions)

