"""Images and launch-template versions, shared by the EKS and Auto Scaling adapters.

``create_image`` is made idempotent by the image *name* (unique per account and region): an
image of that name that exists is returned instead of a second one. A launch-template version is
created with a ``ClientToken``, so a retry returns the same version.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from controller.providers import ProviderError
from controller.providers.awscalls import aws_call
from controller.providers.retrying import Backoff

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client


def create_image(ec2: EC2Client, backoff: Backoff, instance: str, image_name: str, tags: Mapping[str, str]) -> str:
    """Image ``instance`` without rebooting it, the image and its snapshots tagged with ``tags`` at
    creation (``ec2:CreateTags`` is granted only with ``ec2:CreateAction=CreateImage``); the
    existing image for a known name."""
    found = aws_call(backoff, ec2.describe_images, Owners=["self"], Filters=[{"Name": "name", "Values": [image_name]}])["Images"]
    if found:
        return str(found[0]["ImageId"])
    tag_list = [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
    try:
        answer = aws_call(
            backoff,
            ec2.create_image,
            InstanceId=instance,
            Name=image_name,
            NoReboot=True,
            TagSpecifications=[{"ResourceType": "image", "Tags": tag_list}, {"ResourceType": "snapshot", "Tags": tag_list}],
        )
    except ProviderError as exc:
        if exc.code != "InvalidAMIName.Duplicate":
            raise
        again = aws_call(backoff, ec2.describe_images, Owners=["self"], Filters=[{"Name": "name", "Values": [image_name]}])["Images"]
        return str(again[0]["ImageId"])
    return str(answer["ImageId"])


def new_template_version(ec2: EC2Client, backoff: Backoff, template_id: str, image_id: str, token: str) -> str:
    """A new launch-template version from ``$Latest`` with ``image_id``; returns its number."""
    answer = aws_call(
        backoff,
        ec2.create_launch_template_version,
        LaunchTemplateId=template_id,
        SourceVersion="$Latest",
        LaunchTemplateData={"ImageId": image_id},
        ClientToken=token[:64],
    )
    return str(answer["LaunchTemplateVersion"]["VersionNumber"])
