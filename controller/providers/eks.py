"""EKS managed node groups as kbl node groups.

One managed node group per KBL, zone and capacity type: ``create_nodegroup`` with every
instance type that fits, cheapest first (EKS launches on-demand types in that order and spot
ones by its capacity-optimized choice), ``capacityType``, the ``kbl.io/kbl`` label, the
``kbl.io/dedicated=<name>:NoSchedule`` taint, the subnets of the right zone and a deterministic
``clientRequestToken``; ``update_nodegroup_config`` for the size; ``update_nodegroup_version``
to roll to a new launch-template version (EKS replaces the nodes itself: only for groups
holding no placed data); ``create_green_group`` for a blue/green roll of a group whose nodes
hold data (:mod:`controller.bluegreen`); ``delete_nodegroup``.

Launch templates (``--launch-template NAME|ID``, tagged ``kbl.io/managed-by=kbl`` and
``kbl.io/cluster=<name>`` by you): without ``image_id`` the groups use the template as it is and
EKS picks and bootstraps its own AMI; with ``image_id`` (an EKS AL2023 AMI, or a baked prototype)
each group gets its own template version with that image and nodeadm user data
(:mod:`.launching`), the only mode in which EKS can later roll the group to a baked image (EKS
cannot switch a group between its own AMIs and custom ones). One named node leaves through
its Auto Scaling group (``terminate_instance_in_auto_scaling_group`` with decrement). EKS tags a
managed group's Auto Scaling group for Cluster Autoscaler discovery; kbl removes those tags so
CA leaves kbl groups alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from controller.providers import (
    CA_ENABLED_TAG,
    CLUSTER_TAG,
    KBL_TAG,
    MANAGED_BY,
    MANAGED_BY_TAG,
    ZONE_TAG,
    NodeGroupInfo,
    NodeGroupSpec,
    ProviderError,
    RollStrategy,
    ec2_instance_types,
    group_tags,
    instance_id,
    kbl_tags,
)
from controller.providers.asg import read_failures
from controller.providers.awscalls import aws_call
from controller.providers.imaging import create_image, new_template_version, resolve_template
from controller.providers.launching import LaunchSettings, discover_cluster, template_data
from controller.providers.pricing import AwsPrices, Prices
from controller.providers.retrying import Backoff
from placement.capacity import InstanceShape, LaunchFailure
from topology import labels
from topology.nodes import Taint

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_eks import EKSClient
    from mypy_boto3_ssm import SSMClient

_EFFECTS = {"NoSchedule": "NO_SCHEDULE", "NoExecute": "NO_EXECUTE", "PreferNoSchedule": "PREFER_NO_SCHEDULE"}


class EksProvider:
    """EKS managed node groups (see the module docstring).

    Parameters
    ----------
    eks, autoscaling, ec2:
        boto3 clients.
    cluster_name:
        The EKS cluster.
    node_role_arn:
        The IAM role the nodes run as.
    subnets_by_zone:
        Subnet ids per AZ; discovered from the cluster's VPC config when ``None``.
    launch_template_id:
        A launch template (name or ``lt-`` id) to create groups from; needed for prototype images.
    image_id:
        Custom AMI of new groups (with a launch template): each group then gets a template
        version with nodeadm user data; needed to roll to a prototype image later.
    launch:
        How custom-AMI nodes join (:class:`~.launching.LaunchSettings`); missing cluster
        coordinates are discovered with ``eks:DescribeCluster``.
    ssm:
        SSM client that cleans a node before it is imaged (prototype images need it).
    """

    #: EKS replaces a managed group's nodes itself on a version update, in its own order, without
    #: waiting for their data (:func:`controller.baking.prototype_image` rolls data-holding
    #: groups blue/green instead, unless told otherwise).
    replaces_nodes_on_roll = True

    def __init__(
        self,
        eks: EKSClient,
        autoscaling: AutoScalingClient,
        ec2: EC2Client,
        *,
        cluster_name: str,
        node_role_arn: str,
        subnets_by_zone: Mapping[str, Sequence[str]] | None = None,
        launch_template_id: str | None = None,
        image_id: str = "",
        launch: LaunchSettings | None = None,
        ssm: SSMClient | None = None,
        backoff: Backoff | None = None,
        prices: AwsPrices | None = None,
    ) -> None:
        self.prices = prices
        self.eks = eks
        self.autoscaling = autoscaling
        self.ec2 = ec2
        self.cluster_name = cluster_name
        self.node_role_arn = node_role_arn
        self._subnets = {k: list(v) for k, v in subnets_by_zone.items()} if subnets_by_zone is not None else None
        self.launch_template_id = launch_template_id
        self.image_id = image_id
        self.launch = launch or LaunchSettings(cluster_name)
        self.ssm = ssm
        self.backoff = backoff or Backoff()
        self._template_ids: dict[str, str] = {}

    def _call(self, fn: Any, **kwargs: Any) -> Any:
        return aws_call(self.backoff, fn, **kwargs)

    _instance_types: list[InstanceShape] | None = None

    def instance_types(self) -> list[InstanceShape]:
        """The region's EC2 instance types (``describe_instance_types``), read once."""
        if self._instance_types is None:
            self._instance_types = ec2_instance_types(self._call, self.ec2)
        return self._instance_types

    def subnets_by_zone(self) -> dict[str, list[str]]:
        """The cluster's subnets per AZ (``describe_cluster`` then ``describe_subnets``)."""
        if self._subnets is None:
            cluster = self._call(self.eks.describe_cluster, name=self.cluster_name)["cluster"]
            ids = cluster.get("resourcesVpcConfig", {}).get("subnetIds", [])
            found: dict[str, list[str]] = {}
            if ids:
                for subnet in self._call(self.ec2.describe_subnets, SubnetIds=ids)["Subnets"]:
                    found.setdefault(subnet["AvailabilityZone"], []).append(subnet["SubnetId"])
            self._subnets = found
        return self._subnets

    def template_id(self) -> str:
        """The configured launch template's id (resolved from its name once).

        Raises
        ------
        ProviderError
            ``NoLaunchTemplate`` if none is configured or it does not exist.
        """
        wanted = self.launch_template_id
        if not wanted:
            raise ProviderError("NoLaunchTemplate", "no launch template configured (kbl controller --launch-template NAME|ID)")
        if wanted not in self._template_ids:
            self._template_ids[wanted] = wanted if wanted.startswith("lt-") else resolve_template(self.ec2, self.backoff, wanted)
        return self._template_ids[wanted]

    def launch_settings(self) -> LaunchSettings:
        """The launch settings with the cluster coordinates (discovered once when missing)."""
        if not self.launch.complete:
            self.launch = discover_cluster(self.eks, self.backoff, self.launch)
        return self.launch

    def _info(self, raw: Mapping[str, Any]) -> NodeGroupInfo:
        tags = dict(raw.get("tags") or {})
        scaling = raw.get("scalingConfig") or {}
        template = raw.get("launchTemplate") or {}
        types = tuple(raw.get("instanceTypes") or ())
        return NodeGroupInfo(
            name=raw["nodegroupName"],
            kbl=tags.get(KBL_TAG, ""),
            zone=tags.get(ZONE_TAG, ""),
            instance_type=types[0] if types else "",
            desired=int(scaling.get("desiredSize", 0)),
            min_size=int(scaling.get("minSize", 0)),
            max_size=int(scaling.get("maxSize", 0)),
            status=str(raw.get("status", "")),
            image=str(raw.get("releaseVersion") or ""),
            launch_template_version=str(template.get("version") or ""),
            tags=tags,
            instance_types=types,
            capacity_type=str(raw.get("capacityType") or "ON_DEMAND"),
            failures=self._failures(raw),
        )

    def _failures(self, raw: Mapping[str, Any]) -> tuple[LaunchFailure, ...]:
        """Failed launches of a group whose health reports issues (such as
        ``AsgInstanceLaunchFailures`` or ``InsufficientFreeAddresses``): the scaling activities of
        its Auto Scaling groups (with their times, one call each, only then), else the issues
        themselves (an ongoing condition: no time)."""
        issues = (raw.get("health") or {}).get("issues") or []
        if not issues:
            return ()
        asgs = [a["name"] for a in (raw.get("resources") or {}).get("autoScalingGroups", []) if a.get("name")]
        found: list[LaunchFailure] = []
        if asgs:
            for asg in asgs:
                try:
                    found.extend(read_failures(self.autoscaling, self.backoff, asg))
                except ProviderError:  # the activities are a detail: the health issues still say it
                    break
            else:
                return tuple(found)
        return tuple(LaunchFailure(str(i.get("code") or ""), str(i.get("message") or "")[:300]) for i in issues)

    def instance_prices(self, instance_types: Iterable[str]) -> Prices:
        """Prices from the Price List API (``prices`` given), else none (the shipped table is used)."""
        if self.prices is None:
            raise ProviderError("NoPriceList", "no Price List client configured")
        return self.prices.instance_prices(instance_types)

    def list_groups(self) -> list[NodeGroupInfo]:
        names: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"clusterName": self.cluster_name}
            if token:
                kwargs["nextToken"] = token
            page = self._call(self.eks.list_nodegroups, **kwargs)
            names.extend(page.get("nodegroups", []))
            token = page.get("nextToken")
            if not token:
                break
        out = []
        for name in names:
            info = self.describe_group(name)
            if info is not None and info.tags.get(MANAGED_BY_TAG) == MANAGED_BY:
                out.append(info)
        return out

    def describe_group(self, name: str) -> NodeGroupInfo | None:
        try:
            raw = self._call(self.eks.describe_nodegroup, clusterName=self.cluster_name, nodegroupName=name)["nodegroup"]
        except ProviderError as exc:
            if exc.code == "ResourceNotFoundException":
                return None
            raise
        return self._info(raw)

    def create_group(self, spec: NodeGroupSpec, token: str) -> NodeGroupInfo:
        subnets = self.subnets_by_zone().get(spec.zone)
        if not subnets:
            raise ProviderError("NoSubnet", f"cluster {self.cluster_name} has no subnet in zone {spec.zone}")
        template: dict[str, str] | None = None
        if self.launch_template_id:
            template = {"id": self.template_id()}
            if self.image_id:
                extra = {KBL_TAG: spec.kbl, ZONE_TAG: spec.zone}
                data = template_data(self.launch_settings(), spec, self.image_id, managed=True, extra_tags=extra)
                template["version"] = new_template_version(self.ec2, self.backoff, template["id"], self.image_id, token, data=data)
        return self._create(
            spec, token, subnets=list(subnets), tags=group_tags(spec, self.cluster_name), template=template, role=self.node_role_arn
        )

    def _create(
        self, spec: NodeGroupSpec, token: str, *, subnets: list[str], tags: Mapping[str, str], template: Mapping[str, str] | None, role: str
    ) -> NodeGroupInfo:
        kwargs: dict[str, Any] = {
            "clusterName": self.cluster_name,
            "nodegroupName": spec.name,
            "scalingConfig": {"minSize": 0, "maxSize": max(spec.max_size, 1), "desiredSize": spec.desired},
            "subnets": subnets,
            "instanceTypes": list(spec.types),
            "capacityType": spec.capacity_type,
            "nodeRole": role,
            "labels": {**spec.labels, labels.NODE_GROUP_LABEL: spec.name},
            "taints": [{"key": t.key, "value": t.value, "effect": _EFFECTS.get(t.effect, "NO_SCHEDULE")} for t in spec.taints],
            "tags": dict(tags),
            "clientRequestToken": token,
        }
        if template is not None:
            kwargs["launchTemplate"] = dict(template)
        try:
            raw = self._call(self.eks.create_nodegroup, **kwargs)["nodegroup"]
        except ProviderError as exc:
            if exc.code != "ResourceInUseException":
                raise
            found = self.describe_group(spec.name)  # created by an earlier attempt: adopt it
            if found is None:
                raise
            return found
        return self._info(raw)

    def create_green_group(self, name: str, green: str, image_id: str, token: str) -> NodeGroupInfo:
        """The blue/green roll's new group (:mod:`controller.bluegreen`): ``describe_nodegroup`` of
        ``name``, a new version of its launch template with ``image_id`` (and, for a custom-AMI
        group, user data that registers the nodes in ``green``), then ``create_nodegroup`` with
        its subnets, labels, taints, instance types, capacity type, node role, maximum size and
        tags, no node yet, and ``token`` (an earlier attempt's group is adopted).

        Raises
        ------
        ProviderError
            ``ResourceNotFoundException`` without the old group; ``NoCustomImage`` without a custom
            AMI (``--image-id``: EKS's own AMIs join through EKS's bootstrap, a baked image through
            ours); ``NoLaunchTemplate`` for a group created without a launch template.
        """
        found = self.describe_group(green)
        if found is not None:
            return found
        if not self.image_id:
            raise ProviderError(
                "NoCustomImage",
                f"node group {name} runs EKS's own AMI; only groups created with a custom AMI (--image-id) join from a baked image",
            )
        raw = self._call(self.eks.describe_nodegroup, clusterName=self.cluster_name, nodegroupName=name)["nodegroup"]
        current = raw.get("launchTemplate") or {}
        if not current.get("id"):
            raise ProviderError("NoLaunchTemplate", f"node group {name} was not created from a launch template: no image to roll to")
        tags = {k: v for k, v in (raw.get("tags") or {}).items() if k in (MANAGED_BY_TAG, CLUSTER_TAG, KBL_TAG, ZONE_TAG)}  # kbl's only
        scaling = raw.get("scalingConfig") or {}
        effects = {v: k for k, v in _EFFECTS.items()}
        spec = NodeGroupSpec(
            name=green,
            kbl=tags.get(KBL_TAG, ""),
            zone=tags.get(ZONE_TAG, ""),
            instance_type=(raw.get("instanceTypes") or [""])[0],
            desired=0,
            max_size=int(scaling.get("maxSize") or 1),
            capacity_type=str(raw.get("capacityType") or "ON_DEMAND"),
            labels={k: v for k, v in (raw.get("labels") or {}).items() if k != labels.NODE_GROUP_LABEL},
            taints=tuple(
                Taint(t["key"], str(t.get("value") or ""), effects.get(str(t.get("effect")), "NoSchedule")) for t in raw.get("taints") or ()
            ),
            instance_types=tuple(raw.get("instanceTypes") or ()),
        )
        extra = {KBL_TAG: spec.kbl, ZONE_TAG: spec.zone}  # its nodes join through our user data, which names the group
        data = template_data(self.launch_settings(), spec, image_id, managed=True, extra_tags=extra)
        template_id = str(current["id"])
        version = new_template_version(
            self.ec2, self.backoff, template_id, image_id, token, data=data, source_version=str(current.get("version") or "$Latest")
        )
        template = {"id": template_id, "version": version}
        role = str(raw.get("nodeRole") or self.node_role_arn)
        return self._create(spec, token, subnets=list(raw.get("subnets") or ()), tags=tags, template=template, role=role)

    def detach_from_cluster_autoscaler(self, name: str) -> list[str]:
        """Remove CA discovery tags from the group's Auto Scaling groups; returns their names."""
        asgs = self._asg_names(name)
        for asg in asgs:
            tags = [{"ResourceId": asg, "ResourceType": "auto-scaling-group", "Key": CA_ENABLED_TAG}]
            tags.append({"ResourceId": asg, "ResourceType": "auto-scaling-group", "Key": f"k8s.io/cluster-autoscaler/{self.cluster_name}"})
            self._call(self.autoscaling.delete_tags, Tags=tags)
        return asgs

    def _asg_names(self, name: str) -> list[str]:
        raw = self._call(self.eks.describe_nodegroup, clusterName=self.cluster_name, nodegroupName=name)["nodegroup"]
        return [a["name"] for a in (raw.get("resources") or {}).get("autoScalingGroups", []) if a.get("name")]

    def set_size(self, name: str, desired: int) -> None:
        current = self.describe_group(name)
        if current is None:
            raise ProviderError("ResourceNotFoundException", f"no node group {name}")
        if current.desired == desired:
            return
        scaling = {"minSize": min(current.min_size, desired), "maxSize": max(current.max_size, desired, 1), "desiredSize": desired}
        self._call(self.eks.update_nodegroup_config, clusterName=self.cluster_name, nodegroupName=name, scalingConfig=scaling)

    def remove_instance(self, name: str, provider_id: str) -> None:
        from controller.providers.asg import terminate_member

        wanted = instance_id(provider_id)
        for asg in self._asg_names(name):
            if terminate_member(self.autoscaling, self.backoff, asg, wanted):
                return

    def protect_instances(self, name: str, provider_ids: list[str]) -> None:
        """Scale-in protection on the joined instances, in the group's Auto Scaling groups."""
        from controller.providers.asg import protect_members

        wanted = [instance_id(p) for p in provider_ids]
        for asg in self._asg_names(name):
            protect_members(self.autoscaling, self.backoff, asg, wanted)

    def delete_group(self, name: str) -> None:
        try:
            self._call(self.eks.delete_nodegroup, clusterName=self.cluster_name, nodegroupName=name)
        except ProviderError as exc:
            if exc.code != "ResourceNotFoundException":
                raise

    def create_image(self, provider_id: str, image_name: str, tags: Mapping[str, str]) -> str:
        all_tags = {**tags, **kbl_tags(self.cluster_name)}
        return create_image(self.ec2, self.backoff, instance_id(provider_id), image_name, all_tags, ssm=self.ssm)

    def roll_group(self, name: str, image_id: str, strategy: RollStrategy, token: str) -> str:
        """A new version of the group's launch-template version with ``image_id``, then
        ``update_nodegroup_version`` (EKS replaces the nodes, honouring PodDisruptionBudgets).

        Raises
        ------
        ProviderError
            ``UnsupportedStrategy`` for ``next-nodes`` (EKS replaces managed nodes on every
            version change); ``NoLaunchTemplate`` without a template; ``NoCustomImage`` for a
            group created without a custom AMI (EKS cannot switch it to one).
        """
        if strategy != "rolling":
            raise ProviderError("UnsupportedStrategy", "EKS managed node groups replace nodes on every version change: use rolling")
        configured = self.template_id()
        if not self.image_id:
            raise ProviderError(
                "NoCustomImage",
                f"node group {name} runs EKS's own AMI; EKS rolls only groups created with a custom AMI (--image-id) to a baked image",
            )
        raw = self._call(self.eks.describe_nodegroup, clusterName=self.cluster_name, nodegroupName=name)["nodegroup"]
        current = raw.get("launchTemplate") or {}
        if not current.get("id"):
            raise ProviderError("NoLaunchTemplate", f"node group {name} was not created from a launch template (EKS cannot add one later)")
        template_id = str(current.get("id") or configured)
        version = new_template_version(
            self.ec2, self.backoff, template_id, image_id, token, source_version=str(current.get("version") or "$Latest")
        )
        self._call(
            self.eks.update_nodegroup_version,
            clusterName=self.cluster_name,
            nodegroupName=name,
            launchTemplate={"id": template_id, "version": version},
            clientRequestToken=token,
        )
        return version
