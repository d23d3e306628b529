"""Launch templates whose instances join a real EKS cluster: AL2023 (nodeadm) or Bottlerocket.

A node started from a kbl launch template joins by itself, with the group's labels and taints:

- **AL2023** (the default): MIME multipart user data with one ``application/node.eks.aws`` part
  holding a nodeadm ``NodeConfig`` (``node.eks.aws/v1alpha1``): cluster name, API server
  endpoint, certificate authority (base64), service CIDR, and kubelet flags
  ``--node-labels`` / ``--register-with-taints``. nodeadm reads it from IMDS at every boot
  (the EKS-optimised AL2023 AMIs run it from systemd); Amazon Linux 2 and its
  ``/etc/eks/bootstrap.sh`` reached end of support and are not produced any more.
- **Bottlerocket**: TOML ``[settings.kubernetes]`` with the same cluster coordinates, the DNS IP
  derived from the service CIDR, ``node-labels`` and ``node-taints``.

The template data also sets IMDSv2 as required with a hop limit of 2 (pods behind the node's
network namespace can reach IMDS through one more hop; IMDSv1 is off), the instance profile and
security groups, and tags instances and volumes with ``kubernetes.io/cluster/<name>=owned`` (the
cloud provider and the IAM policy for ``ec2:CreateImage`` recognise cluster nodes by it).

Everything here is pure: the cluster coordinates come from :class:`LaunchSettings` or, when
they are left empty, from ``eks:DescribeCluster`` through :func:`discover_cluster`.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import yaml

from controller.providers import NodeGroupSpec, ProviderError, kbl_tags
from controller.providers.awscalls import aws_call
from controller.providers.retrying import Backoff
from topology import labels as kbl_labels

if TYPE_CHECKING:
    from mypy_boto3_eks import EKSClient

NodeOS = Literal["al2023", "bottlerocket"]
#: MIME type nodeadm looks for in multipart user data.
NODEADM_CONTENT_TYPE = "application/node.eks.aws"
NODECONFIG_API_VERSION = "node.eks.aws/v1alpha1"
MIME_BOUNDARY = "KBL-NODE-BOUNDARY"


def cluster_owned_tag(cluster_name: str) -> tuple[str, str]:
    """``kubernetes.io/cluster/<name>=owned``: the tag every node of the cluster carries."""
    return f"kubernetes.io/cluster/{cluster_name}", "owned"


@dataclass(frozen=True, slots=True)
class LaunchSettings:
    """How kbl's launch templates start nodes (``kbl controller`` flags, chart ``controller.launch``).

    Parameters
    ----------
    cluster_name:
        The EKS cluster the nodes join.
    api_endpoint, certificate_authority, service_cidr:
        The cluster's API server URL, its CA bundle (base64, as ``DescribeCluster`` returns it)
        and service CIDR; empty ones are discovered with ``eks:DescribeCluster``.
    node_os:
        ``al2023`` (nodeadm ``NodeConfig``) or ``bottlerocket`` (TOML settings).
    instance_profile:
        IAM instance profile (name or ARN) of self-managed nodes; EKS managed groups get their
        role from the node group instead and never carry one in the template.
    security_groups:
        Security group ids of the nodes (the cluster security group at least).
    metadata_hop_limit:
        IMDSv2 response hop limit; 2 lets pods that are not on the host network reach IMDS.
    kubelet_flags:
        Extra kubelet flags appended after the labels and taints (``--max-pods=110``).
    """

    cluster_name: str
    api_endpoint: str = ""
    certificate_authority: str = ""
    service_cidr: str = ""
    node_os: NodeOS = "al2023"
    instance_profile: str = ""
    security_groups: tuple[str, ...] = ()
    metadata_hop_limit: int = 2
    kubelet_flags: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """Whether the cluster coordinates are all known (nothing to discover)."""
        return bool(self.api_endpoint and self.certificate_authority and self.service_cidr)


def discover_cluster(eks: EKSClient, backoff: Backoff, settings: LaunchSettings) -> LaunchSettings:
    """``settings`` with the empty cluster coordinates filled from ``eks:DescribeCluster``.

    Raises
    ------
    ProviderError
        ``IncompleteCluster`` if the cluster does not report an endpoint, a CA or a service CIDR.
    """
    if settings.complete:
        return settings
    cluster = aws_call(backoff, eks.describe_cluster, name=settings.cluster_name)["cluster"]
    network = cluster.get("kubernetesNetworkConfig") or {}
    found = replace(
        settings,
        api_endpoint=settings.api_endpoint or str(cluster.get("endpoint") or ""),
        certificate_authority=settings.certificate_authority or str((cluster.get("certificateAuthority") or {}).get("data") or ""),
        service_cidr=settings.service_cidr or str(network.get("serviceIpv4Cidr") or network.get("serviceIpv6Cidr") or ""),
    )
    if not found.complete:
        fields = (("endpoint", found.api_endpoint), ("CA", found.certificate_authority), ("service CIDR", found.service_cidr))
        missing = ", ".join(n for n, v in fields if not v)
        raise ProviderError("IncompleteCluster", f"cluster {settings.cluster_name} reports no {missing}: set it in the launch settings")
    return found


def node_labels(spec: NodeGroupSpec) -> dict[str, str]:
    """The labels a node of the group registers with (the KBL's, plus the group name)."""
    return {**spec.labels, kbl_labels.NODE_GROUP_LABEL: spec.name}


def kubelet_flags(settings: LaunchSettings, spec: NodeGroupSpec) -> list[str]:
    """``--node-labels`` and ``--register-with-taints`` for the group, then the extra flags."""
    flags = ["--node-labels=" + ",".join(f"{k}={v}" for k, v in sorted(node_labels(spec).items()))]
    if spec.taints:
        flags.append("--register-with-taints=" + ",".join(f"{t.key}={t.value}:{t.effect}" for t in spec.taints))
    return flags + list(settings.kubelet_flags)


def node_config(settings: LaunchSettings, spec: NodeGroupSpec) -> dict[str, Any]:
    """The nodeadm ``NodeConfig`` object of a node of the group."""
    return {
        "apiVersion": NODECONFIG_API_VERSION,
        "kind": "NodeConfig",
        "spec": {
            "cluster": {
                "name": settings.cluster_name,
                "apiServerEndpoint": settings.api_endpoint,
                "certificateAuthority": settings.certificate_authority,
                "cidr": settings.service_cidr,
            },
            "kubelet": {"flags": kubelet_flags(settings, spec)},
        },
    }


def nodeadm_user_data(settings: LaunchSettings, spec: NodeGroupSpec) -> str:
    """MIME multipart user data with one ``application/node.eks.aws`` part: the NodeConfig as
    YAML, in the shape of nodeadm's documented example (7-bit text, no transfer encoding)."""
    body = yaml.safe_dump(node_config(settings, spec), sort_keys=False, default_flow_style=False)
    return (
        "MIME-Version: 1.0\n"
        f'Content-Type: multipart/mixed; boundary="{MIME_BOUNDARY}"\n'
        "\n"
        f"--{MIME_BOUNDARY}\n"
        f"Content-Type: {NODEADM_CONTENT_TYPE}\n"
        "\n"
        f"---\n{body}\n"
        f"--{MIME_BOUNDARY}--\n"
    )


def cluster_dns_ip(service_cidr: str) -> str:
    """The cluster DNS address EKS uses: the ``.10`` of the service CIDR (``::a`` for IPv6)."""
    network = ipaddress.ip_network(service_cidr, strict=False)
    return str(network.network_address + 10)


def _toml(value: str) -> str:
    return json.dumps(value)  # a TOML basic string has JSON's escapes


def bottlerocket_user_data(settings: LaunchSettings, spec: NodeGroupSpec) -> str:
    """Bottlerocket TOML settings joining the cluster with the group's labels and taints."""
    lines = [
        "[settings.kubernetes]",
        f"cluster-name = {_toml(settings.cluster_name)}",
        f"api-server = {_toml(settings.api_endpoint)}",
        f"cluster-certificate = {_toml(settings.certificate_authority)}",
        f"cluster-dns-ip = {_toml(cluster_dns_ip(settings.service_cidr))}",
        "",
        "[settings.kubernetes.node-labels]",
        *(f"{_toml(k)} = {_toml(v)}" for k, v in sorted(node_labels(spec).items())),
    ]
    if spec.taints:
        by_key: dict[str, list[str]] = {}
        for taint in spec.taints:
            by_key.setdefault(taint.key, []).append(f"{taint.value}:{taint.effect}")
        lines += ["", "[settings.kubernetes.node-taints]"]
        lines += [f"{_toml(k)} = [{', '.join(_toml(v) for v in vs)}]" for k, vs in sorted(by_key.items())]
    return "\n".join(lines) + "\n"


def user_data(settings: LaunchSettings, spec: NodeGroupSpec) -> str:
    """The group's user data, base64-encoded as ``LaunchTemplateData.UserData`` wants it.

    Raises
    ------
    ProviderError
        ``IncompleteCluster`` when the cluster coordinates are not all known.
    """
    if not settings.complete:
        raise ProviderError("IncompleteCluster", "launch settings lack the API endpoint, CA or service CIDR (discover_cluster first)")
    text = bottlerocket_user_data(settings, spec) if settings.node_os == "bottlerocket" else nodeadm_user_data(settings, spec)
    return base64.b64encode(text.encode()).decode()


def _instance_profile(value: str) -> dict[str, str]:
    return {"Arn": value} if value.startswith("arn:") else {"Name": value}


def template_data(
    settings: LaunchSettings,
    spec: NodeGroupSpec,
    image_id: str,
    *,
    managed: bool = False,
    extra_tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``LaunchTemplateData`` for a node of the group.

    Parameters
    ----------
    managed:
        For an EKS managed node group: no instance profile (EKS sets the node role) and no
        instance type (the node group names it).
    extra_tags:
        More tags for the instances and volumes (the group's kbl tags).
    """
    key, value = cluster_owned_tag(settings.cluster_name)
    tags = [{"Key": k, "Value": v} for k, v in sorted({**kbl_tags(settings.cluster_name), **(extra_tags or {}), key: value}.items())]
    data: dict[str, Any] = {
        "UserData": user_data(settings, spec),
        "MetadataOptions": {
            "HttpEndpoint": "enabled",
            "HttpTokens": "required",
            "HttpPutResponseHopLimit": settings.metadata_hop_limit,
        },
        "TagSpecifications": [{"ResourceType": "instance", "Tags": tags}, {"ResourceType": "volume", "Tags": tags}],
    }
    if image_id:
        data["ImageId"] = image_id
    if not managed:
        data["InstanceType"] = spec.instance_type
        if settings.instance_profile:
            data["IamInstanceProfile"] = _instance_profile(settings.instance_profile)
    if settings.security_groups:
        data["SecurityGroupIds"] = list(settings.security_groups)
    return data
