"""PlacementSlices: a large DataSet's target split across bounded objects.

A DataSet's ``status.placement`` lists every node it uses and one index per piece. etcd stores
an object of at most 1.5 MiB (``--max-request-bytes``), so one object holds about 80,000 3x
shards on 5,000 nodes, and every watcher of DataSets (every node's agent) receives the whole
object on every write. Past a size (the reconciler's ``--inline-placement-bytes``) the target is
written instead as namespaced ``PlacementSlice`` objects, as a Service's endpoints are written
as EndpointSlices::

    apiVersion: kbl.io/v1alpha1
    kind: PlacementSlice
    metadata:
      name: imagenet-p17-3f9a0c5e21d4    # slice_name(DataSet, index, version)
      namespace: ml
      labels: {kbl.io/dataset: imagenet}
      ownerReferences: [{kind: DataSet, name: imagenet, uid: ..., controller: true}]
    spec:
      dataSet: imagenet
      index: 17
      firstShard: 11594                  # index * shardsPerSlice
      version: 3f9a0c5e21d4              # a hash of the content: a slice is never modified
      nodes: [ip-10-0-1-5, ...]          # the nodes this slice uses, nothing else
      shards: [[0, 4, 9], ...]           # per shard, one index into nodes per piece

and the DataSet's ``status.placement`` becomes their index (:class:`~topology.datasets.SliceIndex`)::

    placement: {slices: {shardsPerSlice: 682, versions: [3f9a0c5e21d4, ...]}}

A slice holds at most :data:`SLICE_PIECES` pieces, so it stays far under etcd's limit with the
longest node names (253 characters), and a change to a few shards writes a few slices: a node
joining a 100,000-node cluster writes the slices its new pieces are in, not the DataSet.

Consistency: slices are immutable (the version is in the name). The writer creates the changed
slices, then writes the index, then deletes the slices no index names any more. A reader
assembles a target only from the exact versions the index lists (:class:`SliceStore`); while one
is missing (watch streams of two resources are not ordered) it keeps the last target it
assembled, so it never acts on a mix of two targets, and a reader that has none yet waits
(``resolve`` answers ``None``). A writer that dies between two steps leaves an index that still
names slices that exist, and orphans the next writer deletes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt

from topology import labels
from topology.datasets import DataSet, ShardPlacement, SliceIndex
from topology.errors import ObjectError
from topology.fields import FieldReader

#: Most pieces one PlacementSlice holds: 2,048 node names of 253 characters and their indexes are
#: about 0.55 MB, a third of etcd's 1.5 MiB.
SLICE_PIECES = 2048
#: Fewest pieces a slice holds (the last one of a DataSet aside): a piece that moves rewrites its
#: slice, so slices are as small as the index allows (a change writes little) ...
MIN_SLICE_PIECES = 256
#: ... while the index (a version per slice, about 15 bytes each in ``status.placement``) stays
#: at about this many slices: a DataSet grows its slices from 256 up to 2,048 pieces, then its index.
TARGET_SLICES = 4096
#: The reconciler's default: a target whose ``status.placement`` JSON is larger is sliced. Every
#: status write reaches every agent (a watcher of DataSets), so the inline form stays small.
INLINE_PLACEMENT_BYTES = 65_536
#: The label naming a slice's DataSet (when the name fits a label value).
DATASET_LABEL = "kbl.io/dataset"
_VERSION_CHARS = 12
_MAX_NAME = 253


def shards_per_slice(width: int, shards: int | None = None) -> int:
    """Shards per slice for ``width`` pieces per shard: :data:`MIN_SLICE_PIECES` pieces, doubled
    until ``shards`` make at most :data:`TARGET_SLICES` slices or they reach :data:`SLICE_PIECES`
    (``shards`` not given: the largest slices).

    >>> shards_per_slice(3, 1_000), shards_per_slice(3, 333_334), shards_per_slice(3, 10_000_000)
    (85, 85, 682)
    """
    pieces = SLICE_PIECES
    if shards is not None:
        want = -(-shards * max(1, width) // TARGET_SLICES)
        pieces = min(SLICE_PIECES, max(MIN_SLICE_PIECES, 1 << max(0, (want - 1).bit_length())))
    return max(1, pieces // max(1, width))


def slice_count(shards: int, per: int) -> int:
    return -(-shards // per)


def slice_name(dataset: str, index: int, version: str) -> str:
    """The object name of slice ``index`` of DataSet ``dataset`` at ``version`` (a DNS subdomain:
    a name too long to take the suffix is shortened and keeps a hash of itself)."""
    suffix = f"-p{index}-{version}"
    if len(dataset) + len(suffix) <= _MAX_NAME:
        return dataset + suffix
    digest = hashlib.blake2b(dataset.encode(), digest_size=4).hexdigest()
    return f"{dataset[: _MAX_NAME - len(suffix) - 9]}-{digest}{suffix}"


#: A 64-bit digest of each node name seen (names are few and long-lived; bounded all the same).
_NAME_DIGESTS: dict[str, int] = {}
_NAME_DIGESTS_MAX = 1_000_000


def _name_digest(name: str) -> int:
    value = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")
    if len(_NAME_DIGESTS) >= _NAME_DIGESTS_MAX:
        _NAME_DIGESTS.clear()
    _NAME_DIGESTS[name] = value
    return value


def name_digests(names: Sequence[str]) -> npt.NDArray[np.uint64]:
    """Per name, a 64-bit digest of it (remembered: a slice's version hashes these, not the names)."""
    get = _NAME_DIGESTS.get
    return np.fromiter((get(n) or _name_digest(n) for n in names), dtype=np.uint64, count=len(names))


def _version(nodes: Sequence[str], pieces: npt.NDArray[np.int32], digests: npt.NDArray[np.uint64] | None = None) -> str:
    """The content's name: a hash of the node names (through their digests) and the rows."""
    h = hashlib.blake2b(digest_size=_VERSION_CHARS // 2)
    h.update((name_digests(nodes) if digests is None else digests).tobytes())
    h.update(np.ascontiguousarray(pieces, dtype=np.int32).tobytes())
    h.update(str(pieces.shape).encode())
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class PlacementSlice:
    """One PlacementSlice: shards ``first_shard ..`` of a DataSet's target, over its own node list."""

    namespace: str
    dataset: str
    index: int
    first_shard: int
    version: str
    nodes: tuple[str, ...]
    #: ``pieces[s, p]``: index into ``nodes`` of piece ``p`` of shard ``first_shard + s``, or -1.
    pieces: npt.NDArray[np.int32] = field(compare=False, repr=False)

    @property
    def name(self) -> str:
        return slice_name(self.dataset, self.index, self.version)

    @property
    def dataset_key(self) -> str:
        return f"{self.namespace}/{self.dataset}"

    @classmethod
    def from_object(cls, obj: Any) -> PlacementSlice:
        """Read a ``kbl.io/v1alpha1`` PlacementSlice; :class:`~topology.errors.ObjectError` names
        the field when it is malformed (an index out of the node list, a version that does not
        name the content)."""
        reader = FieldReader(obj, "PlacementSlice")
        dataset = reader.string("spec.dataSet")
        if not dataset:
            raise reader.error("spec.dataSet", "required: the DataSet's name")
        index = reader.integer("spec.index", minimum=0)
        first = reader.integer("spec.firstShard", minimum=0)
        if index is None or first is None:
            raise reader.error("spec.index" if index is None else "spec.firstShard", "required")
        version = reader.string("spec.version")
        if not version:
            raise reader.error("spec.version", "required")
        nodes = reader.list("spec.nodes")
        if not all(isinstance(n, str) and n for n in nodes) or len(set(nodes)) != len(nodes):
            raise reader.error("spec.nodes", "expected a list of unique node names")
        rows = reader.list("spec.shards")
        if not rows:
            raise reader.error("spec.shards", "expected one list of node indexes per shard")
        pieces = _full_rows(rows, len(nodes))
        if pieces is not None:
            return cls(reader.namespace or "default", dataset, index, first, version, tuple(nodes), pieces)
        width = max((len(r) for r in rows if isinstance(r, list)), default=0)
        pieces = np.full((len(rows), max(width, 1)), -1, dtype=np.int32)
        for s, row in enumerate(rows):
            if not isinstance(row, list) or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(nodes) for i in row):
                raise reader.error(f"spec.shards[{s}]", f"expected indexes into spec.nodes (0-{len(nodes) - 1})")
            pieces[s, : len(row)] = row
        return cls(reader.namespace or "default", dataset, index, first, version, tuple(nodes), pieces)

    def to_object(self, dataset_uid: str = "") -> dict[str, Any]:
        """The object as written (owned by the DataSet when its uid is given, so it is
        garbage-collected with it)."""
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if len(self.dataset) <= 63:
            meta["labels"] = {DATASET_LABEL: self.dataset}
        if dataset_uid:
            meta["ownerReferences"] = [
                {"apiVersion": labels.API_VERSION, "kind": "DataSet", "name": self.dataset, "uid": dataset_uid, "controller": True}
            ]
        if bool((self.pieces >= 0).all()):
            rows: list[Any] = self.pieces.astype(np.int64).tolist()
        else:
            rows = [[i for i in row if i >= 0] for row in self.pieces.tolist()]
        spec = {
            "dataSet": self.dataset,
            "index": self.index,
            "firstShard": self.first_shard,
            "version": self.version,
            "nodes": list(self.nodes),
            "shards": rows,
        }
        return {"apiVersion": labels.API_VERSION, "kind": "PlacementSlice", "metadata": meta, "spec": spec}


def _full_rows(rows: list[Any], n_nodes: int) -> npt.NDArray[np.int32] | None:
    """Every row as long as the others and every index valid: read as one array (else ``None``
    and the careful path names the offending row)."""
    try:
        arr = np.array(rows)
    except (ValueError, TypeError):
        return None
    if arr.ndim != 2 or arr.dtype.kind not in "iu" or not arr.shape[1]:
        return None
    if int(arr.min()) < 0 or int(arr.max()) >= n_nodes:
        return None
    return arr.astype(np.int32)


class NameOrder:
    """A node list's names in sorted order, and each node's rank in it: a slice lists its nodes
    sorted by name (its content, and the version naming it, do not depend on the order of the
    target's node list) with one ``unique`` over ranks. Kept by the caller for the DataSets of a
    pass that share a node list (:meth:`of`)."""

    __slots__ = ("nodes", "rank", "sorted_digests", "sorted_names")

    def __init__(self, nodes: tuple[str, ...]) -> None:
        names = np.asarray(nodes, dtype=object)
        order = np.argsort(np.asarray(nodes, dtype=str), kind="stable")  # code-point order, as str compares, in C
        self.nodes = nodes
        self.rank = np.empty(len(nodes), dtype=np.int32)
        self.rank[order] = np.arange(len(nodes), dtype=np.int32)
        self.sorted_names: npt.NDArray[np.object_] = names[order]
        self.sorted_digests = name_digests(self.sorted_names.tolist())

    @classmethod
    def within(cls, base: NameOrder, positions: npt.NDArray[np.int64], nodes: tuple[str, ...]) -> NameOrder:
        """The order of ``nodes``, each at ``positions`` in ``base.nodes`` (all found): ranks in
        ``base``'s order, so the DataSets over subsets of one node table share its sort and its
        digests (a few milliseconds each instead of a sort of 100,000 names)."""
        out = cls.__new__(cls)
        out.nodes = nodes
        out.rank = base.rank[positions]
        out.sorted_names = base.sorted_names
        out.sorted_digests = base.sorted_digests
        return out

    @classmethod
    def of(cls, nodes: tuple[str, ...], cache: dict[tuple[str, ...], NameOrder] | None = None) -> NameOrder:
        if cache is None:
            return cls(nodes)
        found = cache.get(nodes)
        if found is None:
            found = cache[nodes] = cls(nodes)
        return found


def render_slice(
    namespace: str, dataset: str, index: int, per: int, placement: ShardPlacement, *, order: NameOrder | None = None
) -> PlacementSlice:
    """Slice ``index`` of ``placement`` (``per`` shards per slice), over the nodes it uses sorted
    by name (``order``: of ``placement.nodes``, when the caller has it)."""
    order = order or NameOrder(placement.nodes)
    first = index * per
    rows = placement.pieces[first : first + per]
    present = rows >= 0
    used, inverse = np.unique(order.rank[rows[present]], return_inverse=True)
    local = np.full(rows.shape, -1, dtype=np.int32)
    local[present] = inverse.astype(np.int32)
    nodes = tuple(order.sorted_names[used].tolist())
    return PlacementSlice(namespace, dataset, index, first, _version(nodes, local, order.sorted_digests[used]), nodes, local)


def split(
    namespace: str,
    dataset: str,
    placement: ShardPlacement,
    *,
    only: Iterable[int] | None = None,
    per: int | None = None,
    orders: dict[tuple[str, ...], NameOrder] | None = None,
    order: NameOrder | None = None,
) -> list[PlacementSlice]:
    """The slices of ``placement`` (``only`` those indexes when given; ``per`` shards each, by
    default :func:`shards_per_slice` of its shape; ``orders``: name orders kept by the caller;
    ``order``: the order of ``placement.nodes``, when the caller has it).
    Each is what :func:`render_slice` makes, all rendered with one ``unique`` over (slice, node
    rank) pairs: a join at 100,000 nodes rewrites thousands of slices."""
    per = per or shards_per_slice(placement.width, placement.shards)
    indexes = list(range(slice_count(placement.shards, per))) if only is None else sorted({int(i) for i in only})
    if not indexes:
        return []
    order = order or NameOrder.of(placement.nodes, orders)
    chosen = np.asarray(indexes, dtype=np.int64)
    starts = chosen * per
    counts = np.minimum(starts + per, placement.shards) - starts
    row_bounds = np.concatenate(([0], np.cumsum(counts)))
    shard_rows = np.repeat(starts - row_bounds[:-1], counts) + np.arange(int(row_bounds[-1]))
    rows = placement.pieces[shard_rows]
    present = rows >= 0
    owner = np.repeat(np.arange(len(indexes), dtype=np.int64), counts)[:, None] + np.zeros(rows.shape[1], dtype=np.int64)
    stride = max(1, len(order.sorted_names))

    pairs, inverse = np.unique(owner[present] * stride + order.rank[rows[present]], return_inverse=True)
    bounds = np.searchsorted(pairs // stride, np.arange(len(indexes) + 1))
    local = np.full(rows.shape, -1, dtype=np.int32)
    local[present] = (inverse.ravel() - bounds[owner[present]]).astype(np.int32)
    at = pairs % stride
    names = order.sorted_names[at].tolist()
    digests = order.sorted_digests[at]
    out = []
    edges, row_edges = bounds.tolist(), row_bounds.tolist()
    for j, index in enumerate(indexes):
        a, b = edges[j], edges[j + 1]
        nodes = tuple(names[a:b])
        pieces = local[row_edges[j] : row_edges[j + 1]]
        out.append(PlacementSlice(namespace, dataset, index, index * per, _version(nodes, pieces, digests[a:b]), nodes, pieces))
    return out


def sliced_form(
    namespace: str, dataset: str, placement: ShardPlacement, *, order: NameOrder | None = None
) -> tuple[SliceIndex, list[PlacementSlice]]:
    """A whole target as a first sliced write makes it: the index for ``status.placement`` and
    every slice it names."""
    per = shards_per_slice(placement.width, placement.shards)
    parts = split(namespace, dataset, placement, per=per, order=order)
    return SliceIndex(per, tuple(p.version for p in parts)), parts


#: Node-list look-ups between two targets' lists, by the two lists.
LookUps = dict[tuple[tuple[str, ...], tuple[str, ...]], npt.NDArray[np.int32]]


def changed_slices(
    old: ShardPlacement | None,
    new: ShardPlacement,
    *,
    per: int | None = None,
    lookups: LookUps | None = None,
    positions: Callable[[tuple[str, ...]], npt.NDArray[np.int64]] | None = None,
) -> npt.NDArray[np.int64]:
    """Indexes of the slices (``per`` shards each, by default :func:`shards_per_slice` of the new
    shape) whose content differs between two targets (all when the shape changed or there is no
    old one). Node lists may differ in order and members: pieces are compared by node name,
    through one look-up per old node (kept in ``lookups`` for the next DataSet on the same two
    lists), or through ``positions`` (each name's position in a node table the caller keeps,
    ``-1`` when not in it) when the table names nearly all of them."""
    per = per or shards_per_slice(new.width, new.shards)
    count = slice_count(new.shards, per)
    if old is None or old.pieces.shape != new.pieces.shape:
        return np.arange(count, dtype=np.int64)
    if old.nodes is new.nodes or old.nodes == new.nodes:
        mapped = old.pieces
    else:
        pair = (old.nodes, new.nodes)  # by value: DataSets over the same nodes hold equal, not identical, lists
        found = lookups.get(pair) if lookups is not None else None
        if found is None:
            lut = _through_table(old.nodes, new.nodes, positions) if positions is not None else None
            if lut is None:
                where = {n: i for i, n in enumerate(new.nodes)}
                lut = np.array([where.get(n, -2) for n in old.nodes] + [-1], dtype=np.int32)
            if lookups is not None:
                lookups[pair] = lut
        else:
            lut = found
        mapped = lut[old.pieces]  # -1 indexes the appended -1: a missing piece stays missing
    diff = mapped[:, 0] != new.pieces[:, 0]
    for p in range(1, new.width):  # column by column: numpy's short-axis reductions are slow
        diff |= mapped[:, p] != new.pieces[:, p]
    rows = np.flatnonzero(diff)
    return np.unique(rows // per).astype(np.int64)


def _through_table(
    old: tuple[str, ...], new: tuple[str, ...], positions: Callable[[tuple[str, ...]], npt.NDArray[np.int64]]
) -> npt.NDArray[np.int32] | None:
    """Per name of ``old`` (and a last ``-1``): its index in ``new``, ``-2`` when absent, through
    table positions; ``None`` when more than a few names are outside the table."""
    at_old, at_new = positions(old), positions(new)
    out_old, out_new = np.flatnonzero(at_old < 0), np.flatnonzero(at_new < 0)
    if len(out_old) + len(out_new) > 16:
        return None
    size = int(max(at_old.max(initial=-1), at_new.max(initial=-1))) + 2
    inverse = np.full(size, -2, dtype=np.int32)
    inside = np.flatnonzero(at_new >= 0)
    inverse[at_new[inside]] = inside
    lut = np.append(inverse[np.where(at_old >= 0, at_old, size - 1)], -1).astype(np.int32)
    outside = {new[j]: j for j in out_new.tolist()}
    for i in out_old.tolist():  # a few names not in the table (a cordoned or lost holder)
        lut[i] = outside.get(old[i], -2)
    return lut


# ----------------------------------------------------------------------- readers
def _names(versions: tuple[str, ...] | None, index: Any, version: Any) -> bool:
    """True when an index's ``versions`` name slice ``index`` at ``version``."""
    return versions is not None and isinstance(index, int) and 0 <= index < len(versions) and versions[index] == version



@dataclass(slots=True)
class _Assembly:
    """One DataSet's slices as a reader holds them, mapped onto a node list that only grows."""

    names: list[str] = field(default_factory=list)
    where: dict[str, int] = field(default_factory=dict)
    #: slice index -> (version, rows as indexes into ``names``)
    rows: dict[int, tuple[str, npt.NDArray[np.int32]]] = field(default_factory=dict)
    #: the versions and width of the last target assembled, and that target
    last: tuple[tuple[str, ...], int] | None = None
    placement: ShardPlacement | None = None
    #: the versions of the newest index seen, and the slices of it not held (kept current by
    #: every slice event, so a reader waiting for thousands of slices does not scan the index
    #: on each one)
    awaited: tuple[str, ...] | None = None
    missing: set[int] = field(default_factory=set)

    def mapped(self, piece_slice: PlacementSlice) -> npt.NDArray[np.int32]:
        held = self.rows.get(piece_slice.index)
        if held is not None and held[0] == piece_slice.version:
            return held[1]
        lut = np.empty(len(piece_slice.nodes) + 1, dtype=np.int32)
        for i, n in enumerate(piece_slice.nodes):
            at = self.where.get(n)
            if at is None:
                at = self.where[n] = len(self.names)
                self.names.append(n)
            lut[i] = at
        lut[-1] = -1
        out = lut[piece_slice.pieces]
        self.rows[piece_slice.index] = (piece_slice.version, out)
        return out


class SliceStore:
    """What a reader of DataSets holds of PlacementSlices, and the targets they assemble to.

    Feed it the PlacementSlice watch (:meth:`apply`, :meth:`replace`); :meth:`resolve` gives a
    DataSet read with :meth:`DataSet.from_object` its target. Assembling maps only the slices
    whose version changed since the last target of that DataSet. Not thread-safe: readers call
    it under the lock that guards their view.
    """

    def __init__(self) -> None:
        self._slices: dict[str, dict[tuple[int, str], PlacementSlice]] = {}
        self._assembled: dict[str, _Assembly] = {}
        self.rejected = 0

    def apply(self, event_type: str, obj: Mapping[str, Any] | PlacementSlice) -> str | None:
        """One watch event of a PlacementSlice (the object, or the slice already typed); the key
        of the DataSet it belongs to (``None`` when the object is malformed: it is counted in
        :attr:`rejected` and ignored)."""
        if event_type == "BOOKMARK":
            return None
        if event_type == "DELETED":
            if isinstance(obj, PlacementSlice):
                return self._drop(obj.dataset_key, obj.index, obj.version)
            spec = obj.get("spec") or {}
            meta = obj.get("metadata") or {}
            return self._drop(f"{meta.get('namespace') or 'default'}/{spec.get('dataSet')}", spec.get("index"), spec.get("version"))
        if not isinstance(obj, PlacementSlice):
            try:
                obj = PlacementSlice.from_object(obj)
            except ObjectError:
                self.rejected += 1
                return None
        self.add(obj)
        return obj.dataset_key

    def add(self, piece_slice: PlacementSlice) -> None:
        """A slice held (from a watch event, or the writer's own as it created it: not parsed again)."""
        key = piece_slice.dataset_key
        self._slices.setdefault(key, {})[(piece_slice.index, piece_slice.version)] = piece_slice
        state = self._assembled.get(key)
        if state is not None and _names(state.awaited, piece_slice.index, piece_slice.version):
            state.missing.discard(piece_slice.index)

    def discard(self, piece_slice: PlacementSlice) -> None:
        """A slice the reader deleted itself."""
        self._drop(piece_slice.dataset_key, piece_slice.index, piece_slice.version)

    def _drop(self, key: str, index: Any, version: Any) -> str:
        held = self._slices.get(key)
        if held is not None:
            held.pop((index, version), None)
            if not held:
                del self._slices[key]
        state = self._assembled.get(key)
        if state is not None and _names(state.awaited, index, version):
            state.missing.add(index)
        return key

    def replace(self, objs: Iterable[Mapping[str, Any] | PlacementSlice]) -> set[str]:
        """A full list (objects, or slices already typed): every DataSet key whose slices it
        names or named before."""
        before = set(self._slices)
        self._slices = {}
        for state in self._assembled.values():
            state.awaited = None  # counted again from what the list holds
        for obj in objs:
            self.apply("ADDED", obj)
        return before | set(self._slices)

    def remember(self, dataset: DataSet, placement: ShardPlacement) -> None:
        """The target a sliced DataSet's index names, known to the reader already (the writer's
        own): :meth:`resolve` answers it without assembling the slices again."""
        if dataset.slices is None:
            return
        state = self._assembled.setdefault(dataset.key, _Assembly())
        state.last, state.placement = (dataset.slices.versions, dataset.spec.redundancy.width), placement

    def forget(self, key: str) -> None:
        """Drop what is assembled for a DataSet that is gone (its slices go with their events)."""
        self._assembled.pop(key, None)

    def slices(self, key: str) -> Mapping[tuple[int, str], PlacementSlice]:
        """The slices held of DataSet ``key``, by ``(index, version)``."""
        return self._slices.get(key, {})

    def keys(self) -> set[str]:
        """The DataSets some held slice belongs to."""
        return set(self._slices)

    def resolve(self, dataset: DataSet, *, partial: bool = False, latest: bool = False) -> DataSet | None:
        """``dataset`` with its target: as read when it is not sliced; assembled from the slices
        when every one carries the version its index lists; else with the last target assembled
        for it (same shape); ``None`` when there is none yet (the reader waits: it must not take
        a sliced DataSet for an unplaced one). ``partial``: the writer's reading, for which no
        other target will come: the shards of a missing slice are unplaced (``-1``). ``latest``:
        only the target the index names now, never an older one (``None`` while a slice is
        missing): a reader that must not act on an older target, such as a node removal check
        (an older target may not name the node that now holds a shard's only piece)."""
        index = dataset.slices
        if index is None:
            self._assembled.pop(dataset.key, None)
            return dataset
        width = dataset.spec.redundancy.width
        state = self._assembled.setdefault(dataset.key, _Assembly())
        versions = index.versions
        if state.last == (versions, width) and state.placement is not None:
            return replace(dataset, placement=state.placement)
        if state.awaited != versions:  # a new index: which of its slices are not held yet
            held = self._slices.get(dataset.key, {})
            state.awaited = versions
            state.missing = {i for i, v in enumerate(versions) if (i, v) not in held}
        placement = None if state.missing else self._assemble(dataset, index, state)
        if placement is not None:
            state.last, state.placement = (versions, width), placement
            return replace(dataset, placement=placement)
        if partial:
            return replace(dataset, placement=self._assemble(dataset, index, state, partial=True))
        if latest:
            return None
        old = state.placement
        if old is not None and old.pieces.shape == (dataset.spec.shards, width):
            return replace(dataset, placement=old)
        return None

    @overload
    def _assemble(self, dataset: DataSet, index: SliceIndex, state: _Assembly) -> ShardPlacement | None: ...
    @overload
    def _assemble(self, dataset: DataSet, index: SliceIndex, state: _Assembly, *, partial: Literal[True]) -> ShardPlacement: ...
    def _assemble(self, dataset: DataSet, index: SliceIndex, state: _Assembly, *, partial: bool = False) -> ShardPlacement | None:
        held = self._slices.get(dataset.key, {})
        per = index.shards_per_slice
        shards, width = dataset.spec.shards, dataset.spec.redundancy.width
        parts = []
        for i, version in enumerate(index.versions):
            piece_slice = held.get((i, version))
            rows = min(per, shards - i * per)
            if (
                piece_slice is None or piece_slice.first_shard != i * per
                or piece_slice.pieces.shape[0] != rows or piece_slice.pieces.shape[1] > width
            ):  # fmt: skip
                if not partial:
                    return None
                parts.append(np.full((rows, width), -1, dtype=np.int32))
                continue
            part = state.mapped(piece_slice)
            if part.shape[1] < width:
                part = np.pad(part, ((0, 0), (0, width - part.shape[1])), constant_values=-1)
            parts.append(part)
        for gone in set(state.rows) - set(range(len(index.versions))):
            del state.rows[gone]
        pieces = np.concatenate(parts) if parts else np.zeros((0, width), dtype=np.int32)
        present = pieces >= 0
        used, inverse = np.unique(pieces[present], return_inverse=True)
        compact = np.full(pieces.shape, -1, dtype=np.int32)
        compact[present] = inverse.astype(np.int32)
        names = state.names
        placement = ShardPlacement(tuple(names[i] for i in used.tolist()), compact)
        if len(names) > 2 * max(1, used.size) + 1024:  # a node list that only grew: start it again
            state.names, state.where, state.rows = [], {}, {}
        return placement
