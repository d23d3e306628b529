"""The on-disk layout of the node agent, and nothing else (pure path arithmetic).

::

    <root>/<ns>/<name>/<shardKey(i)>          a replica of shard i, byte-identical to the source
    <root>/<ns>/<name>/.pieces/<i>.<p>        erasure fragment p of shard i (liberasurecode's own
                                              fragment format: header with index and sizes, then data)
    <root>/<ns>/<name>/.kbl/uid               the DataSet uid the folder belongs to
    <root>/<ns>/<name>/.kbl/sums/<i>.<key>    the piece's checksum record, JSON:
                                              {"sha256", "size", "shardBytes", "scheme", "at"}
    <root>/.kbl-tmp/<random>                  copies in progress (never under a final name)
    <root>/.kbl-quarantine/<ns>/<name>/...    pieces that failed verification, kept for a post-mortem
    <root>/.kbl-staging/<ns>/<name>/<uid>/<i>.<p>[.json]
                                              fragments this node encoded for the other holders of
                                              its zone (it read the shard from the source once), with
                                              their records; removed once those holders have them

``key`` is the holdings piece key (``replica`` or the fragment index). A piece is ready only
when its data file and its checksum record both exist and agree on the size; the checksum
record is renamed into place before the data, so a data file under its final name always has
one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from topology.holdings import REPLICA

PIECES = ".pieces"
META = ".kbl"
SUMS = "sums"
TMP = ".kbl-tmp"
STAGING = ".kbl-staging"
QUARANTINE = ".kbl-quarantine"


@dataclass(frozen=True, slots=True)
class Layout:
    """Paths of one agent's root."""

    root: Path

    def dataset_dir(self, namespace: str, name: str) -> Path:
        return self.root / namespace / name

    def uid_file(self, namespace: str, name: str) -> Path:
        return self.dataset_dir(namespace, name) / META / "uid"

    def piece_path(self, namespace: str, name: str, shard_name: str, shard: int, key: str) -> Path:
        """The data file of a piece: the replica under its shard name, a fragment under ``.pieces``."""
        folder = self.dataset_dir(namespace, name)
        if key == REPLICA:
            return folder / shard_name
        return folder / PIECES / f"{shard}.{key}"

    def sum_path(self, namespace: str, name: str, shard: int, key: str) -> Path:
        return self.dataset_dir(namespace, name) / META / SUMS / f"{shard}.{key}"

    def sums_dir(self, namespace: str, name: str) -> Path:
        return self.dataset_dir(namespace, name) / META / SUMS

    @property
    def tmp_dir(self) -> Path:
        return self.root / TMP

    def staging_dir(self, namespace: str, name: str, uid: str) -> Path:
        return self.root / STAGING / namespace / name / uid

    def staged_path(self, namespace: str, name: str, uid: str, shard: int, key: str) -> Path:
        return self.staging_dir(namespace, name, uid) / f"{shard}.{key}"

    def staged_sum_path(self, namespace: str, name: str, uid: str, shard: int, key: str) -> Path:
        return self.staging_dir(namespace, name, uid) / f"{shard}.{key}.json"

    def quarantine_dir(self, namespace: str, name: str) -> Path:
        return self.root / QUARANTINE / namespace / name


def parse_sum_name(filename: str) -> tuple[int, str] | None:
    """``"12.replica"`` -> ``(12, "replica")``; ``None`` for anything else."""
    shard, _, key = filename.partition(".")
    if not shard.isdigit() or not key or "." in key:
        return None
    return int(shard), key
