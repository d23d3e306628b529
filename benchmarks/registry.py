"""The benchmarks ``kbl bench`` knows: name -> (module, one-line help).

Modules are imported only when run, so one benchmark's heavy imports never slow another.
"""

from __future__ import annotations

BENCHMARKS: dict[str, tuple[str, str]] = {
    "model": ("benchmarks.model", "build the topology model: 5,000 nodes and 1,000,000 shard replicas (time, peak RSS)"),
    "coldstart": ("benchmarks.coldstart", "reconciler and controller cold start on balanced snapshots (time, peak RSS, place() calls)"),
    "scale": ("benchmarks.scale", "cold start, RSS and incremental updates at 5,000 / 20,000 / 100,000 nodes (--quick for CI)"),
    "locality": ("benchmarks.locality", "locality against the optimum: default, Stork-like, kbl, oracle vs a min-cost-flow bound"),
    "extender": (
        "benchmarks.extender",
        "extender latency over HTTP next to a no-op floor (100-5,000 nodes), cache RSS at 1,000,000 replicas",
    ),
    "placement": ("benchmarks.placement", "placement balance, movement, speed and durability (60, 600 and 3,000 hosts)"),
    "controller": ("benchmarks.controller", "companion controller: reaction time, pending pod-seconds reactive vs pre-warmed"),
    "data": (
        "benchmarks.data",
        "node agents as processes: hydration, 4+2 encode/rebuild, repair, peak RSS and S3 bytes vs floors on the same bytes (targets)",
    ),
    "volume": (
        "benchmarks.volume",
        "reads through the data.kbl.io CSI volume vs local file reads (local replicas) and the read API (remote, erasure-coded)",
    ),
    "reliability": (
        "benchmarks.reliability",
        "soak at concurrency 64 over HTTP (errors, p99, RSS); data-loss simulation against random placement",
    ),
    "interruptions": (
        "benchmarks.interruptions",
        "N spot warnings on a 3x and a 4+2 DataSet: shards below redundancy and lost, kbl vs nothing, with the copy-time bound",
    ),
}
