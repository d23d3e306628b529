"""The shipped IAM policies grant exactly the calls the providers make, scoped as tightly as AWS allows.

The action sets come from ``controller.providers.iam`` (the providers' own tests check every
boto3 call against them), so code and policy cannot drift apart.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from controller.providers import CA_ENABLED_TAG, CLUSTER_TAG, MANAGED_BY, MANAGED_BY_TAG
from controller.providers.iam import (
    CONTROLLER_DIRECT_ACTIONS,
    CONTROLLER_INTERRUPTION_ACTIONS,
    CONTROLLER_KARPENTER_ACTIONS,
    CONTROLLER_QUEUE_ACTIONS,
    WORKER_ACTIONS,
)
from dataplane.agent.iam import AGENT_SOURCE_ACTIONS
from tests.manifests.shipped import IAM, NAMESPACE, find, plain_objects

Obj = dict[str, Any]
POLICIES = {
    "controller-direct-policy.json": CONTROLLER_DIRECT_ACTIONS,
    "controller-queue-policy.json": CONTROLLER_QUEUE_ACTIONS,
    "controller-interruption-policy.json": CONTROLLER_INTERRUPTION_ACTIONS,
    "controller-karpenter-policy.json": CONTROLLER_KARPENTER_ACTIONS,
    "worker-policy.json": WORKER_ACTIONS,
    "agent-policy.json": AGENT_SOURCE_ACTIONS,
}
PLACEHOLDERS = {"AWS_ACCOUNT_ID", "AWS_REGION", "CLUSTER_NAME", "NODE_ROLE_NAME", "QUEUE_NAME", "REPLY_QUEUE_NAME", "OIDC_PROVIDER", "INTERRUPTION_QUEUE_NAME",
                "SOURCE_BUCKET", "SOURCE_PREFIX"}  # fmt: skip
SAMPLE = {
    "AWS_ACCOUNT_ID": "123456789012",
    "AWS_REGION": "eu-west-1",
    "CLUSTER_NAME": "prod",
    "NODE_ROLE_NAME": "eks-node-role",
    "QUEUE_NAME": "kbl-requests.fifo",
    "REPLY_QUEUE_NAME": "kbl-replies.fifo",
    "INTERRUPTION_QUEUE_NAME": "kbl-interruptions",
    "OIDC_PROVIDER": "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE",
    "SOURCE_BUCKET": "training-data",
    "SOURCE_PREFIX": "datasets/",
}
#: Actions AWS gives no resource-level permissions for: the only ones allowed on "*".
NO_RESOURCE_LEVEL = {
    "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances", "ec2:DescribeSubnets", "ec2:DescribeImages",
    "ec2:DescribeInstanceTypes", "ec2:DescribeLaunchTemplates", "ssm:GetCommandInvocation",
    # launch failures and prices (issue 22): none of the three has resource-level permissions
    "autoscaling:DescribeScalingActivities", "ec2:DescribeSpotPriceHistory", "pricing:GetProducts",
    # rolls to a new image (controller/rolling.py): each instance's image against its template version's
    "ec2:DescribeInstances", "ec2:DescribeLaunchTemplateVersions",
}  # fmt: skip
#: Mutating grants without a condition, each explained in manifests/iam/README.md.
UNCONDITIONED_WRITES = {("Ec2CreateImagesAndSnapshots", "ec2:CreateImage"), ("SsmRunShellScriptDocument", "ssm:SendCommand")}
READ_PREFIXES = ("Describe", "List", "Get")


def _load(name: str) -> Obj:
    policy: Obj = json.loads((IAM / name).read_text())
    return policy


def _substituted(name: str) -> Obj:
    text = (IAM / name).read_text()
    for key, value in SAMPLE.items():
        text = text.replace("${" + key + "}", value)
    assert "${" not in text
    policy: Obj = json.loads(text)
    return policy


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def _statements(name: str) -> list[Obj]:
    policy = _load(name)
    assert policy["Version"] == "2012-10-17"
    statements: list[Obj] = policy["Statement"]
    return statements


def _actions(name: str) -> set[str]:
    return {a for s in _statements(name) for a in _as_list(s["Action"])}


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policy_grants_exactly_the_calls_the_providers_make(name: str) -> None:
    actions = _actions(name)
    assert actions - POLICIES[name] == set(), "granted but never called"
    assert POLICIES[name] - actions == set(), "called but not granted"


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policy_is_allow_only_without_wildcard_actions(name: str) -> None:
    sids = [s["Sid"] for s in _statements(name)]
    assert len(set(sids)) == len(sids)
    for statement in _statements(name):
        assert statement["Effect"] == "Allow"
        assert not {"NotAction", "NotResource", "NotPrincipal"} & statement.keys()
        for action in _as_list(statement["Action"]):
            assert "*" not in action
            assert re.fullmatch(r"(eks|autoscaling|ec2|iam|sqs|ssm|s3|pricing):[A-Z][A-Za-z]+", action), action


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_resources_are_arns_of_this_account_region_and_cluster(name: str) -> None:
    for statement in _substituted(name)["Statement"]:
        for resource in _as_list(statement["Resource"]):
            if resource == "*":
                actions = set(_as_list(statement["Action"]))
                assert actions <= NO_RESOURCE_LEVEL or "Condition" in statement, statement["Sid"]
                continue
            assert re.fullmatch(r"arn:aws:(eks|autoscaling|ec2|iam|sqs|ssm|s3):(eu-west-1)?:(123456789012)?:.+", resource), resource
            if resource.startswith("arn:aws:eks"):
                assert "/prod" in resource, resource


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_write_is_conditioned_unless_documented(name: str) -> None:
    for statement in _statements(name):
        for action in _as_list(statement["Action"]):
            verb = action.split(":", 1)[1]
            if verb.startswith(READ_PREFIXES) or action.startswith("sqs:"):
                continue
            if (statement["Sid"], action) in UNCONDITIONED_WRITES:
                continue
            assert "Condition" in statement, f"{statement['Sid']}: {action} is not scoped by a condition"


def test_kbl_groups_are_scoped_by_the_tags_the_providers_set() -> None:
    """Every tag-scoped grant requires kbl's own tag and this cluster's name, together."""
    tag_keys = set()
    for statement in _statements("controller-direct-policy.json"):
        for test in statement.get("Condition", {}).values():
            for key, value in test.items():
                if key.endswith(f"Tag/{MANAGED_BY_TAG}"):
                    prefix = key.split("/", 1)[0]
                    assert value == MANAGED_BY
                    assert test[f"{prefix}/{CLUSTER_TAG}"] == "${CLUSTER_NAME}", statement["Sid"]
                    tag_keys.add(prefix)
    assert tag_keys == {"aws:RequestTag", "aws:ResourceTag"}


def test_cluster_autoscaler_detachment_may_delete_only_its_discovery_tags() -> None:
    (statement,) = [s for s in _statements("controller-direct-policy.json") if "autoscaling:DeleteTags" in s["Action"]]
    keys = statement["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"]
    assert set(keys) == {CA_ENABLED_TAG, "k8s.io/cluster-autoscaler/${CLUSTER_NAME}"}


def test_worker_may_do_what_a_direct_controller_may_and_queue_mode_controller_nothing_in_the_cloud() -> None:
    direct = _statements("controller-direct-policy.json")
    worker = _statements("worker-policy.json")
    assert worker[: len(direct)] == direct
    assert {a.split(":")[0] for a in _actions("controller-queue-policy.json")} == {"sqs"}


def test_queue_roles_point_opposite_ways() -> None:
    def grants(name: str) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for statement in _statements(name):
            if all(a.startswith("sqs:") for a in _as_list(statement["Action"])):
                out.setdefault(statement["Resource"].rsplit(":", 1)[1], set()).update(_as_list(statement["Action"]))
        return out

    assert grants("controller-queue-policy.json") == {
        "${QUEUE_NAME}": {"sqs:SendMessage"},
        "${REPLY_QUEUE_NAME}": {"sqs:ReceiveMessage", "sqs:DeleteMessage"},
    }
    assert grants("worker-policy.json") == {
        "${QUEUE_NAME}": {"sqs:ReceiveMessage", "sqs:DeleteMessage"},
        "${REPLY_QUEUE_NAME}": {"sqs:SendMessage"},
    }


def test_only_documented_placeholders_are_used() -> None:
    readme = (IAM / "README.md").read_text()
    for path in IAM.glob("*.json"):
        used = set(re.findall(r"\$\{([A-Z_]+)\}", path.read_text()))
        assert used <= PLACEHOLDERS, path.name
    for key in PLACEHOLDERS:
        assert "${" + key + "}" in readme


def test_agent_reads_only_objects_under_the_sources_prefixes() -> None:
    """Object ARNs only (no bucket-level action, no ``*``): the agent cannot list, write or delete."""
    for statement in _substituted("agent-policy.json")["Statement"]:
        for resource in _as_list(statement["Resource"]):
            assert resource == "arn:aws:s3:::training-data/datasets/*", resource
    assert all(a.startswith("s3:Get") for a in _actions("agent-policy.json"))


@pytest.mark.parametrize(("policy", "account"), [("controller-trust-policy.json", "kbl-controller"), ("agent-trust-policy.json", "kbl-agent")])
def test_trust_policy_lets_only_its_service_account_assume_the_role(policy: str, account: str) -> None:
    (statement,) = _substituted(policy)["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"]["Federated"] == f"arn:aws:iam::123456789012:oidc-provider/{SAMPLE['OIDC_PROVIDER']}"
    conditions = statement["Condition"]["StringEquals"]
    name = find(plain_objects(), "ServiceAccount", account)["metadata"]["name"]
    assert conditions[f"{SAMPLE['OIDC_PROVIDER']}:sub"] == f"system:serviceaccount:{NAMESPACE}:{name}"
    assert conditions[f"{SAMPLE['OIDC_PROVIDER']}:aud"] == "sts.amazonaws.com"


#: IAM quotas (characters without whitespace): a role's inline policies together; a managed policy.
ROLE_INLINE_QUOTA = 10_240


def test_every_policy_fits_the_iam_quota_of_the_role_it_is_put_on() -> None:
    """manifests/iam/README.md puts each policy inline on a role, the interruption policy beside
    the controller's: with long names (a 100-character cluster name, EKS's maximum) each role's
    policies together stay within the role quota. Leaves out: the quota of a managed policy
    (6,144), which the direct and worker policies exceed: the README says not to use one."""
    long_names = {**SAMPLE, "CLUSTER_NAME": "c" * 100, "NODE_ROLE_NAME": "r" * 64, "AWS_REGION": "ap-southeast-2",
                  "QUEUE_NAME": "q" * 80, "REPLY_QUEUE_NAME": "p" * 80, "INTERRUPTION_QUEUE_NAME": "i" * 80}  # fmt: skip

    def size(name: str) -> int:
        text = (IAM / name).read_text()
        for key, value in long_names.items():
            text = text.replace("${" + key + "}", value)
        return len("".join(text.split()))

    roles = {
        "controller, eks or asg": ["controller-direct-policy.json", "controller-interruption-policy.json"],
        "controller, queue": ["controller-queue-policy.json", "controller-interruption-policy.json"],
        "worker": ["worker-policy.json"],
    }
    for role, names in roles.items():
        assert sum(size(n) for n in names) <= ROLE_INLINE_QUOTA, role
