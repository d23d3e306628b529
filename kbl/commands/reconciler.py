"""``kbl reconciler``: the placement reconciler alone (``kbl controller`` also runs it by default).

``--once`` reconciles every DataSet one time and exits; ``--dry-run`` prints the status it would
write, one JSON line per DataSet (``{"dataset": "ns/name", "status": {...}}``), and changes
nothing; ``--snapshot FILE`` decides from a ``kubectl get -o json`` file (offline, implies
nothing is written: add ``--dry-run``). The continuous loop is leader-elected on its own Lease
(``kbl-reconciler`` by default), so it can run in the controller's process or apart.

:func:`add_controller_arguments` and :func:`start_beside_controller` are the one block
``kbl controller`` uses to run the reconciler in its process (``--no-reconciler`` switches it
off); :func:`serve_metrics` serves its series on ``--metrics-port``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import TYPE_CHECKING

from kube.api import KubeApi
from topology.errors import KblError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from dataplane.reconciler import Reconciler, ReconcilerMetrics, ReconcilerSettings
    from kube.leading import LeaderElectionSettings

log = logging.getLogger(__name__)

LEASE = "kbl-reconciler"


def add_settings_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The reconciler's knobs (shared by ``kbl reconciler`` and ``kbl controller``)."""
    parser.add_argument(
        "--node-lost-grace-s", type=float, default=300.0, help="a NotReady node is lost after this long (default %(default)s)"
    )
    parser.add_argument(
        "--max-transfers-per-node", type=int, default=64,
        help="in-flight transfers a node serves (is the source of) over every DataSet, 0: no bound; what a node receives is "
        "paced by its agent's --parallel-copies (default %(default)s)",
    )
    parser.add_argument(
        "--reconciler-resync-s", type=float, default=30.0, help="reconcile every DataSet at least this often (default %(default)s)"
    )
    parser.add_argument(
        "--agent-ttl-s", type=float, default=120.0,
        help="a node whose agent has not reported (NodeHoldings heartbeatTime) for this long is a lost holder, 0: off "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--max-object-bytes", type=int, default=None,
        help="the largest DataSet object the API server stores (etcd's --max-request-bytes; default 1572864, etcd's and "
        "EKS's 1.5 MiB): a target whose object would be larger is not written, Placed=False reason PlacementTooLarge; "
        "0: no check",
    )
    parser.add_argument(
        "--inline-placement-bytes", type=int, default=None, metavar="N",
        help="a target whose status.placement JSON is larger is written as PlacementSlices (immutable objects of at most "
        "2,048 pieces; needs the placementslices.kbl.io CRD) and status.placement holds their index: every DataSet "
        "watcher receives a small object, and a change writes only the slices it touches (default 65536; 0: every "
        "target is sliced)",
    )
    parser.add_argument(
        "--progress-write-s", type=float, default=None,
        help="write a DataSet's progress alone (pieces and bytes ready, ETA) at most this often; every DataSet watcher, "
        "each node's agent included, receives the whole object with each write (default 10; 0: every change at once)",
    )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--once", action="store_true", help="reconcile every DataSet once and exit")
    parser.add_argument("--dry-run", action="store_true", help="print the planned status per DataSet as JSON lines; change nothing")
    parser.add_argument("--snapshot", metavar="FILE", help="decide from a snapshot file instead of a live cluster (offline)")
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: in-cluster, then ~/.kube/config)")
    parser.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus /metrics on this port (0: off)")
    add_settings_arguments(parser)
    election = parser.add_argument_group("leader election (a coordination.k8s.io/v1 Lease)")
    election.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=None, help="default: on for the continuous loop")
    election.add_argument("--leader-elect-lease", default=LEASE, metavar="NAME", help="Lease name (default %(default)s)")
    election.add_argument("--leader-elect-namespace", default=None, help="Lease namespace (default: the pod's own, else kbl-system)")
    election.add_argument("--leader-elect-identity", default="", help="candidate name (default: POD_NAME or hostname, random suffix)")
    for name, default in (("lease-duration", 15.0), ("renew-deadline", 10.0), ("retry-period", 2.0)):
        election.add_argument(f"--leader-elect-{name}-s", type=float, default=default, help="(default %(default)s)")


def settings(args: argparse.Namespace) -> ReconcilerSettings:
    from dataplane.reconciler import ReconcilerSettings

    try:
        return ReconcilerSettings(
            node_lost_grace_s=args.node_lost_grace_s,
            max_transfers_per_node=args.max_transfers_per_node,
            resync_s=args.reconciler_resync_s,
            agent_ttl_s=args.agent_ttl_s,
            **({} if args.max_object_bytes is None else {"max_object_bytes": args.max_object_bytes}),
            **({} if args.progress_write_s is None else {"progress_write_s": args.progress_write_s}),
            **({} if args.inline_placement_bytes is None else {"inline_placement_bytes": args.inline_placement_bytes}),
        )
    except ValueError as exc:
        raise KblError(str(exc)) from None


def election(args: argparse.Namespace, *, lease: str) -> LeaderElectionSettings | None:
    from kube.leading import settings_from

    wanted = args.leader_elect
    if wanted is None:
        wanted = not (args.once or args.dry_run or args.snapshot)
    if not wanted:
        return None
    if args.dry_run or args.snapshot:
        raise KblError("--leader-elect guards writes: it cannot be combined with --dry-run or --snapshot")
    return settings_from(
        lease_name=lease,
        namespace=args.leader_elect_namespace,
        identity=args.leader_elect_identity,
        lease_duration_s=args.leader_elect_lease_duration_s,
        renew_deadline_s=args.leader_elect_renew_deadline_s,
        retry_period_s=args.leader_elect_retry_period_s,
    )


def serve_metrics(metrics: ReconcilerMetrics, port: int) -> None:
    """``/metrics`` on ``port`` (0: not served)."""
    if port:
        from dataplane.reconciler.metrics import serve

        serve(metrics, port)


def run_loop(reconciler: Reconciler, leading: LeaderElectionSettings | None, stop: threading.Event) -> int:
    """The continuous loop, leader-elected when ``leading`` is set; 1 when leadership was lost."""
    if leading is None:
        reconciler.run(stop)
        return 0
    from kube.leading import LeaderElector, NotLeaderError

    elector = LeaderElector(reconciler.api, leading)
    reconciler.guard = elector.check

    def lead(done: threading.Event) -> None:
        try:
            reconciler.run(done)
        except NotLeaderError:
            done.set()

    if elector.run(stop, lead):
        return 0
    print(f"kbl reconciler: lost Lease {leading.namespace}/{leading.lease_name}; exiting", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    from dataplane.reconciler import Reconciler, ReconcilerMetrics

    leading = election(args, lease=args.leader_elect_lease)
    kube: KubeApi
    if args.snapshot:
        from kube.replaying import SnapshotApi

        if not args.dry_run:
            raise KblError("--snapshot decides offline: add --dry-run (a snapshot cannot be changed)")
        kube = SnapshotApi.from_file(args.snapshot)
    else:
        from kube.client import KubeClient

        kube = KubeClient.from_config(args.kubeconfig)
    metrics = ReconcilerMetrics()
    reconciler = Reconciler(kube, settings(args), metrics=metrics, dry_run=args.dry_run)
    if args.once or args.dry_run:
        report = reconciler.reconcile_once()
        if args.dry_run:
            import orjson  # a million-shard placement per line: the standard library takes seconds

            for key in sorted(report.planned):
                planned = {"dataset": key, "status": report.planned[key]}
                line = orjson.dumps(planned, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)
                sys.stdout.write(line.decode())
        for key, problem in sorted(report.invalid.items()):
            print(f"kbl reconciler: {key}: {problem}", file=sys.stderr)
        return 0
    serve_metrics(metrics, args.metrics_port)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    try:
        return run_loop(reconciler, leading, stop)
    finally:
        stop.set()


# ------------------------------------------------------------- inside `kbl controller`
def add_controller_arguments(parser: argparse.ArgumentParser) -> None:
    """``kbl controller``'s reconciler options: ``--no-reconciler`` and its knobs (its metrics are
    served with the controller's, on ``kbl controller --metrics-port``)."""
    group = parser.add_argument_group("placement reconciler (owns every DataSet's status.placement)")
    group.add_argument(
        "--reconciler", action=argparse.BooleanOptionalAction, default=True,
        help="run the placement reconciler in this process (default: on)",
    )
    group.add_argument("--reconciler-lease", default=LEASE, metavar="NAME", help="its own Lease (default %(default)s)")
    add_settings_arguments(group)


def start_beside_controller(
    args: argparse.Namespace, kube: KubeApi, stop: threading.Event, registry: CollectorRegistry | None = None
) -> threading.Thread | None:
    """Start the reconciler's loop in a thread of ``kbl controller`` (continuous mode only: a
    one-shot, dry-run or snapshot controller run leaves DataSets to ``kbl reconciler``).

    Elected on its own Lease when the controller elects one; its series go into ``registry`` (the
    controller's, served on its ``--metrics-port``). Returns the thread, or ``None``."""
    if not args.reconciler or args.once or args.dry_run or args.snapshot:
        return None
    from dataplane.reconciler import Reconciler, ReconcilerMetrics

    leading = election(args, lease=args.reconciler_lease)
    reconciler = Reconciler(kube, settings(args), metrics=ReconcilerMetrics(registry))

    def loop() -> None:
        try:
            while run_loop(reconciler, leading, stop) and not stop.is_set():
                log.error("placement reconciler lost its Lease; it campaigns again")
        except Exception:  # the controller keeps working; the reconciler's failure is logged
            log.exception("placement reconciler stopped")

    thread = threading.Thread(target=loop, name="placement-reconciler", daemon=True)
    thread.start()
    return thread
