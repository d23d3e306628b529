"""Benchmark: the extender soaked at concurrency 64 over HTTP, and a long data-loss simulation.

``kbl bench reliability`` runs, in one process and one invocation:

1. the soak of :mod:`benchmarks.soaking`: ``kbl serve`` on 127.0.0.1 over a snapshot of
   ``--nodes`` nodes, one sequential client (the single-client figure), then ``--concurrency``
   keep-alive connections for ``--soak-seconds``; errors, p50/p99/max latency, throughput and
   the server's RSS at start, after warm-up, at the end and at its peak;
2. the data-loss simulation of :mod:`benchmarks.losses`: ``--rounds`` rounds of node, rack and
   zone failures and scale-downs, kbl's placement and repair plans with ``removal_is_safe`` in
   the loop against a random-placement baseline, on the same event sequence (seeded); shards
   lost within and beyond the redundancy's promise;
3. the timed runs of :mod:`benchmarks.losses` (``--timed-hours``): the real placement reconciler
   in-process with simulated agents whose copies take time (``--copy-rate-mib-s`` per node,
   ``--piece-gib`` per piece) against random placement on the same failures: shards lost and
   time back to full redundancy;
4. the repair sweep (``--repair-sweep``): time from one node's loss to full redundancy as a
   function of the bytes lost and the copy rate, next to the lower bound (bytes to copy over the
   survivors' aggregate copy bandwidth).

``-o FILE`` writes every figure as JSON. Fuzz counts come from the test suite
(``tests/reliability/test_fuzzing.py``), not from here.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from typing import Any

from benchmarks.losses import (
    BEYOND,
    GIB,
    MIB,
    WITHIN,
    SimulationSettings,
    TimedSettings,
    repair_sweep,
    simulate,
    simulate_timed,
    table,
)
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
    parser.add_argument(
        "--timed-hours", type=float, default=24.0, help="simulated hours of the timed run with the real reconciler (0 skips it)"
    )
    parser.add_argument("--copy-rate-mib-s", type=float, default=25.0, help="copy rate per node in the timed run, MiB/s (default 25)")
    parser.add_argument("--piece-gib", type=float, default=8.0, help="bytes per piece in the timed run, GiB (default 8)")
    parser.add_argument(
        "--repair-sweep", action=argparse.BooleanOptionalAction, default=True, help="time to full redundancy vs bytes and rate"
    )
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


def _timed_lines(tallies: dict[str, dict[str, Any]], cfg: TimedSettings) -> list[str]:
    lines = [
        f"Timed run with the real placement reconciler: {cfg.hours:g} h on {cfg.zones}x{cfg.racks_per_zone}x{cfg.hosts_per_rack} nodes, "
        f"node MTBF {cfg.node_mtbf_h:g} h (rack failures {cfg.rack_share:.0%}), {cfg.shards} shards per DataSet, "
        f"{cfg.piece_bytes / GIB:g} GiB pieces copied at {cfg.copy_rate_bps / MIB:g} MiB/s per node, seed {cfg.seed}",
        f"{'policy':<7} {'failures':>8} {'nodes':>6} {'lost 3x':>8} {'lost 4+2':>9} {'reported':>9} "
        f"{'mean s':>8} {'max s':>8} {'copied GiB':>11}",
    ]
    for policy, t in tallies.items():
        lost = t["shards_lost"]
        reported = sum(t["reported_lost"].values()) if policy == "kbl" else "-"
        lines.append(
            f"{policy:<7} {t['failures']:>8} {t['nodes_failed']:>6} {lost.get('replicas-3', 0):>8} {lost.get('erasure-4+2', 0):>9} "
            f"{reported!s:>9} {t['recovery_mean_s']!s:>8} {t['recovery_max_s']!s:>8} {t['copied_gib']:>11}"
        )
    return lines


def _repair_lines(points: list[dict[str, Any]]) -> list[str]:
    lines = [
        "Repair after one node's loss (36 nodes, 3x over racks, 240 shards): time to full redundancy vs lower bound",
        f"{'piece GiB':>9} {'MiB/s':>6} {'lost GiB':>9} {'copied GiB':>11} {'seconds':>8} {'bound s':>8} {'ratio':>6} "
        f"{'zone bound s':>12} {'piece s':>8}",
    ]
    for p in points:
        piece_s = p["piece_gib"] * 1024 / p["copy_rate_mib_s"]
        lines.append(
            f"{p['piece_gib']:>9g} {p['copy_rate_mib_s']:>6g} {p['lost_gib']:>9} {p['copied_gib']:>11} {p['seconds']:>8} "
            f"{p['lower_bound_s']:>8} {p['ratio']!s:>6} {p['zone_bound_s']:>12} {piece_s:>8.1f}"
        )
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
    if args.timed_hours > 0:
        timed = TimedSettings(
            hours=args.timed_hours,
            copy_rate_bps=args.copy_rate_mib_s * MIB,
            piece_bytes=int(args.piece_gib * GIB),
            step_s=60.0,
            seed=args.seed,
        )
        started = time.perf_counter()
        tallies = {k: v.to_json() for k, v in simulate_timed(timed).items()}
        out["timed"] = {"settings": asdict(timed), "policies": tallies, "seconds": round(time.perf_counter() - started, 1)}
        print("\n".join(_timed_lines(tallies, timed)), flush=True)
    if args.repair_sweep:
        started = time.perf_counter()
        points = [p.to_json() for p in repair_sweep()]
        out["repair"] = {"points": points, "seconds": round(time.perf_counter() - started, 1)}
        print("\n".join(_repair_lines(points)), flush=True)
    write_json(args.output, out)
    errors = out.get("soak", {}).get("concurrent", {}).get("errors", 0) + out.get("soak", {}).get("single_client", {}).get("errors", 0)
    if errors:
        print(f"{errors} soak requests failed", file=sys.stderr)
        return 1
    return 0
