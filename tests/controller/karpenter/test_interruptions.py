"""Interruption notices from a real SQS queue (moto) in the real EventBridge event shapes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controller.interruptions import SPOT_NOTICE_S, InterruptionHandler, parse_notice
from controller.providers.iam import CONTROLLER_INTERRUPTION_ACTIONS
from kube.api import DATASETS, NODES
from kube.memory import MemoryApi
from tests.aws import Aws
from tests.controller.karpenter.crds import event
from tests.placement.scenarios import placed_dataset
from topology import labels
from topology.examples import make_node
from topology.times import format_time, parse_time

SPOT_INSTANCE = "i-0a1b2c3d4e5f60001"
RETIRING_INSTANCE = "i-0a1b2c3d4e5f60002"


def node(name: str, instance: str) -> dict[str, Any]:
    obj = make_node(name, zone="us-east-1a")
    obj["spec"]["providerID"] = f"aws:///us-east-1a/{instance}"
    return obj


def cluster() -> MemoryApi:
    api = MemoryApi()
    api.put(NODES, node("spot-1", SPOT_INSTANCE))
    api.put(NODES, node("retiring", RETIRING_INSTANCE))
    api.put(NODES, node("empty", "i-0a1b2c3d4e5f60003"))
    api.put(DATASETS, placed_dataset("d", [["spot-1", "retiring"], ["spot-1", "other"], ["other", "third"]]))
    return api


def queue(aws: Aws, bodies: list[str]) -> str:
    sqs = aws.client("sqs")
    url = str(sqs.create_queue(QueueName=f"{aws.cluster}-interruptions")["QueueUrl"])
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body)
    return url


def node_annotations(api: MemoryApi, name: str) -> dict[str, str]:
    found = api.get(NODES, name)
    assert found is not None
    return dict(found["metadata"].get("annotations") or {})


def test_the_four_event_shapes_parse_like_karpenters_parsers() -> None:
    spot = parse_notice(event("spot-interruption-warning"))
    assert spot is not None
    assert (spot.kind, spot.instance_ids) == ("spot-interruption", (SPOT_INSTANCE,))
    assert spot.deadline_s == parse_time("2026-11-30T08:00:00Z") + SPOT_NOTICE_S  # type: ignore[operator]
    health = parse_notice(event("scheduled-change"))
    assert health is not None
    assert (health.kind, health.instance_ids) == ("scheduled-change", (RETIRING_INSTANCE,))
    assert health.deadline_s == parse_time("2026-12-07T09:00:00Z")
    rebalance = parse_notice(event("rebalance-recommendation"))
    assert rebalance is not None
    assert rebalance.deadline_s is None
    gone = parse_notice(event("state-change-terminated"))
    assert gone is not None
    assert gone.state == "shutting-down"
    assert parse_notice(event("state-change-pending")) is None  # Karpenter ignores it too
    other = json.loads(event("scheduled-change"))
    other["detail"]["eventTypeCategory"] = "issue"
    assert parse_notice(json.dumps(other)) is None
    with pytest.raises(ValueError, match="detail-type"):
        parse_notice('{"hello": "world"}')


def test_spot_warning_on_a_data_node_drains_with_the_deadline_then_cordons_and_deletes_the_message(aws: Aws) -> None:
    api = cluster()
    url = queue(aws, [event("spot-interruption-warning")])
    aws.recorder.label = "interruptions"
    handler = InterruptionHandler(api, aws.client("sqs"), url)
    assert handler.check_queue() == 1
    (outcome,) = handler.poll(wait_s=0)
    assert (outcome.node, outcome.pieces, outcome.drained, outcome.cordoned) == ("spot-1", 2, True, True)
    marks = node_annotations(api, "spot-1")
    assert marks[labels.DRAIN] == "spot-interruption"
    assert marks[labels.DRAIN_DEADLINE] == format_time(parse_time("2026-11-30T08:00:00Z") + SPOT_NOTICE_S)  # type: ignore[operator]
    spot = api.get(NODES, "spot-1")
    assert spot is not None
    assert spot["spec"]["unschedulable"] is True
    assert handler.poll(wait_s=0) == []  # the message was deleted
    assert handler.metrics.deleted == 1
    assert handler.metrics.nodes_drained == 1
    assert [e["reason"] for e in api.events] == ["InterruptionNotice"]
    assert aws.recorder.seen["interruptions"] <= CONTROLLER_INTERRUPTION_ACTIONS
    assert aws.recorder.seen["interruptions"] == CONTROLLER_INTERRUPTION_ACTIONS  # every granted action is used


def test_a_spot_warning_gives_a_deadline_to_a_node_already_draining_for_a_scale_down(aws: Aws) -> None:
    api = cluster()
    api.patch(NODES, "spot-1", {"metadata": {"annotations": {labels.DRAIN: "scale-down"}}})
    handler = InterruptionHandler(api, aws.client("sqs"), queue(aws, [event("spot-interruption-warning")]))
    (outcome,) = handler.poll(wait_s=0)
    assert outcome.drained
    marks = node_annotations(api, "spot-1")
    assert (marks[labels.DRAIN], marks[labels.DRAIN_DEADLINE]) == ("spot-interruption", "2026-11-30T08:02:00Z")


def test_a_node_without_data_is_only_cordoned(aws: Aws) -> None:
    api = cluster()
    body = json.loads(event("spot-interruption-warning"))
    body["detail"]["instance-id"] = "i-0a1b2c3d4e5f60003"
    handler = InterruptionHandler(api, aws.client("sqs"), queue(aws, [json.dumps(body)]))
    (outcome,) = handler.poll(wait_s=0)
    assert (outcome.node, outcome.pieces, outcome.drained, outcome.cordoned) == ("empty", 0, False, True)
    assert labels.DRAIN not in node_annotations(api, "empty")


def test_scheduled_retirement_drains_by_its_start_time_and_rebalance_only_starts_moving(aws: Aws) -> None:
    api = cluster()
    handler = InterruptionHandler(api, aws.client("sqs"), queue(aws, [event("scheduled-change"), event("rebalance-recommendation")]))
    outcomes = handler.poll(wait_s=0)
    by_node = {o.node: o for o in outcomes}
    assert node_annotations(api, "retiring")[labels.DRAIN_DEADLINE] == "2026-12-07T09:00:00Z"
    assert by_node["retiring"].cordoned
    assert node_annotations(api, "spot-1")[labels.DRAIN] == "rebalance-recommendation"
    assert labels.DRAIN_DEADLINE not in node_annotations(api, "spot-1")
    spot = api.get(NODES, "spot-1")
    assert spot is not None
    assert not spot["spec"].get("unschedulable")


def test_termination_reports_saved_when_the_reconciler_drained_the_node_else_what_was_lost(aws: Aws) -> None:
    api = cluster()
    bodies = [event("spot-interruption-warning"), event("state-change-terminated")]
    handler = InterruptionHandler(api, aws.client("sqs"), queue(aws, bodies))
    handler.poll(wait_s=0)
    handler.poll(wait_s=0)
    lost = [o for o in handler.outcomes if o.kind == "state-change"]
    assert [(o.node, o.saved, o.pieces) for o in lost] == [("spot-1", False, 2)]
    assert handler.metrics.not_saved == 1
    assert handler.metrics.pieces_not_saved == 2
    assert api.events[-1]["reason"] == "InterruptionDataNotSaved"
    assert api.events[-1]["type"] == "Warning"
    # the same, when the reconciler moved everything off in time
    api = cluster()
    api.put(DATASETS, placed_dataset("d", [["other", "retiring"], ["third", "other"], ["other", "third"]]))
    api.patch(NODES, "spot-1", {"metadata": {"annotations": {labels.DATA_DRAINED: "2026-11-30T08:01:30Z"}}})
    handler = InterruptionHandler(api, aws.client("sqs"), queue(aws, [event("state-change-terminated")]))
    (outcome,) = handler.poll(wait_s=0)
    assert outcome.saved is True
    assert "kbl_interruption_saved_total 1" in handler.metrics.text()


def test_unknown_instances_and_malformed_messages_are_counted_and_deleted(aws: Aws) -> None:
    api = cluster()
    body = json.loads(event("spot-interruption-warning"))
    body["detail"]["instance-id"] = "i-0ffffffffffffffff"
    handler = InterruptionHandler(api, aws.client("sqs"), queue(aws, [json.dumps(body), "not json at all{"]))
    assert handler.poll(wait_s=0) == []
    assert (handler.metrics.unknown_instance, handler.metrics.deleted) == (1, 2)
