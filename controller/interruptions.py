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
- on a rebalance recommendation (AWS: usually 10-20 minutes before an interruption, against the
  2-minute warning), annotates ``kbl.io/drain=rebalance-recommendation`` without a deadline when
  the node holds pieces: the placement reconciler starts moving its at-risk pieces at once. The
  node stays schedulable unless ``InterruptionSettings.cordon_on_rebalance``;
- a cordon the handler set for a scheduled change (or a rebalance, when it cordons) carries
  ``kbl.io/interruption-cordon-until``: the window's ``endTime`` (else its start plus
  ``false_alarm_grace_s``). A node still Ready after that instant was a false alarm:
  :meth:`InterruptionHandler.lift_passed` (run at every poll) uncordons it and clears the drain
  the notice asked for (never a scale-down's drain, never a cordon someone else set);
- on a state change to a stopping or terminated state, reports: the data was *saved* when the
  reconciler marked the node ``kbl.io/data-drained`` (or it held nothing needed), else *not
  saved*, with the pieces still placed there and the reconciler's ``kbl.io/last-pieces`` count.

Every handled or unparsable message is deleted from the queue (as Karpenter does); a message whose
handling failed on the API stays and comes back after its visibility timeout. Each node gets a
Kubernetes Event and :class:`InterruptionMetrics` counts notices, drains, saves and losses.

A DataSet whose target is written as PlacementSlices counts with its target as its index names it
now (:func:`~controller.disrupting.needed_pieces`); while a slice is not read yet its target is
*unknown* and every node may hold its pieces: a notice then drains the node as one holding pieces,
and a stopped node counts as saved only once the reconciler marked it ``kbl.io/data-drained``.

Only the leader acts: with ``leading`` (the leader election's ``is_leader``) a standby receives no
message (a received message is hidden from the leader for the visibility timeout) and ``guard``
runs before every write. A notice reads the one node of its instance and the DataSets that name
that node from :class:`NoticeIndex`, kept by one informer per resource (Nodes, DataSets and
PlacementSlices; a list, then a watch): no list of all Nodes and DataSets per notice.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Literal

from controller.disrupting import NeededPieces, needed_pieces
from controller.providers import ProviderError, instance_id
from kube.api import DATASETS, NODES, PLACEMENT_SLICES, ApiError, KubeApi, Resource, WatchEvent
from kube.watching import Informer, InformerSettings
from topology import labels
from topology.datasets import DataSet, ShardPlacement
from topology.errors import ObjectError
from topology.slices import SliceStore
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
#: Node annotation: until when the cordon an interruption notice set holds (RFC 3339). Set only
#: when the handler cordoned the node itself; past it, a node still Ready was a false alarm.
CORDON_UNTIL = "kbl.io/interruption-cordon-until"


@dataclass(frozen=True, slots=True)
class InterruptionSettings:
    """Knobs of the handler; times in seconds.

    ``cordon_on_rebalance`` cordons a node on a rebalance recommendation too (default: only its
    data starts moving, pods may still land there). ``false_alarm_grace_s`` is how long after a
    scheduled change's start (when the event has no ``endTime``) or after a rebalance
    recommendation a cordon it set is kept before a node still Ready counts as a false alarm.
    """

    cordon_on_rebalance: bool = False
    false_alarm_grace_s: float = 3600.0


@dataclass(frozen=True, slots=True)
class Notice:
    """One interruption event: its kind, instances, event time and the data deadline (epoch s)."""

    kind: Kind
    instance_ids: tuple[str, ...]
    time_s: float
    deadline_s: float | None = None
    state: str = ""
    id: str = ""
    until_s: float | None = None  # the end of a scheduled change's window, when the event says


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
        if not ids:
            return None
        start = _health_time(detail.get("startTime")) or when
        return Notice("scheduled-change", ids, when, start, id=eid, until_s=_health_time(detail.get("endTime")))
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
    #: DataSets whose target was not known (PlacementSlices not all read): they may hold pieces there.
    unknown: tuple[str, ...] = ()


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
    cordons_lifted: int = 0
    not_leading: int = 0
    saved: int = 0
    not_saved: int = 0
    pieces_not_saved: int = 0

    def text(self) -> str:
        lines = ["# TYPE kbl_interruption_notices_total counter"]
        lines += [f'kbl_interruption_notices_total{{kind="{k}"}} {v}' for k, v in sorted(self.notices.items())]
        names = (
            "ignored", "malformed", "deleted", "unknown_instance",
            "nodes_drained", "nodes_cordoned", "cordons_lifted", "not_leading", "saved", "not_saved", "pieces_not_saved",
        )
        for name in names:
            lines += [f"# TYPE kbl_interruption_{name}_total counter", f"kbl_interruption_{name}_total {getattr(self, name)}"]
        return "\n".join(lines) + "\n"


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _ready(node: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in (node.get("status") or {}).get("conditions") or [])


class NoticeIndex:
    """What a notice reads, kept by informers: Nodes by instance id, DataSets by the nodes they
    name (target slots and transfer sources, :func:`~controller.disrupting.needed_pieces`, a
    sliced target assembled from the PlacementSlices held), the DataSets whose target is unknown,
    and the nodes carrying :data:`CORDON_UNTIL`. Thread-safe; fed by :meth:`relist` and :meth:`event`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.nodes: dict[str, Mapping[str, Any]] = {}
        self.by_instance: dict[str, str] = {}
        self.datasets: dict[tuple[str, str], Mapping[str, Any]] = {}
        self.needed: dict[tuple[str, str], NeededPieces] = {}
        self.named_by: dict[str, set[tuple[str, str]]] = {}
        self.slices = SliceStore()
        self.unknown: set[tuple[str, str]] = set()
        # each DataSet as read, and the target it was counted with (a slice event that leaves it
        # as it was counts nothing again: a new target's slices arrive one by one)
        self.typed: dict[tuple[str, str], DataSet] = {}
        self.counted: dict[tuple[str, str], ShardPlacement | None] = {}

    @staticmethod
    def _dataset_key(obj: Mapping[str, Any]) -> tuple[str, str]:
        meta = obj.get("metadata") or {}
        return (str(meta.get("namespace") or "default"), str(meta.get("name") or ""))

    def _put_node(self, obj: Mapping[str, Any]) -> None:
        self._drop_node(_name(obj))
        self.nodes[_name(obj)] = obj
        with contextlib.suppress(ProviderError):
            self.by_instance[instance_id(str((obj.get("spec") or {}).get("providerID", "")))] = _name(obj)

    def _drop_node(self, name: str) -> None:
        old = self.nodes.pop(name, None)
        if old is not None:
            with contextlib.suppress(ProviderError):
                iid = instance_id(str((old.get("spec") or {}).get("providerID", "")))
                if self.by_instance.get(iid) == name:
                    del self.by_instance[iid]

    def _put_dataset(self, obj: Mapping[str, Any]) -> None:
        key = self._dataset_key(obj)
        self._drop_dataset(key)
        self.datasets[key] = obj
        try:
            typed = DataSet.from_object(obj)
        except ObjectError:
            return  # unreadable: it names no node (the reconciler reports it)
        self.typed[key] = typed
        self._count(key, self._resolved(typed))

    def _resolved(self, typed: DataSet) -> DataSet:
        """A sliced DataSet's target as its index names it now (as read while a slice is missing)."""
        return (self.slices.resolve(typed, latest=True) or typed) if typed.awaits_slices else typed

    def _count(self, key: tuple[str, str], dataset: DataSet) -> None:
        needed = needed_pieces([dataset])
        self.needed[key] = needed
        self.counted[key] = dataset.placement
        if needed.unknown:
            self.unknown.add(key)
        for name, count in needed.items():
            if count > 0:
                self.named_by.setdefault(name, set()).add(key)

    def _drop_dataset(self, key: tuple[str, str]) -> None:
        self.datasets.pop(key, None)
        self.typed.pop(key, None)
        self.counted.pop(key, None)
        self.unknown.discard(key)
        for name in self.needed.pop(key, {}):
            found = self.named_by.get(name)
            if found is not None:
                found.discard(key)
                if not found:
                    del self.named_by[name]

    def _slices_changed(self, keys: Iterable[str]) -> None:
        """Index again the DataSets whose PlacementSlices changed (``namespace/name`` keys)."""
        for store_key in keys:
            namespace, _, name = store_key.partition("/")
            key = (namespace, name)
            typed = self.typed.get(key)
            if typed is None:
                self.slices.forget(store_key)
                continue
            resolved = self._resolved(typed)
            if resolved.placement is self.counted.get(key):
                continue  # a slice of another version: the target counted stays
            obj = self.datasets[key]
            self._drop_dataset(key)
            self.datasets[key], self.typed[key] = obj, typed
            self._count(key, resolved)

    def relist(self, resource: Resource, items: Iterable[Mapping[str, Any]]) -> None:
        with self.lock:
            if resource is NODES:
                self.nodes.clear()
                self.by_instance.clear()
                for obj in items:
                    self._put_node(obj)
            elif resource is PLACEMENT_SLICES:
                self._slices_changed(self.slices.replace(items))
            else:
                self.datasets.clear()
                self.needed.clear()
                self.named_by.clear()
                self.unknown.clear()
                self.typed.clear()
                self.counted.clear()
                for obj in items:
                    self._put_dataset(obj)

    def event(self, resource: Resource, event: WatchEvent) -> None:
        with self.lock:
            obj = event.object
            if resource is NODES and event.type == "DELETED":
                self._drop_node(_name(obj))
            elif resource is NODES:
                self._put_node(obj)
            elif resource is PLACEMENT_SLICES:
                touched = self.slices.apply(event.type, obj)
                if touched is not None:
                    self._slices_changed([touched])
            elif event.type == "DELETED":
                key = self._dataset_key(obj)
                self._drop_dataset(key)
                self.slices.forget("/".join(key))
            else:
                self._put_dataset(obj)

    def node(self, iid: str) -> Mapping[str, Any] | None:
        """The Node of EC2 instance ``iid``, or ``None``."""
        with self.lock:
            name = self.by_instance.get(iid)
            return self.nodes.get(name) if name is not None else None

    def datasets_naming(self, node: str) -> list[Mapping[str, Any]]:
        """The DataSets whose placement or transfers name ``node``."""
        with self.lock:
            return [self.datasets[k] for k in sorted(self.named_by.get(node, ()))]

    def pieces_on(self, node: str) -> tuple[int, tuple[str, ...]]:
        """``(pieces the known targets and transfers need on node, DataSets whose target is unknown)``."""
        with self.lock:
            pieces = sum(self.needed[k].get(node, 0) for k in self.named_by.get(node, ()))
            return pieces, tuple(sorted("/".join(k) for k in self.unknown))

    def cordoned_by_notices(self) -> list[Mapping[str, Any]]:
        """The nodes carrying :data:`CORDON_UNTIL`."""
        with self.lock:
            return [n for n in self.nodes.values() if CORDON_UNTIL in ((n.get("metadata") or {}).get("annotations") or {})]


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
        Epoch seconds (false alarms' windows and the Events' wording; deadlines come from the events).
    settings:
        Rebalance cordons and false-alarm grace (:class:`InterruptionSettings`).
    leading:
        True while this replica leads (the leader election's ``is_leader``); a standby receives nothing.
    guard:
        Called with a step name before every write; raises to stop (the leader election's ``check``).
    informer:
        Timing of the Node and DataSet informers that keep :attr:`index`.
    """

    def __init__(
        self,
        kube: KubeApi,
        sqs: Any,
        queue_url: str,
        *,
        clock: Callable[[], float] = time.time,
        settings: InterruptionSettings | None = None,
        leading: Callable[[], bool] | None = None,
        guard: Callable[[str], None] | None = None,
        informer: InformerSettings | None = None,
    ) -> None:
        self.kube = kube
        self.sqs = sqs
        self.queue_url = queue_url
        self.clock = clock
        self.settings = settings or InterruptionSettings()
        self.leading = leading or (lambda: True)
        self.guard = guard or (lambda _step: None)
        self.informer_settings = informer or InformerSettings(watch_timeout_s=60)
        self.metrics = InterruptionMetrics()
        self.outcomes: list[Outcome] = []
        self.index = NoticeIndex()
        self.informers: list[Informer] = []

    def start(self, timeout_s: float = 30.0) -> bool:
        """Start the Node, DataSet and PlacementSlice informers (once); True when the Nodes and
        DataSets have listed within ``timeout_s``. The slices are not waited for (an API without
        the kind never lists them): until they have listed, a sliced DataSet's target is unknown,
        which drains rather than spares."""
        if not self.informers:
            for resource in (NODES, DATASETS, PLACEMENT_SLICES):

                def on_event(event: WatchEvent, resource: Resource = resource) -> None:
                    self.index.event(resource, event)

                def on_relist(items: Iterable[Mapping[str, Any]], resource: Resource = resource) -> None:
                    self.index.relist(resource, items)

                informer = Informer(self.kube, resource, on_event=on_event, on_relist=on_relist, settings=self.informer_settings)
                self.informers.append(informer.start())
        deadline = time.monotonic() + timeout_s
        core = [i for i in self.informers if i.resource is not PLACEMENT_SLICES]
        return all(informer.synced.wait(max(0.0, deadline - time.monotonic())) for informer in core)

    def stop(self) -> None:
        """Stop the informers."""
        for informer in self.informers:
            informer.stop(timeout_s=2.0)
        self.informers = []

    def check_queue(self) -> int:
        """The queue's approximate backlog (``GetQueueAttributes``): fails fast on a wrong URL or missing rights."""
        try:
            attrs = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessages"])
        except Exception as exc:
            raise ProviderError("InterruptionQueueUnavailable", f"{self.queue_url}: {exc}") from None
        return int(attrs.get("Attributes", {}).get("ApproximateNumberOfMessages", 0))

    def poll(self, wait_s: int = 20, max_messages: int = 10) -> list[Outcome]:
        """Lift the cordons of passed false alarms, receive one batch, handle every message,
        delete the handled ones; the outcomes. A standby (``leading()`` false) does nothing."""
        if not self.leading():
            self.metrics.not_leading += 1
            return []
        if not self.start():
            return []  # the caches are not filled yet: the messages wait in the queue
        self.lift_passed()
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
            self.guard("delete-message")
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
            self.metrics.deleted += 1
        self.outcomes.extend(out)
        return out

    def run(self, stop: threading.Event, wait_s: int = 20) -> None:
        """Poll until ``stop`` is set; an unreachable queue or API is retried after a pause."""
        try:
            while not stop.is_set():
                try:
                    if not self.leading():
                        self.metrics.not_leading += 1
                        stop.wait(2.0)
                        continue
                    self.poll(wait_s=wait_s)
                except Exception:  # never die: the next poll retries
                    stop.wait(5.0)
        finally:
            self.stop()

    # ------------------------------------------------------------------ handling
    def handle(self, notice: Notice) -> list[Outcome]:
        """Act on every instance of ``notice`` that is a node of this cluster (read from :attr:`index`)."""
        self.metrics.notices[notice.kind] += 1
        out = []
        for iid in notice.instance_ids:
            node = self.index.node(iid)
            if node is None:
                self.metrics.unknown_instance += 1
                continue
            name = _name(node)
            pieces, unknown = self.index.pieces_on(name)
            out.append(self._one(notice, iid, node, pieces, unknown))
        return out

    def _cordon_until(self, notice: Notice) -> float | None:
        """Until when a cordon for ``notice`` holds before a Ready node is a false alarm (``None``: never lifted)."""
        grace = self.settings.false_alarm_grace_s
        if notice.kind == "scheduled-change":
            return notice.until_s if notice.until_s is not None else (notice.deadline_s or notice.time_s) + grace
        if notice.kind == "rebalance-recommendation":
            return notice.time_s + grace
        return None

    def _one(self, notice: Notice, iid: str, node: Mapping[str, Any], pieces: int, unknown: tuple[str, ...] = ()) -> Outcome:
        name = str(node["metadata"]["name"])
        annotations = (node.get("metadata") or {}).get("annotations") or {}
        # a DataSet whose target is unknown (PlacementSlices not all read) may hold pieces here
        may_hold = pieces > 0 or bool(unknown)
        also = f"; the targets of DataSets {', '.join(unknown[:5])} are not known (PlacementSlices not all read)" if unknown else ""
        if notice.kind == "state-change":
            saved = not may_hold or bool(annotations.get(labels.DATA_DRAINED))
            last = annotations.get(labels.LAST_PIECES, "unknown")
            if saved:
                self.metrics.saved += 1
                message = f"{iid} {notice.state}: its data was moved off in time"
            else:
                self.metrics.not_saved += 1
                self.metrics.pieces_not_saved += pieces
                message = f"{iid} {notice.state}: {pieces} placed pieces were not moved off in time ({last} held nowhere else){also}"
            self._event(node, "InterruptionDataSaved" if saved else "InterruptionDataNotSaved", message, saved)
            return Outcome(name, iid, notice.kind, pieces, saved=saved, message=message, unknown=unknown)
        marks: dict[str, str | None] = {}
        drained = False
        deadline = parse_time(annotations.get(labels.DRAIN_DEADLINE))
        sooner = notice.deadline_s is not None and (deadline is None or notice.deadline_s < deadline)
        if may_hold and (sooner or not annotations.get(labels.DRAIN)):  # a drain without deadline (scale-down) gets one
            marks[labels.DRAIN] = notice.kind
            if notice.deadline_s is not None and sooner:
                marks[labels.DRAIN_DEADLINE] = format_time(notice.deadline_s)
            drained = True
        wants_cordon = notice.kind != "rebalance-recommendation" or self.settings.cordon_on_rebalance
        cordon = wants_cordon and not (node.get("spec") or {}).get("unschedulable")
        until = self._cordon_until(notice)
        if cordon and until is not None:
            marks[CORDON_UNTIL] = format_time(until)
        elif CORDON_UNTIL in annotations and notice.kind == "spot-interruption":
            marks[CORDON_UNTIL] = None  # a real interruption is coming: that cordon is never lifted
        elif CORDON_UNTIL in annotations and until is not None and (parse_time(annotations[CORDON_UNTIL]) or 0.0) < until:
            marks[CORDON_UNTIL] = format_time(until)  # a later notice on a node it cordoned: the later window
        if marks:  # annotations first: the reconciler must see the deadline before the cordon
            self.guard("annotate-node")
            self.kube.patch(NODES, name, {"metadata": {"annotations": marks}})
        if cordon:
            self.guard("cordon-node")
            self.kube.patch(NODES, name, {"spec": {"unschedulable": True}})
        self.metrics.nodes_drained += drained
        self.metrics.nodes_cordoned += cordon
        by = f" by {format_time(notice.deadline_s)}" if notice.deadline_s is not None else ""
        message = f"{iid} {notice.kind}: {pieces} placed pieces to move off{by}" if pieces else f"{iid} {notice.kind}: no placed pieces"
        message += f"{also}: drained in case" if unknown else ""
        self._event(node, "InterruptionNotice", message, True)
        return Outcome(name, iid, notice.kind, pieces, drained=drained, cordoned=cordon, message=message, unknown=unknown)

    def lift_passed(self) -> list[str]:
        """Uncordon the nodes whose notice's window has passed while they stayed Ready (false
        alarms), and clear the drain the notice asked for; the names of the nodes lifted.

        A node that is not Ready is left alone (its instance may be stopping: the state change
        reports it); a node a scale-down cordoned since (``kbl.io/scale-down-since``) keeps its
        cordon and its drain, only the mark goes.
        """
        now = self.clock()
        lifted = []
        for node in self.index.cordoned_by_notices():
            annotations = (node.get("metadata") or {}).get("annotations") or {}
            until = parse_time(annotations.get(CORDON_UNTIL))
            if until is not None and now < until:
                continue
            if until is not None and not _ready(node):
                continue
            name = _name(node)
            marks: dict[str, str | None] = {CORDON_UNTIL: None}
            patch: dict[str, Any] = {"metadata": {"annotations": marks}}
            if labels.SCALE_DOWN_SINCE not in annotations and until is not None:
                patch["spec"] = {"unschedulable": False}
                if annotations.get(labels.DRAIN) in KINDS:
                    marks[labels.DRAIN] = None
                    marks[labels.DRAIN_DEADLINE] = None
            self.guard("lift-cordon")
            with contextlib.suppress(ApiError):  # a node deleted meanwhile: nothing to lift
                self.kube.patch(NODES, name, patch)
                if "spec" in patch:
                    lifted.append(name)
                    self.metrics.cordons_lifted += 1
                    why = f"{name}: the notice's window passed at {format_time(until or now)} and it is still Ready"
                    self._event(node, "InterruptionCordonLifted", why, True)
        return lifted

    def _event(self, node: Mapping[str, Any], reason: str, message: str, normal: bool) -> None:
        involved = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node["metadata"]["name"]}}
        with contextlib.suppress(ApiError):
            self.kube.create_event(involved, reason=reason, message=message, type="Normal" if normal else "Warning")
