"""``kbl place --nodes FILE --dataset FILE [--previous FILE] [-o FILE]``: compute a DataSet's placement.

Reads the nodes (a snapshot or a NodeList, JSON or YAML) and one DataSet object, computes its
placement with :func:`placement.place` (with ``--previous``, starting from that DataSet's
``status.placement`` and moving as little as possible) and writes the DataSet object with
``status.placement`` filled, to ``-o FILE`` or stdout (YAML when the file ends in ``.yaml`` or
``.yml``, else JSON). A short report (balance, domain spread, moves) goes to stderr.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import orjson
import yaml

from placement import PlacementResult, place
from topology import labels
from topology.datasets import DataSet
from topology.errors import SnapshotError
from topology.snapshots import load_snapshot, read_file_objects


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", required=True, metavar="FILE", help="a snapshot or NodeList (JSON or YAML)")
    parser.add_argument("--dataset", required=True, metavar="FILE", help="one DataSet object (JSON or YAML)")
    parser.add_argument("--previous", metavar="FILE", help="the DataSet with its current status.placement: rebalance from it")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the placed DataSet here (default stdout)")
    parser.add_argument("--weight", default="ephemeral-storage", help="allocatable resource used as capacity weight (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the placement hash (default %(default)s)")
    parser.add_argument("--rack-label", default=labels.DEFAULT_RACK, help="node label naming the rack (default %(default)s)")


def read_dataset_object(path: str) -> dict[str, Any]:
    """The single DataSet object in ``path``.

    Raises
    ------
    SnapshotError
        If the file cannot be read, is not UTF-8 JSON/YAML, or does not hold exactly one DataSet
        (:func:`topology.snapshots.read_file_objects`, the one object reader).
    """
    found = [o for o in read_file_objects(path) if isinstance(o, dict) and o.get("kind") == "DataSet"]
    if len(found) != 1:
        raise SnapshotError(f"{path}: expected exactly one DataSet object, found {len(found)}")
    obj: dict[str, Any] = found[0]
    return obj


def report_lines(result: PlacementResult, *, limit: int = 5) -> list[str]:
    """The human report printed to stderr."""
    lines = result.report.lines()
    for move in result.moves[:limit]:
        lines.append(f"move {move}")
    if len(result.moves) > limit:
        lines.append(f"... and {len(result.moves) - limit} more moves")
    return lines


#: etcd's default --max-request-bytes (dataplane.reconciler.settings.MAX_OBJECT_BYTES; not imported:
#: the CLI stays light).
ETCD_MAX_REQUEST_BYTES = 1_572_864


def run(args: argparse.Namespace) -> int:
    snap = load_snapshot(args.nodes, rack_label=args.rack_label)
    for rejected in snap.rejected:
        if rejected.kind == "Node":
            print(f"kbl place: warning: skipped {rejected}", file=sys.stderr)
    if not snap.nodes:
        print(f"kbl place: error: {args.nodes} holds no usable Node", file=sys.stderr)
        return 1
    raw = read_dataset_object(args.dataset)
    dataset = DataSet.from_object(raw)
    previous = None
    if args.previous:
        prev = DataSet.from_object(read_dataset_object(args.previous))
        if prev.placement is None:
            print(f"kbl place: error: {args.previous}: DataSet {prev.key} has no status.placement", file=sys.stderr)
            return 1
        previous = prev.placement
    result = place(snap.nodes, dataset.spec, previous=previous, weight=args.weight, seed=args.seed)
    out = copy.deepcopy(raw)
    old_status = out.get("status")
    status: dict[str, Any] = dict(old_status) if isinstance(old_status, dict) else {}
    status["placement"] = result.placement.to_status()
    out["status"] = status
    if args.output and args.output.endswith((".yaml", ".yml")):
        text = yaml.safe_dump(out, sort_keys=False)
    else:
        try:  # orjson: json.dumps took 2 s for 300,000 pieces
            text = orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n"
        except TypeError:  # what orjson does not take (keys that are not strings, say, from YAML input)
            text = json.dumps(out, indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    for line in report_lines(result):
        print(f"kbl place: {line}", file=sys.stderr)
    try:
        stored = len(orjson.dumps(out))  # compact JSON, as etcd stores a custom resource
    except TypeError:
        stored = len(json.dumps(out, separators=(",", ":")))
    if stored > ETCD_MAX_REQUEST_BYTES:
        print(
            f"kbl place: warning: this DataSet object is {stored:,} bytes as compact JSON; an API server stores at most "
            f"{ETCD_MAX_REQUEST_BYTES:,} by default (etcd --max-request-bytes), so the placement reconciler would not write this "
            "placement (Placed=False, PlacementTooLarge): use fewer, larger shards, or split the DataSet",
            file=sys.stderr,
        )
    return 0
