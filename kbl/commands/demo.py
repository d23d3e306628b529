"""``kbl demo``: the main job on the embedded default, with no cluster and no cloud account.

It builds a 3-zone cluster from copies of a real EKS node object, places four datasets with the
placement engine (3x replicas, 2x across zones, erasure 4+2 and 6+3), starts the real extender on
a loopback port, and drives a bursty, skewed pod trace through a faithful kube-scheduler
simulation three ways (kube-scheduler alone, a Stork-like tier extender, kbl) plus a greedy oracle,
against the min-cost-flow optimum. Then the companion controller runs once, in-process, on the
same cluster plus a KBL whose pods fit on no existing node (:mod:`benchmarks.capacity_demo`: the
simulated cloud, no account) and the node-group requests it plans are shown. It prints both
tables and writes into ``--out``:
``locality.png`` (the plot), ``report.md`` (a short report), ``results.json`` (every figure) and
``snapshot.json`` (the cluster and datasets, readable by ``kbl topology --snapshot``). Last, the data
plane acts for real (:mod:`benchmarks.dataplane_demo`): the placement reconciler and one node agent
per node place, hydrate, lose and repair two DataSets on real folders under ``--out``/data, and
every replica is checked against the source byte for byte.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.capacity_demo import markdown as capacity_markdown
from benchmarks.capacity_demo import node_group_requests, requests_table
from benchmarks.dataplane_demo import markdown as data_plane_markdown
from benchmarks.dataplane_demo import run_data_plane
from benchmarks.dataplane_demo import table as data_plane_table
from benchmarks.locality import (
    KBL_DEFAULTS,
    PREVIOUS_THRESHOLD,
    Comparison,
    compare,
    make_console,
    markdown_table,
    plot,
    results_table,
    variants,
)
from benchmarks.policies import PolicyRun
from benchmarks.traces import TraceSettings
from topology.examples import as_list

DEFAULT_OUT = "kbl-demo"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output directory (default ./{DEFAULT_OUT}/)")
    parser.add_argument("--seed", type=int, default=0, help="trace seed (default 0)")
    parser.add_argument("--weight", type=int, default=5, help="extender weight in the simulated scheduler config (default 5)")
    parser.add_argument("--quick", action="store_true", help="a small trace (24 nodes, 240 pods) instead of 60 nodes and 900 pods")
    parser.add_argument(
        "--tls", action="store_true", help="run the data act over mutual TLS (a private CA made for the run, as the chart's agent.tls does)"
    )


def _settings(args: argparse.Namespace) -> TraceSettings:
    base = TraceSettings(seed=args.seed)
    return base.quick() if args.quick else base


def report(comparison: Comparison, elapsed_s: float, command: str) -> str:
    """The demo's markdown report."""
    rows: dict[str, PolicyRun] = {}
    for v, r in comparison.rows:
        key = v.policy
        if v.policy == "kbl":
            key = "kbl" if v.label.startswith(KBL_DEFAULTS.split("{")[0]) and v.settings.hotspot_threshold is None else "kbl-previous"
        rows.setdefault(key, r)
    default, kbl, stork = rows.get("default"), rows.get("kbl"), rows.get("stork-like")
    previous, oracle = rows.get("kbl-previous"), rows.get("oracle")
    lines = [
        "# kbl demo",
        "",
        f"`{command}` — {len(comparison.trace.arrivals)} pods on {len(comparison.trace.nodes)} nodes "
        f"({comparison.trace.slots} pod slots), finished in {elapsed_s:.0f} s.",
        "",
        "Every policy scheduled the same pods through the same simulated kube-scheduler (in-tree filters, "
        "sampling, default score plugins, random tie-break); the extenders were called over HTTP on 127.0.0.1. "
        "Bytes are TiB read by the pods, by where the data came from; cost weights node 0, rack 1, zone 4, "
        "cross-zone 16, remote 64 per byte; the optimum is an LP lower bound over one node per pod for its whole run "
        "(nothing can beat it; when its solution splits no pod it is a schedule, and the bound is the exact optimum).",
        "",
        markdown_table(comparison),
        "",
    ]
    if default is not None and kbl is not None and stork is not None:
        lines += [
            f"- kbl reads {kbl.cross_zone_bytes / 2**40:.2f} TiB across zones where kube-scheduler alone reads "
            f"{default.cross_zone_bytes / 2**40:.2f} TiB ({kbl.cross_zone_bytes / max(default.cross_zone_bytes, 1):.0%}).",
            f"- Network cost over the optimum: kube-scheduler {comparison.ratio(default):.3f}, Stork-like {comparison.ratio(stork):.3f}, "
            f"kbl {comparison.ratio(kbl):.3f} (extender defaults)"
            + (f", kbl with the previous hotspot fading ({PREVIOUS_THRESHOLD}) {comparison.ratio(previous):.3f}" if previous else "")
            + (f"; a greedy oracle that knows every exact cost reaches {comparison.ratio(oracle):.3f}" if oracle is not None else "")
            + ".",
            "- The oracle's gap to the optimum is the price of deciding one pod at a time, on arrival, without knowing the "
            "pods still to come; kbl prices the slots other *pending* pods need (`kbl bench locality` shows it on Job bursts).",
            "",
        ]
    lines += ["![locality](locality.png)", ""]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    console = make_console()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    settings = _settings(args)
    console.print(
        f"[bold]kbl demo[/bold]: {settings.zones} zones x {settings.racks_per_zone} racks x {settings.hosts_per_rack} nodes "
        f"(copies of a real EKS hpc7g.16xlarge node), {len(settings.datasets)} datasets placed by the placement engine, "
        f"{settings.pods} pods in bursts; extenders served on 127.0.0.1."
    )
    comparison = compare(settings, variants(args.weight, full=False), console=console)
    console.print(results_table(comparison))
    trace = comparison.trace
    capacity = node_group_requests(trace.node_objects, trace.nodes, trace.datasets)
    console.print(requests_table(capacity))
    console.print("[bold]data plane[/bold]: the placement reconciler and one node agent per node, on real folders under " f"{out / 'data'}")
    data_plane = run_data_plane(trace.node_objects, out, quick=args.quick, seed=args.seed, tls=args.tls)
    console.print(data_plane_table(data_plane))
    elapsed = time.perf_counter() - started
    flags = (f" --seed {args.seed}" if args.seed else "") + (" --quick" if args.quick else "") + (" --tls" if args.tls else "")
    command = "kbl demo" + flags
    png = plot(comparison, out / "locality.png")
    sections = [report(comparison, elapsed, command), capacity_markdown(capacity), data_plane_markdown(data_plane)]
    (out / "report.md").write_text("\n".join(sections))
    results = {**comparison.as_dict(), "capacity": capacity.as_dict(), "dataPlane": data_plane.as_dict()}
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "snapshot.json").write_text(json.dumps(as_list([*comparison.trace.node_objects, *comparison.trace.dataset_objects()])))
    console.print(f"wrote {png}, {out / 'report.md'}, {out / 'results.json'}, {out / 'snapshot.json'} in {elapsed:.0f} s")
    return 0
