"""kbl's pure model of the cluster: failure domains, nodes, pods, datasets, KBLs, snapshots.

Pure: no HTTP, no Kubernetes client, no boto3 (an import-linter contract enforces it). The
public surface is re-exported here; the modules behind it are private to the package's users.
"""

from topology.clusters import Cluster, LevelBytes
from topology.datasets import DataSet, DataSetSpec, Erasure, Redundancy, Replicas, ShardPlacement
from topology.errors import KblError, ObjectError, PlacementError, QuantityError, ShardRangeError, SnapshotError
from topology.kbls import KBL, NodeGroupWish, Stage
from topology.localities import Level, LocalityCosts
from topology.nodes import Node, Resources, Taint
from topology.pods import DataRequest, Locality, Pod
from topology.quantities import parse_quantity
from topology.shards import format_shards, parse_shards
from topology.snapshots import Snapshot, load_snapshot

__all__ = [
    "KBL",
    "Cluster",
    "DataRequest",
    "DataSet",
    "DataSetSpec",
    "Erasure",
    "KblError",
    "Level",
    "LevelBytes",
    "Locality",
    "LocalityCosts",
    "Node",
    "NodeGroupWish",
    "ObjectError",
    "PlacementError",
    "Pod",
    "QuantityError",
    "Redundancy",
    "Replicas",
    "Resources",
    "ShardPlacement",
    "ShardRangeError",
    "Snapshot",
    "SnapshotError",
    "Stage",
    "Taint",
    "format_shards",
    "load_snapshot",
    "parse_quantity",
    "parse_shards",
]
