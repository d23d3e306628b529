"""EC2 interruption notices, consumed the way Karpenter's interruption queue consumes them.

EventBridge rules send four kinds of events to one SQS queue
(``manifests/cloudformation/interruption-queue.yaml``); each message body is the event JSON:

- ``EC2 Spot Instance Interruption Warning`` (``aws.ec2``): the instance is reclaimed two
  minutes after the event ``time``;
- ``EC2 Instance Rebalance Recommendation`` (``aws.ec2``): elevated risk of a spot interruption;
- ``AWS Health Event`` (``aws.health``, service ``EC2``, category ``scheduledChange``): a
  retirement or maintenance starting at ``detail.startTime``;
- ``EC2 Instance State-change Notification`` (``aws.ec2``): ``stopping``, ``stopped``,
  ``shutting-down`` or ``terminated`` (other states are ignored, as Karpenter does).

:class:`InterruptionHandler` maps each instance to its Node (``spec.providerID``) and:

- on a spot warning or a scheduled change, when the node holds pieces the placement needs,
  annotates ``kbl.io/drain=<reason>`` and ``kbl.io/drain-deadline=<deadline>`` (the placement
  reconciler copies first the pieces whose shard would fall below its redundancy), then cordons
  the node (with or without data: nothing new should land there);
- on a rebalance recommendation, annotates ``kbl.io/drain=rebalance-recommendation`` without a
  deadline when the node holds pieces (the data starts moving early; the node stays schedulable);
- on a state change to a stopping or terminated state, reports: the data was *saved* when the
  reconciler marked the node ``kbl.io/data-drained`` (or it held nothing needed), else *not
  saved*, with the pieces still placed there and the reconciler's ``kbl.io/last-pieces`` count.

Every handled or unparsable message is deleted from the queue (as Karpenter does); a message whose
handling failed on the API stays and comes back after its visibility timeout. Each node gets a
Kubernetes Event and :class:`InterruptionMetrics` counts notices, drains, saves and losses.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Literal

from controller.disrupting import needed_pieces
from controller.providers import ProviderError, instance_id
from kube.api import DATASETS, NODES, ApiError, KubeApi
from topology import labels
from topology.times import format_time, parse_time

SPOT_WARNING = "EC2 Spot Instance Interruption Warning"
REBALANCE = "EC2 Instance Rebalance Recommendation"
HEALTH = "AWS Health Event"
STATE_CHANGE = "EC2 Instance State-change Notification"
#: Seconds between a spot interruption warning and the reclaim.
SPOT_NOTICE_S = 120.0
#: Instance states that mean the node is leaving or gone (Karpenter's accepted states).
LEAVING_STATES = frozenset({"stopping", "stopped", "shutting-down", "terminated"})

Kind = Literal["spot-interruption", "rebalance-recommendation", "scheduled-change", "state-change"]
KINDS: tuple[Kind, ...] = ("spot-interruption", "rebalance-recommendation", "scheduled-change", "state-change")


@dataclass(frozen=True, slots=True)
class Notice:
    """One interruption event: its kind, instances, event time and the data deadline (epoch s)."""

    kind: Kind
    instance_ids: tuple[str, ...]
    time_s: float
    deadline_s: float | None = None
    state: str = ""
    id: str = ""


def _health_time(text: Any) -> float | None:
    """AWS Health writes ``startTime`` as RFC 1123 (``Sat, 05 Jun 2016 15:10:09 GMT``); accept RFC 3339 too."""
    found = parse_time(text)
    if found is not None or not isinstance(text, str):
        return found
    try:
        return parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError):
        return None


def parse_notice(body: str | Mapping[str, Any]) -> Notice | None:
    """The notice in an SQS message body, or ``None`` for events kbl does not act on.

    Raises
    ------
    ValueError
        If the body is not a JSON object with a ``detail-type`` (a malformed message).
    """
    event = json.loads(body) if isinstance(body, str) else dict(body)
    if not isinstance(event, dict) or "detail-type" not in event:
        raise ValueError("not an EventBridge event: no detail-type")
    kind = event["detail-type"]
    detail = event.get("detail") or {}
    when = parse_time(event.get("time"))
    if when is None:
        raise ValueError(f"event {event.get('id')!r} has no RFC 3339 time")
    eid = str(event.get("id", ""))
    if kind == SPOT_WARNING and detail.get("instance-id"):
        return Notice("spot-interruption", (detail["instance-id"],), when, when + SPOT_NOTICE_S, id=eid)
    if kind == REBALANCE and detail.get("instance-id"):
        return Notice("rebalance-recommendation", (detail["instance-id"],), when, id=eid)
    if kind == HEALTH and detail.get("service") == "EC2" and detail.get("eventTypeCategory") == "scheduledChange":
        entities = [str(e.get("entityValue", "")) for e in detail.get("affectedEntities") or []]
        ids = tuple(e for e in entities if e.startswith("i-"))
        return Notice("scheduled-change", ids, when, _health_time(detail.get("startTime")) or when, id=eid) if ids else None
    if kind == STATE_CHANGE and str(detail.get("state", "")).lower() in LEAVING_STATES and detail.get("instance-id"):
        return Notice("state-change", (detail["instance-id"],), when, state=str(detail["state"]).lower(), id=eid)
    return None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one notice did to one node. ``saved`` is set on a state change (the verdict)."""

    node: str
    instance_id: str
    kind: Kind
    pieces: int
    drained: bool = False
    cordoned: bool = False
    saved: bool | None = None
    message: str = ""


@dataclass(slots=True)
class InterruptionMetrics:
    """Counters of the handler (Prometheus text with :meth:`text`)."""

    notices: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    ignored: int = 0
    malformed: int = 0
    deleted: int = 0
    unknown_instance: int = 0
    nodes_drained: int = 0
    nodes_cordoned: int = 0
    saved: int = 0
    not_saved: int = 0
    pieces_not_saved: int = 0

    def text(self) -> str:
        lines = ["# TYPE kbl_interruption_notices_total counter"]
        lines += [f'kbl_interruption_notices_total{{kind="{k}"}} {v}' for k, v in sorted(self.notices.items())]
        names = (
            "ignored", "malformed", "deleted", "unknown_instance",
            "nodes_drained", "nodes_cordoned", "saved", "not_saved", "pieces_not_saved",
        )
        for name in names:
            lines += [f"# TYPE kbl_interruption_{name}_total counter", f"kbl_interruption_{name}_total {getattr(self, name)}"]
        return "\n".join(lines) + "\n"


class InterruptionHandler:
    """Reads the interruption queue and acts on the nodes (see the module docstring).

    Parameters
    ----------
    kube:
        The Kubernetes API (Nodes, DataSets, Events).
    sqs:
        A boto3 SQS client.
    queue_url:
        The interruption queue.
    clock:
        Epoch seconds (for the Events' wording only; deadlines come from the events).
    """

    def __init__(self, kube: KubeApi, sqs: Any, queue_url: str, *, clock: Callable[[], float] = time.time) -> None:
        self.kube = kube
        self.sqs = sqs
        self.queue_url = queue_url
        self.clock = clock
        self.metrics = InterruptionMetrics()
        self.outcomes: list[Outcome] = []

    def check_queue(self) -> int:
        """The queue's approximate backlog (``GetQueueAttributes``): fails fast on a wrong URL or missing rights."""
        try:
            attrs = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessages"])
        except Exception as exc:
            raise ProviderError("InterruptionQueueUnavailable", f"{self.queue_url}: {exc}") from None
        return int(attrs.get("Attributes", {}).get("ApproximateNumberOfMessages", 0))

    def poll(self, wait_s: int = 20, max_messages: int = 10) -> list[Outcome]:
        """Receive one batch, handle every message, delete the handled ones; the outcomes."""
        response = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=max_messages, WaitTimeSeconds=wait_s)
        out: list[Outcome] = []
        for message in response.get("Messages", []):
            try:
                notice = parse_notice(message.get("Body", ""))
            except ValueError:
                self.metrics.malformed += 1
                notice = None
            else:
                if notice is None:
                    self.metrics.ignored += 1
            if notice is not None:
                try:
                    out.extend(self.handle(notice))
                except ApiError:
                    continue  # the message comes back after its visibility timeout
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
            self.metrics.deleted += 1
        self.outcomes.extend(out)
        return out

    def run(self, stop: threading.Event, wait_s: int = 20) -> None:
        """Poll until ``stop`` is set; an unreachable queue or API is retried after a pause."""
        while not stop.is_set():
            try:
                self.poll(wait_s=wait_s)
            except Exception:  # never die: the next poll retries
                stop.wait(5.0)

    # ------------------------------------------------------------------ handling
    def _nodes_by_instance(self) -> dict[str, dict[str, Any]]:
        nodes, _ = self.kube.list(NODES)
        out = {}
        for node in nodes:
            with contextlib.suppress(ProviderError):
                out[instance_id(str((node.get("spec") or {}).get("providerID", "")))] = node
        return out

    def handle(self, notice: Notice) -> list[Outcome]:
        """Act on every instance of ``notice`` that is a node of this cluster."""
        self.metrics.notices[notice.kind] += 1
        nodes = self._nodes_by_instance()
        datasets, _ = self.kube.list(DATASETS)
        needed = needed_pieces(datasets)
        out = []
        for iid in notice.instance_ids:
            node = nodes.get(iid)
            if node is None:
                self.metrics.unknown_instance += 1
                continue
            out.append(self._one(notice, iid, node, needed.get(node["metadata"]["name"], 0)))
        return out

    def _one(self, notice: Notice, iid: str, node: Mapping[str, Any], pieces: int) -> Outcome:
        name = str(node["metadata"]["name"])
        annotations = (node.get("metadata") or {}).get("annotations") or {}
        if notice.kind == "state-change":
            saved = pieces == 0 or bool(annotations.get(labels.DATA_DRAINED))
            last = annotations.get(labels.LAST_PIECES, "unknown")
            if saved:
                self.metrics.saved += 1
                message = f"{iid} {notice.state}: its data was moved off in time"
            else:
                self.metrics.not_saved += 1
                self.metrics.pieces_not_saved += pieces
                message = f"{iid} {notice.state}: {pieces} placed pieces were not moved off in time ({last} held nowhere else)"
            self._event(node, "InterruptionDataSaved" if saved else "InterruptionDataNotSaved", message, saved)
            return Outcome(name, iid, notice.kind, pieces, saved=saved, message=message)
        patch: dict[str, Any] = {}
        drained = False
        deadline = parse_time(annotations.get(labels.DRAIN_DEADLINE))
        sooner = notice.deadline_s is not None and (deadline is None or notice.deadline_s < deadline)
        if pieces > 0 and (sooner or not annotations.get(labels.DRAIN)):  # a drain without deadline (scale-down) gets one
            marks: dict[str, str] = {labels.DRAIN: notice.kind}
            if notice.deadline_s is not None and sooner:
                marks[labels.DRAIN_DEADLINE] = format_time(notice.deadline_s)
            patch["metadata"] = {"annotations": marks}
            drained = True
        cordon = notice.kind != "rebalance-recommendation" and not (node.get("spec") or {}).get("unschedulable")
        if cordon:
            patch["spec"] = {"unschedulable": True}
        if drained and cordon:  # annotations first: the reconciler must see the deadline before the cordon
            self.kube.patch(NODES, name, {"metadata": patch["metadata"]})
            self.kube.patch(NODES, name, {"spec": patch["spec"]})
        elif patch:
            self.kube.patch(NODES, name, patch)
        self.metrics.nodes_drained += drained
        self.metrics.nodes_cordoned += cordon
        by = f" by {format_time(notice.deadline_s)}" if notice.deadline_s is not None else ""
        message = f"{iid} {notice.kind}: {pieces} placed pieces to move off{by}" if pieces else f"{iid} {notice.kind}: no placed pieces"
        self._event(node, "InterruptionNotice", message, True)
        return Outcome(name, iid, notice.kind, pieces, drained=drained, cordoned=cordon, message=message)

    def _event(self, node: Mapping[str, Any], reason: str, message: str, normal: bool) -> None:
        involved = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node["metadata"]["name"]}}
        with contextlib.suppress(ApiError):
            self.kube.create_event(involved, reason=reason, message=message, type="Normal" if normal else "Warning")
