"""Benchmark: locality against the optimum. Every policy on one trace, side by side, in one run.

``kbl bench locality [--json OUT] [--plots DIR] [--quick]`` generates a trace
(:mod:`benchmarks.traces`), computes the whole-run LP lower bound (:mod:`benchmarks.bounds`;
the full run also the per-instant min-cost-flow bound, for comparison),
drives the trace through the simulated kube-scheduler (:mod:`benchmarks.driving`) once per policy
(:mod:`benchmarks.policies`), the extenders served over real HTTP on loopback, and reports bytes
read per locality level, cross-zone bytes, network cost and its ratio to the bound, extender
latency per pod and pods left pending. The full run adds a second trace, *Job bursts*: the same
workload with every pod of a burst created at one instant (a Job's pods, all in the watch before
the scheduler's next cycle), where kbl's pending-batch pricing has other pending pods to price and places each burst jointly
(:mod:`extender.joint`); that run checks issue 25's target (:func:`burst_target`: kbl's defaults
close at least half the gap between the greedy oracle and the optimum, both measured in the same
run) and the command exits 1 when it is missed.
``kbl demo`` runs the same comparison on the quick trace.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from benchmarks.bounds import Bound, IntervalBound, interval_bound, lower_bound
from benchmarks.measuring import write_json
from benchmarks.oracles import burst_plan_cost
from benchmarks.policies import PolicyRun, PolicySettings, run_policy
from benchmarks.traces import Trace, TraceSettings, make_trace
from topology.errors import KblError
from topology.localities import LEVELS

TiB = 2.0**40
#: Column names of the locality levels: where the bytes a pod reads come from.
LEVEL_NAMES = ("same node", "same rack", "same zone", "cross-zone", "cross-region")


def tib(value: float) -> str:
    """Bytes as TiB with two decimals (float noise below zero shown as 0.00)."""
    return f"{max(value, 0.0) / TiB:.2f}"


def make_console() -> Console:
    """A console for tables: the terminal's width, or 150 columns when not on a terminal."""
    console = Console()
    return console if console.is_terminal else Console(width=150)


@dataclass(frozen=True, slots=True)
class Variant:
    """One row of the comparison: a label, the policy and its settings."""

    label: str
    policy: str
    settings: PolicySettings = field(default_factory=PolicySettings)


#: The label prefix of the row with kbl's shipped defaults (the demo and the manifests use them).
KBL_DEFAULTS = "kbl (weight {weight}, extender defaults)"
#: The previous default hotspot threshold, kept as a row to show what it cost.
PREVIOUS_THRESHOLD = 0.8


def variants(weight: int = 5, *, full: bool = True) -> list[Variant]:
    """The rows compared: defaults, Stork-like, kbl (extender defaults), kbl with the previous
    default hotspot fading (0.8), the greedy oracle.

    ``full`` adds kbl with the full ``Nodes`` payload (``nodeCacheCapable: false``) for its latency.
    """
    rows = [
        Variant("default (no extender)", "default"),
        Variant(f"stork-like (weight {weight})", "stork-like", PolicySettings(weight=weight)),
        Variant(KBL_DEFAULTS.format(weight=weight), "kbl", PolicySettings(weight=weight)),
        Variant(
            f"kbl (weight {weight}, hotspotThreshold {PREVIOUS_THRESHOLD}: the previous default)",
            "kbl",
            PolicySettings(weight=weight, hotspot_threshold=PREVIOUS_THRESHOLD),
        ),
    ]
    if full:
        rows.append(
            Variant(f"kbl (weight {weight}, extender defaults, full Nodes)", "kbl", PolicySettings(weight=weight, node_cache_capable=False))
        )
    rows.append(Variant("greedy oracle (exact costs)", "oracle"))
    return rows


def burst_variants(weight: int = 5) -> list[Variant]:
    """The rows of the Job-bursts trace: kbl one pod at a time, its defaults (each burst planned
    jointly on its own), and with ``slotPrices`` (bursts planned with the learned slot prices)."""
    return [
        Variant(f"stork-like (weight {weight})", "stork-like", PolicySettings(weight=weight)),
        Variant(f"kbl (weight {weight}, batchLimit 0: one pod at a time)", "kbl", PolicySettings(weight=weight, batch_limit=0)),
        Variant(KBL_DEFAULTS.format(weight=weight), "kbl", PolicySettings(weight=weight)),
        Variant(
            f"kbl (weight {weight}, slotPrices true: bursts planned with learned slot prices)",
            "kbl",
            PolicySettings(weight=weight, slot_prices=True),
        ),
        Variant("greedy oracle (exact costs)", "oracle"),
    ]


@dataclass(slots=True)
class Comparison:
    """The trace, the bound and every row's run."""

    trace: Trace
    bound: IntervalBound
    bound_s: float
    rows: list[tuple[Variant, PolicyRun]]
    per_instant: Bound | None = None

    def ratio(self, run: PolicyRun) -> float:
        return run.cost / self.bound.cost if self.bound.cost > 0 else float("nan")

    def _per_instant(self) -> dict[str, Any]:
        assert self.per_instant is not None
        return {"cost": self.per_instant.cost, "instants": self.per_instant.instants, "ratio": self.per_instant.cost / self.bound.cost}

    def as_dict(self) -> dict[str, Any]:
        s = self.trace.settings
        return {
            "trace": {
                "nodes": len(self.trace.nodes),
                "slots": self.trace.slots,
                "pods": len(self.trace.arrivals),
                "datasets": [
                    {
                        "name": d.name,
                        "shards": d.shards,
                        "shard_gib": d.shard_gib,
                        "redundancy": str(d.redundancy),
                        "failure_domain": d.failure_domain,
                    }
                    for d in s.datasets
                ],
                "settings": {k: v for k, v in asdict(s).items() if k != "datasets"},
            },
            "optimum": {
                "cost": self.bound.cost,
                "lp_cost": self.bound.lp_cost,
                "fractional_pods": self.bound.fractional_pods,
                "exact": self.bound.fractional_pods == 0,
                "level_bytes": dict(zip([lv.label for lv in LEVELS], self.bound.level_bytes, strict=True)),
                "cross_zone_bytes": self.bound.level_bytes[3] + self.bound.level_bytes[4],
                "checkpoints": self.bound.checkpoints,
                "uncapacitated_cost": self.bound.uncapacitated_cost,
                "seconds": self.bound_s,
                "per_instant_bound": None if self.per_instant is None else self._per_instant(),
            },
            "policies": [{"label": v.label, "ratio_to_optimum": self.ratio(r), **r.as_dict()} for v, r in self.rows],
        }


def compare(
    trace_settings: TraceSettings,
    rows: Sequence[Variant],
    *,
    console: Console | None = None,
    per_instant: bool = False,
) -> Comparison:
    """Generate the trace, bound it, run every row with a progress bar (on ``console``);
    ``per_instant`` also computes the (weaker) per-instant bound for comparison."""
    console = console or Console(stderr=True)
    trace = make_trace(trace_settings)
    started = time.perf_counter()
    bound = interval_bound(trace.cluster, trace.nodes, trace.arrivals)
    bound_s = time.perf_counter() - started
    weaker = lower_bound(trace.cluster, trace.nodes, trace.arrivals) if per_instant else None
    runs: list[tuple[Variant, PolicyRun]] = []
    columns = (TextColumn("{task.description:<44}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        for row in rows:
            task = progress.add_task(row.label, total=len(trace.arrivals))

            def advance(n: int, task_id: Any = task) -> None:
                progress.advance(task_id, n)

            runs.append((row, run_policy(row.policy, trace, row.settings, progress=advance)))
            progress.update(task, completed=len(trace.arrivals))
    return Comparison(trace, bound, bound_s, runs, weaker)


#: Issue 25 item 2: on the Job-bursts trace, kbl's defaults close at least this fraction of the gap
#: between the greedy oracle and the optimum (both measured in the same run).
BURST_GAP_CLOSED = 0.5


@dataclass(frozen=True, slots=True)
class BurstTarget:
    """The Job-bursts target: kbl's ratio to the optimum against ``greedy - (greedy - 1) x 0.5``."""

    kbl: float
    greedy: float
    limit: float

    @property
    def met(self) -> bool:
        return self.kbl <= self.limit

    def describe(self) -> str:
        verdict = "met" if self.met else "MISSED"
        return (
            f"burst target {verdict}: kbl {self.kbl:.4f} x the optimum, greedy oracle {self.greedy:.4f} x, "
            f"limit {self.limit:.4f} x (half the gap between greedy and the optimum closed)"
        )


def burst_target(comparison: Comparison) -> BurstTarget:
    """The target of the Job-bursts run (:data:`BURST_GAP_CLOSED`), from the rows of that run.

    Raises
    ------
    ValueError
        The comparison has no row with kbl's defaults or no greedy oracle row.
    """
    kbl = [r for v, r in comparison.rows if v.policy == "kbl" and v.settings == PolicySettings(weight=v.settings.weight)]
    greedy = [r for v, r in comparison.rows if v.policy == "oracle"]
    if not kbl or not greedy:
        raise ValueError("the burst target needs kbl's defaults row and the greedy oracle row")
    k, g = comparison.ratio(kbl[0]), comparison.ratio(greedy[0])
    return BurstTarget(k, g, g - (g - 1.0) * BURST_GAP_CLOSED)


def optimum_label(bound: IntervalBound) -> str:
    """The optimum row's label: exact when the LP bound is attained by a schedule."""
    return "optimum (LP bound, attained: exact)" if bound.fractional_pods == 0 else "optimum (LP lower bound)"


def results_table(comparison: Comparison) -> Table:
    """The comparison as a rich table: bytes per level (TiB), cost ratio, latency, pending."""
    table = Table(title=f"Locality on {len(comparison.trace.arrivals)} pods, {len(comparison.trace.nodes)} nodes (bytes read in TiB)")
    table.add_column("policy")
    for name in LEVEL_NAMES:
        table.add_column(name, justify="right")
    table.add_column("cross-zone total", justify="right")
    table.add_column("cost / optimum", justify="right")
    table.add_column("extender ms/pod", justify="right")
    table.add_column("pending", justify="right")
    b = comparison.bound
    for variant, run in comparison.rows:
        table.add_row(
            variant.label,
            *(tib(x) for x in run.level_bytes),
            tib(run.cross_zone_bytes),
            f"{comparison.ratio(run):.3f}",
            f"{run.extender_ms_per_pod:.1f}" if run.extender_calls else "-",
            str(run.pending),
        )
    table.add_row(optimum_label(b), *(tib(x) for x in b.level_bytes), tib(b.level_bytes[3] + b.level_bytes[4]), "1.000", "-", "-")
    return table


def markdown_table(comparison: Comparison) -> str:
    """The comparison as a markdown table (for BENCHMARKS.md and the demo's report)."""
    head = "| policy | " + " | ".join(LEVEL_NAMES) + " | cross-zone total | cost / optimum | extender ms/pod (p99) | pending |"
    lines = [head, "|---" * (len(LEVELS) + 6) + "|"]
    for variant, run in comparison.rows:
        latency = f"{run.extender_ms_per_pod:.1f} ({run.extender_ms_p99:.1f})" if run.extender_calls else "-"
        ratio = f"{comparison.ratio(run):.3f}"
        cells = [variant.label, *(tib(x) for x in run.level_bytes), tib(run.cross_zone_bytes), ratio, latency, str(run.pending)]
        lines.append("| " + " | ".join(cells) + " |")
    b = comparison.bound
    cells = [optimum_label(b), *(tib(x) for x in b.level_bytes), tib(b.level_bytes[3] + b.level_bytes[4]), "1.000", "-", "-"]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(comparison: Comparison, path: Path) -> Path:
    """A PNG: bytes read per locality level per policy (stacked bars) and cost / optimum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [v.label for v, _ in comparison.rows] + [optimum_label(comparison.bound)]
    levels = [r.level_bytes for _, r in comparison.rows] + [comparison.bound.level_bytes]
    ratios = [comparison.ratio(r) for _, r in comparison.rows] + [1.0]
    colors = ["#1b9e77", "#66a61e", "#e6ab02", "#d95f02", "#7570b3"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 0.55 * len(labels) + 2.2), gridspec_kw={"width_ratios": [3, 2]})
    y = list(range(len(labels)))[::-1]
    left = [0.0] * len(labels)
    for li, name in enumerate(LEVEL_NAMES):
        widths = [max(row[li], 0.0) / TiB for row in levels]
        ax1.barh(y, widths, left=left, color=colors[li], label=name)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax1.set_yticks(y, labels)
    ax1.set_xlabel("bytes read (TiB), by where they come from")
    ax1.legend(loc="lower right", fontsize=8, ncols=5, bbox_to_anchor=(1.0, 1.0))
    bars = ax2.barh(y, ratios, color=["#999999"] * (len(labels) - 1) + ["#333333"])
    ax2.axvline(1.0, color="#333333", linewidth=0.8)
    ax2.axvline(1.05, color="#d95f02", linewidth=0.8, linestyle="--", label="optimum + 5%")
    ax2.set_yticks(y, [""] * len(labels))
    ax2.set_xlabel("network cost / optimum (lower is better)")
    ax2.bar_label(bars, labels=[f"{r:.3f}" for r in ratios], padding=3, fontsize=8)
    ax2.set_xlim(0, max(ratios) * 1.18)
    ax2.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"kbl locality benchmark: {len(comparison.trace.arrivals)} pods on {len(comparison.trace.nodes)} nodes", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", dest="json_out", metavar="OUT", help="write the figures as JSON")
    parser.add_argument("--plots", metavar="DIR", help="write locality.png into DIR")
    parser.add_argument("--quick", action="store_true", help="a smaller trace (24 nodes, 240 pods)")
    parser.add_argument("--seed", type=int, default=0, help="trace seed (default 0)")
    parser.add_argument("--weight", type=int, default=5, help="extender weight for stork-like and kbl (default 5)")
    parser.add_argument(
        "--draws",
        type=int,
        default=0,
        help="also price slots by the LPs of DRAWS other draws of the bursts' workload (one whole-run LP each; default 0)",
    )


def run(args: argparse.Namespace) -> int:
    settings = TraceSettings(seed=args.seed)
    if args.quick:
        settings = settings.quick()
    console = make_console()
    started = time.perf_counter()
    comparison = compare(settings, variants(args.weight, full=not args.quick), console=console, per_instant=not args.quick)
    console.print(results_table(comparison))
    _describe(console, comparison)
    out = comparison.as_dict()
    if not args.quick:
        bursts = compare(replace(settings, burst_spread_s=0.0), burst_variants(args.weight), console=console)
        console.print("[bold]Job bursts[/bold]: the same workload, every pod of a burst created at one instant")
        console.print(results_table(bursts))
        _describe(console, bursts)
        out["job_bursts"] = bursts.as_dict()
    target: BurstTarget | None = None
    if not args.quick:
        target = burst_target(bursts)
        console.print(target.describe())
        out["job_bursts"]["target"] = {**asdict(target), "met": target.met}
        ceiling = burst_plan_cost(bursts.trace)
        console.print(
            f"per-burst joint plan with exact costs (offline, no scheduler: the ceiling of planning each burst jointly): "
            f"{ceiling.cost / bursts.bound.cost:.4f} x the optimum, {ceiling.unplaced} pods without a slot"
        )
        out["job_bursts"]["per_burst_plan"] = {
            "cost": ceiling.cost,
            "ratio": ceiling.cost / bursts.bound.cost,
            "unplaced": ceiling.unplaced,
        }
        out["job_bursts"]["ceilings"] = ceilings = future_ceilings(bursts, draws=args.draws)
        for line in describe_ceilings(ceilings):
            console.print(line)
    console.print(f"Total {time.perf_counter() - started:.0f} s.")
    if args.plots:
        path = plot(comparison, Path(args.plots) / "locality.png")
        console.print(f"plot: {path}")
    write_json(args.json_out, out)
    if args.json_out:
        console.print(f"figures: {args.json_out}")
    return 0 if target is None or target.met else 1


def future_ceilings(bursts: Comparison, *, draws: int = 0) -> dict[str, Any]:
    """What per-burst planning reaches with static slot prices, by what the prices know.

    Offline emulations (:func:`~benchmarks.oracles.burst_plan_cost`, exact costs, no scheduler)
    of the Job-bursts trace, each burst planned jointly with a per-node slot price added:

    * ``this_trace``: the optimum's own prices (:attr:`~benchmarks.bounds.IntervalBound.slot_prices`:
      the LP's capacity duals averaged over this run). They know every later burst: no online
      policy has them.
    * ``other_draws`` (``draws > 0``): the mean of those prices over ``draws`` other draws of the
      same workload (:func:`~benchmarks.traces.make_trace` with ``arrivals_seed``: same cluster,
      placement and shard popularity, other bursts). They know the workload's distribution
      exactly, more than the extender learns online, but not which bursts this run brings.
      Draws whose LP has no solution (some instant overloaded) are skipped and counted.
    """
    trace, bound = bursts.trace, bursts.bound
    own = burst_plan_cost(trace, slot_prices=bound.slot_prices)
    out: dict[str, Any] = {"this_trace": {"ratio": own.cost / bound.cost, "unplaced": own.unplaced}}
    if draws <= 0:
        return out
    total: np.ndarray[Any, np.dtype[np.float64]] | None = None
    used = skipped = 0
    for k in range(draws):
        other = make_trace(trace.settings, arrivals_seed=OTHER_DRAWS_SEED + 1_000 * trace.settings.seed + k)
        try:
            prices = np.asarray(interval_bound(other.cluster, other.nodes, other.arrivals).slot_prices, dtype=np.float64)
        except KblError:
            skipped += 1
            continue
        total = prices if total is None else total + prices
        used += 1
    if total is not None:
        run = burst_plan_cost(trace, slot_prices=(total / used).tolist())
        out["other_draws"] = {"ratio": run.cost / bound.cost, "unplaced": run.unplaced, "draws": used, "skipped": skipped}
    else:
        out["other_draws"] = {"ratio": None, "draws": 0, "skipped": skipped}
    return out


#: Seeds of the other draws of the workload (:func:`future_ceilings`), far from trace seeds.
OTHER_DRAWS_SEED = 10_000


def describe_ceilings(ceilings: dict[str, Any]) -> list[str]:
    """:func:`future_ceilings` as console lines."""
    lines = [
        f"per-burst plan + the optimum's own slot prices (offline, knows every later burst: not online): "
        f"{ceilings['this_trace']['ratio']:.4f} x the optimum"
    ]
    other = ceilings.get("other_draws")
    if other is not None and other["ratio"] is not None:
        lines.append(
            f"per-burst plan + slot prices of {other['draws']} other draws of the same workload "
            f"(knows its distribution, not this run's bursts; {other['skipped']} draws without an LP solution skipped): "
            f"{other['ratio']:.4f} x the optimum"
        )
    return lines


def _describe(console: Console, comparison: Comparison) -> None:
    b = comparison.bound
    line = (
        f"optimum: LP over one assignment per pod, capacity at {b.checkpoints} arrival times ({comparison.bound_s:.1f} s); "
        + ("its solution splits no pod, so it is a schedule and the bound is the exact optimum; " if b.fractional_pods == 0 else "")
        + f"without capacity limits it would be {b.uncapacitated_cost / b.cost:.3f} x"
    )
    if comparison.per_instant is not None:
        line += f"; the per-instant min-cost-flow bound is {comparison.per_instant.cost / b.cost:.4f} x"
    console.print(line + ".")


def dumps(comparison: Comparison) -> str:
    """The comparison as JSON text."""
    return json.dumps(comparison.as_dict(), indent=2, default=str)
