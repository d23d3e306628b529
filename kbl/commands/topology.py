"""``kbl topology --snapshot FILE``: a readable summary of a snapshot.

Prints the region/zone/rack tree (walked on the cluster's graph, the one representation of the
topology) with node counts and allocatable capacity, the datasets with
shard counts, sizes and redundancy, any placement violations, and every rejected object with its
reason. ``--json`` prints the same facts as one JSON object for scripts.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from topology import labels
from topology.nodes import Resources, is_synthetic
from topology.snapshots import Snapshot, load_snapshot
from topology.violations import find_violations


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--snapshot", required=True, metavar="FILE", help="kubectl get nodes,pods,datasets,kbls -A -o json (or YAML)")
    parser.add_argument("--rack-label", default=labels.DEFAULT_RACK, help="node label naming the rack (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary instead of tables")


def _gib(b: int) -> str:
    return f"{b / 2**30:,.0f} GiB"


def _short(domain: str) -> str:
    """The last part of a qualified domain name; synthetic ones say which label is missing."""
    parts = domain.split("/")
    if is_synthetic(domain):
        missing = next(p for p in parts if p.startswith("~"))[1:]
        return f"({missing.replace('-', ' ')} label: {parts[-1]})"
    return parts[-1]


def summarise(snap: Snapshot) -> dict[str, Any]:
    """The facts ``kbl topology`` prints, as plain data."""
    cluster = snap.cluster()  # the one representation: the topology questions go to its graph

    def cap(names: list[str]) -> dict[str, int]:
        total = Resources()
        for n in names:
            total = total + cluster.nodes[n].allocatable
        return {"nodes": len(names), "cpu_m": total.cpu_m, "memory_b": total.memory_b, "storage_b": total.storage_b}

    regions = []
    for region, zones in cluster.domain_tree().items():
        zone_list = []
        region_nodes: list[str] = []
        for zone, racks in zones.items():
            rack_list = []
            zone_nodes: list[str] = []
            for rack, names in racks.items():
                rack_list.append({"rack": rack, **cap(names)})
                zone_nodes += names
            zone_list.append({"zone": zone, **cap(zone_nodes), "racks": rack_list})
            region_nodes += zone_nodes
        regions.append({"region": region, **cap(region_nodes), "zones": zone_list})
    datasets = []
    for ds in snap.datasets:
        violations = find_violations(cluster, ds, limit=50)
        datasets.append(
            {
                "dataset": ds.key,
                "shards": ds.spec.shards,
                "bytes": ds.spec.total_bytes,
                "redundancy": str(ds.spec.redundancy),
                "failureDomain": ds.spec.failure_domain,
                "placed": ds.placement is not None,
                "violations": [str(v) for v in violations],
            }
        )
    return {
        "nodes": len(snap.nodes),
        "pods": len(snap.pods),
        "kbls": [k.key for k in snap.kbls],
        "regions": regions,
        "datasets": datasets,
        "rejected": [str(e) for e in snap.rejected],
        "ignoredKinds": snap.ignored_kinds,
    }


def run(args: argparse.Namespace) -> int:
    snap = load_snapshot(args.snapshot, rack_label=args.rack_label)
    facts = summarise(snap)
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    console = Console()
    root = Tree(f"[bold]cluster[/]: {facts['nodes']} nodes, {facts['pods']} pods, {len(facts['kbls'])} KBLs")
    for region in facts["regions"]:
        r = root.add(
            f"region [bold]{region['region']}[/]: {region['nodes']} nodes, {region['cpu_m'] / 1000:,.0f} CPU, "
            f"{_gib(region['memory_b'])} memory, {_gib(region['storage_b'])} storage"
        )
        for zone in region["zones"]:
            z = r.add(f"zone [bold]{_short(zone['zone'])}[/]: {zone['nodes']} nodes, {_gib(zone['storage_b'])} storage")
            for rack in zone["racks"]:
                z.add(f"rack {_short(rack['rack'])}: {rack['nodes']} nodes, {_gib(rack['storage_b'])} storage")
    console.print(root)
    if facts["datasets"]:
        table = Table(title="datasets")
        for col in ("dataset", "shards", "size", "redundancy", "failure domain", "placed", "violations"):
            table.add_column(col)
        for d in facts["datasets"]:
            placed = "yes" if d["placed"] else "no"
            row = (d["dataset"], str(d["shards"]), _gib(d["bytes"]), d["redundancy"], d["failureDomain"], placed)
            table.add_row(*row, str(len(d["violations"])))
        console.print(table)
        for d in facts["datasets"]:
            for v in d["violations"][:10]:
                console.print(f"[yellow]violation[/] {v}")
    for reason in facts["rejected"]:
        console.print(f"[red]rejected[/] {reason}")
    return 1 if facts["rejected"] else 0
