"""A pod's data wish resolved against the cached DataSets, and which nodes hold it locally.

:func:`resolve` turns a pod's kbl annotations (``kbl.io/dataset``, ``kbl.io/shards``,
``kbl.io/locality``) into a :class:`Wish`: the dataset, the requested shard indexes, whether
locality is required, and the bytes a pod reads whatever node it runs on. A wish that cannot be
honoured carries a ``problem`` a human can act on instead of raising.

:func:`local_shards` answers the question behind ``kbl.io/locality: required``: how many of the
requested shards a node holds a piece of. For replicas a piece is a whole replica; for an
erasure-coded DataSet it is one fragment of ``size / k`` bytes, and the placement puts one
fragment per node, so the rule is *a piece of every requested shard* (what
``manifests/README.md`` promises), never *every requested byte*.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from topology import labels
from topology.clusters import Cluster
from topology.datasets import Erasure
from topology.errors import ShardRangeError
from topology.pods import Locality, Pod

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Wish:
    """A pod's data wish resolved against the cache.

    ``key`` is ``None`` when the pod reads nothing through kbl. ``problem`` is a reason a human
    can act on when the wish cannot be honoured (unknown dataset, bad shard range, no placement,
    a sliced target whose PlacementSlices have not all arrived).
    ``shard_count`` is the number of requested shards; ``erasure`` tells whether a piece is a
    fragment (erasure coding) or a whole replica.
    """

    key: str | None
    shards: tuple[int, ...] | None = None
    required: bool = False
    problem: str | None = None
    needed_bytes: float = 0.0
    shard_count: int = 0
    erasure: bool = False

    @property
    def usable(self) -> bool:
        return self.key is not None and self.problem is None

    @property
    def piece_word(self) -> str:
        """What one piece of a shard is called in reasons: ``piece`` (erasure) or ``replica``."""
        return "piece" if self.erasure else "replica"


def resolve(cluster: Cluster, pod: Pod) -> Wish:
    """The pod's data wish against the cluster's DataSets (see :class:`Wish`)."""
    data = pod.data
    if data is None:
        return Wish(None)
    required = data.locality is Locality.REQUIRED
    key = f"{data.namespace}/{data.dataset}"
    if data.problem is not None:
        return Wish(key, required=required, problem=data.problem)
    dataset = cluster.datasets.get(key)
    if dataset is None:
        return Wish(key, required=required, problem=f"DataSet {key} (from {labels.POD_DATASET}) not found in the cache")
    try:
        shards = None if data.shards_text is None else data.shard_indexes(dataset.spec.shards)
    except ShardRangeError as exc:
        return Wish(key, required=required, problem=f"{labels.POD_SHARDS}: {exc}")
    if dataset.awaits_slices:  # sliced: the extender has not received every slice yet
        return Wish(key, shards, required, f"DataSet {key} waits for its PlacementSlices (status.placement names slices not received yet)")
    if dataset.placement is None:
        return Wish(key, shards, required, f"DataSet {key} has no status.placement yet (place it with kbl place)")
    spec = dataset.spec
    sizes = spec.shard_sizes if shards is None else spec.shard_sizes[np.asarray(shards, dtype=np.int64)]
    needed = float(sizes.sum()) * spec.redundancy.piece_fraction() * spec.redundancy.needed
    count = spec.shards if shards is None else len(shards)
    return Wish(key, shards, required, None, needed, count, isinstance(spec.redundancy, Erasure))


def local_shards(pieces: IntArray, size: int) -> IntArray:
    """How many shards each node id holds at least one piece of.

    Parameters
    ----------
    pieces:
        Shape ``(shards, pieces)``: node id per piece slot of the requested shards, ``-1`` for a
        missing piece or an absent node (:meth:`topology.clusters.Cluster.global_pieces`).
    size:
        Number of node ids (the result's length).

    Returns
    -------
    IntArray
        Shape ``(size,)``: a node holding two pieces of one shard counts it once.

    Examples
    --------
    >>> local_shards(np.array([[0, 1], [0, 0], [2, -1]]), 4).tolist()
    [2, 1, 1, 0]
    """
    shard, _ = np.nonzero(pieces >= 0)
    holder = pieces[pieces >= 0]
    if holder.size == 0:
        return np.zeros(size, dtype=np.int64)
    width = max(size, int(holder.max()) + 1)
    pairs = np.unique(shard.astype(np.int64) * width + holder)
    return np.bincount(pairs % width, minlength=width)[:size].astype(np.int64)
