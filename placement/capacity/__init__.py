"""Capacity plans: which KBL needs which node group, how big, when to pre-warm, what may go.

A pure planner (no I/O imports, enforced by ``.importlinter``). From typed cluster state
(:class:`CapacityState`: nodes, pods, KBLs, DataSets, the :class:`~topology.clusters.Cluster`,
the cloud node groups' sizes, measured node-ready times, utilization figures and the clock) it
computes a list of :class:`Action` values that the controller executes. Four needs are combined
per node group (one group per KBL and zone, named by :func:`group_name`), the largest wins:

* **reactive**: unschedulable pods of the KBL, batched together, bin-packed (first fit
  decreasing) onto the instance type that fits them from the KBL's wishes, in the zone where the
  data they read lives (most bytes readable within the zone, from ``Cluster.level_bytes``);
* **blueprint**: a stage's nodes are requested ``lead = ready_s * prewarm_factor + margin_s +
  hydrate_s`` before the stage starts (by the clock, or by progress: when an earlier stage's Job
  reaches a completion fraction), using the measured node-ready time of the group and the time
  its node agents need to hydrate the stage's DataSets, and released when the stage ends (idle
  stages go to zero); a KBL whose daily activation window is closed goes to zero;
* **utilization**: CPU/memory of the KBL's own nodes (metrics.k8s.io) or a Prometheus value,
  with hysteresis (grow above ``high``, shrink below ``low``, nothing in between) and a cooldown;
* **floor**: the KBL's ``minSize`` and the nodes its running pods occupy.

Growing is clamped by the KBL's ``maxSize`` and by a global node budget; shrinking goes through
cordon, eviction and removal of one named node at a time, never a node marked
``kbl.io/do-not-disrupt`` and never a node whose loss would leave a shard with fewer pieces than
its redundancy needs (the node waits, :class:`WaitForData`).

The package, by concern: :mod:`.actions` (the action types and :class:`Plan`), :mod:`.states`
(inputs, the node-group record, settings), :mod:`.names`, :mod:`.packing` (instance shapes and
bin-packing), :mod:`.reactive`, :mod:`.blueprints`, :mod:`.utilization`, :mod:`.budgets`,
:mod:`.scaledown`, :mod:`.launches` (broken nodes are no room; cheapest fitting types first;
give-up, per-group backoff and the next launch option) and :mod:`.planner` (:func:`plan_capacity`).
"""

from __future__ import annotations

from placement.capacity.actions import (
    Action,
    AnnotateNode,
    BackOffNodeGroup,
    CordonNode,
    CreateNodeGroup,
    DeleteNodeGroup,
    EvictPods,
    Note,
    PendingVerdict,
    Plan,
    RecordBlueprintStart,
    RemoveNode,
    ResizeNodeGroup,
    UncordonNode,
    WaitForData,
)
from placement.capacity.blueprints import (
    blueprint_start,
    hydrate_seconds,
    stage_datasets,
    stage_lead,
    stage_nodes,
    stage_windows,
    stored_bytes,
)
from placement.capacity.fitting import HELPS, affinity_matches, follows_group, new_node_labels, pending_verdict, required_affinity
from placement.capacity.launches import (
    CHEAPEST_FIRST,
    LaunchPolicy,
    backoff_seconds,
    broken,
    group_backoff,
    rank_types,
)
from placement.capacity.names import group_name, node_group_of, plain_zone
from placement.capacity.packing import bin_pack, eni_max_pods, estimate_allocatable, instance_shape
from placement.capacity.planner import plan_capacity
from placement.capacity.reactive import kbl_zone, zone_bytes
from placement.capacity.scaledown import data_drained, is_leaving, referenced_nodes, removal_verdict, unknown_targets
from placement.capacity.states import (
    CAPACITY_ERROR_CODES,
    Affinity,
    CapacityError,
    CapacitySettings,
    CapacityState,
    GroupState,
    InstanceShape,
    JobProgress,
    LaunchFailure,
    RemovalCheck,
    RemovalVerdict,
    Requirement,
    Utilization,
    status_time,
)
from topology.labels import (
    CA_SCALE_DOWN_DISABLED,
    KBL_DATASET,
    PROMETHEUS_QUERY,
    SCALE_DOWN_BELOW,
    SCALE_ON,
    SCALE_UP_ABOVE,
)
from topology.labels import SCALE_DOWN_SINCE as SCALE_DOWN_ANNOTATION

__all__ = [
    "CAPACITY_ERROR_CODES",
    "CA_SCALE_DOWN_DISABLED",
    "CHEAPEST_FIRST",
    "HELPS",
    "KBL_DATASET",
    "PROMETHEUS_QUERY",
    "SCALE_DOWN_ANNOTATION",
    "SCALE_DOWN_BELOW",
    "SCALE_ON",
    "SCALE_UP_ABOVE",
    "Action",
    "Affinity",
    "AnnotateNode",
    "BackOffNodeGroup",
    "CapacityError",
    "CapacitySettings",
    "CapacityState",
    "CordonNode",
    "CreateNodeGroup",
    "DeleteNodeGroup",
    "EvictPods",
    "GroupState",
    "InstanceShape",
    "JobProgress",
    "LaunchFailure",
    "LaunchPolicy",
    "Note",
    "PendingVerdict",
    "Plan",
    "RecordBlueprintStart",
    "RemovalCheck",
    "RemovalVerdict",
    "RemoveNode",
    "Requirement",
    "ResizeNodeGroup",
    "UncordonNode",
    "Utilization",
    "WaitForData",
    "affinity_matches",
    "backoff_seconds",
    "bin_pack",
    "blueprint_start",
    "broken",
    "data_drained",
    "eni_max_pods",
    "estimate_allocatable",
    "follows_group",
    "group_backoff",
    "group_name",
    "hydrate_seconds",
    "instance_shape",
    "is_leaving",
    "kbl_zone",
    "new_node_labels",
    "node_group_of",
    "pending_verdict",
    "plain_zone",
    "plan_capacity",
    "rank_types",
    "referenced_nodes",
    "removal_verdict",
    "required_affinity",
    "stage_datasets",
    "stage_lead",
    "stage_nodes",
    "stage_windows",
    "status_time",
    "stored_bytes",
    "unknown_targets",
    "zone_bytes",
]
