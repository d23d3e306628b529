"""KBLs: named workload units, their node-group wishes and their blueprint of stages.

A KBL (``kbl.io/v1alpha1``, namespaced) groups pods and datasets and says what capacity it wants:
a dedicated or shared node group (instance types, min/max size, capacity type, labels, taints)
and optionally a *blueprint*: stages with a start time, a duration and what each needs, so the
companion controller can request capacity before a stage begins.

Spec shape::

    spec:
      nodeGroup:
        mode: dedicated            # or shared
        instanceTypes: [m6i.4xlarge]
        minSize: 0
        maxSize: 20
        capacityType: ON_DEMAND    # or SPOT
        capacityTypes: [SPOT, ON_DEMAND]   # or several, in order: the next when the first has no capacity
        labels: {team: genomics}
        taints: [{key: example.com/gpu, value: "true", effect: NoSchedule}]
      blueprint:
        stages:
          - name: align
            start: "2026-11-21T21:00:00Z"   # or startAfterSeconds relative to the previous stage
            durationSeconds: 3600
            needs: {nodes: 8}              # or {cpu: "64", memory: 256Gi}
            job: align                     # the stage's Job (its progress can start the next stage)
          - name: train
            after: {stage: align, fraction: 0.8}   # starts when align's Job is 80 % complete
            datasets: [imagenet]           # what its nodes must hydrate first (default kbl.io/dataset)
            needs: {nodes: 4}
      window: {start: "21:00", durationSeconds: 28800}  # daily (UTC); closed: the group goes to zero

A stage starts at ``start``, else by progress (``after``: when the named stage's Job reaches
``fraction`` of its completions), else ``startAfterSeconds`` after the previous stage starts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from topology.errors import QuantityError
from topology.fields import FieldReader
from topology.nodes import Taint
from topology.quantities import to_int, to_milli
from topology.times import parse_datetime

CAPACITY_TYPES = ("ON_DEMAND", "SPOT")
MODES = ("dedicated", "shared")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
DAY_S = 86_400
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


@dataclass(frozen=True, slots=True)
class NodeGroupWish:
    """What node group a KBL wants."""

    mode: str = "dedicated"
    instance_types: tuple[str, ...] = ()
    min_size: int = 0
    max_size: int = 10
    capacity_type: str = "ON_DEMAND"
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    #: Every capacity type the KBL allows, in order of preference (``capacityTypes``, else the
    #: one ``capacityType``): the next is tried when the cloud has no capacity of the first.
    capacity_types: tuple[str, ...] = ()

    @property
    def dedicated(self) -> bool:
        return self.mode == "dedicated"

    @property
    def allowed_capacity_types(self) -> tuple[str, ...]:
        return self.capacity_types or (self.capacity_type,)


@dataclass(frozen=True, slots=True)
class StageAfter:
    """Start by progress: when stage ``stage``'s Job has ``fraction`` (0..1] of its completions."""

    stage: str
    fraction: float


@dataclass(frozen=True, slots=True)
class Window:
    """A daily activation window (UTC): open from ``start_s`` seconds after midnight for
    ``duration_s`` seconds (it may run past midnight)."""

    start_s: int
    duration_s: float

    def opens_in(self, now_s: float) -> float:
        """Seconds until the window next opens; 0 while it is open."""
        since = (now_s - self.start_s) % DAY_S
        return 0.0 if since < self.duration_s else DAY_S - since

    def is_open(self, now_s: float) -> bool:
        return self.opens_in(now_s) == 0.0


@dataclass(frozen=True, slots=True)
class Stage:
    """One blueprint stage: when it starts (absolute, or seconds after the previous stage
    starts), how long it runs, and what it needs (nodes, or CPU millicores and memory bytes)."""

    name: str
    start: datetime | None = None
    start_after_s: float | None = None
    duration_s: float = 3600.0
    nodes: int = 0
    cpu_m: int = 0
    memory_b: int = 0
    job: str = ""
    after: StageAfter | None = None
    datasets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class KBL:
    """A KBL object, typed."""

    name: str
    namespace: str
    node_group: NodeGroupWish
    stages: tuple[Stage, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    status: Mapping[str, Any] = field(default_factory=dict)
    window: Window | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def from_object(cls, obj: Any) -> KBL:
        """Build a :class:`KBL` from a raw ``kbl.io/v1alpha1`` KBL object.

        Raises
        ------
        ObjectError
            Naming the KBL and the field: an unknown mode or capacity type, ``minSize`` above
            ``maxSize``, a stage without a name or with an unparsable start or need.
        """
        reader = FieldReader(obj, "KBL")
        namespace = reader.namespace or "default"
        mode = reader.string("spec.nodeGroup.mode", "dedicated") or "dedicated"
        if mode not in MODES:
            raise reader.error("spec.nodeGroup.mode", f"{mode!r} is not one of {', '.join(MODES)}")
        capacity = reader.string("spec.nodeGroup.capacityType", "ON_DEMAND") or "ON_DEMAND"
        if capacity not in CAPACITY_TYPES:
            raise reader.error("spec.nodeGroup.capacityType", f"{capacity!r} is not one of {', '.join(CAPACITY_TYPES)}")
        ctypes = reader.list("spec.nodeGroup.capacityTypes")
        if not all(c in CAPACITY_TYPES for c in ctypes) or len(set(ctypes)) != len(ctypes):
            raise reader.error("spec.nodeGroup.capacityTypes", f"expected distinct values among {', '.join(CAPACITY_TYPES)}")
        if ctypes:
            capacity = str(ctypes[0])
        types = reader.list("spec.nodeGroup.instanceTypes")
        if not all(isinstance(t, str) and t for t in types):
            raise reader.error("spec.nodeGroup.instanceTypes", "expected a list of instance type names")
        min_size = reader.integer("spec.nodeGroup.minSize", 0, minimum=0) or 0
        max_size = reader.integer("spec.nodeGroup.maxSize", 10, minimum=0)
        assert max_size is not None
        if min_size > max_size:
            raise reader.error("spec.nodeGroup.minSize", f"minSize {min_size} is above maxSize {max_size}")
        taints = []
        for i, raw in enumerate(reader.list("spec.nodeGroup.taints")):
            if not isinstance(raw, Mapping) or not isinstance(raw.get("key"), str):
                raise reader.error(f"spec.nodeGroup.taints[{i}]", "expected an object with a string 'key'")
            effect = str(raw.get("effect") or "NoSchedule")
            if effect not in TAINT_EFFECTS:
                raise reader.error(f"spec.nodeGroup.taints[{i}].effect", f"{effect!r} is not one of {', '.join(TAINT_EFFECTS)}")
            taints.append(Taint(raw["key"], str(raw.get("value") or ""), effect))
        wish = NodeGroupWish(
            mode=mode,
            instance_types=tuple(types),
            min_size=min_size,
            max_size=max_size,
            capacity_type=capacity,
            capacity_types=tuple(str(c) for c in ctypes),
            labels=reader.str_map("spec.nodeGroup.labels"),
            taints=tuple(taints),
        )
        stages = tuple(_stage(reader, i, raw) for i, raw in enumerate(reader.list("spec.blueprint.stages")))
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise reader.error("spec.blueprint.stages", "stage names must be unique")
        window = _window(reader, reader.mapping("spec.window")) if reader.mapping("spec.window") else None
        return cls(reader.name, namespace, wish, stages, reader.str_map("metadata.annotations"), reader.mapping("status"), window)


def _window(reader: FieldReader, raw: Mapping[str, Any]) -> Window:
    match = _HHMM.match(str(raw.get("start", "")))
    if match is None:
        raise reader.error("spec.window.start", "expected a time of day HH:MM (UTC)")
    duration = raw.get("durationSeconds")
    if isinstance(duration, bool) or not isinstance(duration, int | float) or not 0 < duration <= DAY_S:
        raise reader.error("spec.window.durationSeconds", f"expected seconds in (0, {DAY_S}]")
    return Window(int(match[1]) * 3600 + int(match[2]) * 60, float(duration))


def _stage(reader: FieldReader, i: int, raw: Any) -> Stage:
    path = f"spec.blueprint.stages[{i}]"
    if not isinstance(raw, Mapping):
        raise reader.error(path, "expected an object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise reader.error(f"{path}.name", "required: a stage name")
    start = None
    if raw.get("start") is not None:
        try:
            start = parse_datetime(str(raw["start"]))
        except ValueError:
            raise reader.error(f"{path}.start", f"{raw['start']!r} is not an RFC 3339 time") from None
        if start.tzinfo is None:
            raise reader.error(f"{path}.start", "needs a time zone (for example a trailing Z)")
    after = raw.get("startAfterSeconds")
    if after is not None and (isinstance(after, bool) or not isinstance(after, int | float) or after < 0):
        raise reader.error(f"{path}.startAfterSeconds", "expected a non-negative number of seconds")
    duration = raw.get("durationSeconds", 3600)
    if isinstance(duration, bool) or not isinstance(duration, int | float) or duration <= 0:
        raise reader.error(f"{path}.durationSeconds", "expected a positive number of seconds")
    needs = raw.get("needs") or {}
    if not isinstance(needs, Mapping):
        raise reader.error(f"{path}.needs", "expected an object")
    nodes = needs.get("nodes", 0)
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 0:
        raise reader.error(f"{path}.needs.nodes", "expected a non-negative integer")
    try:
        cpu = to_milli(needs["cpu"]) if "cpu" in needs else 0
        memory = to_int(needs["memory"]) if "memory" in needs else 0
    except QuantityError as exc:
        raise reader.error(f"{path}.needs", str(exc)) from None
    job = raw.get("job") or ""
    if not isinstance(job, str):
        raise reader.error(f"{path}.job", "expected a Job name")
    progress = None
    if raw.get("after") is not None:
        by = raw["after"]
        fraction = by.get("fraction") if isinstance(by, Mapping) else None
        if not isinstance(by, Mapping) or not isinstance(by.get("stage"), str) or not by["stage"]:
            raise reader.error(f"{path}.after.stage", "required: the stage whose Job's progress starts this one")
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction <= 1:
            raise reader.error(f"{path}.after.fraction", "expected a completion fraction in (0, 1]")
        progress = StageAfter(by["stage"], float(fraction))
    datasets = raw.get("datasets") or []
    if not isinstance(datasets, list) or not all(isinstance(d, str) and d for d in datasets):
        raise reader.error(f"{path}.datasets", "expected a list of DataSet names")
    return Stage(
        name, start, float(after) if after is not None else None, float(duration), nodes, cpu, memory, job, progress, tuple(datasets)
    )
