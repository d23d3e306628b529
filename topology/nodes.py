"""Cluster nodes: a Kubernetes Node object turned into a frozen :class:`Node`.

A node knows its place in the failure-domain hierarchy (region, zone, rack, host), its
allocatable resources in exact integer units, its taints and whether it can take pods. Labels
follow DESIGN.md: ``topology.kubernetes.io/*`` with the legacy ``failure-domain.beta`` fallback,
the rack from a configurable label. A node missing a level gets a *synthetic* domain that says
so (``~no-zone/<node>``) instead of a crash: such a node is alone in its domain, never silently
merged with other unlabeled nodes.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from topology import labels as keys
from topology.errors import QuantityError
from topology.fields import FieldReader
from topology.quantities import to_int, to_milli

#: Prefix of synthetic domain names given to nodes that lack a topology label.
SYNTHETIC_PREFIX = "~"


@dataclass(frozen=True, slots=True)
class Taint:
    """A node taint (``key=value:Effect``)."""

    key: str
    value: str
    effect: str

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


@dataclass(frozen=True, slots=True)
class Resources:
    """Amounts of resources in exact integer units.

    ``cpu_m`` is CPU in millicores, ``memory_b`` and ``storage_b`` are bytes, ``pods`` is a count;
    ``extended`` holds any other resource (``nvidia.com/gpu``, hugepages) as integer base units.
    """

    cpu_m: int = 0
    memory_b: int = 0
    storage_b: int = 0
    pods: int = 0
    extended: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Resources:
        """Parse a resource map such as ``status.allocatable``.

        Raises
        ------
        QuantityError
            With the resource name in the message, if a quantity is malformed.
        """
        if all(isinstance(v, str) for v in raw.values()):  # the usual case: nodes of one type share the map
            return _parse_strings(tuple(sorted(raw.items())))
        return cls._parse(raw)

    @classmethod
    def _parse(cls, raw: Mapping[str, Any]) -> Resources:
        extended: dict[str, int] = {}
        cpu = memory = storage = pods = 0
        for name, value in raw.items():
            try:
                if name == "cpu":
                    cpu = to_milli(value)
                elif name == "memory":
                    memory = to_int(value)
                elif name == "ephemeral-storage":
                    storage = to_int(value)
                elif name == "pods":
                    pods = to_int(value)
                else:
                    extended[name] = to_int(value)
            except QuantityError as exc:
                raise QuantityError(f"{name}: {exc}") from None
        return cls(cpu, memory, storage, pods, extended)

    def get(self, name: str) -> int:
        """One resource by its Kubernetes name (``cpu`` in millicores, others in base units)."""
        if name == "cpu":
            return self.cpu_m
        if name == "memory":
            return self.memory_b
        if name == "ephemeral-storage":
            return self.storage_b
        if name == "pods":
            return self.pods
        return self.extended.get(name, 0)

    def __add__(self, other: Resources) -> Resources:
        ext = dict(self.extended)
        for key, val in other.extended.items():
            ext[key] = ext.get(key, 0) + val
        return Resources(
            self.cpu_m + other.cpu_m,
            self.memory_b + other.memory_b,
            self.storage_b + other.storage_b,
            self.pods + other.pods,
            ext,
        )

    def __sub__(self, other: Resources) -> Resources:
        ext = dict(self.extended)
        for key, val in other.extended.items():
            ext[key] = ext.get(key, 0) - val
        return Resources(
            self.cpu_m - other.cpu_m,
            self.memory_b - other.memory_b,
            self.storage_b - other.storage_b,
            self.pods - other.pods,
            ext,
        )

    def fits(self, request: Resources) -> bool:
        """True if ``request`` fits in these (free) resources, resource by resource."""
        if request.cpu_m > self.cpu_m or request.memory_b > self.memory_b:
            return False
        if request.storage_b > self.storage_b or request.pods > self.pods:
            return False
        return all(val <= self.extended.get(key, 0) for key, val in request.extended.items() if val > 0)


@functools.lru_cache(maxsize=4096)
def _parse_strings(items: tuple[tuple[str, str], ...]) -> Resources:
    """:meth:`Resources.parse` of a map of strings, cached: 100,000 nodes have few distinct maps."""
    return Resources._parse(dict(items))


@dataclass(frozen=True, slots=True)
class Node:
    """One Kubernetes node and its place in the failure-domain hierarchy.

    ``region``, ``zone`` and ``rack`` are the *domain names* at each level; zone and rack names
    are qualified by their parent (``us-east-1/us-east-1a``, ``us-east-1/us-east-1a/r3``) so two
    zones' "rack-1" are never confused. Synthetic names start with ``~``.
    """

    name: str
    region: str
    zone: str
    rack: str
    labels: Mapping[str, str]
    allocatable: Resources
    taints: tuple[Taint, ...] = ()
    unschedulable: bool = False
    ready: bool = True
    provider_id: str = ""
    creation_timestamp: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)
    #: ``lastTransitionTime`` of the Ready condition (when :attr:`ready` last changed: the
    #: controller measures node-ready times from it, the placement reconciler how long a
    #: NotReady node has been down before its pieces count as lost),
    #: ``""`` if there is none.
    ready_transition: str = ""

    @property
    def host(self) -> str:
        """The node's host domain (``kubernetes.io/hostname``, else the node name)."""
        return self.labels.get(keys.HOSTNAME, self.name)

    @property
    def kbl(self) -> str | None:
        """The KBL whose dedicated node group this node belongs to, if any."""
        return self.labels.get(keys.KBL_LABEL)

    @property
    def instance_type(self) -> str | None:
        return self.labels.get(keys.INSTANCE_TYPE) or self.labels.get(keys.LEGACY_INSTANCE_TYPE)

    def domain(self, key: str) -> str:
        """The node's domain for a failure-domain label key or level name.

        ``key`` may be a level name (``host``, ``rack``, ``zone``, ``region``), one of the
        well-known label keys, or any node label (a missing label gives a synthetic per-node
        domain, so the node counts as alone).
        """
        if key in ("host", "node", keys.HOSTNAME):
            return self.host
        if key in ("rack", keys.DEFAULT_RACK):
            return self.rack
        if key in ("zone", keys.ZONE, keys.LEGACY_ZONE):
            return self.zone
        if key in ("region", keys.REGION, keys.LEGACY_REGION):
            return self.region
        value = self.labels.get(key)
        if value is None:
            return f"{SYNTHETIC_PREFIX}no-{key}/{self.name}"
        return value

    @classmethod
    def from_object(cls, obj: Any, *, rack_label: str = keys.DEFAULT_RACK) -> Node:
        """Build a :class:`Node` from a raw Kubernetes Node object.

        Parameters
        ----------
        obj:
            The Node as the API server serves it (``kubectl get node -o json``).
        rack_label:
            The node label that names the rack (default ``topology.kbl.io/rack``).

        Raises
        ------
        ObjectError
            Naming the node and the field when the object is malformed.
        """
        fast = _fast_node(cls, obj, rack_label)
        return fast if fast is not None else cls.read_carefully(obj, rack_label=rack_label)

    @classmethod
    def read_carefully(cls, obj: Any, *, rack_label: str = keys.DEFAULT_RACK) -> Node:
        """:meth:`from_object` field by field: what every object that is not plainly well formed gets.

        Raises
        ------
        ObjectError
            Naming the node and the field when the object is malformed.
        """
        reader = FieldReader(obj, "Node")
        node_labels = reader.str_map("metadata.labels")
        name = reader.name
        region, zone_name, rack_name = _place(name, node_labels, rack_label)
        try:
            allocatable = Resources.parse(reader.mapping("status.allocatable"))
        except QuantityError as exc:
            raise reader.error("status.allocatable", str(exc)) from None
        taints = []
        for i, raw in enumerate(reader.list("spec.taints")):
            if not isinstance(raw, Mapping) or not isinstance(raw.get("key"), str):
                raise reader.error(f"spec.taints[{i}]", "expected an object with a string 'key'")
            taints.append(Taint(raw["key"], str(raw.get("value") or ""), str(raw.get("effect") or "")))
        ready, since = True, ""
        for i, cond in enumerate(reader.list("status.conditions")):
            if not isinstance(cond, Mapping):
                raise reader.error(f"status.conditions[{i}]", "expected an object")
            if cond.get("type") == "Ready":
                ready, since = ready_condition(cond.get("status"), cond.get("lastTransitionTime"))
        unschedulable = reader.get("spec.unschedulable", False)
        if not isinstance(unschedulable, bool):
            raise reader.error("spec.unschedulable", "expected a boolean")
        return cls(
            name=name,
            region=region,
            zone=zone_name,
            rack=rack_name,
            labels=node_labels,
            allocatable=allocatable,
            taints=tuple(taints),
            unschedulable=unschedulable,
            ready=ready,
            provider_id=reader.string("spec.providerID", "") or "",
            creation_timestamp=reader.string("metadata.creationTimestamp", "") or "",
            annotations=reader.str_map("metadata.annotations"),
            ready_transition=since,
        )


def _place(name: str, node_labels: Mapping[str, str], rack_label: str) -> tuple[str, str, str]:
    """``(region, zone, rack)`` domain names of a node (synthetic, per node, where a label is missing)."""
    region = node_labels.get(keys.REGION) or node_labels.get(keys.LEGACY_REGION)
    zone = node_labels.get(keys.ZONE) or node_labels.get(keys.LEGACY_ZONE)
    rack = node_labels.get(rack_label)
    if region and zone and rack:
        return _domain_names(region, zone, rack)
    region = region or f"{SYNTHETIC_PREFIX}no-region"
    zone_name = f"{region}/{zone}" if zone else f"{region}/{SYNTHETIC_PREFIX}no-zone/{name}"
    rack_name = f"{zone_name}/{rack}" if rack else f"{zone_name}/{SYNTHETIC_PREFIX}no-rack/{name}"
    return region, zone_name, rack_name


def ready_condition(status: Any, last_transition: Any) -> tuple[bool, str]:
    """``(ready, ready_transition)`` of a Ready condition (every reader's one rule)."""
    return status == "True", last_transition if isinstance(last_transition, str) else ""


@functools.lru_cache(maxsize=65536)
def _domain_names(region: str, zone: str, rack: str) -> tuple[str, str, str]:
    """Qualified domain names, shared by every node of a rack (one string per rack, not per node)."""
    zone_name = f"{region}/{zone}"
    return region, zone_name, f"{zone_name}/{rack}"


_STR = frozenset({str})


def _fast_node(cls: type[Node], obj: Any, rack_label: str) -> Node | None:
    """:meth:`Node.from_object` for a well-formed object, without the field-by-field reader.

    Returns ``None`` at the first thing out of the ordinary (a missing name, a non-string label,
    a malformed quantity, a taint without a key...): the careful reader then rejects the object
    with its reason, or accepts what is merely unusual. A 100,000-node first list is read here.
    """
    if type(obj) is not dict:
        return None
    meta = obj.get("metadata")
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if type(meta) is not dict or type(spec) is not dict or type(status) is not dict:
        return None
    name = meta.get("name")
    node_labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    alloc = status.get("allocatable") or {}
    if type(name) is not str or not name or type(node_labels) is not dict or type(annotations) is not dict or type(alloc) is not dict:
        return None
    if (node_labels and set(map(type, node_labels.values())) != _STR) or (annotations and set(map(type, annotations.values())) != _STR):
        return None
    if alloc and set(map(type, alloc.values())) != _STR:
        return None
    taints: tuple[Taint, ...] = ()
    raw_taints = spec.get("taints")
    if raw_taints:
        if type(raw_taints) is not list:
            return None
        out = []
        for raw in raw_taints:
            if type(raw) is not dict or type(raw.get("key")) is not str:
                return None
            out.append(Taint(raw["key"], str(raw.get("value") or ""), str(raw.get("effect") or "")))
        taints = tuple(out)
    ready, since = True, ""
    conditions = status.get("conditions") or ()
    if type(conditions) not in (list, tuple):
        return None
    for cond in conditions:
        if type(cond) is not dict:
            return None
        if cond.get("type") == "Ready":
            ready, since = ready_condition(cond.get("status"), cond.get("lastTransitionTime"))
    unschedulable = spec.get("unschedulable")
    provider_id = spec.get("providerID")
    created = meta.get("creationTimestamp")
    unschedulable = False if unschedulable is None else unschedulable
    provider_id = "" if provider_id is None else provider_id
    created = "" if created is None else created
    if (unschedulable is not True and unschedulable is not False) or type(provider_id) is not str or type(created) is not str:
        return None
    return node_of_parts(
        cls,
        name,
        labels=dict(node_labels),
        annotations=dict(annotations),
        allocatable=alloc,
        taints=taints,
        ready=ready,
        unschedulable=unschedulable,
        provider_id=provider_id,
        created=created,
        rack_label=rack_label,
        ready_transition=since,
    )


def node_of_parts(
    cls: type[Node],
    name: str,
    *,
    labels: dict[str, str],
    annotations: dict[str, str],
    allocatable: Mapping[str, str],
    taints: tuple[Taint, ...],
    ready: bool,
    unschedulable: bool,
    provider_id: str,
    created: str,
    rack_label: str,
    ready_transition: str = "",
) -> Node | None:
    """A :class:`Node` from parts already checked for type (the fast readers' common end).

    Returns ``None`` if a quantity in ``allocatable`` is malformed: the careful reader then
    rejects the object naming the field.
    """
    try:
        resources = _parse_strings(tuple(sorted(allocatable.items())))
    except QuantityError:
        return None
    region, zone, rack = _place(name, labels, rack_label)
    return cls(
        name, region, zone, rack, labels, resources, taints, unschedulable, ready, provider_id, created, annotations, ready_transition
    )


def is_synthetic(domain: str) -> bool:
    """True if a domain name was invented for a node lacking the label."""
    return SYNTHETIC_PREFIX in domain


#: The parts of a Node object kbl reads (:meth:`Node.from_object`, the controller, the agent).
#: Everything else (the image list, about 7 KB of a real EKS node; managedFields; volumes) is
#: dropped as soon as an object arrives, so a 100,000-node cache holds only these.
NODE_METADATA_KEPT = (
    "name",
    "uid",
    "labels",
    "annotations",
    "creationTimestamp",
    "resourceVersion",
    "ownerReferences",
    "deletionTimestamp",
)
NODE_SPEC_KEPT = ("taints", "unschedulable", "providerID")
NODE_STATUS_KEPT = ("allocatable", "capacity", "conditions", "nodeInfo")


def slim_node_object(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A Node object with only the fields kbl reads (see :data:`NODE_METADATA_KEPT` and beside).

    Examples
    --------
    >>> slim_node_object({"kind": "Node", "metadata": {"name": "a", "managedFields": [{}]},
    ...                   "status": {"images": [{"names": ["x"]}], "allocatable": {"cpu": "2"}}})
    {'kind': 'Node', 'metadata': {'name': 'a'}, 'status': {'allocatable': {'cpu': '2'}}}
    """
    out: dict[str, Any] = {k: v for k, v in obj.items() if k in ("apiVersion", "kind")}
    for part, kept in (("metadata", NODE_METADATA_KEPT), ("spec", NODE_SPEC_KEPT), ("status", NODE_STATUS_KEPT)):
        value = obj.get(part)
        if isinstance(value, Mapping):
            out[part] = {k: value[k] for k in kept if k in value}
        elif part in obj:
            out[part] = value  # not an object: left for the reader to reject with its reason
    return out
