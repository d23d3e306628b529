"""Interruption notices from a real SQS queue (moto) in the real EventBridge event shapes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from controller.interruptions import CORDON_UNTIL, SPOT_NOTICE_S, InterruptionHandler, InterruptionSettings, parse_notice
from controller.providers.iam import CONTROLLER_INTERRUPTION_ACTIONS
from kube.api import DATASETS, NODES, Resource
from kube.leading import NotLeaderError
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


Make = Callable[..., InterruptionHandler]


@pytest.fixture
def make() -> Iterator[Make]:
    """Handlers whose Node and DataSet informers are stopped after the test."""
    made: list[InterruptionHandler] = []

    def build(*args: Any, **kwargs: Any) -> InterruptionHandler:
        made.append(InterruptionHandler(*args, **kwargs))
        return made[-1]

    yield build
    for handler in made:
        handler.stop()


def settle(handler: InterruptionHandler, api: MemoryApi, timeout_s: float = 5.0) -> None:
    """Wait until the handler's informers have seen every Node as the API holds it now."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        nodes, _ = api.list(NODES)
        with handler.index.lock:
            seen = {n: (o.get("metadata") or {}).get("resourceVersion") for n, o in handler.index.nodes.items()}
        if seen == {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in nodes}:
            return
        time.sleep(0.01)
    raise AssertionError("the informers did not catch up")


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


def test_spot_warning_on_a_data_node_drains_with_the_deadline_then_cordons_and_deletes_the_message(aws: Aws, make: Make) -> None:
    api = cluster()
    url = queue(aws, [event("spot-interruption-warning")])
    aws.recorder.label = "interruptions"
    handler = make(api, aws.client("sqs"), url)
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


def test_a_spot_warning_gives_a_deadline_to_a_node_already_draining_for_a_scale_down(aws: Aws, make: Make) -> None:
    api = cluster()
    api.patch(NODES, "spot-1", {"metadata": {"annotations": {labels.DRAIN: "scale-down"}}})
    handler = make(api, aws.client("sqs"), queue(aws, [event("spot-interruption-warning")]))
    (outcome,) = handler.poll(wait_s=0)
    assert outcome.drained
    marks = node_annotations(api, "spot-1")
    assert (marks[labels.DRAIN], marks[labels.DRAIN_DEADLINE]) == ("spot-interruption", "2026-11-30T08:02:00Z")


def test_a_node_without_data_is_only_cordoned(aws: Aws, make: Make) -> None:
    api = cluster()
    body = json.loads(event("spot-interruption-warning"))
    body["detail"]["instance-id"] = "i-0a1b2c3d4e5f60003"
    handler = make(api, aws.client("sqs"), queue(aws, [json.dumps(body)]))
    (outcome,) = handler.poll(wait_s=0)
    assert (outcome.node, outcome.pieces, outcome.drained, outcome.cordoned) == ("empty", 0, False, True)
    assert labels.DRAIN not in node_annotations(api, "empty")


def test_scheduled_retirement_drains_by_its_start_time_and_rebalance_only_starts_moving(aws: Aws, make: Make) -> None:
    api = cluster()
    handler = make(api, aws.client("sqs"), queue(aws, [event("scheduled-change"), event("rebalance-recommendation")]))
    outcomes = handler.poll(wait_s=0)
    by_node = {o.node: o for o in outcomes}
    assert node_annotations(api, "retiring")[labels.DRAIN_DEADLINE] == "2026-12-07T09:00:00Z"
    assert by_node["retiring"].cordoned
    assert node_annotations(api, "spot-1")[labels.DRAIN] == "rebalance-recommendation"
    assert labels.DRAIN_DEADLINE not in node_annotations(api, "spot-1")
    spot = api.get(NODES, "spot-1")
    assert spot is not None
    assert not spot["spec"].get("unschedulable")


def test_termination_reports_saved_when_the_reconciler_drained_the_node_else_what_was_lost(aws: Aws, make: Make) -> None:
    api = cluster()
    bodies = [event("spot-interruption-warning"), event("state-change-terminated")]
    handler = make(api, aws.client("sqs"), queue(aws, bodies))
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
    handler = make(api, aws.client("sqs"), queue(aws, [event("state-change-terminated")]))
    (outcome,) = handler.poll(wait_s=0)
    assert outcome.saved is True
    assert "kbl_interruption_saved_total 1" in handler.metrics.text()


def test_unknown_instances_and_malformed_messages_are_counted_and_deleted(aws: Aws, make: Make) -> None:
    api = cluster()
    body = json.loads(event("spot-interruption-warning"))
    body["detail"]["instance-id"] = "i-0ffffffffffffffff"
    handler = make(api, aws.client("sqs"), queue(aws, [json.dumps(body), "not json at all{"]))
    assert handler.poll(wait_s=0) == []
    assert (handler.metrics.unknown_instance, handler.metrics.deleted) == (1, 2)


def unschedulable(api: MemoryApi, name: str) -> bool:
    found = api.get(NODES, name)
    assert found is not None
    return bool(found["spec"].get("unschedulable"))


def test_a_rebalance_recommendation_starts_moving_the_data_and_cordons_only_when_configured(aws: Aws, make: Make) -> None:
    for cordon in (False, True):
        api = cluster()
        handler = make(api, aws.client("sqs"), queue(aws, [event("rebalance-recommendation")]),
                       settings=InterruptionSettings(cordon_on_rebalance=cordon))
        (outcome,) = handler.poll(wait_s=0)
        assert (outcome.node, outcome.drained, outcome.cordoned) == ("spot-1", True, cordon)
        marks = node_annotations(api, "spot-1")
        assert marks[labels.DRAIN] == "rebalance-recommendation"  # the reconciler moves the pieces now
        assert labels.DRAIN_DEADLINE not in marks
        assert unschedulable(api, "spot-1") is cordon
        assert (CORDON_UNTIL in marks) is cordon  # a cordon it set is one it may lift


def test_a_scheduled_change_cordon_is_lifted_when_its_window_passes_and_the_node_is_still_ready(aws: Aws, make: Make) -> None:
    # The Health event's window: startTime 2026-12-07T09:00Z, endTime 11:00Z.
    now = [parse_time("2026-11-30T06:00:00Z") or 0.0]
    api = cluster()
    api.put(NODES, node("retiring-2", "i-0a1b2c3d4e5f60004"))
    api.put(NODES, node("retiring-3", "i-0a1b2c3d4e5f60005"))
    body = json.loads(event("scheduled-change"))
    body["detail"]["affectedEntities"] += [{"entityValue": "i-0a1b2c3d4e5f60004"}, {"entityValue": "i-0a1b2c3d4e5f60005"}]
    handler = make(api, aws.client("sqs"), queue(aws, [json.dumps(body)]), clock=lambda: now[0])
    assert {o.node for o in handler.poll(wait_s=0) if o.cordoned} == {"retiring", "retiring-2", "retiring-3"}
    assert node_annotations(api, "retiring")[CORDON_UNTIL] == "2026-12-07T11:00:00Z"
    # retiring-2 is taken by a scale-down meanwhile; retiring-3 went NotReady (its instance is stopping)
    api.patch(NODES, "retiring-2", {"metadata": {"annotations": {labels.SCALE_DOWN_SINCE: "1", labels.DRAIN: "scale-down"}}})
    api.patch_status(NODES, "retiring-3", {"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}})
    now[0] = parse_time("2026-12-07T10:59:00Z") or 0.0  # inside the window: nothing is lifted
    settle(handler, api)
    assert handler.lift_passed() == []
    assert unschedulable(api, "retiring")
    now[0] = parse_time("2026-12-07T11:00:01Z") or 0.0  # the window passed and the node is still Ready: a false alarm
    settle(handler, api)
    assert handler.poll(wait_s=0) == []
    assert not unschedulable(api, "retiring")
    marks = node_annotations(api, "retiring")
    assert not {CORDON_UNTIL, labels.DRAIN, labels.DRAIN_DEADLINE} & marks.keys()
    assert unschedulable(api, "retiring-2")  # the scale-down's cordon and drain stay; only the mark goes
    assert node_annotations(api, "retiring-2")[labels.DRAIN] == "scale-down"
    assert CORDON_UNTIL not in node_annotations(api, "retiring-2")
    assert unschedulable(api, "retiring-3")  # not Ready: left to the state change
    assert handler.metrics.cordons_lifted == 1
    assert api.events[-1]["reason"] == "InterruptionCordonLifted"


def test_a_spot_warning_after_a_scheduled_change_keeps_the_cordon_for_good(aws: Aws, make: Make) -> None:
    api = cluster()
    body = json.loads(event("scheduled-change"))
    body["detail"]["affectedEntities"] = [{"entityValue": SPOT_INSTANCE}]
    handler = make(api, aws.client("sqs"), queue(aws, [json.dumps(body)]), clock=lambda: parse_time("2026-12-08T00:00:00Z") or 0.0)
    handler.poll(wait_s=0)
    assert CORDON_UNTIL in node_annotations(api, "spot-1")
    settle(handler, api)
    handler.handle(parse_notice(event("spot-interruption-warning")))  # type: ignore[arg-type]
    assert CORDON_UNTIL not in node_annotations(api, "spot-1")
    settle(handler, api)
    assert handler.lift_passed() == []
    assert unschedulable(api, "spot-1")


def test_only_the_leader_receives_notices_and_a_handler_that_lost_the_lease_writes_nothing(aws: Aws, make: Make) -> None:
    api = cluster()
    url = queue(aws, [event("spot-interruption-warning")])
    leads = {"a": False, "b": True}

    def guard_of(who: str) -> Callable[[str], None]:
        def check(step: str) -> None:
            if not leads[who]:
                raise NotLeaderError(f"{who} does not lead at {step}")
        return check

    standby = make(api, aws.client("sqs"), url, leading=lambda: leads["a"], guard=guard_of("a"))
    leader = make(api, aws.client("sqs"), url, leading=lambda: leads["b"], guard=guard_of("b"))
    assert standby.poll(wait_s=0) == []
    assert standby.informers == []  # a standby does not even watch
    assert standby.metrics.not_leading == 1
    assert [o.node for o in leader.poll(wait_s=0)] == ["spot-1"]  # the message stayed visible to the leader
    assert unschedulable(api, "spot-1")
    # the leader loses the Lease between receiving and acting: no write, the message stays
    sqs = aws.client("sqs")
    sqs.send_message(QueueUrl=url, MessageBody=event("scheduled-change"))
    before = api.get(NODES, "retiring")
    guarded = make(api, sqs, url, leading=lambda: True, guard=guard_of("a"))
    with pytest.raises(NotLeaderError):
        guarded.poll(wait_s=0)
    assert api.get(NODES, "retiring") == before


class CountingApi(MemoryApi):
    """A MemoryApi that counts list calls per resource."""

    def __init__(self) -> None:
        super().__init__()
        self.lists: dict[str, int] = {}

    def list(
        self, resource: Resource, *, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        self.lists[resource.plural] = self.lists.get(resource.plural, 0) + 1
        return super().list(resource, namespace=namespace, label_selector=label_selector)


def test_notices_read_the_one_node_and_its_datasets_from_the_informers_not_a_list_per_notice(aws: Aws, make: Make) -> None:
    api = CountingApi()
    for name, instance in (("spot-1", SPOT_INSTANCE), ("retiring", RETIRING_INSTANCE), ("empty", "i-0a1b2c3d4e5f60003")):
        api.put(NODES, node(name, instance))
    api.put(DATASETS, placed_dataset("d", [["spot-1", "retiring"], ["spot-1", "other"], ["other", "third"]]))
    for i in range(20):  # DataSets that name other nodes only
        api.put(DATASETS, placed_dataset(f"far-{i}", [["other", "third"]]))
    bodies = [event("rebalance-recommendation"), event("spot-interruption-warning"), event("scheduled-change")] * 3
    handler = make(api, aws.client("sqs"), queue(aws, bodies))
    outcomes = []
    for _ in range(5):
        outcomes += handler.poll(wait_s=0)
    assert len(outcomes) == 9
    assert {o.node: o.pieces for o in outcomes} == {"spot-1": 2, "retiring": 1}
    assert [d["metadata"]["name"] for d in handler.index.datasets_naming("spot-1")] == ["d"]
    assert api.lists == {"nodes": 1, "datasets": 1, "placementslices": 1}  # the informers' first lists, then watches only
