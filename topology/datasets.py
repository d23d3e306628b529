"""DataSets: sharded data with a redundancy scheme and, once placed, where each piece lives.

The ``kbl.io/v1alpha1`` DataSet contract of DESIGN.md, typed: :class:`DataSetSpec` (shard
count, sizes, :class:`Replicas` or :class:`Erasure`, failure-domain key, node selector) and
:class:`ShardPlacement` (``status.placement``: a node list and, per shard, one index into it per
piece, in piece order). Placements are stored as one ``int32`` array of shape
``(shards, pieces)`` (``-1`` for a missing piece) so a million pieces cost a few megabytes and
the scoring hot path can index them directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from topology import labels
from topology.errors import ObjectError, QuantityError
from topology.fields import FieldReader
from topology.quantities import to_int

#: Largest shard count accepted (keeps a typo from allocating gigabytes).
MAX_SHARDS = 10_000_000
#: Largest number of pieces per shard (replicas or k+m).
MAX_PIECES = 64

FAILURE_DOMAIN_ALIASES = {
    "host": labels.HOSTNAME,
    "node": labels.HOSTNAME,
    "rack": labels.DEFAULT_RACK,
    "zone": labels.ZONE,
    "region": labels.REGION,
}


@dataclass(frozen=True, slots=True)
class Replicas:
    """Mirroring: ``r`` full copies of every shard; any one copy serves a read."""

    r: int

    @property
    def width(self) -> int:
        """Pieces per shard."""
        return self.r

    @property
    def needed(self) -> int:
        """Pieces needed to read (or rebuild) the shard."""
        return 1

    @property
    def tolerates(self) -> int:
        """Pieces that may be lost without losing the shard."""
        return self.r - 1

    def piece_fraction(self) -> float:
        """Size of one piece as a fraction of the shard."""
        return 1.0

    def __str__(self) -> str:
        return f"{self.r}x replicas"


@dataclass(frozen=True, slots=True)
class Erasure:
    """Erasure coding: ``k`` data + ``m`` parity pieces of ``size/k`` each; any ``k`` rebuild."""

    k: int
    m: int

    @property
    def width(self) -> int:
        return self.k + self.m

    @property
    def needed(self) -> int:
        return self.k

    @property
    def tolerates(self) -> int:
        return self.m

    def piece_fraction(self) -> float:
        return 1.0 / self.k

    def __str__(self) -> str:
        return f"erasure {self.k}+{self.m}"


Redundancy = Replicas | Erasure


@dataclass(frozen=True, slots=True)
class DataSetSpec:
    """The desired state of a DataSet (``spec``).

    ``shard_sizes`` holds one size in bytes per shard (a single ``spec.shardSize`` is expanded).
    ``failure_domain`` is a node label key; the aliases ``host``, ``rack``, ``zone`` and
    ``region`` are accepted and normalised to the well-known keys.
    """

    name: str
    namespace: str
    shards: int
    shard_sizes: npt.NDArray[np.int64] = field(compare=False, repr=False)
    redundancy: Redundancy
    failure_domain: str = labels.HOSTNAME
    node_selector: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def total_bytes(self) -> int:
        return int(self.shard_sizes.sum())


@dataclass(frozen=True, slots=True)
class ShardPlacement:
    """Where each piece of each shard lives (``status.placement``).

    ``pieces[s, p]`` is an index into ``nodes`` for piece ``p`` of shard ``s``, or ``-1``.
    """

    nodes: tuple[str, ...]
    pieces: npt.NDArray[np.int32] = field(compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.pieces.ndim != 2:
            raise ValueError("pieces must be a 2-D array (shards x pieces)")

    @property
    def shards(self) -> int:
        return int(self.pieces.shape[0])

    @property
    def width(self) -> int:
        return int(self.pieces.shape[1])

    def holders(self, shard: int) -> list[str]:
        """Node names holding pieces of ``shard``, in piece order (missing pieces skipped)."""
        return [self.nodes[i] for i in self.pieces[shard] if i >= 0]

    def to_status(self) -> dict[str, Any]:
        """The ``status.placement`` JSON form."""
        return {
            "nodes": list(self.nodes),
            "shards": [[int(i) for i in row if i >= 0] for row in self.pieces],
        }

    def equals(self, other: ShardPlacement) -> bool:
        """Same pieces on the same node names (node list order may differ)."""
        if self.pieces.shape != other.pieces.shape:
            return False
        names_a = np.array([*self.nodes, ""], dtype=object)[self.pieces]
        names_b = np.array([*other.nodes, ""], dtype=object)[other.pieces]
        return bool((names_a == names_b).all())


@dataclass(frozen=True, slots=True)
class DataSet:
    """A DataSet object: its spec and, if placed, its placement."""

    spec: DataSetSpec
    placement: ShardPlacement | None = None

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def namespace(self) -> str:
        return self.spec.namespace

    @classmethod
    def from_object(cls, obj: Any) -> DataSet:
        """Build a :class:`DataSet` from a raw ``kbl.io/v1alpha1`` DataSet object.

        Raises
        ------
        ObjectError
            Naming the DataSet and the field: missing or non-positive ``spec.shards``, sizes
            that are not quantities or do not match the shard count, a redundancy that is
            neither ``replicas`` nor ``erasure``, a placement that names unknown node indexes or
            has the wrong number of shards or pieces.
        """
        reader = FieldReader(obj, "DataSet")
        namespace = reader.namespace or "default"
        shards = reader.integer("spec.shards", minimum=1)
        if shards is None:
            raise reader.error("spec.shards", "required: the number of shards")
        if shards > MAX_SHARDS:
            raise reader.error("spec.shards", f"{shards} is more than the {MAX_SHARDS} supported")
        sizes = _shard_sizes(reader, shards)
        redundancy = _redundancy(reader)
        failure_domain = reader.string("spec.failureDomain", labels.HOSTNAME) or labels.HOSTNAME
        failure_domain = FAILURE_DOMAIN_ALIASES.get(failure_domain, failure_domain)
        spec = DataSetSpec(
            name=reader.name,
            namespace=namespace,
            shards=shards,
            shard_sizes=sizes,
            redundancy=redundancy,
            failure_domain=failure_domain,
            node_selector=reader.str_map("spec.nodeSelector"),
        )
        placement = None
        if reader.get("status.placement") is not None:
            placement = _placement(reader, spec)
        return cls(spec, placement)

    def to_object(self) -> dict[str, Any]:
        """The DataSet as a Kubernetes object (spec and, if placed, ``status.placement``)."""
        spec = self.spec
        red: dict[str, Any]
        if isinstance(spec.redundancy, Replicas):
            red = {"replicas": spec.redundancy.r}
        else:
            red = {"erasure": {"data": spec.redundancy.k, "parity": spec.redundancy.m}}
        body: dict[str, Any] = {"shards": spec.shards, "redundancy": red, "failureDomain": spec.failure_domain}
        sizes = spec.shard_sizes
        if sizes.size and bool((sizes == sizes[0]).all()):
            body["shardSize"] = str(int(sizes[0]))
        else:
            body["shardSizes"] = [str(int(s)) for s in sizes]
        if spec.node_selector:
            body["nodeSelector"] = dict(spec.node_selector)
        obj: dict[str, Any] = {
            "apiVersion": labels.API_VERSION,
            "kind": "DataSet",
            "metadata": {"name": spec.name, "namespace": spec.namespace},
            "spec": body,
        }
        if self.placement is not None:
            obj["status"] = {"placement": self.placement.to_status()}
        return obj


def _shard_sizes(reader: FieldReader, shards: int) -> npt.NDArray[np.int64]:
    many = reader.get("spec.shardSizes")
    one = reader.get("spec.shardSize")
    if many is not None and one is not None:
        raise reader.error("spec.shardSizes", "give either spec.shardSize or spec.shardSizes, not both")
    if many is not None:
        if not isinstance(many, list) or len(many) != shards:
            raise reader.error("spec.shardSizes", f"expected a list of {shards} quantities (one per shard)")
        out = np.empty(shards, dtype=np.int64)
        for i, raw in enumerate(many):
            out[i] = _size(reader, f"spec.shardSizes[{i}]", raw)
        return out
    if one is None:
        raise reader.error("spec.shardSize", "required: a quantity such as 2Gi (or spec.shardSizes)")
    return np.full(shards, _size(reader, "spec.shardSize", one), dtype=np.int64)


def _size(reader: FieldReader, path: str, raw: Any) -> int:
    try:
        value = to_int(raw)
    except QuantityError as exc:
        raise reader.error(path, str(exc)) from None
    if value < 0 or value >= 2**62:
        raise reader.error(path, f"size out of range: {raw!r}")
    return value


def _redundancy(reader: FieldReader) -> Redundancy:
    red = reader.mapping("spec.redundancy")
    if not red:
        raise reader.error("spec.redundancy", "required: {replicas: r} or {erasure: {data: k, parity: m}}")
    if "replicas" in red and "erasure" in red:
        raise reader.error("spec.redundancy", "give replicas or erasure, not both")
    if "replicas" in red:
        r = reader.integer("spec.redundancy.replicas", minimum=1)
        assert r is not None
        if r > MAX_PIECES:
            raise reader.error("spec.redundancy.replicas", f"at most {MAX_PIECES}")
        return Replicas(r)
    if "erasure" in red:
        k = reader.integer("spec.redundancy.erasure.data", minimum=1)
        m = reader.integer("spec.redundancy.erasure.parity", minimum=0)
        if k is None:
            raise reader.error("spec.redundancy.erasure.data", "required: the number of data pieces k")
        if m is None:
            raise reader.error("spec.redundancy.erasure.parity", "required: the number of parity pieces m")
        if k + m > MAX_PIECES:
            raise reader.error("spec.redundancy.erasure", f"k + m must be at most {MAX_PIECES}")
        return Erasure(k, m)
    raise reader.error("spec.redundancy", f"unknown redundancy {sorted(red)}: expected replicas or erasure")


def _placement(reader: FieldReader, spec: DataSetSpec) -> ShardPlacement:
    nodes = reader.list("status.placement.nodes")
    if not all(isinstance(n, str) and n for n in nodes):
        raise reader.error("status.placement.nodes", "expected a list of node names")
    if len(set(nodes)) != len(nodes):
        raise reader.error("status.placement.nodes", "node names must be unique")
    rows = reader.list("status.placement.shards")
    if len(rows) != spec.shards:
        raise reader.error("status.placement.shards", f"has {len(rows)} entries, expected one per shard ({spec.shards})")
    width = spec.redundancy.width
    n_nodes = len(nodes)
    fast = _full_rows(rows, width, n_nodes)
    if fast is not None:
        return ShardPlacement(tuple(nodes), fast)
    pieces = np.full((spec.shards, width), -1, dtype=np.int32)
    for s, row in enumerate(rows):
        if not isinstance(row, list) or len(row) > width:
            raise reader.error(f"status.placement.shards[{s}]", f"expected a list of at most {width} node indexes")
        for p, idx in enumerate(row):
            if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < n_nodes:
                raise reader.error(
                    f"status.placement.shards[{s}][{p}]", f"{idx!r} is not an index into status.placement.nodes (0-{n_nodes - 1})"
                )
        if row:
            pieces[s, : len(row)] = row
    return ShardPlacement(tuple(nodes), pieces)


def _full_rows(rows: list[Any], width: int, n_nodes: int) -> npt.NDArray[np.int32] | None:
    """Fast path for the common case: every shard has all its pieces, all valid indexes.

    Returns ``None`` whenever anything is unusual, and the careful per-item path then finds and
    names the offending entry.
    """
    try:
        arr = np.array(rows)
    except (ValueError, TypeError):
        return None
    if arr.ndim != 2 or arr.shape[1] != width or arr.dtype.kind not in "iu":
        return None
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= n_nodes):
        return None
    return arr.astype(np.int32)


def dataset_object(
    name: str,
    *,
    namespace: str = "default",
    shards: int,
    shard_size: str | int,
    redundancy: Redundancy,
    failure_domain: str = "host",
    node_selector: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Build a raw DataSet object (for examples, demos and tests)."""
    red: dict[str, Any] = (
        {"replicas": redundancy.r}
        if isinstance(redundancy, Replicas)
        else {"erasure": {"data": redundancy.k, "parity": redundancy.m}}
    )
    spec: dict[str, Any] = {"shards": shards, "shardSize": str(shard_size), "redundancy": red, "failureDomain": failure_domain}
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    return {"apiVersion": labels.API_VERSION, "kind": "DataSet", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def check_placement_nodes(dataset: DataSet, known: Sequence[str]) -> list[str]:
    """Names in the placement's node list that are not in ``known`` (stale placements)."""
    if dataset.placement is None:
        return []
    have = set(known)
    return [n for n in dataset.placement.nodes if n not in have]


__all__ = [
    "DataSet",
    "DataSetSpec",
    "Erasure",
    "ObjectError",
    "Redundancy",
    "Replicas",
    "ShardPlacement",
    "check_placement_nodes",
    "dataset_object",
]
