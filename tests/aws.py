"""AWS for tests: moto in server mode (real boto3 over HTTP on 127.0.0.1), with a recorder of every operation.

The fixtures are registered in tests/conftest.py for every test package (providers, the node agent's S3, reliability)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto.ec2.models.amis import AmiBackend
from moto.server import ThreadedMotoServer

from controller.providers.iam import iam_action
from controller.providers.retrying import Backoff

REGION = "us-east-1"


@dataclass
class Recorder:
    """IAM actions of the boto3 operations made, by the label currently set."""

    label: str = "setup"
    seen: dict[str, set[str]] = field(default_factory=dict)

    def hook(self, model: Any, **_: Any) -> None:
        self.seen.setdefault(self.label, set()).add(iam_action(model.service_model.endpoint_prefix, model.name))


@dataclass
class Aws:
    """One test's view of the shared moto server: its own cluster name, so nothing is reset."""

    endpoint: str
    recorder: Recorder
    cluster: str
    clients: dict[str, Any]

    def client(self, service: str) -> Any:
        """A boto3 client (one per service for the whole session: loading models is slow)."""
        if service not in self.clients:
            session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
            client = session.client(service, endpoint_url=self.endpoint)  # type: ignore[call-overload]

            def record(**event: Any) -> None:  # the current test's recorder, looked up per call
                self.clients["_recorder"].hook(**event)

            client.meta.events.register("before-parameter-build.*.*", record)
            self.clients[service] = client
        return self.clients[service]


def _create_image_tagging_snapshots(original: Any) -> Any:
    """moto's ``CreateImage`` with what it lacks: ``TagSpecifications`` of type ``snapshot`` (AWS
    tags the image's snapshots with them; moto raises NotImplementedError)."""

    def create_image(backend: Any, instance_id: str, name: str, description: str, tag_specifications: list[dict[str, Any]]) -> Any:
        snapshot_tags = [t for spec in tag_specifications if spec["ResourceType"] == "snapshot" for t in spec["Tags"]]
        rest = [spec for spec in tag_specifications if spec["ResourceType"] != "snapshot"]
        ami = original(backend, instance_id, name, description, tag_specifications=rest)
        for tag in snapshot_tags:
            ami.ebs_snapshot.add_tag(tag["Key"], tag["Value"])
        return ami

    return create_image


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    # Thousands of default AMIs make every EC2 backend slow to build; tests register their own.
    os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AmiBackend, "create_image", _create_image_tagging_snapshots(AmiBackend.create_image))
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


_COUNTER = itertools.count(1)
_CLIENTS: dict[str, Any] = {}


@pytest.fixture
def aws(moto_server: str) -> Aws:
    # No reset between tests: rebuilding moto's EC2 backend costs seconds; names are unique instead.
    _CLIENTS["_recorder"] = recorder = Recorder()
    return Aws(moto_server, recorder, f"c{next(_COUNTER)}", _CLIENTS)


@pytest.fixture
def no_sleep() -> Backoff:
    return Backoff(attempts=4, base_s=0.0, sleep=lambda _s: None)


def base_image(aws: Aws) -> str:
    """A registered node image for launch templates."""
    ec2 = aws.client("ec2")
    return str(ec2.register_image(Name=f"eks-node-base-{aws.cluster}", RootDeviceName="/dev/xvda")["ImageId"])


def make_cluster(aws: Aws) -> dict[str, list[str]]:
    """A VPC with one subnet per zone (a, b) and an EKS cluster on them; subnets by zone."""
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    by_zone: dict[str, list[str]] = {}
    for i, zone in enumerate(("us-east-1a", "us-east-1b")):
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=zone)["Subnet"]["SubnetId"]
        by_zone[zone] = [subnet]
    eks = aws.client("eks")
    eks.create_cluster(
        name=aws.cluster,
        roleArn="arn:aws:iam::123456789012:role/eks",
        resourcesVpcConfig={"subnetIds": [s for v in by_zone.values() for s in v]},
    )
    return by_zone
