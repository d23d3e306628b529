"""``kbl bake``: make a prototype image from a named node and roll its group to it.

``kbl bake --node NAME`` finds the node's kbl group (``--group`` to name it), checks the node is
Ready, not cordoned and not draining, protects it from scale-down, **drains it through the safe
path** (cordon, ``kbl.io/drain=prototype-image``, waits for the placement reconciler's
``kbl.io/data-drained``, evicts its pods; ``--wait-s`` bounds the wait), cleans it *on the node*
(``manifests/bake/clean-node.sh`` through SSM Run Command: kubelet certificates and state,
kbl's data folder, credentials, machine-id, cloud-init instance data, SSH host keys, logs),
images it with a reboot, creates a launch-template version with the image, points the group at
it and returns the node (uncordoned, marks removed). An Auto Scaling group's nodes are then
replaced one at a time through the safe path by the running controller
(``controller/rolling.py``; either strategy only sets the version). EKS replaces a managed
group's nodes itself on a version update (PodDisruptionBudgets only, never
``kbl.io/data-drained``; see controller/README.md, "Ways down"), so a bake of an EKS group
whose nodes hold pieces the placement needs hands the group to a **blue/green roll** instead
(``controller/bluegreen.py``): the running controller creates a green group on the new image
and empties this one into it one node at a time through the safe path, then deletes it
(``greenGroup`` in the output names it). ``--allow-replacing-data`` chooses EKS's own roll; a
group holding no placed data rolls as EKS does. It prints the result as JSON. Every step is
idempotent: after a failure or a timeout, run it again.

This module also holds the launch-template flags shared with ``kbl controller``
(:func:`add_launch_arguments`, :func:`provider_options`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from controller.providers import NodeGroupProvider
from kube.api import NODES, KubeApi
from topology import labels
from topology.errors import KblError

if TYPE_CHECKING:
    from controller.baking import ImageResult
    from controller.providers.launching import LaunchSettings

#: The label EKS sets on managed nodes (the group of a node without kbl's own label).
EKS_NODEGROUP_LABEL = "eks.amazonaws.com/nodegroup"


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that shape kbl's launch templates (``kbl controller`` and ``kbl bake``)."""
    group = parser.add_argument_group("launch templates (nodes that join the cluster; see manifests/README.md)")
    group.add_argument("--launch-template", default="", metavar="NAME|ID", help="eks: launch template new managed groups start from")
    group.add_argument("--node-os", choices=("al2023", "bottlerocket"), default="al2023", help="node OS (default %(default)s)")
    group.add_argument("--api-endpoint", default="", help="cluster API server URL (default: from eks:DescribeCluster)")
    group.add_argument("--certificate-authority", default="", help="cluster CA, base64 (default: from eks:DescribeCluster)")
    group.add_argument("--service-cidr", default="", help="cluster service CIDR (default: from eks:DescribeCluster)")
    group.add_argument("--instance-profile", default="", help="asg: IAM instance profile (name or ARN) of the nodes")
    group.add_argument("--security-group", action="append", default=[], metavar="SG", help="security group id of the nodes (repeatable)")
    group.add_argument("--metadata-hop-limit", type=int, default=2, help="IMDSv2 hop limit (default %(default)s: reachable from pods)")
    group.add_argument("--kubelet-flag", action="append", default=[], metavar="FLAG", help="extra kubelet flag (repeatable)")


def launch_settings(args: argparse.Namespace) -> LaunchSettings:
    """The :class:`~controller.providers.launching.LaunchSettings` the flags ask for.

    Raises
    ------
    KblError
        For a hop limit outside 1..64.
    """
    from controller.providers.launching import LaunchSettings

    if not 1 <= args.metadata_hop_limit <= 64:
        raise KblError(f"--metadata-hop-limit {args.metadata_hop_limit}: must be 1..64")
    return LaunchSettings(
        args.cluster_name,
        api_endpoint=args.api_endpoint,
        certificate_authority=args.certificate_authority,
        service_cidr=args.service_cidr,
        node_os=args.node_os,
        instance_profile=args.instance_profile,
        security_groups=tuple(args.security_group),
        metadata_hop_limit=args.metadata_hop_limit,
        kubelet_flags=tuple(args.kubelet_flag),
    )


def provider_options(args: argparse.Namespace, session: Any) -> dict[str, Any]:
    """Keyword arguments of :class:`EksProvider` / :class:`AsgProvider` from the launch flags:
    the launch settings, the SSM client that cleans nodes before imaging, and for EKS the launch
    template and custom image, for Auto Scaling the EKS client that discovers the cluster."""
    options: dict[str, Any] = {"launch": launch_settings(args), "ssm": session.client("ssm")}
    if args.provider == "eks":
        options["launch_template_id"] = args.launch_template or None
        options["image_id"] = args.image_id
    else:
        options["eks"] = session.client("eks")
    return options


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node", required=True, help="the node to image (Ready, not cordoned, not draining)")
    parser.add_argument("--group", default="", help="its kbl node group (default: the node's kbl.io/node-group label)")
    parser.add_argument(
        "--allow-replacing-data", action="store_true",
        help="EKS: let EKS replace a group whose nodes hold DataSet pieces itself, without waiting for their data "
        "(default: such a group rolls blue/green through the safe path)",
    )  # fmt: skip
    parser.add_argument("--strategy", choices=("next-nodes", "rolling"), default=None,
                        help="eks: rolling (EKS replaces the nodes); asg: either (the controller replaces them)")  # fmt: skip
    parser.add_argument("--provider", choices=("eks", "asg"), default="eks", help="cloud side (default %(default)s)")
    parser.add_argument("--cluster-name", default="kbl", help="EKS cluster name (also scopes tags and tokens)")
    parser.add_argument("--region", default=None, help="AWS region (default: the SDK's)")
    parser.add_argument("--node-role-arn", default="", help="IAM role of new EKS managed nodes (eks)")
    parser.add_argument("--image-id", default="", help="asg: image of new groups; eks: custom AMI of new groups (needed to roll to a bake)")
    parser.add_argument("--subnet", action="append", default=[], metavar="ZONE=SUBNET", help="subnet per zone (asg; eks discovers them)")
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: in-cluster, then ~/.kube/config)")
    parser.add_argument("--wait-s", type=float, default=3600.0, help="longest wait for its data and pods to leave (default %(default)s)")
    parser.add_argument("--poll-s", type=float, default=10.0, help="seconds between two looks while waiting (default %(default)s)")
    add_launch_arguments(parser)


def group_of(node: dict[str, Any]) -> str:
    """The kbl node group a Node object belongs to (kbl's label, else EKS's)."""
    node_labels = (node.get("metadata") or {}).get("labels") or {}
    return str(node_labels.get(labels.NODE_GROUP_LABEL) or node_labels.get(EKS_NODEGROUP_LABEL) or "")


def bake(
    kube: KubeApi,
    provider: NodeGroupProvider,
    *,
    node: str,
    group: str = "",
    strategy: str | None = None,
    default_strategy: str = "next-nodes",
    clock: Callable[[], float] = time.time,
    allow_replacing_data: bool = False,
) -> ImageResult:
    """Image ``node`` and roll its group (see the module docstring).

    Raises
    ------
    KblError
        If the node, its group or the group's KBL cannot be found, or the node is unfit.
    """
    from controller.baking import prototype_image

    obj = kube.get(NODES, node)
    if obj is None:
        raise KblError(f"no node {node}")
    group = group or group_of(obj)
    if not group:
        raise KblError(f"node {node} has no {labels.NODE_GROUP_LABEL} label: name its group with --group")
    info = provider.describe_group(group)
    if info is None or not info.kbl:
        raise KblError(f"{group} is not a kbl node group")
    chosen = strategy or default_strategy
    if chosen not in ("next-nodes", "rolling"):
        raise KblError(f"unknown strategy {chosen}")
    return prototype_image(
        kube, provider, kbl_key=info.kbl, group=group, node=node,
        strategy="rolling" if chosen == "rolling" else "next-nodes", clock=clock,
        allow_replacing_data=allow_replacing_data,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from controller.baking import WAITING
    from kbl.commands.controller import cloud
    from kube.client import KubeClient

    kube = KubeClient.from_config(args.kubeconfig)
    provider = cloud(args)
    deadline = time.monotonic() + args.wait_s
    while True:
        result = bake(
            kube, provider, node=args.node, group=args.group, strategy=args.strategy,
            default_strategy="rolling" if args.provider == "eks" else "next-nodes",
            allow_replacing_data=args.allow_replacing_data,
        )  # fmt: skip
        if not result.skipped.startswith(WAITING) or time.monotonic() >= deadline:
            break
        print(f"kbl bake: {result.skipped}", file=sys.stderr)
        time.sleep(args.poll_s)
    out = {"node": result.node, "image": result.image, "launchTemplateVersion": result.version, "skipped": result.skipped}
    if result.green:
        out["greenGroup"] = result.green
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0
