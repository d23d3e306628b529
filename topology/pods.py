"""Pods as the scheduler and the controller see them: resources, placement rules, data wishes.

A :class:`Pod` is built from a raw Kubernetes Pod. It carries the effective resource request
(the larger of the sum of containers and the largest init container, plus overhead, as
kube-scheduler computes it), tolerations, node selector, binding, phase and scheduling
condition, and the kbl annotations parsed into a :class:`DataRequest`. Annotation errors do not
reject the pod: a pod with a bad ``kbl.io/shards`` still exists and must still schedule; the
problem is kept in :attr:`DataRequest.problem` for the filter to report.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from topology import labels
from topology.errors import QuantityError, ShardRangeError
from topology.fields import FieldReader
from topology.nodes import Resources, Taint
from topology.shards import parse_shards


class Locality(StrEnum):
    """How strongly a pod wants its data local (``kbl.io/locality``)."""

    PREFERRED = "preferred"
    REQUIRED = "required"


@dataclass(frozen=True, slots=True)
class DataRequest:
    """What a pod reads, from its annotations.

    ``shards`` is ``None`` for "all shards"; ``shards_text`` keeps the raw annotation so the
    range can be checked against the dataset's shard count when the dataset is known.
    ``problem`` is a human-readable reason if the annotations are unusable.
    """

    dataset: str
    namespace: str
    kbl: str | None = None
    shards: tuple[int, ...] | None = None
    shards_text: str | None = None
    locality: Locality = Locality.PREFERRED
    problem: str | None = None

    def shard_indexes(self, shard_count: int) -> tuple[int, ...]:
        """The requested shards checked against the dataset's count.

        Raises
        ------
        ShardRangeError
            If the annotation names a shard the dataset does not have.
        """
        if self.shards_text is None:
            return tuple(range(shard_count))
        return parse_shards(self.shards_text, shard_count)


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str | None
    operator: str
    value: str | None
    effect: str | None

    def tolerates(self, taint: Taint) -> bool:
        """The upstream ``Toleration.ToleratesTaint`` rule."""
        if self.effect and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        if not self.key and self.operator != "Exists":
            return False
        if self.operator == "Exists":
            return True
        return (self.value or "") == taint.value


@dataclass(frozen=True, slots=True)
class Pod:
    """A pod, typed; see the module docstring."""

    name: str
    namespace: str
    uid: str
    requests: Resources
    node_name: str | None = None
    phase: str = "Pending"
    scheduler_name: str = "default-scheduler"
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    data: DataRequest | None = None
    unschedulable: bool = False
    creation_timestamp: str = ""
    owner_kind: str | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def kbl(self) -> str | None:
        """The KBL the pod belongs to (annotation, else label)."""
        return self.annotations.get(labels.POD_KBL) or self.labels.get(labels.POD_KBL)

    @property
    def active(self) -> bool:
        """True if the pod holds node resources (bound and not finished)."""
        return self.node_name is not None and self.phase not in ("Succeeded", "Failed")

    def tolerates(self, taints: tuple[Taint, ...]) -> bool:
        """True if every NoSchedule/NoExecute taint is tolerated (the TaintToleration filter)."""
        for taint in taints:
            if taint.effect not in ("NoSchedule", "NoExecute"):
                continue
            if not any(t.tolerates(taint) for t in self.tolerations):
                return False
        return True

    @classmethod
    def from_object(cls, obj: Any) -> Pod:
        """Build a :class:`Pod` from a raw Kubernetes Pod object.

        A well-formed object (JSON-decoded dicts and lists, string maps of strings) is read by
        plain dict walking; anything else goes through :meth:`from_object_checked`, which
        builds the same pod or raises the error naming the field.

        Raises
        ------
        ObjectError
            Naming the pod and the field when the object is malformed (bad quantities,
            tolerations that are not objects). Bad *kbl annotations* are not an error here.
        """
        pod = _fast_pod(obj)
        return pod if pod is not None else cls.from_object_checked(obj)

    @classmethod
    def from_object_checked(cls, obj: Any) -> Pod:
        """:meth:`from_object` through the validating :class:`~topology.fields.FieldReader`
        path only (every field type-checked; the errors :meth:`from_object` raises)."""
        reader = FieldReader(obj, "Pod")
        namespace = reader.namespace or "default"
        annotations = reader.str_map("metadata.annotations")
        requests = _effective_requests(reader)
        tolerations = []
        for i, raw in enumerate(reader.list("spec.tolerations")):
            if not isinstance(raw, Mapping):
                raise reader.error(f"spec.tolerations[{i}]", "expected an object")
            tolerations.append(
                Toleration(raw.get("key") or None, str(raw.get("operator") or "Equal"), raw.get("value"), raw.get("effect") or None)
            )
        unschedulable = False
        for cond in reader.list("status.conditions"):
            if isinstance(cond, Mapping) and cond.get("type") == "PodScheduled":
                unschedulable = cond.get("status") == "False" and cond.get("reason") == "Unschedulable"
        owners = reader.list("metadata.ownerReferences")
        owner_kind = owners[0].get("kind") if owners and isinstance(owners[0], Mapping) else None
        return cls(
            name=reader.name,
            namespace=namespace,
            uid=reader.string("metadata.uid", "") or "",
            requests=requests,
            node_name=reader.string("spec.nodeName") or None,
            phase=reader.string("status.phase", "Pending") or "Pending",
            scheduler_name=reader.string("spec.schedulerName", "default-scheduler") or "default-scheduler",
            node_selector=reader.str_map("spec.nodeSelector"),
            tolerations=tuple(tolerations),
            labels=reader.str_map("metadata.labels"),
            annotations=annotations,
            data=data_request(annotations, namespace),
            unschedulable=unschedulable,
            creation_timestamp=reader.string("metadata.creationTimestamp", "") or "",
            owner_kind=owner_kind if isinstance(owner_kind, str) else None,
        )


def data_request(annotations: Mapping[str, str], namespace: str) -> DataRequest | None:
    """Parse the kbl annotations of a pod; ``None`` when it names no dataset."""
    dataset = annotations.get(labels.POD_DATASET)
    if not dataset:
        return None
    return _data_request(
        dataset,
        namespace,
        annotations.get(labels.POD_KBL),
        annotations.get(labels.POD_LOCALITY, Locality.PREFERRED.value),
        annotations.get(labels.POD_SHARDS),
    )


@functools.lru_cache(maxsize=4096)
def _data_request(dataset: str, namespace: str, kbl: str | None, locality_raw: str, shards_text: str | None) -> DataRequest:
    """:func:`data_request` of the annotation values (a pure function of them, so remembered:
    every watch event of a pod carries the same annotations, and a job's pods share them)."""
    problem: str | None = None
    locality_text = locality_raw.strip().lower()
    try:
        locality = Locality(locality_text)
    except ValueError:
        locality = Locality.PREFERRED
        problem = f"{labels.POD_LOCALITY}: {locality_text!r} is not 'preferred' or 'required'; treated as preferred"
    shards: tuple[int, ...] | None = None
    if shards_text is not None:
        try:
            shards = parse_shards(shards_text)
        except ShardRangeError as exc:
            problem = f"{labels.POD_SHARDS}: {exc}"
    return DataRequest(dataset, namespace, kbl, shards, shards_text, locality, problem)


def _container_requests(reader: FieldReader, path: str) -> list[Resources]:
    out = []
    for i, container in enumerate(reader.list(path)):
        if not isinstance(container, Mapping):
            raise reader.error(f"{path}[{i}]", "expected an object")
        resources = container.get("resources") or {}
        raw = resources.get("requests") if isinstance(resources, Mapping) else None
        if raw is None and isinstance(resources, Mapping):
            raw = resources.get("limits")  # requests default to limits
        if raw is None:
            out.append(Resources())
            continue
        if not isinstance(raw, Mapping):
            raise reader.error(f"{path}[{i}].resources.requests", "expected an object")
        try:
            out.append(Resources.parse(raw))
        except QuantityError as exc:
            raise reader.error(f"{path}[{i}].resources.requests", str(exc)) from None
    return out


def _effective_requests(reader: FieldReader) -> Resources:
    """kube-scheduler's pod request: max(sum(containers), max(init containers)) + overhead + 1 pod."""
    total = Resources()
    for res in _container_requests(reader, "spec.containers"):
        total = total + res
    for init in _container_requests(reader, "spec.initContainers"):
        total = _elementwise_max(total, init)
    overhead = reader.mapping("spec.overhead")
    if overhead:
        try:
            total = total + Resources.parse(overhead)
        except QuantityError as exc:
            raise reader.error("spec.overhead", str(exc)) from None
    return Resources(total.cpu_m, total.memory_b, total.storage_b, 1, total.extended)


def _elementwise_max(a: Resources, b: Resources) -> Resources:
    ext = dict(a.extended)
    for key, val in b.extended.items():
        ext[key] = max(ext.get(key, 0), val)
    return Resources(max(a.cpu_m, b.cpu_m), max(a.memory_b, b.memory_b), max(a.storage_b, b.storage_b), 0, ext)


def _str_map(value: Any) -> dict[str, str] | None:
    """A copy of a string-to-string dict (``{}`` for null), or ``None`` when it is anything else."""
    if value is None:
        return {}
    if type(value) is not dict:
        return None
    for key, item in value.items():
        if type(key) is not str or type(item) is not str:
            return None
    return dict(value)


def _fast_requests(containers: Any) -> list[Resources] | None:
    """:func:`_container_requests` of a list of container dicts, or ``None`` to fall back."""
    if containers is None:
        return []
    if type(containers) is not list:
        return None
    out = []
    for container in containers:
        if type(container) is not dict:
            return None
        resources = container.get("resources")
        if not resources:
            out.append(Resources())
            continue
        if type(resources) is not dict:
            return None
        raw = resources.get("requests")
        if raw is None:
            raw = resources.get("limits")  # requests default to limits
            if raw is None:
                out.append(Resources())
                continue
        if type(raw) is not dict:
            return None
        try:
            out.append(Resources.parse(raw))
        except QuantityError:
            return None
    return out


_STRING_OR_NONE = (str, type(None))


def _fast_pod(obj: Any) -> Pod | None:
    """:meth:`Pod.from_object` of a well-formed object by plain dict walking, or ``None`` at the
    first thing the validating path would treat differently (a type it checks, a bad quantity):
    that path then builds the pod or raises exactly as it always has."""
    if type(obj) is not dict:
        return None
    meta = obj.get("metadata")
    if type(meta) is not dict:
        return None
    name = meta.get("name")
    raw_namespace = meta.get("namespace")
    spec = obj.get("spec")
    status = obj.get("status")
    if spec is None:
        spec = {}
    if status is None:
        status = {}
    if type(name) is not str or not name or type(spec) is not dict or type(status) is not dict:
        return None
    if raw_namespace is not None and type(raw_namespace) is not str:
        return None
    namespace = raw_namespace or "default"
    annotations = _str_map(meta.get("annotations"))
    pod_labels = _str_map(meta.get("labels"))
    node_selector = _str_map(spec.get("nodeSelector"))
    if annotations is None or pod_labels is None or node_selector is None:
        return None
    uid = meta.get("uid")
    created = meta.get("creationTimestamp")
    node_name = spec.get("nodeName")
    scheduler_name = spec.get("schedulerName")
    phase = status.get("phase")
    for text in (uid, created, node_name, scheduler_name, phase):
        if type(text) not in _STRING_OR_NONE:
            return None
    containers = _fast_requests(spec.get("containers"))
    inits = _fast_requests(spec.get("initContainers"))
    if containers is None or inits is None:
        return None
    # the sums of _effective_requests in plain ints: no Resources built per step
    cpu = memory = storage = 0
    extended: dict[str, int] = {}
    for res in containers:
        cpu += res.cpu_m
        memory += res.memory_b
        storage += res.storage_b
        for key, val in res.extended.items():
            extended[key] = extended.get(key, 0) + val
    for init in inits:
        cpu = max(cpu, init.cpu_m)
        memory = max(memory, init.memory_b)
        storage = max(storage, init.storage_b)
        for key, val in init.extended.items():
            extended[key] = max(extended.get(key, 0), val)
    overhead = spec.get("overhead")
    if overhead is not None and type(overhead) is not dict:
        return None
    if overhead:
        try:
            extra = Resources.parse(overhead)
        except QuantityError:
            return None
        cpu += extra.cpu_m
        memory += extra.memory_b
        storage += extra.storage_b
        for key, val in extra.extended.items():
            extended[key] = extended.get(key, 0) + val
    raw_tolerations = spec.get("tolerations")
    tolerations: tuple[Toleration, ...] = ()
    if raw_tolerations:
        if type(raw_tolerations) is not list:
            return None
        built = []
        for raw in raw_tolerations:
            if type(raw) is not dict:
                return None
            built.append(
                Toleration(raw.get("key") or None, str(raw.get("operator") or "Equal"), raw.get("value"), raw.get("effect") or None)
            )
        tolerations = tuple(built)
    elif raw_tolerations is not None and type(raw_tolerations) is not list:
        return None
    conditions = status.get("conditions")
    unschedulable = False
    if conditions is not None:
        if type(conditions) is not list:
            return None
        for cond in conditions:
            if type(cond) is dict and cond.get("type") == "PodScheduled":
                unschedulable = cond.get("status") == "False" and cond.get("reason") == "Unschedulable"
            elif type(cond) is not dict and isinstance(cond, Mapping):
                return None
    owners = meta.get("ownerReferences")
    owner_kind = None
    if owners is not None:
        if type(owners) is not list:
            return None
        if owners:
            first = owners[0]
            if type(first) is dict:
                owner_kind = first.get("kind")
            elif isinstance(first, Mapping):
                return None
    return Pod(
        name=name,
        namespace=namespace,
        uid=uid or "",
        requests=Resources(cpu, memory, storage, 1, extended),
        node_name=node_name or None,
        phase=phase or "Pending",
        scheduler_name=scheduler_name or "default-scheduler",
        node_selector=node_selector,
        tolerations=tolerations,
        labels=pod_labels,
        annotations=annotations,
        data=data_request(annotations, namespace),
        unschedulable=unschedulable,
        creation_timestamp=created or "",
        owner_kind=owner_kind if isinstance(owner_kind, str) else None,
    )
