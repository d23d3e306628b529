"""Self-managed Auto Scaling groups as kbl node groups.

One Auto Scaling group per KBL, zone and capacity type, launched from its own launch template
(:mod:`.launching`: the image, the instance type, AL2023 nodeadm or Bottlerocket user data
that joins the node with the ``kbl.io/kbl`` label and the ``kbl.io/dedicated`` taint, the
instance profile, security groups, IMDSv2 with hop limit 2, the cluster ownership tag).
``set_desired_capacity`` sizes it; every joined instance is protected from scale-in
(``set_instance_protection``, :meth:`AsgProvider.protect_instances`), so lowering the desired
size can only take an instance that never joined; a named node leaves only through
``terminate_instance_in_auto_scaling_group`` with decrement, its protection lifted just before. Rolling to a new image creates a
launch-template version and points the group at it; the controller then replaces the instances
still on an older version (:meth:`AsgProvider.outdated_instances`) one at a time through the
safe path (:mod:`controller.rolling`), never an instance refresh (it would skip the protected,
joined instances). The group never carries the Cluster
Autoscaler discovery tags. A group of several instance types, or of spot capacity, launches
through a ``MixedInstancesPolicy`` (:func:`mixed_instances`: the types as overrides, on demand
tried in the order given, spot ``price-capacity-optimized``). Failed launches are read from the
group's scaling activities (:func:`activity_failures`) while it is short of its desired size.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from controller.providers import (
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
from controller.providers.awscalls import aws_call
from controller.providers.imaging import create_image, new_template_version
from controller.providers.launching import LaunchSettings, discover_cluster, template_data
from controller.providers.pricing import AwsPrices, Prices
from controller.providers.retrying import Backoff
from placement.capacity import CAPACITY_ERROR_CODES, InstanceShape, LaunchFailure
from topology import labels

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_eks import EKSClient
    from mypy_boto3_ssm import SSMClient


#: An instance type named in a scaling activity's message (``m6i.xlarge``, ``c7gn.16xlarge``).
_TYPE_IN_MESSAGE = re.compile(r"\b([a-z][a-z0-9-]*[0-9][a-z0-9-]*\.(?:[0-9]*x?large|metal[a-z0-9-]*|medium|small|micro|nano))\b")
#: Codes of failed launches as they appear in a scaling activity's ``StatusMessage`` (the EC2
#: error code, or the spot request status).
_CODES_IN_MESSAGE = sorted(CAPACITY_ERROR_CODES, key=len, reverse=True)


def activity_failures(activities: Sequence[Mapping[str, Any]]) -> tuple[LaunchFailure, ...]:
    """Launch failures in Auto Scaling scaling activities (``describe_scaling_activities``):
    every activity with ``StatusCode`` ``Failed`` and no successful one after it, its code read from ``StatusMessage`` (one of
    :data:`~placement.capacity.CAPACITY_ERROR_CODES`, else ``LaunchFailed``), its instance type
    when the message names one, its time from ``StartTime``.

    AWS writes such a message as "Could not launch On-Demand Instances. InsufficientInstanceCapacity
    - We currently do not have sufficient m6i.xlarge capacity in the Availability Zone you
    requested (us-east-1b). ... Launching EC2 instance failed."
    """
    def when(activity: Mapping[str, Any]) -> float | None:
        started = activity.get("StartTime")
        return started.timestamp() if isinstance(started, datetime) else None

    succeeded = [t for a in activities if a.get("StatusCode") == "Successful" and (t := when(a)) is not None]
    latest_success = max(succeeded, default=None)
    out = []
    for activity in activities:
        if activity.get("StatusCode") != "Failed":
            continue
        at_s = when(activity)
        if latest_success is not None and at_s is not None and at_s < latest_success:
            continue  # a later launch succeeded: the failure is behind the group
        message = str(activity.get("StatusMessage") or "")
        code = next((c for c in _CODES_IN_MESSAGE if c in message), "LaunchFailed")
        found = _TYPE_IN_MESSAGE.search(message)
        out.append(LaunchFailure(code, message[:300], at_s, found.group(1) if found else ""))
    return tuple(out)


def read_failures(autoscaling: Any, backoff: Backoff, group: str) -> tuple[LaunchFailure, ...]:
    """The failures among a group's 20 latest scaling activities."""
    page = aws_call(backoff, autoscaling.describe_scaling_activities, AutoScalingGroupName=group, MaxRecords=20)
    return activity_failures(page.get("Activities", []))


def mixed_instances(template_id: str, version: str, spec: NodeGroupSpec) -> dict[str, Any]:
    """The ``MixedInstancesPolicy`` of a group with several types or spot capacity: the types as
    overrides in the order given (on demand: ``prioritized``, tried in that order; spot:
    ``price-capacity-optimized``, AWS's pick of the cheapest pools least likely to be
    interrupted), all on demand or all spot as the spec asks."""
    spot = spec.capacity_type == "SPOT"
    return {
        "LaunchTemplate": {
            "LaunchTemplateSpecification": {"LaunchTemplateId": template_id, "Version": version},
            "Overrides": [{"InstanceType": t} for t in spec.types],
        },
        "InstancesDistribution": {
            "OnDemandAllocationStrategy": "prioritized",
            "OnDemandBaseCapacity": 0,
            "OnDemandPercentageAboveBaseCapacity": 0 if spot else 100,
            "SpotAllocationStrategy": "price-capacity-optimized",
        },
    }


def terminate_member(autoscaling: AutoScalingClient, backoff: Backoff, group: str, instance: str) -> bool:
    """Terminate ``instance`` if it is (still) a member of ``group``, decrementing the desired size;
    its scale-in protection is lifted first (the caller removes only a drained instance).

    Returns ``False`` when it is not a member any more (a retry after success): nothing is done.
    """
    members = aws_call(backoff, autoscaling.describe_auto_scaling_instances, InstanceIds=[instance])["AutoScalingInstances"]
    member = [m for m in members if m["AutoScalingGroupName"] == group and m["LifecycleState"] not in ("Terminating", "Terminated")]
    if not member:
        return False
    if member[0].get("ProtectedFromScaleIn"):
        aws_call(
            backoff, autoscaling.set_instance_protection, AutoScalingGroupName=group, InstanceIds=[instance], ProtectedFromScaleIn=False
        )
    try:
        aws_call(backoff, autoscaling.terminate_instance_in_auto_scaling_group, InstanceId=instance, ShouldDecrementDesiredCapacity=True)
    except ProviderError as exc:
        if exc.code != "ValidationError":  # terminated between the two calls
            raise
    return True


def protect_members(autoscaling: AutoScalingClient, backoff: Backoff, group: str, instances: list[str]) -> list[str]:
    """Set scale-in protection on those of ``instances`` that are in service in ``group`` and not
    yet protected; returns the ids protected now."""
    if not instances:
        return []
    members = aws_call(backoff, autoscaling.describe_auto_scaling_instances, InstanceIds=instances)["AutoScalingInstances"]
    todo = [
        m["InstanceId"] for m in members
        if m["AutoScalingGroupName"] == group and m["LifecycleState"] == "InService" and not m.get("ProtectedFromScaleIn")
    ]
    if todo:
        aws_call(backoff, autoscaling.set_instance_protection, AutoScalingGroupName=group, InstanceIds=todo, ProtectedFromScaleIn=True)
    return todo


class AsgProvider:
    """Self-managed Auto Scaling groups (see the module docstring).

    Parameters
    ----------
    autoscaling, ec2:
        boto3 clients.
    cluster_name:
        The Kubernetes cluster the nodes join.
    image_id:
        The node image new groups start from.
    subnets_by_zone:
        Subnet ids per AZ.
    launch:
        How nodes start and join (:class:`~.launching.LaunchSettings`); default: AL2023 with the
        cluster coordinates discovered through ``eks`` (``eks:DescribeCluster``).
    eks:
        EKS client to discover the cluster's endpoint, CA and service CIDR when ``launch`` lacks
        them.
    ssm:
        SSM client that cleans a node before it is imaged (prototype images need it).
    """

    def __init__(
        self,
        autoscaling: AutoScalingClient,
        ec2: EC2Client,
        *,
        cluster_name: str,
        image_id: str,
        subnets_by_zone: Mapping[str, Sequence[str]],
        launch: LaunchSettings | None = None,
        eks: EKSClient | None = None,
        ssm: SSMClient | None = None,
        backoff: Backoff | None = None,
        prices: AwsPrices | None = None,
    ) -> None:
        self.prices = prices
        self.autoscaling = autoscaling
        self.ec2 = ec2
        self.cluster_name = cluster_name
        self.image_id = image_id
        self.subnets = {k: list(v) for k, v in subnets_by_zone.items()}
        self.launch = launch or LaunchSettings(cluster_name)
        self.eks = eks
        self.ssm = ssm
        self.backoff = backoff or Backoff()

    def launch_settings(self) -> LaunchSettings:
        """The launch settings with the cluster coordinates (discovered once when missing).

        Raises
        ------
        ProviderError
            ``IncompleteCluster`` when they are missing and there is no EKS client to ask.
        """
        if not self.launch.complete:
            if self.eks is None:
                raise ProviderError("IncompleteCluster", "launch settings lack the API endpoint, CA or service CIDR and no EKS client")
            self.launch = discover_cluster(self.eks, self.backoff, self.launch)
        return self.launch

    def _call(self, fn: Any, **kwargs: Any) -> Any:
        return aws_call(self.backoff, fn, **kwargs)

    _instance_types: list[InstanceShape] | None = None

    def instance_types(self) -> list[InstanceShape]:
        """The region's EC2 instance types (``describe_instance_types``), read once."""
        if self._instance_types is None:
            self._instance_types = ec2_instance_types(self._call, self.ec2)
        return self._instance_types

    def _template(self, name: str) -> dict[str, Any] | None:
        try:
            found = self._call(self.ec2.describe_launch_templates, LaunchTemplateNames=[name])["LaunchTemplates"]
        except ProviderError as exc:
            if exc.code.startswith("InvalidLaunchTemplateName"):
                return None
            raise
        return dict(found[0]) if found else None

    def _info(self, raw: Mapping[str, Any]) -> NodeGroupInfo:
        tags = {t["Key"]: t["Value"] for t in raw.get("Tags", [])}
        mixed = raw.get("MixedInstancesPolicy") or {}
        template = raw.get("LaunchTemplate") or (mixed.get("LaunchTemplate") or {}).get("LaunchTemplateSpecification") or {}
        types = tuple(tags.get(labels.INSTANCE_TYPE_TAG, "").split()) or tuple(
            str(o["InstanceType"]) for o in (mixed.get("LaunchTemplate") or {}).get("Overrides", []) if o.get("InstanceType")
        )
        desired = int(raw.get("DesiredCapacity", 0))
        short = desired > len(raw.get("Instances") or ())
        failures = read_failures(self.autoscaling, self.backoff, raw["AutoScalingGroupName"]) if short else ()
        return NodeGroupInfo(
            name=raw["AutoScalingGroupName"],
            kbl=tags.get(KBL_TAG, ""),
            zone=tags.get(ZONE_TAG, ""),
            instance_type=types[0] if types else "",
            desired=int(raw.get("DesiredCapacity", 0)),
            min_size=int(raw.get("MinSize", 0)),
            max_size=int(raw.get("MaxSize", 0)),
            status="DELETING" if raw.get("Status") else "ACTIVE",
            launch_template_version=str(template.get("Version") or ""),
            tags=tags,
            instance_types=types,
            capacity_type=tags.get(labels.CAPACITY_TYPE_TAG, "ON_DEMAND"),
            failures=failures,
            launched=sum(1 for i in raw.get("Instances") or () if not str(i.get("LifecycleState", "")).startswith("Terminat")),
        )

    def list_groups(self) -> list[NodeGroupInfo]:
        out: list[NodeGroupInfo] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Filters": [{"Name": f"tag:{MANAGED_BY_TAG}", "Values": [MANAGED_BY]}]}
            if token:
                kwargs["NextToken"] = token
            page = self._call(self.autoscaling.describe_auto_scaling_groups, **kwargs)
            for raw in page["AutoScalingGroups"]:
                tags = {t["Key"]: t["Value"] for t in raw.get("Tags", [])}
                if tags.get(MANAGED_BY_TAG) == MANAGED_BY and tags.get(CLUSTER_TAG) == self.cluster_name:
                    out.append(self._info(raw))
            token = page.get("NextToken")
            if not token:
                return out

    def describe_group(self, name: str) -> NodeGroupInfo | None:
        found = self._call(self.autoscaling.describe_auto_scaling_groups, AutoScalingGroupNames=[name])["AutoScalingGroups"]
        return self._info(found[0]) if found else None

    def create_group(self, spec: NodeGroupSpec, token: str) -> NodeGroupInfo:
        existing = self.describe_group(spec.name)
        if existing is not None:
            return existing
        subnets = self.subnets.get(spec.zone)
        if not subnets:
            raise ProviderError("NoSubnet", f"no subnet configured for zone {spec.zone}")
        template = self._template(spec.name)
        if template is None:
            data = template_data(self.launch_settings(), spec, self.image_id, extra_tags={KBL_TAG: spec.kbl, ZONE_TAG: spec.zone})
            template_tags = [{"Key": k, "Value": v} for k, v in sorted(group_tags(spec, self.cluster_name).items())]
            try:
                template = self._call(
                    self.ec2.create_launch_template,
                    LaunchTemplateName=spec.name,
                    LaunchTemplateData=data,
                    ClientToken=token[:64],
                    TagSpecifications=[{"ResourceType": "launch-template", "Tags": template_tags}],
                )["LaunchTemplate"]
            except ProviderError as exc:
                if not exc.code.startswith("InvalidLaunchTemplateName.AlreadyExists"):
                    raise
                template = self._template(spec.name)
        assert template is not None
        tags = {
            **group_tags(spec, self.cluster_name), labels.INSTANCE_TYPE_TAG: " ".join(spec.types),
            labels.CAPACITY_TYPE_TAG: spec.capacity_type,
        }
        launch: dict[str, Any] = {"LaunchTemplate": {"LaunchTemplateId": template["LaunchTemplateId"], "Version": "$Latest"}}
        if len(spec.types) > 1 or spec.capacity_type == "SPOT":
            launch = {"MixedInstancesPolicy": mixed_instances(template["LaunchTemplateId"], "$Latest", spec)}
        try:
            self._call(
                self.autoscaling.create_auto_scaling_group,
                AutoScalingGroupName=spec.name,
                **launch,
                MinSize=0,
                MaxSize=max(spec.max_size, 1),
                DesiredCapacity=spec.desired,
                VPCZoneIdentifier=",".join(subnets),
                Tags=[
                    {"ResourceId": spec.name, "ResourceType": "auto-scaling-group", "Key": k, "Value": v, "PropagateAtLaunch": True}
                    for k, v in sorted(tags.items())
                ],
            )
        except ProviderError as exc:
            if exc.code != "AlreadyExists":
                raise
        found = self.describe_group(spec.name)
        if found is None:
            raise ProviderError("ResourceNotFoundException", f"group {spec.name} vanished right after creation")
        return found

    def instance_prices(self, instance_types: Iterable[str]) -> Prices:
        """Prices from the Price List API (``prices`` given), else none (the shipped table is used)."""
        if self.prices is None:
            raise ProviderError("NoPriceList", "no Price List client configured")
        return self.prices.instance_prices(instance_types)

    def set_size(self, name: str, desired: int) -> None:
        self._call(self.autoscaling.set_desired_capacity, AutoScalingGroupName=name, DesiredCapacity=desired, HonorCooldown=False)

    def remove_instance(self, name: str, provider_id: str) -> None:
        terminate_member(self.autoscaling, self.backoff, name, instance_id(provider_id))

    def outdated_instances(self, name: str) -> list[str]:
        """The group's live instances not running the image of the group's launch-template version
        (``ec2:DescribeLaunchTemplateVersions`` for the version's ``ImageId``, ``ec2:DescribeInstances``
        for the instances'). The image, not the version number an instance reports, decides: a
        version that changes only other settings rolls nothing, and ``$Latest`` needs no resolving."""
        found = self._call(self.autoscaling.describe_auto_scaling_groups, AutoScalingGroupNames=[name])["AutoScalingGroups"]
        if not found:
            return []
        raw = found[0]
        mixed = raw.get("MixedInstancesPolicy") or {}
        template = raw.get("LaunchTemplate") or (mixed.get("LaunchTemplate") or {}).get("LaunchTemplateSpecification") or {}
        live = sorted(
            str(i["InstanceId"]) for i in raw.get("Instances") or () if not str(i.get("LifecycleState", "")).startswith("Terminat")
        )
        if not live or not template.get("LaunchTemplateId"):
            return []
        versions = self._call(
            self.ec2.describe_launch_template_versions,
            LaunchTemplateId=str(template["LaunchTemplateId"]),
            Versions=[str(template.get("Version") or "$Default")],
        )["LaunchTemplateVersions"]
        wanted = str(((versions[0] if versions else {}).get("LaunchTemplateData") or {}).get("ImageId") or "")
        if not wanted:
            return []
        images: dict[str, str] = {}
        for reservation in self._call(self.ec2.describe_instances, InstanceIds=live)["Reservations"]:
            for instance in reservation.get("Instances", []):
                images[str(instance["InstanceId"])] = str(instance.get("ImageId") or "")
        return [i for i in live if i in images and images[i] != wanted]

    def protect_instances(self, name: str, provider_ids: list[str]) -> None:
        protect_members(self.autoscaling, self.backoff, name, [instance_id(p) for p in provider_ids])

    def delete_group(self, name: str) -> None:
        try:
            self._call(self.autoscaling.delete_auto_scaling_group, AutoScalingGroupName=name, ForceDelete=True)
        except ProviderError as exc:
            if exc.code != "ValidationError":
                raise
        if self._template(name) is not None:
            self._call(self.ec2.delete_launch_template, LaunchTemplateName=name)

    def create_image(self, provider_id: str, image_name: str, tags: Mapping[str, str]) -> str:
        all_tags = {**tags, **kbl_tags(self.cluster_name)}
        return create_image(self.ec2, self.backoff, instance_id(provider_id), image_name, all_tags, ssm=self.ssm)

    def roll_group(self, name: str, image_id: str, strategy: RollStrategy, token: str) -> str:
        """Point the group at a new launch-template version with ``image_id``. Both strategies only
        do that: new instances start from it, and the controller replaces the joined ones one at a
        time through the safe path (:mod:`controller.rolling`, :meth:`outdated_instances`); an
        instance refresh would skip the protected (joined) instances and never move their data."""
        template = self._template(name)
        if template is None:
            raise ProviderError("NoLaunchTemplate", f"group {name} has no launch template named after it")
        version = new_template_version(self.ec2, self.backoff, template["LaunchTemplateId"], image_id, token)
        spec = {"LaunchTemplateId": template["LaunchTemplateId"], "Version": version}
        found = self._call(self.autoscaling.describe_auto_scaling_groups, AutoScalingGroupNames=[name])["AutoScalingGroups"]
        if found and found[0].get("MixedInstancesPolicy"):  # a mixed group takes the version inside its policy
            policy = {"LaunchTemplate": {"LaunchTemplateSpecification": spec}}
            self._call(self.autoscaling.update_auto_scaling_group, AutoScalingGroupName=name, MixedInstancesPolicy=policy)
        else:
            self._call(self.autoscaling.update_auto_scaling_group, AutoScalingGroupName=name, LaunchTemplate=spec)
        return version
