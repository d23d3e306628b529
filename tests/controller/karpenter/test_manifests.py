"""The Karpenter parts of the chart, the interruption IAM policy and the CloudFormation snippet."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest
import yaml

from controller import interruptions
from controller.providers.iam import CONTROLLER_INTERRUPTION_ACTIONS
from controller.providers.karpenter import KarpenterSettings, placeholder_deployment, priority_class
from controller.reconciling import WATCHED as CONTROLLER_WATCHED
from kube.api import DEPLOYMENTS, NODEPOOLS, PRIORITYCLASSES
from tests.conftest import ROOT
from tests.controller.karpenter.test_nodepools import spec
from tests.manifests import test_rbac
from tests.manifests.shipped import IAM, find, generator
from tests.manifests.test_kubernetes_schemas import VERSIONS

CLOUDFORMATION = ROOT / "manifests" / "cloudformation" / "interruption-queue.yaml"


def rendered(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [doc for text in generator().render(values).values() for doc in yaml.safe_load_all(text) if doc]


def test_karpenter_rbac_is_exactly_what_the_provider_and_the_controller_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(test_rbac.VERBS, "delete", ("", "delete"))
    # The controller's own calls and the placement reconciler's, which runs in its process.
    controller = test_rbac._calls(sorted((ROOT / "controller").glob("*.py"))) | test_rbac._reconciler_calls()
    controller |= test_rbac._calls([ROOT / "kube" / "watching.py"], generic=tuple(r for r, _ in CONTROLLER_WATCHED))
    # _ensure(resource, ...) creates, reads and replaces the three kinds it is given
    provider = test_rbac._calls([ROOT / "controller" / "providers" / "karpenter.py"], generic=(NODEPOOLS, DEPLOYMENTS, PRIORITYCLASSES))
    metrics_and_leases = {c for c in controller if c[0] in {"metrics.k8s.io", "coordination.k8s.io"}}
    objects = rendered({"controller": {"provider": "karpenter"}})
    cluster_wide = test_rbac._granted_to("kbl-controller", objects)
    (role,) = [o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == "kbl-controller-placeholders"]
    placeholders = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert cluster_wide | placeholders == (controller | provider) - metrics_and_leases
    deletes = {(g, r) for g, r, v in cluster_wide if v == "delete"}
    # ... and the placement reconciler's superseded PlacementSlices (it runs in the controller's process)
    assert deletes == {("karpenter.sh", "nodepools"), ("karpenter.sh", "nodeclaims"), ("kbl.io", "placementslices")}
    # Deployments only in the placeholder namespace (a Role), never cluster-wide.
    assert not any(r == "deployments" for _, r, _ in cluster_wide)
    assert placeholders == {("apps", "deployments", v) for v in ("get", "create", "update", "patch", "delete")}
    assert role["metadata"]["namespace"] == KarpenterSettings().namespace == "kbl-system"
    (binding,) = [o for o in objects if o["kind"] == "RoleBinding" and o["metadata"]["name"] == "kbl-controller-placeholders"]
    assert binding["metadata"]["namespace"] == role["metadata"]["namespace"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kbl-controller", "namespace": "kbl-system"}]
    moved = rendered({"controller": {"provider": "karpenter", "karpenter": {"placeholderNamespace": "kbl-warm"}}})
    (elsewhere,) = [o for o in moved if o["kind"] == "Role" and o["metadata"]["name"] == "kbl-controller-placeholders"]
    assert elsewhere["metadata"]["namespace"] == "kbl-warm"


def test_karpenter_and_interruption_values_become_controller_arguments() -> None:
    objects = rendered({"controller": {"provider": "karpenter", "karpenter": {"nodeClassKind": "NodeClass"}, "interruptionQueueUrl": "https://sqs.eu-west-1.amazonaws.com/123456789012/kbl-interruptions"}})
    args = find(objects, "Deployment", "kbl-controller")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--provider") + 1] == "karpenter"
    assert args[args.index("--node-class-kind") + 1] == "NodeClass"
    assert args[args.index("--interruption-queue-url") + 1].endswith("/kbl-interruptions")
    default = find(rendered({}), "Deployment", "kbl-controller")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--interruption-queue-url" not in default
    assert "--node-class" not in default


def test_interruption_policy_grants_only_reading_that_one_queue() -> None:
    policy = json.loads((IAM / "controller-interruption-policy.json").read_text())
    (statement,) = policy["Statement"]
    assert set(statement["Action"]) == CONTROLLER_INTERRUPTION_ACTIONS
    assert statement["Resource"] == "arn:aws:sqs:${AWS_REGION}:${AWS_ACCOUNT_ID}:${INTERRUPTION_QUEUE_NAME}"


def test_cloudformation_sends_the_four_event_kinds_the_handler_reads_to_one_queue() -> None:
    template = yaml.safe_load(CLOUDFORMATION.read_text())
    resources = template["Resources"]
    rules = {k: v for k, v in resources.items() if v["Type"] == "AWS::Events::Rule"}
    kinds = {rule["Properties"]["EventPattern"]["detail-type"][0] for rule in rules.values()}
    assert kinds == {interruptions.SPOT_WARNING, interruptions.REBALANCE, interruptions.HEALTH, interruptions.STATE_CHANGE}
    for rule in rules.values():
        assert rule["Properties"]["Targets"] == [{"Id": "KblInterruptionQueue", "Arn": {"Fn::GetAtt": ["InterruptionQueue", "Arn"]}}]
    states = rules["InstanceStateChangeRule"]["Properties"]["EventPattern"]["detail"]["state"]
    assert set(states) == interruptions.LEAVING_STATES
    (send, deny) = resources["InterruptionQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert set(send["Principal"]["Service"]) == {"events.amazonaws.com", "sqs.amazonaws.com"}
    assert send["Action"] == "sqs:SendMessage"
    assert deny["Effect"] == "Deny"
    assert resources["InterruptionQueue"]["Properties"]["MessageRetentionPeriod"] >= interruptions.SPOT_NOTICE_S


@pytest.mark.parametrize("version", VERSIONS)
def test_placeholders_their_priority_class_and_the_karpenter_chart_pass_the_kubernetes_schemas(version: str) -> None:
    settings = KarpenterSettings()
    objects = [placeholder_deployment(spec(), settings, 3), priority_class(settings)]
    chart = rendered({"controller": {"provider": "karpenter", "interruptionQueueUrl": "https://sqs/q"}})
    objects += [o for o in chart if "kbl-controller" in o["metadata"]["name"]]
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)
