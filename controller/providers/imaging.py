"""Images and launch-template versions, shared by the EKS and Auto Scaling adapters.

A prototype image is taken in two steps. First the node is **cleaned on the node itself**: the
script ``data/clean-node.sh`` (shipped as ``manifests/bake/clean-node.sh``) runs through SSM Run
Command (``AWS-RunShellScript``) and removes the node's identity and secrets (kubelet
certificates and state, machine-id, cloud-init instance data, SSH host keys, logs); kbl waits for
the command to succeed. Then ``CreateImage`` runs **with** a reboot, so the file system is
consistent in the snapshot; the instance comes back as a fresh node.

``create_image`` is made idempotent by the image *name* (unique per account and region): an
image of that name that exists is returned instead of a second one, without cleaning again. A
launch-template version is created with a ``ClientToken``, so a retry returns the same version.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any

from controller.providers import ProviderError
from controller.providers.awscalls import aws_call
from controller.providers.retrying import Backoff

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ssm import SSMClient

#: SSM's stock document that runs shell commands on a managed instance.
RUN_SHELL_DOCUMENT = "AWS-RunShellScript"
#: SSM command states after which nothing changes any more.
_FINAL = frozenset({"Success", "Failed", "Cancelled", "TimedOut", "Cancelling"})


def clean_script() -> str:
    """The node-cleaning script kbl runs before imaging (``manifests/bake/clean-node.sh``)."""
    return resources.files("controller.providers").joinpath("data/clean-node.sh").read_text()


def clean_instance(
    ssm: SSMClient,
    backoff: Backoff,
    instance: str,
    *,
    script: str | None = None,
    poll_s: float = 2.0,
    timeout_s: float = 600.0,
) -> str:
    """Run the cleaning script on ``instance`` through SSM Run Command and wait for it.

    Returns
    -------
    str
        The SSM command id.

    Raises
    ------
    ProviderError
        ``CleaningFailed`` if the command did not succeed (its status and output in the
        message), ``CleaningTimedOut`` if it did not finish within ``timeout_s``; SSM's own
        errors (an instance that is not SSM-managed is ``InvalidInstanceId``).
    """
    text = script if script is not None else clean_script()
    sent = aws_call(
        backoff,
        ssm.send_command,
        InstanceIds=[instance],
        DocumentName=RUN_SHELL_DOCUMENT,
        Comment="kbl: clean the node before imaging it",
        Parameters={"commands": [text], "executionTimeout": [str(int(timeout_s))]},
        TimeoutSeconds=60,
    )
    command_id = str(sent["Command"]["CommandId"])
    waited = 0.0
    while True:
        try:
            answer: Any = aws_call(backoff, ssm.get_command_invocation, CommandId=command_id, InstanceId=instance)
        except ProviderError as exc:
            if exc.code != "InvocationDoesNotExist":  # not registered yet right after sending
                raise
            answer = {"Status": "Pending"}
        status = str(answer.get("Status", ""))
        if status == "Success":
            return command_id
        if status in _FINAL:
            output = str(answer.get("StandardErrorContent") or answer.get("StandardOutputContent") or "")[-500:]
            raise ProviderError("CleaningFailed", f"cleaning {instance} ended {status} (command {command_id}): {output}")
        if waited >= timeout_s:
            raise ProviderError("CleaningTimedOut", f"cleaning {instance} did not finish in {timeout_s:.0f}s (command {command_id})")
        backoff.sleep(poll_s)
        waited += poll_s


def _image_named(ec2: EC2Client, backoff: Backoff, image_name: str) -> str | None:
    found = aws_call(backoff, ec2.describe_images, Owners=["self"], Filters=[{"Name": "name", "Values": [image_name]}])["Images"]
    return str(found[0]["ImageId"]) if found else None


def create_image(
    ec2: EC2Client,
    backoff: Backoff,
    instance: str,
    image_name: str,
    tags: Mapping[str, str],
    *,
    ssm: SSMClient | None,
) -> str:
    """Clean ``instance`` (:func:`clean_instance`), then image it with a reboot, the image and its
    snapshots tagged with ``tags`` at creation (``ec2:CreateTags`` is granted only with
    ``ec2:CreateAction=CreateImage``); the existing image for a known name.

    Raises
    ------
    ProviderError
        ``NoCleaning`` without an SSM client: kbl never images a node it could not clean.
    """
    existing = _image_named(ec2, backoff, image_name)
    if existing is not None:
        return existing
    if ssm is None:
        raise ProviderError("NoCleaning", "refusing to image a node that cannot be cleaned first: no SSM client configured")
    clean_instance(ssm, backoff, instance)
    tag_list = [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
    try:
        answer = aws_call(
            backoff,
            ec2.create_image,
            InstanceId=instance,
            Name=image_name,
            NoReboot=False,
            TagSpecifications=[{"ResourceType": "image", "Tags": tag_list}, {"ResourceType": "snapshot", "Tags": tag_list}],
        )
    except ProviderError as exc:
        if exc.code != "InvalidAMIName.Duplicate":
            raise
        again = _image_named(ec2, backoff, image_name)
        if again is None:
            raise
        return again
    return str(answer["ImageId"])


def new_template_version(
    ec2: EC2Client,
    backoff: Backoff,
    template_id: str,
    image_id: str,
    token: str,
    *,
    data: Mapping[str, Any] | None = None,
    source_version: str = "$Latest",
) -> str:
    """A new launch-template version from ``source_version`` with ``image_id`` (and ``data`` over
    it, for example the group's user data); returns its number."""
    answer = aws_call(
        backoff,
        ec2.create_launch_template_version,
        LaunchTemplateId=template_id,
        SourceVersion=source_version,
        LaunchTemplateData={**(data or {}), "ImageId": image_id},
        ClientToken=token[:64],
    )
    return str(answer["LaunchTemplateVersion"]["VersionNumber"])


def resolve_template(ec2: EC2Client, backoff: Backoff, name_or_id: str) -> str:
    """The id of a launch template given by name or id (``lt-...``).

    Raises
    ------
    ProviderError
        ``NoLaunchTemplate`` if there is none.
    """
    kwargs: dict[str, Any] = {"LaunchTemplateIds": [name_or_id]} if name_or_id.startswith("lt-") else {"LaunchTemplateNames": [name_or_id]}
    try:
        found = aws_call(backoff, ec2.describe_launch_templates, **kwargs)["LaunchTemplates"]
    except ProviderError as exc:
        if not exc.code.startswith(("InvalidLaunchTemplateName", "InvalidLaunchTemplateId")):
            raise
        found = []
    if not found:
        raise ProviderError("NoLaunchTemplate", f"no launch template {name_or_id}")
    return str(found[0]["LaunchTemplateId"])
