"""Instance types come from the provider (as karpenter's GetInstanceTypes): EC2 through moto over HTTP."""

from __future__ import annotations

from controller.providers.asg import AsgProvider
from controller.providers.fake import FAKE_INSTANCE_TYPES, FakeProvider
from controller.providers.retrying import Backoff
from tests.aws import Aws, base_image, make_cluster
from tests.controller.providers.test_eks_asg import eks_provider


def test_eks_and_asg_report_the_regions_instance_types_with_allocatable_estimated_as_eks_reserves(aws: Aws, no_sleep: Backoff) -> None:
    subnets = make_cluster(aws)
    eks = eks_provider(aws, no_sleep)
    asg = AsgProvider(
        aws.client("autoscaling"), aws.client("ec2"), cluster_name=aws.cluster, image_id=base_image(aws), subnets_by_zone=subnets
    )
    for provider in (eks, asg):
        shapes = {s.name: s for s in provider.instance_types()}
        assert len(shapes) > 100  # the region's catalog, paged
        xl = shapes["m6i.xlarge"]  # 4 vCPU, 16 GiB, 4 ENIs x 15 IPv4: 58 pods
        assert (xl.cpu_m, xl.pods) == (3920, 58)
        assert xl.memory_b == (16384 - 255 - 11 * 58 - 100) * 2**20
        assert shapes["m6i.16xlarge"].pods == 250  # 64 vCPUs: EKS's recommended ceiling
    assert "ec2:DescribeInstanceTypes" in aws.recorder.seen["setup"]
    assert eks.instance_types() is eks.instance_types()  # read once, then cached


def test_the_fake_cloud_owns_its_catalog_and_builds_nodes_from_it() -> None:
    cloud = FakeProvider(lambda: 0.0)
    assert cloud.instance_types() == list(FAKE_INSTANCE_TYPES)
