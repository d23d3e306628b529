"""The exact IAM actions each mode of the controller and the worker needs, and no more.

The manifests' IAM policies are tested against these sets, and a test records every boto3
operation the providers make against moto and checks it is in the right set (and that every
action listed is used), so the policy can neither lag behind the code nor grant extra rights.
"""

from __future__ import annotations

_EKS = frozenset(
    {
        "eks:CreateNodegroup",
        "eks:DescribeNodegroup",
        "eks:ListNodegroups",
        "eks:UpdateNodegroupConfig",
        "eks:UpdateNodegroupVersion",
        "eks:DeleteNodegroup",
        "eks:DescribeCluster",
        "eks:TagResource",
        "ec2:DescribeSubnets",
        "ec2:DescribeInstanceTypes",
        "autoscaling:SetInstanceProtection",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
        "autoscaling:DescribeAutoScalingInstances",
        "autoscaling:DescribeScalingActivities",
        "autoscaling:DeleteTags",
        "iam:PassRole",
    }
)
_ASG = frozenset(
    {
        "autoscaling:CreateAutoScalingGroup",
        "autoscaling:CreateOrUpdateTags",
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:SetDesiredCapacity",
        "autoscaling:SetInstanceProtection",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
        "autoscaling:DescribeAutoScalingInstances",
        "autoscaling:DescribeScalingActivities",
        "autoscaling:UpdateAutoScalingGroup",
        "autoscaling:DeleteAutoScalingGroup",
        "ec2:CreateLaunchTemplate",
        "ec2:DescribeLaunchTemplates",
        "ec2:DescribeLaunchTemplateVersions",
        "ec2:DescribeInstances",
        "ec2:DescribeInstanceTypes",
        "ec2:DeleteLaunchTemplate",
        "ec2:RunInstances",
        "ec2:CreateTags",
        "iam:PassRole",
    }
)
#: Prototype images: clean the node through SSM Run Command, image it, add a template version.
#: ``ssm:SendCommand`` also reboots a drained node to finish patching (controller/patching.py).
_IMAGES = frozenset(
    {
        "ssm:SendCommand",
        "ssm:GetCommandInvocation",
        "ec2:CreateImage",
        "ec2:DescribeImages",
        "ec2:CreateLaunchTemplateVersion",
        "ec2:CreateTags",
    }
)

#: Prices of instance types (:mod:`controller.providers.pricing`): the Price List API (on demand)
#: and the spot price history; without them the shipped table is used.
_PRICES = frozenset({"pricing:GetProducts", "ec2:DescribeSpotPriceHistory"})

#: The controller talking to EKS and EC2 Auto Scaling itself (``--provider eks`` or ``asg``).
CONTROLLER_DIRECT_ACTIONS: frozenset[str] = _EKS | _ASG | _IMAGES | _PRICES
#: The controller in queue mode: only its queues, no cloud rights at all.
CONTROLLER_QUEUE_ACTIONS: frozenset[str] = frozenset(
    {"sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage"}
)
#: ``kbl controller --interruption-queue-url``: read and delete EC2 interruption notices
#: (:mod:`controller.interruptions`), check the queue at start; on that one queue only.
CONTROLLER_INTERRUPTION_ACTIONS: frozenset[str] = frozenset(
    {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
)
#: ``kbl controller --provider karpenter``: the region's instance types (Karpenter's objects are
#: Kubernetes objects; the instance catalog is the one cloud read).
CONTROLLER_KARPENTER_ACTIONS: frozenset[str] = frozenset({"ec2:DescribeInstanceTypes"})
#: ``kbl worker``: its queues plus what a direct controller may do.
WORKER_ACTIONS: frozenset[str] = CONTROLLER_DIRECT_ACTIONS | frozenset(
    {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:SendMessage"}
)
#: Actions AWS authorises implicitly inside another call (no boto3 operation of that name is
#: made): passing the node role, launching instances, and tagging resources at creation
#: (``ec2:CreateTags`` for launch templates, images and snapshots; ``autoscaling:CreateOrUpdateTags``
#: for an Auto Scaling group created with ``Tags``; ``eks:TagResource`` for a node group created
#: with ``tags``).
IMPLIED_ACTIONS: frozenset[str] = frozenset(
    {"iam:PassRole", "ec2:RunInstances", "ec2:CreateTags", "autoscaling:CreateOrUpdateTags", "eks:TagResource"}
)

#: boto3 service names -> IAM prefixes (they differ for some services).
SERVICE_PREFIX = {"eks": "eks", "autoscaling": "autoscaling", "ec2": "ec2", "sqs": "sqs", "ssm": "ssm", "api.pricing": "pricing"}


def iam_action(service: str, operation: str) -> str:
    """The IAM action of a botocore operation (``("eks", "CreateNodegroup")`` -> ``eks:CreateNodegroup``)."""
    return f"{SERVICE_PREFIX.get(service, service)}:{operation}"
