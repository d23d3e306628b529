"""Queue mode over SQS (moto, real HTTP): at-least-once delivery, duplicates, poison messages, budgets."""

from __future__ import annotations

import json

from controller.providers import NodeGroupSpec
from controller.providers.eks import EksProvider
from controller.providers.fake import FakeProvider
from controller.providers.queueing import QueueProvider, Worker
from controller.providers.retrying import Backoff
from tests.aws import Aws, make_cluster
from tests.placement.scenarios import T0


def queues(aws: Aws, *, fifo: bool = True, max_receives: int = 2) -> tuple[str, str, str]:
    """Request queue (with a DLQ via RedrivePolicy), reply queue, DLQ url."""
    sqs = aws.client("sqs")
    suffix = ".fifo" if fifo else ""
    attrs = {"FifoQueue": "true", "ContentBasedDeduplication": "false"} if fifo else {}
    dlq = sqs.create_queue(QueueName=f"{aws.cluster}-dlq{suffix}", Attributes=attrs)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)})
    main = sqs.create_queue(QueueName=f"{aws.cluster}-requests{suffix}", Attributes={**attrs, "RedrivePolicy": redrive})["QueueUrl"]
    reply = sqs.create_queue(QueueName=f"{aws.cluster}-replies")["QueueUrl"]
    return main, reply, dlq


def spec(name: str, desired: int, kbl: str = "default/k") -> NodeGroupSpec:
    return NodeGroupSpec(name, kbl, "us-east-1a", "m6i.xlarge", desired, 10)


def drain(worker: Worker, rounds: int = 6) -> None:
    for _ in range(rounds):
        worker.poll_once()


def test_queued_requests_run_on_eks_and_the_inventory_comes_back(aws: Aws, no_sleep: Backoff) -> None:
    make_cluster(aws)
    main, reply, _ = queues(aws)
    eks = EksProvider(aws.client("eks"), aws.client("autoscaling"), aws.client("ec2"), cluster_name=aws.cluster,
                      node_role_arn="arn:aws:iam::123456789012:role/node", backoff=no_sleep)
    controller = QueueProvider(aws.client("sqs"), main, reply, clock=lambda: T0, backoff=no_sleep)
    worker = Worker(aws.client("sqs"), main, reply, eks, max_nodes_total=20, visibility_timeout_s=0, backoff=no_sleep, clock=lambda: T0)
    controller.create_group(spec("kbl-default-k-us-east-1a", 2), "tok")
    drain(worker)
    controller.set_size("kbl-default-k-us-east-1a", 4)
    drain(worker)
    groups = controller.list_groups()
    assert [(g.name, g.desired, g.status) for g in groups] == [("kbl-default-k-us-east-1a", 4, "ACTIVE")]
    assert worker.stats.executed == 2


def test_duplicated_deliveries_execute_once_and_stay_within_the_budget(aws: Aws, no_sleep: Backoff) -> None:
    main, reply, _ = queues(aws, fifo=False)
    clock = [T0]
    cloud = FakeProvider(lambda: clock[0])
    sqs = aws.client("sqs")
    # Two controller replicas racing: each asks for 6 nodes for its own KBL; the budget is 8.
    a = QueueProvider(sqs, main, reply, clock=lambda: clock[0], backoff=no_sleep)
    b = QueueProvider(sqs, main, reply, clock=lambda: clock[0], backoff=no_sleep)
    a.create_group(spec("ga", 6, "default/a"), "ta")
    b.create_group(spec("gb", 6, "default/b"), "tb")
    # At-least-once: every message is delivered again (same body, same request id).
    for msg in sqs.receive_message(QueueUrl=main, MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]:
        sqs.send_message(QueueUrl=main, MessageBody=msg["Body"])
    a.set_size("ga", 9)
    a.set_size("ga", 9)
    worker = Worker(sqs, main, reply, cloud, max_nodes_total=8, visibility_timeout_s=0, backoff=no_sleep, clock=lambda: clock[0])
    drain(worker, 8)
    total = sum(g.desired for g in cloud.list_groups())
    assert total <= 8
    assert len(cloud.calls_of("create_group")) == 2
    assert worker.stats.duplicates >= 2
    assert worker.stats.clamped >= 1


def test_poison_message_goes_to_the_dead_letter_queue_and_does_not_block(aws: Aws, no_sleep: Backoff) -> None:
    main, reply, dlq = queues(aws, fifo=False, max_receives=2)
    sqs = aws.client("sqs")
    cloud = FakeProvider(lambda: T0)
    sqs.send_message(QueueUrl=main, MessageBody="{not json")
    QueueProvider(sqs, main, reply, clock=lambda: T0, backoff=no_sleep).create_group(spec("g", 1), "t")
    worker = Worker(sqs, main, reply, cloud, max_nodes_total=8, visibility_timeout_s=0, backoff=no_sleep, clock=lambda: T0)
    drain(worker, 5)
    assert [g.name for g in cloud.list_groups()] == ["g"]
    dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])
    assert [m["Body"] for m in dead] == ["{not json"]


def test_a_failing_cloud_call_is_retried_on_redelivery(aws: Aws, no_sleep: Backoff) -> None:
    from controller.providers import ProviderError

    main, reply, _ = queues(aws, fifo=False, max_receives=5)
    sqs = aws.client("sqs")
    cloud = FakeProvider(lambda: T0)
    cloud.inject("create_group", ProviderError("InternalFailure", "boom", retryable=True), times=1)
    QueueProvider(sqs, main, reply, clock=lambda: T0, backoff=no_sleep).create_group(spec("g", 1), "t")
    worker = Worker(sqs, main, reply, cloud, max_nodes_total=8, visibility_timeout_s=0, backoff=Backoff(attempts=1), clock=lambda: T0)
    drain(worker, 3)
    assert [g.name for g in cloud.list_groups()] == ["g"]
    assert worker.stats.failed == 1


def test_controller_in_queue_mode_converges_through_the_worker_even_after_a_restart(aws: Aws, no_sleep: Backoff) -> None:
    from controller import Controller, ControllerSettings
    from kube.api import KBLS, NODES, PODS
    from kube.memory import MemoryApi
    from tests.placement.scenarios import base_nodes, kbl_object, pod_object

    main, reply, _ = queues(aws)
    sqs = aws.client("sqs")
    kube = MemoryApi()
    for node in base_nodes():
        kube.put(NODES, node)
    kube.put(KBLS, kbl_object("k"))
    for i in range(3):
        kube.put(PODS, pod_object(f"p{i}", kbl="k", cpu="3"))
    cloud = FakeProvider(lambda: T0)
    worker = Worker(sqs, main, reply, cloud, max_nodes_total=20, visibility_timeout_s=0, backoff=no_sleep, clock=lambda: T0)

    def controller() -> Controller:
        provider = QueueProvider(sqs, main, reply, clock=lambda: T0, backoff=no_sleep)
        return Controller(kube, provider, ControllerSettings(cluster_name="q"), clock=lambda: T0)

    controller().reconcile_once()
    controller().reconcile_once()  # restarted before the worker ran: asks again
    drain(worker)
    final = controller()
    final.reconcile_once()
    assert [(g.name, g.desired) for g in cloud.list_groups()] == [("kbl-default-k-us-east-1a", 3)]
    kbl = kube.get(KBLS, "k")
    assert kbl is not None
    assert [e["phase"] for e in kbl["status"]["nodeGroups"]] == ["Active"]
