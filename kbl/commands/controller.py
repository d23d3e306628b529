"""``kbl controller``: the companion controller (node groups per KBL, pre-warmed, safely shrunk).

``--once`` reconciles one time and exits; ``--dry-run`` prints the planned actions as JSON, one
per line, and changes nothing; ``--snapshot FILE`` plans from a ``kubectl get -o json`` file
with the node groups its KBLs record (offline: no cluster, no cloud account). Without a
snapshot it uses in-cluster config or the kubeconfig, and ``--provider`` picks the cloud side:
``eks`` (managed node groups), ``asg`` (self-managed Auto Scaling groups), ``queue`` (requests
over SQS to ``kbl worker``; no cloud credentials in the cluster) or ``karpenter`` (NodePools). The
simulated cloud (:class:`~controller.providers.fake.FakeProvider`) is not offered here: the
benchmarks and tests build it themselves.

The continuous loop elects a leader first (``--leader-elect``, on by default; off for
``--once``, ``--dry-run`` and ``--snapshot``): replicas campaign for the Lease
``--leader-elect-lease`` in ``--leader-elect-namespace`` (default: the pod's own), only the
holder reconciles, it stops acting the moment it cannot renew within the deadline and then exits
with status 1 (its pod restarts as a standby), and on SIGTERM it releases the Lease so a standby
takes over at once. ``--once --leader-elect`` reconciles once only if it gets the Lease.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from controller.providers import NodeGroupProvider
from kbl.commands.bake import add_launch_arguments, provider_options
from kube.api import KubeApi
from placement.capacity import CapacitySettings, Utilization
from topology.errors import KblError
from topology.kbls import KBL
from topology.nodes import Node

if TYPE_CHECKING:
    from controller import Controller
    from controller.measuring import ControllerMetrics
    from controller.patching import Rebooter
    from controller.providers.pricing import AwsPrices
    from kube.leading import LeaderElectionSettings, LeaderElector


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--once", action="store_true", help="reconcile once and exit")
    parser.add_argument("--dry-run", action="store_true", help="print planned actions as JSON lines; change nothing")
    parser.add_argument("--snapshot", metavar="FILE", help="plan from a snapshot file instead of a live cluster (offline)")
    providers = ("eks", "asg", "queue", "karpenter")
    parser.add_argument("--provider", choices=providers, default="eks", help="cloud side (default %(default)s)")
    parser.add_argument("--cluster-name", default="kbl", help="EKS cluster name (also scopes tags and tokens)")
    parser.add_argument("--region", default=None, help="AWS region (default: the SDK's)")
    parser.add_argument("--node-role-arn", default="", help="IAM role of new EKS managed nodes (eks)")
    parser.add_argument("--image-id", default="", help="asg: image of new groups; eks: custom AMI of new groups (needed to roll to a bake)")
    parser.add_argument("--subnet", action="append", default=[], metavar="ZONE=SUBNET", help="subnet per zone (asg; eks discovers them)")
    parser.add_argument("--queue-url", default="", help="SQS request queue (queue)")
    parser.add_argument("--reply-queue-url", default="", help="SQS queue the worker reports the inventory on (queue)")
    parser.add_argument("--max-nodes", type=int, default=200, help="global node budget over every KBL group (default %(default)s)")
    parser.add_argument(
        "--max-node-provision-s", type=float, default=900.0,
        help="requested nodes not joined this long after the request are given up and the group backed off (default %(default)s)",
    )
    parser.add_argument(
        "--price-list", action=argparse.BooleanOptionalAction, default=True,
        help="price instance types with the AWS Price List API (pricing:GetProducts, us-east-1); else the shipped table",
    )
    parser.add_argument("--resync-s", type=float, default=10.0, help="periodic reconcile interval in seconds (default %(default)s)")
    parser.add_argument(
        "--scale-down-delay-s", type=float, default=120.0, help="no scale-down this long after a group grew (default %(default)s)"
    )
    parser.add_argument("--metrics-server", action="store_true", help="grow/shrink on KBL node CPU and memory from metrics.k8s.io")
    parser.add_argument("--prometheus-url", default="", help="evaluate each KBL's kbl.io/prometheus-query against this Prometheus")
    karp = parser.add_argument_group("provider karpenter (a NodePool per kbl group; Karpenter or EKS Auto Mode)")
    karp.add_argument("--node-class", default="default", help="node class NodePools reference (default %(default)s)")
    karp.add_argument("--node-class-kind", choices=("EC2NodeClass", "NodeClass"), default="EC2NodeClass", help="NodeClass: EKS Auto Mode")
    karp.add_argument("--placeholder-namespace", default="kbl-system", help="namespace of the placeholder pods (default %(default)s)")
    parser.add_argument(
        "--rebake-after-days", type=float, default=0.0,
        help="re-bake a group's prototype image when it is older than this and a node runs newer software (0: off, the default)",
    )  # fmt: skip
    parser.add_argument("--reboot-patched-nodes", action="store_true",
                        help="reboot nodes labelled kbl.io/reboot-required, one per group at a time, through the safe path (SSM; eks, asg)")
    parser.add_argument("--rebake-strategy", choices=("next-nodes", "rolling"), default="next-nodes",
                        help="how a re-baked group rolls (default %(default)s); ASG groups are replaced one node at a "
                             "time through the safe path either way, EKS groups only with rolling (by EKS)")  # fmt: skip
    parser.add_argument("--interruption-queue-url", default="", help="SQS queue of EC2 interruption notices: drain spot-warned nodes' data")
    parser.add_argument(
        "--interruption-cordon-on-rebalance", action="store_true",
        help="also cordon a node on a rebalance recommendation (default: only its data starts moving)",
    )
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: in-cluster, then ~/.kube/config)")
    add_launch_arguments(parser)
    configure_metrics(parser)
    election = parser.add_argument_group("leader election (a coordination.k8s.io/v1 Lease; client-go semantics)")
    election.add_argument(
        "--leader-elect", action=argparse.BooleanOptionalAction, default=None,
        help="only the Lease holder acts (default: on for the continuous loop, off for --once, --dry-run and --snapshot)",
    )
    election.add_argument("--leader-elect-lease", default="kbl-controller", metavar="NAME", help="Lease name (default %(default)s)")
    election.add_argument("--leader-elect-namespace", default=None, help="Lease namespace (default: the pod's own, else kbl-system)")
    election.add_argument("--leader-elect-identity", default="", help="candidate name (default: POD_NAME or hostname, random suffix)")
    durations = (
        ("lease-duration", 15.0, "a standby takes over this long after the last renewal it saw"),
        ("renew-deadline", 10.0, "the leader stops acting when it could not renew for this long"),
        ("retry-period", 2.0, "renewal and campaign interval"),
    )
    for name, default, what in durations:
        election.add_argument(f"--leader-elect-{name}-s", type=float, default=default, help=f"{what} (default %(default)s)")
    # ---- the placement reconciler in this process (kbl/commands/reconciler.py owns these options)
    from kbl.commands import reconciler as placement_reconciler

    placement_reconciler.add_controller_arguments(parser)


def configure_metrics(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port at /metrics (0: off)")
    parser.add_argument("--metrics-address", default="0.0.0.0", help="address the metrics server listens on (default %(default)s)")  # noqa: S104


def serve_metrics(args: argparse.Namespace, metrics: ControllerMetrics) -> Callable[[], None]:
    """Start the metrics server the arguments ask for; returns its stop function."""
    if not args.metrics_port:
        return lambda: None
    from prometheus_client import start_http_server

    server, thread = start_http_server(args.metrics_port, addr=args.metrics_address, registry=metrics.registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop


def subnets(values: list[str]) -> dict[str, list[str]]:
    """``ZONE=SUBNET`` arguments as subnets per zone.

    Raises
    ------
    KblError
        Naming the malformed argument.
    """
    out: dict[str, list[str]] = {}
    for value in values:
        zone, sep, subnet = value.partition("=")
        if not sep or not zone or not subnet:
            raise KblError(f"--subnet {value!r}: expected ZONE=SUBNET, for example us-east-1a=subnet-0abc")
        out.setdefault(zone, []).append(subnet)
    return out


def cloud(args: argparse.Namespace, *, for_worker: bool = False) -> NodeGroupProvider:
    """The provider the arguments ask for (boto3 clients are made here, never at import)."""
    import boto3

    session = boto3.session.Session(region_name=args.region)
    if args.provider == "eks":
        from controller.providers.eks import EksProvider

        if not args.node_role_arn:
            raise KblError("--provider eks needs --node-role-arn (the IAM role new nodes run as)")
        return EksProvider(
            session.client("eks"), session.client("autoscaling"), session.client("ec2"),
            cluster_name=args.cluster_name, node_role_arn=args.node_role_arn, subnets_by_zone=subnets(args.subnet) or None,
            prices=prices(args, session), **provider_options(args, session),
        )
    if args.provider == "asg":
        from controller.providers.asg import AsgProvider

        if not args.image_id or not args.subnet:
            raise KblError("--provider asg needs --image-id and at least one --subnet ZONE=SUBNET")
        return AsgProvider(
            session.client("autoscaling"), session.client("ec2"),
            cluster_name=args.cluster_name, image_id=args.image_id, subnets_by_zone=subnets(args.subnet),
            prices=prices(args, session), **provider_options(args, session),
        )
    if for_worker:
        raise KblError("the worker executes requests with a real provider: --provider eks or asg")
    from controller.providers.queueing import QueueProvider

    if not args.queue_url or not args.reply_queue_url:
        raise KblError("--provider queue needs --queue-url and --reply-queue-url")
    return QueueProvider(session.client("sqs"), args.queue_url, args.reply_queue_url)


def rebooter(args: argparse.Namespace) -> Rebooter | None:
    """``--reboot-patched-nodes``: reboots through SSM Run Command (the direct policy's grant).

    Raises
    ------
    KblError
        With a provider that holds no cloud credentials (queue, karpenter) or offline.
    """
    if not getattr(args, "reboot_patched_nodes", False):
        return None
    if args.provider not in ("eks", "asg") or args.snapshot or args.dry_run:
        raise KblError("--reboot-patched-nodes reboots through SSM: it needs --provider eks or asg, live, not --dry-run")
    import boto3

    from controller.patching import SsmRebooter

    return SsmRebooter(boto3.session.Session(region_name=args.region).client("ssm"))


def prices(args: argparse.Namespace, session: Any) -> AwsPrices | None:
    """The Price List reader (its API answers in us-east-1 whatever the cluster's region)."""
    if not getattr(args, "price_list", False):
        return None
    from controller.providers.pricing import AwsPrices

    return AwsPrices(session.client("pricing", region_name="us-east-1"), session.client("ec2"), session.region_name or "us-east-1")


def utilization(args: argparse.Namespace, kube: KubeApi) -> Callable[[list[KBL], list[Node]], Mapping[str, Utilization]] | None:
    """The utilization sources asked for, merged per KBL (CPU/memory and the query value)."""
    from controller.measuring import MetricsServerUtilization, PrometheusUtilization

    sources: list[Callable[[list[KBL], list[Node]], Mapping[str, Utilization]]] = []
    if args.metrics_server:
        sources.append(MetricsServerUtilization(kube))
    if args.prometheus_url:
        sources.append(PrometheusUtilization(args.prometheus_url))
    if not sources:
        return None

    def merged(kbls: list[KBL], nodes: list[Node]) -> Mapping[str, Utilization]:
        out: dict[str, Utilization] = {}
        for source in sources:
            for key, value in source(kbls, nodes).items():
                old = out.get(key, Utilization())
                out[key] = Utilization(
                    value.cpu if value.cpu is not None else old.cpu,
                    value.memory if value.memory is not None else old.memory,
                    value.metric if value.metric is not None else old.metric,
                )
        return out

    return merged


def election(args: argparse.Namespace) -> LeaderElectionSettings | None:
    """The leader-election settings the arguments ask for, or ``None`` when it is off.

    Raises
    ------
    KblError
        ``--leader-elect`` with ``--dry-run`` or ``--snapshot`` (nothing is written, so nothing
        to guard), or inconsistent durations.
    """
    from kube.leading import settings_from

    wanted = args.leader_elect
    if wanted is None:
        wanted = not (args.once or args.dry_run or args.snapshot)
    if not wanted:
        return None
    if args.dry_run or args.snapshot:
        raise KblError("--leader-elect guards writes: it cannot be combined with --dry-run or --snapshot")
    return settings_from(
        lease_name=args.leader_elect_lease,
        namespace=args.leader_elect_namespace,
        identity=args.leader_elect_identity,
        lease_duration_s=args.leader_elect_lease_duration_s,
        renew_deadline_s=args.leader_elect_renew_deadline_s,
        retry_period_s=args.leader_elect_retry_period_s,
    )


def run_elected(controller: Controller, elector: LeaderElector, stop: threading.Event) -> int:
    """Run the loop only while ``elector`` leads; 0 after a clean stop (Lease released), 1 when
    leadership was lost (the process should exit: its state is the cluster's, a restart is a
    fresh standby)."""
    from kube.leading import NotLeaderError

    def lead(done: threading.Event) -> None:
        try:
            controller.run(done)
        except NotLeaderError:  # stopped between two writes: nothing half-done stays behind
            done.set()

    if elector.run(stop, lead):
        return 0
    print(f"kbl controller: lost Lease {elector.settings.namespace}/{elector.settings.lease_name}; exiting", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    from controller import Controller, ControllerSettings
    from controller.measuring import ControllerMetrics
    from kube.leading import LeaderElector

    leading = election(args)  # argument errors before any connection
    kube: KubeApi
    lists: KubeApi | None = None
    provider: NodeGroupProvider
    if args.snapshot:
        from controller.replaying import RecordedGroups
        from kube.replaying import SnapshotApi

        if not args.dry_run:
            raise KblError("--snapshot plans offline: add --dry-run (a snapshot cannot be changed)")
        snapshot = SnapshotApi.from_file(args.snapshot, typed=True)  # Nodes typed as read, placements as numbers
        kube, provider = snapshot, karpenter(args, snapshot) if args.provider == "karpenter" else RecordedGroups(snapshot)
    else:
        from kube.client import KubeClient

        client = KubeClient.from_config(args.kubeconfig)
        kube, lists = client, client.typed_reader()  # the informers only type what they list
        provider = karpenter(args, kube) if args.provider == "karpenter" else cloud(args)
    settings = ControllerSettings(
        capacity=CapacitySettings(
            max_nodes_total=args.max_nodes, scale_down_delay_after_up_s=args.scale_down_delay_s,
            max_node_provision_s=args.max_node_provision_s,
        ),
        cluster_name=args.cluster_name,
        resync_s=args.resync_s,
        dry_run=args.dry_run,
        rebake_after_s=max(args.rebake_after_days, 0.0) * 86400.0,
        rebake_strategy="rolling" if args.rebake_strategy == "rolling" else "next-nodes",
    )
    elector = LeaderElector(kube, leading) if leading is not None else None
    guard = elector.check if elector is not None else None
    metrics = ControllerMetrics()
    stop_metrics = serve_metrics(args, metrics)
    try:
        controller = Controller(
            kube, provider, settings, utilization=utilization(args, kube), guard=guard, metrics=metrics, lists=lists,
            rebooter=rebooter(args),
        )  # fmt: skip
        return _run(args, controller, elector, metrics)
    finally:
        stop_metrics()


def _run(args: argparse.Namespace, controller: Controller, elector: LeaderElector | None, metrics: ControllerMetrics) -> int:
    kube, provider = controller.kube, controller.provider
    if elector is not None and args.once:
        if not elector.try_acquire_or_renew():
            where = f"{elector.settings.namespace}/{elector.settings.lease_name}"
            print(f"kbl controller: {elector.holder!r} holds Lease {where}; not acting", file=sys.stderr)
            return 1
        try:
            controller.reconcile_once()
        finally:
            elector.release()
        return _report(controller)
    if args.once or args.dry_run:
        plan = controller.reconcile_once()
        if args.dry_run:
            sys.stdout.write(plan.to_json_lines())
            sys.stdout.write(karpenter_objects(plan, provider))
        else:
            side_loops(args, kube, provider, None)
        return _report(controller)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())  # kubelet's stop: release the Lease
    # ---- the placement reconciler beside the controller (off with --no-reconciler)
    from kbl.commands import reconciler as placement_reconciler

    placement_reconciler.start_beside_controller(args, kube, stop, metrics.registry)
    side_loops(args, kube, provider, stop, elector)
    try:
        if elector is not None:
            return run_elected(controller, elector, stop)
        controller.run(stop)
    finally:
        stop.set()
    return 0


def karpenter(args: argparse.Namespace, kube: KubeApi) -> NodeGroupProvider:
    """``--provider karpenter``: kbl groups as Karpenter NodePools; the instance types from EC2's
    ``DescribeInstanceTypes`` (the one cloud call of this mode; offline replay uses the table)."""
    from controller.providers.karpenter import KarpenterProvider, KarpenterSettings
    from kube.replaying import SnapshotApi
    from topology.snapshots import iter_file_objects

    settings = KarpenterSettings(
        cluster_name=args.cluster_name, node_class_name=args.node_class, node_class_kind=args.node_class_kind,
        namespace=args.placeholder_namespace,
    )
    if isinstance(kube, SnapshotApi) and args.snapshot:  # also serve the NodePools and placeholders the file holds
        extra = iter_file_objects(args.snapshot)  # streamed: only NodePools and Deployments are kept
        kube.objects.extend(o for o in extra if isinstance(o, dict) and o.get("kind") in ("NodePool", "Deployment"))
        return KarpenterProvider(kube, settings)
    import boto3

    return KarpenterProvider(kube, settings, ec2=boto3.session.Session(region_name=args.region).client("ec2"))


def karpenter_objects(plan: Any, provider: NodeGroupProvider) -> str:
    """``--dry-run`` with ``--provider karpenter``: one JSON line per Karpenter object the plan would
    create or change (the whole NodePool and placeholder Deployment of a new group, the placeholder
    count of a resize, the NodePool of a deletion); empty for other providers."""
    import json

    from controller.providers import NodeGroupSpec
    from controller.providers.karpenter import KarpenterProvider, node_pool, placeholder_deployment, placeholder_name
    from placement import capacity as cap

    if not isinstance(provider, KarpenterProvider):
        return ""
    lines = []
    for action in plan.actions:
        if isinstance(action, cap.CreateNodeGroup):
            spec = NodeGroupSpec(
                action.group, action.kbl, action.zone, action.instance_type, action.desired, action.max_size,
                action.capacity_type, dict(action.labels), action.taints,
            )
            pool = node_pool(spec, provider.settings, provider.wished_types(action.kbl), provider.catalog())
            lines.append({"karpenter": "create", "kbl": action.kbl, "object": pool})
            placeholders = placeholder_deployment(spec, provider.settings, action.desired)
            lines.append({"karpenter": "create", "kbl": action.kbl, "object": placeholders})
        elif isinstance(action, cap.ResizeNodeGroup):
            what = {"kind": "Deployment", "namespace": provider.settings.namespace, "name": placeholder_name(action.group)}
            lines.append({"karpenter": "patch", "kbl": action.kbl, "object": what, "patch": {"spec": {"replicas": action.desired}}})
        elif isinstance(action, cap.DeleteNodeGroup):
            lines.append({"karpenter": "delete", "kbl": action.kbl, "object": {"kind": "NodePool", "name": action.group}})
    return "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines)


def side_loops(
    args: argparse.Namespace, kube: KubeApi, provider: NodeGroupProvider, stop: threading.Event | None, elector: LeaderElector | None = None
) -> None:
    """What runs beside the reconcile loop: ``karpenter.sh/do-not-disrupt`` marks on kbl nodes
    (``--provider karpenter``) and the interruption queue (``--interruption-queue-url``). With
    ``stop`` they run in daemon threads until it is set; without, each runs one round. With an
    ``elector`` only the leader acts (a standby neither marks nodes nor receives notices)."""
    from controller.disrupting import mark_nodes
    from controller.providers.karpenter import KarpenterProvider

    leading = elector.is_leader if elector is not None else (lambda: True)
    loops: list[tuple[Callable[[], object], float]] = []  # (one round, pause after it in seconds)
    if isinstance(provider, KarpenterProvider):
        loops.append((lambda: mark_nodes(kube) if leading() else [], args.resync_s))
    handler = interruptions(args, kube, elector)
    if handler is not None:  # long polls of 20 s, back to back: a spot warning leaves 120 s

        def notices() -> object:
            if not leading() and stop is not None:
                return stop.wait(2.0)  # a standby: nothing received, the leader's messages stay visible to it
            return handler.poll(wait_s=20 if stop is not None else 0)

        loops.append((notices, 0.0))
    for loop, pause in loops:
        if stop is None:
            loop()
            continue

        def forever(body: Callable[[], object] = loop, pause_s: float = pause, done: threading.Event = stop) -> None:
            while not done.is_set():
                try:
                    body()
                except Exception as exc:  # keep going: the next round retries
                    print(f"kbl controller: {exc}", file=sys.stderr)
                    done.wait(5.0)
                done.wait(pause_s)

        threading.Thread(target=forever, daemon=True, name="kbl-side-loop").start()


def interruptions(args: argparse.Namespace, kube: KubeApi, elector: LeaderElector | None = None) -> Any:
    """``--interruption-queue-url``: the EC2 interruption handler (checked against the queue), or
    ``None``; with ``elector`` it acts only while this replica leads."""
    if not args.interruption_queue_url:
        return None
    import boto3

    from controller.interruptions import InterruptionHandler, InterruptionSettings

    handler = InterruptionHandler(
        kube, boto3.session.Session(region_name=args.region).client("sqs"), args.interruption_queue_url,
        settings=InterruptionSettings(cordon_on_rebalance=bool(getattr(args, "interruption_cordon_on_rebalance", False))),
        leading=elector.is_leader if elector is not None else None,
        guard=elector.check if elector is not None else None,
    )
    handler.check_queue()
    return handler


def _report(controller: Controller) -> int:
    for rejected in controller.rejected:
        print(f"kbl controller: skipped {rejected}", file=sys.stderr)
    refused: list[Any] = controller.actor.log.refused
    for action, why in refused:
        print(f"kbl controller: {action.kind} failed: {why}", file=sys.stderr)
    return 1 if refused else 0
