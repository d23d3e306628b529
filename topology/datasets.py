"""DataSets: sharded data with a redundancy scheme and, once placed, where each piece lives.

The ``kbl.io/v1alpha1`` DataSet contract of DESIGN.md, typed: :class:`DataSetSpec` (shard
count, sizes, :class:`Replicas` or :class:`Erasure`, failure-domain key, node selector) and
:class:`ShardPlacement` (``status.placement``: a node list and, per shard, one index into it per
piece, in piece order). Placements are stored as one ``int32`` array of shape
``(shards, pieces)`` (``-1`` for a missing piece) so a million pieces cost a few megabytes and
the scoring hot path can index them directly.
"""

from __future__ import annotations

import warnings
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

#: ``spec.shardKey`` when absent: shard i is the object or file named ``str(i)``.
DEFAULT_SHARD_KEY = "{index}"


@dataclass(frozen=True, slots=True)
class S3Source:
    """Shards as objects ``s3://bucket/<prefix><shardKey(i)>`` (``endpoint_url`` for S3-compatible stores)."""

    bucket: str
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None

    def locate(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"


@dataclass(frozen=True, slots=True)
class PathSource:
    """Shards as files ``<path>/<shardKey(i)>`` on a filesystem mounted on every node."""

    path: str

    def locate(self, key: str) -> str:
        return f"{self.path.rstrip('/')}/{key}"


DataSource = S3Source | PathSource


def shard_key(template: str, index: int) -> str:
    """The object or file name of shard ``index`` (``spec.shardKey`` formatted with ``index``)."""
    return template.format(index=index)


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
    source: DataSource | None = None
    shard_key: str = DEFAULT_SHARD_KEY
    uid: str = field(default="", compare=False)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def shard_name(self, index: int) -> str:
        """The file name of shard ``index`` under the DataSet folder and the source."""
        return shard_key(self.shard_key, index)

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
        """The ``status.placement`` JSON form (one ``tolist`` when no piece is missing)."""
        if (self.pieces >= 0).all():
            return {"nodes": list(self.nodes), "shards": self.pieces.astype(np.int64).tolist()}
        return {
            "nodes": list(self.nodes),
            "shards": [[int(i) for i in row if i >= 0] for row in self.pieces.tolist()],
        }

    def equals(self, other: ShardPlacement) -> bool:
        """Same pieces on the same node names (node list order may differ)."""
        if self.pieces.shape != other.pieces.shape:
            return False
        names_a = np.array([*self.nodes, ""], dtype=object)[self.pieces]
        names_b = np.array([*other.nodes, ""], dtype=object)[other.pieces]
        return bool((names_a == names_b).all())


@dataclass(frozen=True, slots=True)
class SliceIndex:
    """``status.placement`` of a DataSet whose target is written as PlacementSlices
    (:mod:`topology.slices`): shards per slice, and the version of each slice the target is
    made of. Slice ``i`` holds shards ``[i * shards_per_slice, (i + 1) * shards_per_slice)``; a
    reader uses the slices only when every one it holds carries the version listed here."""

    shards_per_slice: int
    versions: tuple[str, ...]

    def to_status(self) -> dict[str, Any]:
        return {"slices": {"shardsPerSlice": self.shards_per_slice, "versions": list(self.versions)}}


@dataclass(frozen=True, slots=True)
class Transfer:
    """A piece in flight (``status.transfers[]``): slot ``(shard, piece)`` of the target now on
    ``to``, still held by ``source`` until ``to`` reports it ready (make before break). The agent
    on ``source`` keeps the piece while any transfer names it; removing the entry releases it."""

    shard: int
    piece: int
    source: str
    to: str

    def to_json(self) -> dict[str, Any]:
        return {"shard": self.shard, "piece": self.piece, "from": self.source, "to": self.to}


@dataclass(frozen=True, slots=True)
class DataSet:
    """A DataSet object: its spec and, if placed, its placement and the pieces in flight."""

    spec: DataSetSpec
    placement: ShardPlacement | None = None
    transfers: tuple[Transfer, ...] = ()
    #: When the target is written as PlacementSlices: their index (``placement`` is then
    #: ``None`` until a reader assembles the slices, :class:`topology.slices.SliceStore`).
    slices: SliceIndex | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def awaits_slices(self) -> bool:
        """Its target is written as PlacementSlices and not assembled (read as is, or a reader's
        :meth:`topology.slices.SliceStore.resolve` found a slice missing): where its pieces are is
        *unknown*, which is not *unplaced*."""
        return self.placement is None and self.slices is not None

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
            source=_source(reader),
            shard_key=_shard_key(reader, shards),
            uid=str(reader.get("metadata.uid") or ""),
        )
        placement = None
        sliced = None
        if reader.get("status.placement.slices") is not None:
            sliced = _slice_index(reader, spec)
        elif reader.get("status.placement") is not None:
            placement = _placement(reader, spec)
        return cls(spec, placement, _transfers(reader, spec), sliced)

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
        if spec.source is not None:
            body["source"] = source_json(spec.source)
        if spec.shard_key != DEFAULT_SHARD_KEY:
            body["shardKey"] = spec.shard_key
        meta: dict[str, Any] = {"name": spec.name, "namespace": spec.namespace}
        if spec.uid:
            meta["uid"] = spec.uid
        obj: dict[str, Any] = {"apiVersion": labels.API_VERSION, "kind": "DataSet", "metadata": meta, "spec": body}
        placed = self.placement.to_status() if self.placement is not None else self.slices.to_status() if self.slices else None
        if placed is not None:
            obj["status"] = {"placement": placed}
            if self.transfers:
                obj["status"]["transfers"] = [t.to_json() for t in self.transfers]
        return obj


def source_json(source: DataSource) -> dict[str, Any]:
    """``spec.source`` as JSON."""
    if isinstance(source, PathSource):
        return {"path": source.path}
    s3: dict[str, Any] = {"bucket": source.bucket, "prefix": source.prefix}
    if source.region:
        s3["region"] = source.region
    if source.endpoint_url:
        s3["endpointUrl"] = source.endpoint_url
    return {"s3": s3}


def _source(reader: FieldReader) -> DataSource | None:
    raw = reader.get("spec.source")
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or len(raw) != 1 or next(iter(raw)) not in ("s3", "path"):
        raise reader.error("spec.source", "expected exactly one of {s3: {bucket, prefix, region?, endpointUrl?}} or {path: /dir}")
    if "path" in raw:
        path = raw["path"]
        if not isinstance(path, str) or not path.startswith("/"):
            raise reader.error("spec.source.path", f"expected an absolute path, got {path!r}")
        return PathSource(path)
    s3 = raw["s3"]
    if not isinstance(s3, Mapping) or not isinstance(s3.get("bucket"), str) or not s3["bucket"]:
        raise reader.error("spec.source.s3.bucket", "required: the bucket name")
    for key in ("prefix", "region", "endpointUrl"):
        if s3.get(key) is not None and not isinstance(s3[key], str):
            raise reader.error(f"spec.source.s3.{key}", "expected a string")
    return S3Source(str(s3["bucket"]), str(s3.get("prefix") or ""), s3.get("region") or None, s3.get("endpointUrl") or None)


def _shard_key(reader: FieldReader, shards: int) -> str:
    template = reader.string("spec.shardKey", DEFAULT_SHARD_KEY) or DEFAULT_SHARD_KEY
    try:
        first, last = shard_key(template, 0), shard_key(template, shards - 1)
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise reader.error("spec.shardKey", f"{template!r} is not a format string of index: {exc}") from None
    for name in (first, last):
        if not name or name.startswith((".", "/")) or ".." in name.split("/") or "\\" in name:
            raise reader.error("spec.shardKey", f"{template!r} gives {name!r}: a relative name that stays in the DataSet folder")
    if shards > 1 and first == last:
        raise reader.error("spec.shardKey", f"{template!r} gives every shard the same name: it must use {{index}}")
    return template


def _transfers(reader: FieldReader, spec: DataSetSpec) -> tuple[Transfer, ...]:
    out = []
    for i, raw in enumerate(reader.list("status.transfers")):
        path = f"status.transfers[{i}]"
        if not isinstance(raw, Mapping):
            raise reader.error(path, "expected {shard, piece, from, to}")
        shard, piece, source, to = raw.get("shard"), raw.get("piece"), raw.get("from"), raw.get("to")
        if not isinstance(shard, int) or not 0 <= shard < spec.shards:
            raise reader.error(f"{path}.shard", f"{shard!r} is not a shard index")
        if not isinstance(piece, int) or not 0 <= piece < spec.redundancy.width:
            raise reader.error(f"{path}.piece", f"{piece!r} is not a piece index")
        if not isinstance(source, str) or not source or not isinstance(to, str) or not to:
            raise reader.error(path, "from and to must be node names")
        out.append(Transfer(shard, piece, source, to))
    return tuple(out)


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


def _slice_index(reader: FieldReader, spec: DataSetSpec) -> SliceIndex:
    per = reader.integer("status.placement.slices.shardsPerSlice", minimum=1)
    if per is None:
        raise reader.error("status.placement.slices.shardsPerSlice", "required: the shards each PlacementSlice holds")
    versions = reader.list("status.placement.slices.versions")
    expected = -(-spec.shards // per)
    if len(versions) != expected:
        raise reader.error(
            "status.placement.slices.versions", f"has {len(versions)} entries, expected one per slice ({expected} for {spec.shards} shards)"
        )
    if not all(isinstance(v, str) and v for v in versions):
        raise reader.error("status.placement.slices.versions", "expected a list of non-empty strings")
    return SliceIndex(per, tuple(versions))


def _placement(reader: FieldReader, spec: DataSetSpec) -> ShardPlacement:
    nodes = reader.list("status.placement.nodes")
    if not all(isinstance(n, str) and n for n in nodes):
        raise reader.error("status.placement.nodes", "expected a list of node names")
    if len(set(nodes)) != len(nodes):
        raise reader.error("status.placement.nodes", "node names must be unique")
    width = spec.redundancy.width
    n_nodes = len(nodes)
    parsed = reader.get("status.placement.shards")
    if isinstance(parsed, np.ndarray):  # rows already read as numbers (parse_index_rows): check them as a whole
        if parsed.shape[0] == spec.shards and parsed.shape[1] <= width and (not parsed.size or int(parsed.max()) < n_nodes):
            pieces = np.full((spec.shards, width), -1, dtype=np.int32)
            pieces[:, : parsed.shape[1]] = parsed
            return ShardPlacement(tuple(nodes), pieces)
        rows: list[Any] = [[int(i) for i in row if i >= 0] for row in parsed.tolist()]  # the careful path names the entry
    else:
        rows = reader.list("status.placement.shards")
    if len(rows) != spec.shards:
        raise reader.error("status.placement.shards", f"has {len(rows)} entries, expected one per shard ({spec.shards})")
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


_NUMBER_ROWS = b"0123456789,[]"
_WHITESPACE = b" \t\r\n"


def parse_index_rows(raw: bytes) -> npt.NDArray[np.int32] | None:
    """A JSON array of arrays of non-negative integers, read straight into numbers.

    ``status.placement.shards`` of a 10,000,000-replica snapshot is millions of small lists: as
    Python lists they cost seconds and hundreds of MiB, as bytes to numbers a fraction of a second.
    Rows may be shorter than the longest (missing pieces); they are padded with ``-1``. Returns
    ``None`` for anything else (an empty list, a negative or non-integer entry, a nested object,
    malformed JSON), which the careful reader then reads or rejects with its reason.

    Examples
    --------
    >>> parse_index_rows(b"[[0, 1, 2], [3], [4, 5]]").tolist()
    [[0, 1, 2], [3, -1, -1], [4, 5, -1]]
    >>> parse_index_rows(b"[[0, -1]]") is None
    True
    """
    text = bytes(raw).translate(None, _WHITESPACE)
    if len(text) < 4 or not (text.startswith(b"[[") and text.endswith(b"]]")) or text.translate(None, _NUMBER_ROWS):
        return None
    if b",," in text or b"[," in text or b",]" in text or b"]]" in text[:-1] or b"[[" in text[1:]:
        return None
    chars = np.frombuffer(text, dtype=np.uint8)
    opens = np.flatnonzero(chars == ord("["))[1:]
    closes = np.flatnonzero(chars == ord("]"))[:-1]
    if opens.size != closes.size or not bool((closes > opens).all()) or not bool((opens[1:] == closes[:-1] + 2).all()):
        return None  # rows must be "[...]" separated by single commas
    commas = np.flatnonzero(chars == ord(","))
    counts = np.searchsorted(commas, closes) - np.searchsorted(commas, opens) + 1
    counts[closes == opens + 1] = 0  # "[]": a shard with no piece
    listed = text.translate(None, b"[]")
    if not counts.all():  # empty rows leave empty fields between commas
        listed = b",".join(field for field in listed.split(b",") if field)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            numbers = np.fromstring(listed, dtype=np.int64, sep=",") if listed else np.zeros(0, np.int64)
    except (ValueError, DeprecationWarning):
        return None
    if numbers.size != int(counts.sum()) or (numbers.size and (int(numbers.min()) < 0 or int(numbers.max()) > np.iinfo(np.int32).max)):
        return None
    width = int(counts.max()) if counts.size else 0
    out = np.full((counts.size, width), -1, dtype=np.int32)
    starts = np.cumsum(counts) - counts
    rows = np.repeat(np.arange(counts.size), counts)
    out[rows, np.arange(numbers.size) - starts[rows]] = numbers
    return out


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
    "DEFAULT_SHARD_KEY",
    "DataSet",
    "DataSetSpec",
    "DataSource",
    "Erasure",
    "ObjectError",
    "PathSource",
    "Redundancy",
    "Replicas",
    "S3Source",
    "ShardPlacement",
    "Transfer",
    "check_placement_nodes",
    "dataset_object",
    "shard_key",
    "source_json",
]
