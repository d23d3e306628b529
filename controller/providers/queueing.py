"""Queue mode: the in-cluster controller sends node-group requests over SQS; ``kbl worker`` runs them.

No cloud credentials live in the cluster: the controller may only send to the request queue and
read the reply queue. The worker, outside the cluster, executes each request with a real
provider and posts the inventory of kbl groups back. Delivery is at least once, so:

* every request carries an id, deterministic for the same intent within ``dedup_window_s``
  (``sha256(op, args, floor(now / window))``), used as the FIFO ``MessageDeduplicationId``;
  the worker remembers executed ids and every operation is idempotent by itself (absolute sizes,
  create-or-adopt, removing a gone instance succeeds);
* a message is deleted only after it was executed; a failing one becomes visible again after the
  visibility timeout and, after ``maxReceiveCount`` receives, SQS moves it to the dead-letter
  queue named by the queue's ``RedrivePolicy`` (poison messages never block the queue);
* on a FIFO queue all requests share one message group, so workers execute them one at a time
  and the worker's budget check (global node maximum, read fresh before every grow) cannot race;
* a cloud error never stops the worker: a failing request (any error of the provider, an
  ``AccessDenied`` as much as a throttle) is left for redelivery and reported on the reply
  queue (``errors``: request id, operation, AWS code, message), and a report whose inventory or
  catalog cannot be read says so (``inventoryError``) instead of crashing; the controller keeps
  its last inventory and catalog and exposes the errors (:attr:`QueueProvider.worker_errors`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from controller.providers import (
    CreatesGreenGroups,
    NodeGroupInfo,
    NodeGroupProvider,
    NodeGroupSpec,
    ProtectsInstances,
    ProviderError,
    RollsInstances,
    RollStrategy,
)
from controller.providers.awscalls import aws_call
from controller.providers.catalog import KNOWN_INSTANCE_TYPES
from controller.providers.retrying import Backoff
from placement.capacity import InstanceShape, LaunchFailure
from topology.nodes import Taint

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

OPS = (
    "create_group", "set_size", "remove_instance", "protect_instances", "delete_group", "create_image", "roll_group",
    "create_green_group",
)


def request_id(op: str, args: Mapping[str, Any], now_s: float, window_s: float) -> str:
    """``sha256(op, canonical args, floor(now / window))``: the same intent in one window, one id."""
    body = json.dumps([op, args, int(now_s // window_s)], sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:40]


def spec_to_json(spec: NodeGroupSpec) -> dict[str, Any]:
    body = asdict(spec)
    body["labels"] = dict(spec.labels)
    body["taints"] = [asdict(t) for t in spec.taints]
    return body


def spec_from_json(raw: Mapping[str, Any]) -> NodeGroupSpec:
    return NodeGroupSpec(
        name=str(raw["name"]),
        kbl=str(raw["kbl"]),
        zone=str(raw["zone"]),
        instance_type=str(raw["instance_type"]),
        desired=int(raw["desired"]),
        max_size=int(raw["max_size"]),
        capacity_type=str(raw.get("capacity_type", "ON_DEMAND")),
        labels={str(k): str(v) for k, v in dict(raw.get("labels") or {}).items()},
        taints=tuple(Taint(str(t["key"]), str(t.get("value", "")), str(t["effect"])) for t in raw.get("taints") or ()),
        instance_types=tuple(str(t) for t in raw.get("instance_types") or ()),
    )


def info_to_json(info: NodeGroupInfo) -> dict[str, Any]:
    body = asdict(info)
    body["tags"] = dict(info.tags)
    return body


def info_from_json(raw: Mapping[str, Any]) -> NodeGroupInfo:
    failures = tuple(LaunchFailure(**f) for f in raw.get("failures") or ())
    types = tuple(str(t) for t in raw.get("instance_types") or ())
    return NodeGroupInfo(**{**raw, "tags": dict(raw.get("tags") or {}), "instance_types": types, "failures": failures})


@dataclass(frozen=True, slots=True)
class WorkerError:
    """A request the worker could not execute, as reported on the reply queue."""

    request_id: str
    op: str
    code: str
    message: str
    at_s: float


def _error_to_json(error: WorkerError) -> dict[str, Any]:
    return {"id": error.request_id, "op": error.op, "code": error.code, "message": error.message[:500], "at_s": error.at_s}


def _error_from_json(raw: Mapping[str, Any]) -> WorkerError:
    return WorkerError(str(raw["id"]), str(raw["op"]), str(raw["code"]), str(raw.get("message", "")), float(raw["at_s"]))


class QueueProvider:
    """The controller side: requests go to SQS, the inventory comes back on the reply queue.

    ``seed`` is the last inventory known from the cluster (KBL status) so a restarted controller
    does not start blind; local changes are applied optimistically until the worker reports.
    """

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        reply_url: str,
        *,
        seed: list[NodeGroupInfo] | None = None,
        clock: Callable[[], float] = time.time,
        dedup_window_s: float = 60.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.reply_url = reply_url
        self.clock = clock
        self.dedup_window_s = dedup_window_s
        self.backoff = backoff or Backoff()
        self.inventory: dict[str, NodeGroupInfo] = {g.name: g for g in seed or []}
        self.inventory_s = 0.0
        self.catalog: list[InstanceShape] = []
        #: Per group, the instances the worker last reported outdated (not on the image of the
        #: group's launch-template version): a roll replaces them through the safe path.
        self.outdated: dict[str, list[str]] = {}
        self.sent: list[str] = []
        #: Errors the worker reported (newest last, at most 100): a request it could not execute,
        #: or an inventory it could not read (``op`` ``report``).
        self.worker_errors: list[WorkerError] = []

    def _send(self, op: str, args: Mapping[str, Any]) -> str:
        rid = request_id(op, args, self.clock(), self.dedup_window_s)
        kwargs: dict[str, Any] = {
            "QueueUrl": self.queue_url,
            "MessageBody": json.dumps({"id": rid, "op": op, "args": args, "sent_s": self.clock()}, sort_keys=True),
        }
        if self.queue_url.endswith(".fifo"):
            kwargs["MessageGroupId"] = "kbl-node-groups"
            kwargs["MessageDeduplicationId"] = rid
        aws_call(self.backoff, self.sqs.send_message, **kwargs)
        self.sent.append(rid)
        return rid

    def refresh(self) -> None:
        """Read the worker's inventory messages; keep the newest."""
        while True:
            answer = aws_call(
                self.backoff, self.sqs.receive_message, QueueUrl=self.reply_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            messages = answer.get("Messages", [])
            if not messages:
                return
            for msg in messages:
                groups: list[NodeGroupInfo] | None
                try:
                    body = json.loads(msg["Body"])
                    at = float(body["at_s"])
                    groups = [info_from_json(g) for g in body["groups"]] if "groups" in body else None
                    catalog = [InstanceShape(**t) for t in body.get("instanceTypes") or ()]
                    errors = [_error_from_json(e) for e in body.get("errors") or ()]
                except (ValueError, KeyError, TypeError):
                    groups, catalog, errors, at = None, [], [], -1.0
                known = {(e.request_id, e.at_s) for e in self.worker_errors}
                for error in errors:
                    if (error.request_id, error.at_s) not in known:
                        log.warning(
                            "kbl worker could not run %s (request %s): %s: %s", error.op, error.request_id, error.code, error.message
                        )
                        self.worker_errors.append(error)
                del self.worker_errors[:-100]
                if groups is not None and at >= self.inventory_s:  # no groups: the worker could not read them
                    self.inventory = {g.name: g for g in groups}
                    self.outdated = {str(k): [str(i) for i in v] for k, v in dict(body.get("outdated") or {}).items()}
                    self.catalog = catalog or self.catalog
                    self.inventory_s = at
                aws_call(self.backoff, self.sqs.delete_message, QueueUrl=self.reply_url, ReceiptHandle=msg["ReceiptHandle"])

    def list_groups(self) -> list[NodeGroupInfo]:
        self.refresh()
        return sorted(self.inventory.values(), key=lambda g: g.name)

    def instance_types(self) -> list[InstanceShape]:
        """The catalog the worker last reported with its inventory (its provider's); until it
        has reported, the estimates of common AWS types (the fake cloud's catalog)."""
        self.refresh()
        return list(self.catalog or KNOWN_INSTANCE_TYPES)

    def describe_group(self, name: str) -> NodeGroupInfo | None:
        self.refresh()
        return self.inventory.get(name)

    def create_group(self, spec: NodeGroupSpec, token: str) -> NodeGroupInfo:
        self._send("create_group", {"spec": spec_to_json(spec), "token": token})
        info = self.inventory.get(spec.name) or NodeGroupInfo(
            spec.name, spec.kbl, spec.zone, spec.instance_type, spec.desired, 0, spec.max_size, "REQUESTED",
            instance_types=spec.types, capacity_type=spec.capacity_type,
        )
        self.inventory[spec.name] = info
        return info

    def set_size(self, name: str, desired: int) -> None:
        self._send("set_size", {"name": name, "desired": desired})
        if name in self.inventory:
            old = self.inventory[name]
            self.inventory[name] = replace(old, desired=desired)

    def remove_instance(self, name: str, provider_id: str) -> None:
        self._send("remove_instance", {"name": name, "provider_id": provider_id})

    def outdated_instances(self, name: str) -> list[str]:
        """The group's outdated instances as the worker last reported them."""
        self.refresh()
        return list(self.outdated.get(name, []))

    def protect_instances(self, name: str, provider_ids: list[str]) -> None:
        """Ask the worker to protect these joined instances from scale-in (``protect_instances``);
        the request stays on the queue until the worker has done it (redelivered after a failure,
        to the dead-letter queue after ``maxReceiveCount``)."""
        self._send("protect_instances", {"name": name, "provider_ids": sorted(provider_ids)})

    def delete_group(self, name: str) -> None:
        self._send("delete_group", {"name": name})

    def create_image(self, provider_id: str, image_name: str, tags: Mapping[str, str]) -> str:
        raise ProviderError("Unsupported", "prototype images need cloud credentials: run `kbl worker` image requests out of cluster")

    def roll_group(self, name: str, image_id: str, strategy: RollStrategy, token: str) -> str:
        self._send("roll_group", {"name": name, "image_id": image_id, "strategy": strategy, "token": token})
        return ""

    def create_green_group(self, name: str, green: str, image_id: str, token: str) -> NodeGroupInfo:
        """Ask the worker for a blue/green roll's green group (``create_green_group``; its provider
        must create green groups: EKS); until it reports, the blue group's record under the new
        name, with no node."""
        self._send("create_green_group", {"name": name, "green": green, "image_id": image_id, "token": token})
        blue = self.inventory.get(name)
        info = self.inventory.get(green) or (
            replace(blue, name=green, desired=0, status="REQUESTED", launched=0, failures=())
            if blue is not None
            else NodeGroupInfo(green, "", "", "", 0, 0, 1, "REQUESTED")
        )
        self.inventory[green] = info
        return info


@dataclass(slots=True)
class WorkerStats:
    executed: int = 0
    duplicates: int = 0
    failed: int = 0
    clamped: int = 0


class Worker:
    """``kbl worker``: execute queued requests with a real provider (see the module docstring)."""

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        reply_url: str,
        provider: NodeGroupProvider,
        *,
        max_nodes_total: int,
        visibility_timeout_s: int = 60,
        remember: int = 10_000,
        clock: Callable[[], float] = time.time,
        backoff: Backoff | None = None,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.reply_url = reply_url
        self.provider = provider
        self.max_nodes_total = max_nodes_total
        self.visibility_timeout_s = visibility_timeout_s
        self.remember = remember
        self.clock = clock
        self.backoff = backoff or Backoff()
        self.done: OrderedDict[str, None] = OrderedDict()
        self.stats = WorkerStats()
        #: Failures since the last report, sent with it (then cleared).
        self.errors: list[WorkerError] = []

    def poll_once(self, wait_s: int = 0) -> int:
        """Receive and execute up to 10 requests; returns how many were received."""
        answer = aws_call(
            self.backoff,
            self.sqs.receive_message,
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait_s,
            VisibilityTimeout=self.visibility_timeout_s,
        )
        messages = answer.get("Messages", [])
        for msg in messages:
            if self._handle(msg["Body"]):
                aws_call(self.backoff, self.sqs.delete_message, QueueUrl=self.queue_url, ReceiptHandle=msg["ReceiptHandle"])
        if messages or self.errors:
            self.report()
        return len(messages)

    def _failed(self, rid: str, op: str, exc: Exception) -> None:
        self.stats.failed += 1
        code = exc.code if isinstance(exc, ProviderError) else type(exc).__name__
        self.errors.append(WorkerError(rid, op, code, str(exc), self.clock()))

    def report(self) -> None:
        """Post the inventory of kbl groups (and the catalog, and the errors since the last
        report) to the reply queue. A cloud error reading the inventory or the catalog is
        reported in their place (``inventoryError``); the controller keeps what it knew."""
        body_fields: dict[str, Any] = {"at_s": self.clock()}
        try:
            groups = self.provider.list_groups()
            body_fields["groups"] = [info_to_json(g) for g in groups]
            body_fields["instanceTypes"] = [asdict(t) for t in self.provider.instance_types()]
            if isinstance(self.provider, RollsInstances):  # what a roll still has to replace (controller/rolling.py)
                body_fields["outdated"] = {g.name: self.provider.outdated_instances(g.name) for g in groups}
        except Exception as exc:  # any cloud error: say so rather than stop the worker
            self._failed("", "report", exc)
            body_fields["inventoryError"] = f"{self.errors[-1].code}: {exc}"[:500]
        body_fields["errors"] = [_error_to_json(e) for e in self.errors]
        body = json.dumps(body_fields, sort_keys=True)
        kwargs: dict[str, Any] = {"QueueUrl": self.reply_url, "MessageBody": body}
        if self.reply_url.endswith(".fifo"):
            kwargs["MessageGroupId"] = "kbl-inventory"
            kwargs["MessageDeduplicationId"] = hashlib.sha256(body.encode()).hexdigest()[:40]
        aws_call(self.backoff, self.sqs.send_message, **kwargs)
        self.errors = []

    def _handle(self, raw: str) -> bool:
        """Execute one request; ``True`` if it may be deleted (done, or a duplicate)."""
        try:
            body = json.loads(raw)
            rid, op, args = str(body["id"]), str(body["op"]), body["args"]
            if op not in OPS or not isinstance(args, dict):
                raise ValueError(f"unknown op {op!r}")
        except (ValueError, KeyError, TypeError):
            self.stats.failed += 1
            return False  # poison: redelivered until the redrive policy moves it to the DLQ
        if rid in self.done:
            self.stats.duplicates += 1
            return True
        try:
            self._execute(op, args)
        except Exception as exc:  # any error of the cloud or of the request: report it, keep serving
            # Visible again after the visibility timeout; to the DLQ after maxReceiveCount.
            self._failed(rid, op, exc)
            return False
        self.done[rid] = None
        while len(self.done) > self.remember:
            self.done.popitem(last=False)
        self.stats.executed += 1
        return True

    def _room(self, name: str) -> int:
        groups = self.provider.list_groups()
        return self.max_nodes_total - sum(g.desired for g in groups if g.name != name)

    def _execute(self, op: str, args: Mapping[str, Any]) -> None:
        provider = self.provider
        if op == "create_group":
            spec = spec_from_json(args["spec"])
            room = self._room(spec.name)
            if spec.desired > room:
                self.stats.clamped += 1
                spec = NodeGroupSpec(**{**asdict(spec), "desired": max(room, 0), "labels": dict(spec.labels), "taints": spec.taints})
            provider.create_group(spec, str(args["token"]))
        elif op == "set_size":
            name, desired = str(args["name"]), int(args["desired"])
            current = provider.describe_group(name)
            if current is not None and desired > current.desired:
                room = self._room(name)
                if desired > room:
                    self.stats.clamped += 1
                    desired = max(room, current.desired)
            provider.set_size(name, desired)
        elif op == "remove_instance":  # lifts that instance's protection, terminates it with a decrement
            provider.remove_instance(str(args["name"]), str(args["provider_id"]))
        elif op == "protect_instances":
            if isinstance(provider, ProtectsInstances):  # other clouds never scale in a joined node by themselves
                provider.protect_instances(str(args["name"]), [str(p) for p in args["provider_ids"]])
        elif op == "delete_group":
            provider.delete_group(str(args["name"]))
        elif op == "create_green_group":  # a blue/green roll (controller/bluegreen.py): no node yet, no budget taken
            if not isinstance(provider, CreatesGreenGroups):
                raise ProviderError("Unsupported", "this worker's provider cannot create the green group of a blue/green roll")
            provider.create_green_group(str(args["name"]), str(args["green"]), str(args["image_id"]), str(args["token"]))
        elif op == "roll_group":
            strategy: RollStrategy = "rolling" if args["strategy"] == "rolling" else "next-nodes"
            provider.roll_group(str(args["name"]), str(args["image_id"]), strategy, str(args["token"]))
