"""Holdings: what a node agent holds and has verified, the data plane's report channel.

The contract between the node agent (which writes it) and the placement reconciler (which reads
it). One cluster-scoped ``NodeHoldings`` object (``kbl.io/v1alpha1``) per node, named after the
node and owned by it (an ownerReference to the Node, so it is garbage-collected with the node)::

    apiVersion: kbl.io/v1alpha1
    kind: NodeHoldings
    metadata: {name: ip-10-0-1-5.ec2.internal}
    spec: {nodeName: ip-10-0-1-5.ec2.internal}
    status:
      endpoint: https://10.0.1.5:8443     # the agent's read API (peers and readers)
      heartbeatTime: "2026-11-30T08:00:00Z"
      capacityBytes: 1000000000000
      freeBytes: 800000000000
      datasets:
        - namespace: ml
          name: imagenet
          uid: 5f1c...                      # the DataSet's uid: a re-created DataSet starts over
          ready: {"replica": "0-15,32"}    # verified pieces, by piece key, as shard ranges
          hydrating: {"replica": "16-20"}
          corrupt: {}
          readyBytes: 123456

Piece keys: ``"replica"`` for a replicated DataSet (every replica of a shard is the same bytes,
the file ``<root>/<ns>/<name>/<shardKey(i)>``); the erasure fragment index ``"0"`` ..
``"k+m-1"`` for an erasure-coded one. Shard ranges use the ``kbl.io/shards`` notation
(:mod:`topology.shards`), so a node holding a million pieces reports a few hundred bytes when its
shards are contiguous.

A piece counts as ready for a slot ``(shard i, piece p)`` of ``status.placement`` on node ``n``
when ``n``'s holdings list ``i`` under the piece key of ``p`` (``"replica"`` for any slot of a
replicated DataSet) for the DataSet's current uid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from topology import labels
from topology.datasets import DataSetSpec, Erasure
from topology.errors import ShardRangeError
from topology.fields import FieldReader
from topology.shards import format_shards, parse_shards

KIND = "NodeHoldings"
#: The piece key of every replica of a replicated DataSet.
REPLICA = "replica"


def piece_key(spec: DataSetSpec, piece: int) -> str:
    """The holdings key of slot ``piece`` of a shard: ``"replica"`` or the fragment index."""
    return str(piece) if isinstance(spec.redundancy, Erasure) else REPLICA


@dataclass(frozen=True, slots=True)
class DataSetHoldings:
    """One DataSet's pieces on one node: shard indexes by piece key, per state."""

    namespace: str
    name: str
    uid: str = ""
    ready: Mapping[str, frozenset[int]] = field(default_factory=dict)
    hydrating: Mapping[str, frozenset[int]] = field(default_factory=dict)
    corrupt: Mapping[str, frozenset[int]] = field(default_factory=dict)
    ready_bytes: int = 0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def has_ready(self, key: str, shard: int) -> bool:
        return shard in self.ready.get(key, frozenset())

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
            "ready": _ranges(self.ready),
            "hydrating": _ranges(self.hydrating),
            "corrupt": _ranges(self.corrupt),
            "readyBytes": int(self.ready_bytes),
        }


@dataclass(frozen=True, slots=True)
class NodeHoldings:
    """Everything one node's agent reports (the ``NodeHoldings`` object of that node)."""

    node: str
    endpoint: str = ""
    heartbeat: str = ""
    capacity_bytes: int = 0
    free_bytes: int = 0
    datasets: Mapping[str, DataSetHoldings] = field(default_factory=dict)

    def of(self, dataset_key: str, uid: str = "") -> DataSetHoldings | None:
        """This node's holdings of a DataSet (``None`` if none, or if they belong to another uid)."""
        found = self.datasets.get(dataset_key)
        if found is None or (uid and found.uid and found.uid != uid):
            return None
        return found

    @classmethod
    def from_object(cls, obj: Any) -> NodeHoldings:
        """Type a raw ``NodeHoldings`` object; :class:`ObjectError` naming the bad field."""
        reader = FieldReader(obj, KIND)
        node = reader.string("spec.nodeName", reader.name) or reader.name
        out: dict[str, DataSetHoldings] = {}
        for i, raw in enumerate(reader.list("status.datasets")):
            path = f"status.datasets[{i}]"
            if not isinstance(raw, Mapping) or not raw.get("name"):
                raise reader.error(path, "expected {namespace, name, ready, ...}")
            entry = DataSetHoldings(
                namespace=str(raw.get("namespace") or "default"),
                name=str(raw["name"]),
                uid=str(raw.get("uid") or ""),
                ready=_parse_ranges(reader, f"{path}.ready", raw.get("ready")),
                hydrating=_parse_ranges(reader, f"{path}.hydrating", raw.get("hydrating")),
                corrupt=_parse_ranges(reader, f"{path}.corrupt", raw.get("corrupt")),
                ready_bytes=int(raw.get("readyBytes") or 0),
            )
            out[entry.key] = entry
        return cls(
            node=node,
            endpoint=reader.string("status.endpoint", "") or "",
            heartbeat=reader.string("status.heartbeatTime", "") or "",
            capacity_bytes=int(reader.get("status.capacityBytes") or 0),
            free_bytes=int(reader.get("status.freeBytes") or 0),
            datasets=out,
        )

    def to_object(self, *, node_uid: str = "") -> dict[str, Any]:
        """The raw object (``status`` included), owned by its Node when ``node_uid`` is given."""
        meta: dict[str, Any] = {"name": self.node, "labels": {"app.kubernetes.io/part-of": "kbl", "app.kubernetes.io/component": "agent"}}
        if node_uid:
            meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": self.node, "uid": node_uid}]
        return {
            "apiVersion": labels.API_VERSION,
            "kind": KIND,
            "metadata": meta,
            "spec": {"nodeName": self.node},
            "status": self.status(),
        }

    def status(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "heartbeatTime": self.heartbeat,
            "capacityBytes": int(self.capacity_bytes),
            "freeBytes": int(self.free_bytes),
            "datasets": [self.datasets[k].to_json() for k in sorted(self.datasets)],
        }


def _ranges(by_key: Mapping[str, Iterable[int]]) -> dict[str, str]:
    return {k: format_shards(sorted(v)) for k, v in sorted(by_key.items()) if v}


def _parse_ranges(reader: FieldReader, path: str, raw: Any) -> dict[str, frozenset[int]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise reader.error(path, "expected a mapping of piece key to shard ranges")
    out: dict[str, frozenset[int]] = {}
    for key, text in raw.items():
        try:
            out[str(key)] = frozenset(parse_shards(str(text))) if text else frozenset()
        except ShardRangeError as exc:
            raise reader.error(f"{path}.{key}", str(exc)) from None
    return out


__all__ = ["KIND", "REPLICA", "DataSetHoldings", "NodeHoldings", "piece_key"]
