"""Benchmark: the extender soaked at concurrency 64 over HTTP, and a long data-loss simulation.

``kbl bench reliability`` runs, in one process and one invocation:

1. the soak of :mod:`benchmarks.soaking`: ``kbl serve`` on 127.0.0.1 over a snapshot of
   ``--nodes`` nodes, one sequential client (the single-client figure), then ``--concurrency``
   keep-alive connections for ``--soak-seconds``; errors, p50/p99/max latency, throughput and
   the server's RSS at start, after warm-up, at the end and at its peak;
2. the data-loss simulation of :mod:`benchmarks.losses`: ``--rounds`` rounds of node, rack and
   zone failures and scale-downs, kbl's placement and repair plans with ``removal_is_safe`` in
   the loop against a random-placement baseline, on the same event sequence (seeded); shards
   lost within and beyond the redundancy's promise.

``-o FILE`` writes every figure as JSON. Fuzz counts come from the test suite
(``tests/reliability/test_fuzzing.py``), not from here.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from typing import Any

from benchmarks.losses import BEYOND, WITHIN, SimulationSettings, simulate, table
from benchmarks.measuring import write_json
from benchmarks.soaking import SoakSettings, soak


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--soak-seconds", type=float, default=20.0, help="length of the concurrent soak (default 20 s; 0 skips it)")
    parser.add_argument("--nodes", type=int, default=5000, help="nodes in the soaked snapshot (default 5,000)")
    parser.add_argument("--candidates", type=int, default=500, help="node names offered per call (default 500: 10%% of 5,000)")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent keep-alive connections (default 64)")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="upper bound on soak requests")
    parser.add_argument("--rounds", type=int, default=400, help="failure rounds of the data-loss simulation (default 400; 0 skips it)")
    parser.add_argument("--shards", type=int, default=256, help="shards per simulated DataSet (default 256)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", "--json", dest="output", metavar="FILE", help="write the figures as JSON")


def _soak_lines(report: dict[str, Any]) -> list[str]:
    single, loaded, rss = report["single_client"], report["concurrent"], report["rss_mib"]
    s = report["settings"]
    lines = [
        f"Soak: kbl serve over {s['nodes']} nodes, {s['candidates']} candidate names per call (NodeNames form), filter and prioritize",
        f"{'clients':>8} {'requests':>9} {'errors':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}",
    ]
    for phase in (single, loaded):
        lines.append(
            f"{phase['concurrency']:>8} {phase['requests']:>9} {phase['errors']:>7} {phase['requests_per_s']:>8} "
            f"{phase['p50_ms']:>8} {phase['p99_ms']:>8} {phase['max_ms']:>8}"
        )
    lines.append(f"server RSS MiB: start {rss['start']}, after warm-up {rss['after_warmup']}, end {rss['end']}, peak {rss['peak']}")
    return lines


def _loss_lines(rows: list[dict[str, Any]], cfg: SimulationSettings) -> list[str]:
    lines = [
        f"Data loss: {cfg.rounds} rounds on {cfg.zones} zones x {cfg.racks_per_zone} racks x {cfg.hosts_per_rack} hosts, "
        f"{cfg.shards} shards per DataSet, seed {cfg.seed}",
        f"  within the promise: {', '.join(WITHIN)}",
        f"  beyond the promise: {', '.join(BEYOND)}",
        f"{'dataset':<12} {'policy':<7} {'rounds in':>9} {'lost in':>8} {'rounds out':>10} {'lost out':>9} {'drained':>8} {'unsafe rm':>9}",
    ]
    for row in rows:
        lines.append(
            f"{row['dataset']:<12} {row['policy']:<7} {row['rounds_within']:>9} {row['lost_within']:>8} {row['rounds_beyond']:>10} "
            f"{row['lost_beyond']:>9} {row['drained_before_removal']:>8} {row['unsafe_removals_done']:>9}"
        )
    for row in rows:
        lines.append(f"  {row['dataset']} {row['policy']}: lost by round kind {row['lost_by_kind']}")
    return lines


def run(args: argparse.Namespace) -> int:
    out: dict[str, Any] = {}
    if args.soak_seconds > 0:
        cfg = SoakSettings(
            nodes=args.nodes,
            shards=4096,
            candidates=args.candidates,
            concurrency=args.concurrency,
            max_seconds=args.soak_seconds,
            max_requests=args.max_requests,
            seed=args.seed,
        )
        report = soak(cfg).to_json()
        out["soak"] = report
        print("\n".join(_soak_lines(report)), flush=True)
    if args.rounds > 0:
        sim = SimulationSettings(rounds=args.rounds, shards=args.shards, seed=args.seed)
        started = time.perf_counter()
        rows = table(simulate(sim))
        out["losses"] = {"settings": asdict(sim), "rows": rows, "seconds": round(time.perf_counter() - started, 1)}
        print("\n".join(_loss_lines(rows, sim)), flush=True)
    write_json(args.output, out)
    errors = out.get("soak", {}).get("concurrent", {}).get("errors", 0) + out.get("soak", {}).get("single_client", {}).get("errors", 0)
    if errors:
        print(f"{errors} soak requests failed", file=sys.stderr)
        return 1
    return 0
