"""Node patching: reboot the nodes that need it, one at a time per group, through the safe path.

Step 1 of the prototype-image pattern (patch the nodes, reboot them gracefully, then choose a
prototype among them: :mod:`controller.baking`), like kured but data-aware. The node agent
labels a node ``kbl.io/reboot-required=true`` while ``/var/run/reboot-required`` exists on the
host. Each pass of :meth:`Patcher.run_once` moves every group at most one step:

1. **drain**: a labelled node of a group with no reboot in progress is cordoned, marked
   ``kbl.io/do-not-disrupt`` (no scale-down takes it meanwhile) and ``kbl.io/drain=reboot``
   (the placement reconciler copies its pieces off, make before break), and annotated
   ``kbl.io/rebooting=draining:<since>``;
2. **wait for the data and the pods**: as scale-down and the prototype image do
   (:func:`~controller.baking.data_still_on`, :func:`~controller.baking.evict_pods`);
3. **reboot** through the :class:`Rebooter` (SSM Run Command on AWS:
   :class:`SsmRebooter`), ``kbl.io/rebooting=rebooting:<sent>``;
4. **wait Ready**: the node's Ready condition turned True after the reboot was sent (it went
   down and came back), then it is uncordoned, its marks and the label removed (the agent sets
   the label again if the host still needs a reboot).

The three steps of the pattern are pluggable: the reboot here (:class:`Rebooter`), the choice
of a prototype (``controller.baking.pick_prototype``, any ``PrototypePicker``) and the image
(``NodeGroupProvider.create_image``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from controller.baking import data_still_on, evict_pods
from controller.locking import PATCH, GroupLocks
from controller.providers import ProviderError, instance_id
from controller.providers.awscalls import aws_call
from controller.providers.imaging import RUN_SHELL_DOCUMENT
from controller.providers.retrying import Backoff
from kube.api import NODES, KubeApi
from topology import labels
from topology.times import parse_time

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

#: The ``kbl.io/drain`` reason of a reboot.
DRAIN_REASON = "reboot"
#: SSM Run Command: a script that exits 194 asks the agent to reboot the instance (and report
#: the command once it is back), the documented way to reboot from ``AWS-RunShellScript``.
REBOOT_COMMANDS = ("echo 'kbl: rebooting to finish patching'", "exit 194")


class Rebooter(Protocol):
    """Reboots one node (step 1 of the prototype-image pattern)."""

    def reboot(self, provider_id: str) -> str:
        """Start a reboot of the instance; returns an id of the request (for the record)."""
        ...


class PrototypePicker(Protocol):
    """Chooses the node to image among a group's nodes (step 2; ``controller.baking.pick_prototype``)."""

    def __call__(self, nodes: Sequence[Mapping[str, Any]], now_s: float, min_ready_s: float, named: str | None = None) -> Mapping[str, Any]:
        ...


@dataclass
class SsmRebooter:
    """Reboot through SSM Run Command (``ssm:SendCommand`` with ``AWS-RunShellScript``, the grant
    the cleaning before an image already uses: instances tagged as this cluster's only)."""

    ssm: SSMClient
    backoff: Backoff = field(default_factory=Backoff)

    def reboot(self, provider_id: str) -> str:
        sent = aws_call(
            self.backoff,
            self.ssm.send_command,
            InstanceIds=[instance_id(provider_id)],
            DocumentName=RUN_SHELL_DOCUMENT,
            Comment="kbl: reboot a drained node to finish patching",
            Parameters={"commands": list(REBOOT_COMMANDS)},
            TimeoutSeconds=60,
        )
        return str(sent["Command"]["CommandId"])


def _phase(node: Mapping[str, Any]) -> tuple[str, float]:
    raw = str(((node.get("metadata") or {}).get("annotations") or {}).get(labels.REBOOTING, ""))
    phase, _, since = raw.partition(":")
    try:
        return phase, float(since)
    except ValueError:
        return phase, 0.0


def _ready_since(node: Mapping[str, Any]) -> float | None:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return parse_time(cond.get("lastTransitionTime")) if cond.get("status") == "True" else None
    return None


def needs_reboot(node: Mapping[str, Any]) -> bool:
    return str(((node.get("metadata") or {}).get("labels") or {}).get(labels.REBOOT_REQUIRED, "")).lower() == "true"


@dataclass
class Patcher:
    """Reboots the labelled nodes of each group, one at a time, through the safe path (module docstring)."""

    kube: KubeApi
    rebooter: Rebooter
    clock: Callable[[], float]
    guard: Callable[[str], None] = lambda _step: None
    #: A node not Ready again this long after its reboot was sent gets the reboot sent again
    #: (a controller killed between recording the reboot and sending it, a lost command).
    reboot_timeout_s: float = 900.0
    failures: list[tuple[str, str]] = field(default_factory=list)

    def run_once(self, groups: Sequence[str], owners: Mapping[str, str] | None = None) -> dict[str, str]:
        """One step for each group; what each group did (``node: step``), for the log.

        ``owners`` maps a group to its KBL (``namespace/name``): a reboot then takes the group's
        lock (:class:`~controller.rolling.GroupLocks`) before it cordons a node and releases it
        when the node is back, and waits while a roll or a bake holds it."""
        done = {}
        locks = GroupLocks(self.kube, self.guard)
        for group in groups:
            owner = (owners or {}).get(group)
            members, _ = self.kube.list(NODES, label_selector=f"{labels.NODE_GROUP_LABEL}={group}")
            busy = [n for n in members if _phase(n)[0]]
            if busy:
                node = busy[0]
            else:
                if owner:  # a reboot that finished before its lock was released (a controller killed in between)
                    locks.release(owner, group, PATCH)
                due = sorted((n for n in members if needs_reboot(n) and not (n.get("spec") or {}).get("unschedulable")),
                             key=lambda n: str(n["metadata"]["name"]))  # fmt: skip
                if not due:
                    continue
                node = due[0]
                if owner and locks.take(owner, group, PATCH, {"node": str(node["metadata"]["name"]), "step": "reboot"}) is not None:
                    continue  # a roll or a bake has a node of this group out
            try:
                done[group] = f"{node['metadata']['name']}: {self._step(node)}"
                if owner and done[group].endswith(": back"):
                    locks.release(owner, group, PATCH)
            except ProviderError as exc:  # the node stays cordoned and marked; the next pass retries
                self.failures.append((str(node["metadata"]["name"]), str(exc)))
                del self.failures[:-20]
        return done

    def _step(self, node: Mapping[str, Any]) -> str:
        name = str(node["metadata"]["name"])
        now = self.clock()
        phase, since = _phase(node)
        if not phase:
            self.guard("reboot-drain")
            marks = {labels.DO_NOT_DISRUPT: "true", labels.DRAIN: DRAIN_REASON, labels.REBOOTING: f"draining:{now:.0f}"}
            self.kube.patch(NODES, name, {"spec": {"unschedulable": True}, "metadata": {"annotations": marks}})
            return "cordoned, data and pods leaving"
        if phase == "draining":
            waiting = data_still_on(self.kube, node, since) or evict_pods(self.kube, name)
            if waiting:
                return f"waiting: {waiting}"
            self.guard("reboot")
            self.kube.patch(NODES, name, {"metadata": {"annotations": {labels.REBOOTING: f"rebooting:{now:.0f}"}}})
            self.rebooter.reboot(str((node.get("spec") or {}).get("providerID", "")))
            return "rebooting"
        ready = _ready_since(node)
        if ready is None or ready < since:
            if ready is not None and now - since >= self.reboot_timeout_s:  # never went down: send it again
                self.guard("reboot")
                self.kube.patch(NODES, name, {"metadata": {"annotations": {labels.REBOOTING: f"rebooting:{now:.0f}"}}})
                self.rebooter.reboot(str((node.get("spec") or {}).get("providerID", "")))
                return "rebooting again"
            return "waiting for Ready after the reboot"
        self.guard("reboot-return")
        unmark = {labels.DO_NOT_DISRUPT: None, labels.DRAIN: None, labels.REBOOTING: None}
        self.kube.patch(NODES, name, {"spec": {"unschedulable": False},
                                      "metadata": {"annotations": unmark, "labels": {labels.REBOOT_REQUIRED: None}}})  # fmt: skip
        return "back"
