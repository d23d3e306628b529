"""Prices and several instance types per group, through real boto3.

moto serves EC2 (spot price history), Auto Scaling (MixedInstancesPolicy) and EKS
(``instanceTypes``, ``capacityType``); it has no Price List API, so ``GetProducts`` answers from
botocore's ``Stubber`` (the call shape still checked against the service model) with a product
shaped as AWS returns it. Left out: moto never fails a launch for capacity, so failed scaling
activities are read from messages as AWS writes them (:func:`activity_failures`), and the
stateful fake (``tests/controller/test_capacity_fallback.py``) plays the failures end to end.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from botocore.stub import ANY, Stubber

from controller.providers import NodeGroupSpec, ProviderError
from controller.providers.asg import activity_failures
from controller.providers.pricing import AwsPrices, PriceTable, price_table, shipped_prices
from controller.providers.retrying import Backoff
from tests.aws import REGION, Aws, make_cluster
from tests.controller.providers.test_eks_asg import asg_provider, eks_provider

#: One GetProducts answer as AWS shapes it (``PriceList`` holds JSON strings).
PRICE_PAGE: dict[str, Any] = {
    "FormatVersion": "aws_v1",
    "PriceList": [
        json.dumps({
            "product": {"productFamily": "Compute Instance", "attributes": {"instanceType": "m6i.xlarge", "regionCode": REGION}},
            "terms": {"OnDemand": {"ABC.JRTCKXETXF": {"priceDimensions": {"ABC.JRTCKXETXF.6YS6EN2CT7": {
                "unit": "Hrs", "pricePerUnit": {"USD": "0.1920000000"},
                "description": "$0.192 per On Demand Linux m6i.xlarge Instance Hour",
            }}}}},
        })
    ],
}  # fmt: skip


def _pricing(*pages: dict[str, Any]) -> Any:
    import boto3

    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    client = session.client("pricing")
    stubber = Stubber(client)
    for page in pages:
        stubber.add_response("get_products", page, {"ServiceCode": "AmazonEC2", "Filters": ANY, "MaxResults": 10})
    stubber.activate()
    return client


def test_on_demand_prices_come_from_the_price_list_and_spot_from_the_spot_history(aws: Aws, no_sleep: Backoff) -> None:
    now = [1_000.0]
    reader = AwsPrices(_pricing(PRICE_PAGE), aws.client("ec2"), REGION, backoff=no_sleep, clock=lambda: now[0])
    prices = reader.instance_prices(["m6i.xlarge"])
    assert prices["m6i.xlarge", "ON_DEMAND"] == 0.192
    assert 0 < prices["m6i.xlarge", "SPOT"] < prices["m6i.xlarge", "ON_DEMAND"]  # moto's spot history
    now[0] += 3600.0
    assert reader.instance_prices(["m6i.xlarge"]) == prices  # kept for a day: no second GetProducts (the stub has none)


def test_a_refused_price_list_falls_back_to_the_dated_shipped_table() -> None:
    class Refused:
        def instance_prices(self, instance_types: Any) -> dict[tuple[str, str], float]:
            raise ProviderError("AccessDeniedException", "not authorized to perform pricing:GetProducts")

    table = shipped_prices()
    prices, source = price_table(Refused(), ["m6i.xlarge"], table)
    assert prices["m6i.xlarge", "ON_DEMAND"] == table.on_demand["m6i.xlarge"]
    assert table.date in source
    assert "AccessDenied" in source
    assert table.date[:2] == "20"
    assert table.source
    # Every type of the shipped table has a positive price; bigger sizes of a family cost more.
    assert all(p > 0 for p in table.on_demand.values())
    assert table.on_demand["m6i.large"] < table.on_demand["m6i.xlarge"] < table.on_demand["m6i.2xlarge"]
    assert price_table(object(), ["x"], PriceTable("2024-01-01", "us-east-1", "test", {"x": 1.0}))[0]["x", "SPOT"] == 1.0


def test_an_asg_group_of_several_types_launches_through_a_mixed_instances_policy(aws: Aws, no_sleep: Backoff) -> None:
    subnets = make_cluster(aws)
    provider = asg_provider(aws, no_sleep, subnets)
    spot = NodeGroupSpec(
        "kbl-default-k-us-east-1a-spot", "default/k", "us-east-1a", "m6i.xlarge", 1, 4, "SPOT",
        instance_types=("m6i.xlarge", "m6a.xlarge", "m6i.2xlarge"),
    )
    info = provider.create_group(spot, "tok")
    raw = aws.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[spot.name])["AutoScalingGroups"][0]
    policy = raw["MixedInstancesPolicy"]
    assert [o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"]] == ["m6i.xlarge", "m6a.xlarge", "m6i.2xlarge"]
    assert policy["InstancesDistribution"]["SpotAllocationStrategy"] == "price-capacity-optimized"
    assert policy["InstancesDistribution"]["OnDemandPercentageAboveBaseCapacity"] == 0
    assert (info.instance_types, info.capacity_type, info.instance_type) == (spot.instance_types, "SPOT", "m6i.xlarge")
    assert [g.types for g in provider.list_groups()] == [spot.instance_types]


def test_an_eks_group_takes_the_list_of_types_and_its_capacity_type(aws: Aws, no_sleep: Backoff) -> None:
    make_cluster(aws)
    provider = eks_provider(aws, no_sleep)
    spec = NodeGroupSpec("g", "default/k", "us-east-1b", "m6a.xlarge", 1, 3, "SPOT", instance_types=("m6a.xlarge", "m6i.xlarge"))
    info = provider.create_group(spec, "tok")
    raw = aws.client("eks").describe_nodegroup(clusterName=aws.cluster, nodegroupName="g")["nodegroup"]
    assert (raw["instanceTypes"], raw["capacityType"]) == (["m6a.xlarge", "m6i.xlarge"], "SPOT")
    assert (info.types, info.capacity_type) == (("m6a.xlarge", "m6i.xlarge"), "SPOT")


def test_failed_scaling_activities_are_read_as_launch_failures_with_code_type_and_time() -> None:
    at = datetime(2026, 12, 6, 1, 0, tzinfo=UTC)
    activities = [
        {"StatusCode": "Successful", "StatusMessage": "", "StartTime": at},
        {
            "StatusCode": "Failed", "StartTime": at,
            "StatusMessage": "Could not launch On-Demand Instances. InsufficientInstanceCapacity - We currently do not have "
            "sufficient m6i.xlarge capacity in the Availability Zone you requested (us-east-1b). Our system will be working "
            "on provisioning additional capacity. Launching EC2 instance failed.",
        },
        {
            "StatusCode": "Failed", "StartTime": at,
            "StatusMessage": "Could not launch Spot Instances. UnfulfillableCapacity - Unable to fulfill capacity due to your "
            "request configuration. Please adjust your request and try again. Launching EC2 instance failed.",
        },
        {
            "StatusCode": "Failed", "StartTime": at,
            "StatusMessage": "Your requested instance type (c7gn.16xlarge) is not supported in your requested Availability "
            "Zone (us-east-1e). Please retry your request by not specifying an Availability Zone or choosing us-east-1a. "
            "Launching EC2 instance failed. Unsupported",
        },
        {"StatusCode": "Failed", "StartTime": at, "StatusMessage": "The image id '[ami-1]' does not exist. Launching EC2 instance failed."},
    ]  # fmt: skip
    failures = activity_failures(activities)
    assert [(f.code, f.instance_type, f.capacity) for f in failures] == [
        ("InsufficientInstanceCapacity", "m6i.xlarge", True),
        ("UnfulfillableCapacity", "", True),
        ("Unsupported", "c7gn.16xlarge", True),
        ("LaunchFailed", "", False),  # not a capacity error: only the max provision time gives it up
    ]
    assert all(f.at_s == at.timestamp() for f in failures)
    later = {"StatusCode": "Successful", "StatusMessage": "", "StartTime": datetime(2026, 12, 6, 1, 5, tzinfo=UTC)}
    assert activity_failures([*activities, later]) == ()  # a later launch succeeded: the failures are behind the group


def test_the_queue_carries_types_capacity_type_and_launch_failures_both_ways() -> None:
    from controller.providers.queueing import info_from_json, info_to_json, spec_from_json, spec_to_json
    from placement.capacity import GroupState, LaunchFailure

    spec = NodeGroupSpec("g", "default/k", "us-east-1a", "c6i.xlarge", 2, 5, "SPOT", instance_types=("c6i.xlarge", "m6i.xlarge"))
    assert spec_from_json(json.loads(json.dumps(spec_to_json(spec)))) == spec
    info = GroupState(
        "g", "default/k", "us-east-1a", "c6i.xlarge", 2, instance_types=spec.instance_types, capacity_type="SPOT",
        failures=(LaunchFailure("UnfulfillableCapacity", "no spot", 1.0, "c6i.xlarge"), LaunchFailure("AsgInstanceLaunchFailures")),
        launched=1,
    )
    assert info_from_json(json.loads(json.dumps(info_to_json(info)))) == info


def test_an_eks_group_without_readable_activities_reports_its_health_issues(aws: Aws, no_sleep: Backoff) -> None:
    make_cluster(aws)
    provider = eks_provider(aws, no_sleep)
    provider.create_group(NodeGroupSpec("g", "default/k", "us-east-1b", "m6i.xlarge", 2, 3), "tok")
    raw = aws.client("eks").describe_nodegroup(clusterName=aws.cluster, nodegroupName="g")["nodegroup"]
    # moto reports no health issue; EKS reports them so when its Auto Scaling group cannot launch:
    raw = {**raw, "resources": {}, "health": {"issues": [
        {"code": "AsgInstanceLaunchFailures", "message": "Could not launch On-Demand Instances. InsufficientInstanceCapacity",
         "resourceIds": ["eks-g-1234"]},
    ]}}  # fmt: skip
    (failure,) = provider._info(raw).failures
    assert (failure.code, failure.at_s, failure.capacity) == ("AsgInstanceLaunchFailures", None, True)  # ongoing: no time
