"""With narrowing on, the webhook gives the extender's managed resource to every kbl pod it does
not gate, and never to a gated one: kube-scheduler then calls the extender for exactly the pods
the gate controller does not narrow (``managedResources``, upstream ``IsInterested``)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from benchmarks.driving import ExtenderClient, ExtenderConfig, ManagedResource
from extender.admission import AdmissionSettings, apply_patch, resource_patch, review
from extender.narrowing import EXTENDER_RESOURCE, GateController, is_gated
from extender.settings import ExtenderSettings
from extender.state import ClusterState
from tests.extender import scenarios as sc
from topology.pods import Pod
from topology.snapshots import load_snapshot

KBL = "kbl-scheduler"
EXHAUSTIVE = "kbl-scheduler-exhaustive"
NARROWING = AdmissionSettings(scheduler_name=KBL, exhaustive_scheduler_name=EXHAUSTIVE, extender_resource=EXTENDER_RESOURCE)
OWNER = [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "job-uid", "controller": True}]
#: kube-scheduler's extender stanza with narrowing on (the chart's).
INTERESTED = ExtenderClient(ExtenderConfig("http://x", managed_resources=(ManagedResource(EXTENDER_RESOURCE, True),)), {})


def controller(alive: bool) -> Any:
    """The gate controller's real ``should_gate`` (``alive``: its Lease renewed)."""
    state = ClusterState.from_snapshot(load_snapshot(sc.snapshot()))
    return GateController(state, writer=None, leading=lambda: alive).should_gate  # type: ignore[arg-type]


def admitted(pod: dict[str, Any], gate: Any, settings: AdmissionSettings = NARROWING) -> dict[str, Any]:
    body = {"request": {"uid": "u", "operation": "CREATE", "object": pod}}
    response = review(body, load_snapshot(sc.snapshot()).cluster(), settings, gate=gate)["response"]
    assert response["allowed"] is True
    return apply_patch(pod, json.loads(base64.b64decode(response["patch"]))) if "patch" in response else pod


def of(scheduler: str, pod: dict[str, Any], *, owner: bool = True) -> dict[str, Any]:
    pod["spec"]["schedulerName"] = scheduler
    if owner:
        pod["metadata"]["ownerReferences"] = OWNER
    return pod


def asks(pod: dict[str, Any]) -> bool:
    """The pod carries the resource as the Pod API requires of an extended resource: an integer
    quantity, in the limits, and requests equal to limits."""
    container = pod["spec"]["containers"][0]
    resources = container.get("resources") or {}
    limit = (resources.get("limits") or {}).get(EXTENDER_RESOURCE)
    request = (resources.get("requests") or {}).get(EXTENDER_RESOURCE)
    if limit is None and request is None:
        return False
    assert limit == request == "1"
    assert Pod.from_object(pod).requests.extended.get(EXTENDER_RESOURCE) == 1
    return True


@pytest.mark.parametrize(
    ("pod", "alive"),
    [
        (of(KBL, sc.pod(locality="required", shards="0-1")), True),  # narrowed by name at creation: never gated
        (of(KBL, sc.pod(shards="2")), False),  # the controller is down: routed
        (of(KBL, sc.pod(shards="2"), owner=False), True),  # a bare pod: routed, never gated
        (of(KBL, sc.pod(dataset_name=None, shards=None)), True),  # no data wish
        (of(EXHAUSTIVE, sc.pod(shards="2")), True),  # names the exhaustive profile itself
    ],
)
def test_every_kbl_pod_the_webhook_does_not_gate_gets_the_extender_resource(pod: dict[str, Any], alive: bool) -> None:
    out = admitted(pod, gate=controller(alive))
    assert not is_gated(out)
    assert asks(out)
    assert INTERESTED.is_interested(out)  # kube-scheduler calls the extender for it


def test_a_gated_pod_never_gets_the_resource_so_once_narrowed_it_never_calls_the_extender() -> None:
    out = admitted(of(KBL, sc.pod(shards="2")), gate=controller(True))
    assert is_gated(out)
    assert not asks(out)
    assert not INTERESTED.is_interested(out)


@pytest.mark.parametrize("scheduler", ["default-scheduler", "another-scheduler"])
def test_pods_of_other_schedulers_never_get_the_resource(scheduler: str) -> None:
    assert not asks(admitted(of(scheduler, sc.pod(locality="required", shards="0-1")), gate=controller(True)))


def test_without_narrowing_no_pod_gets_the_resource() -> None:
    off = AdmissionSettings.of(ExtenderSettings())
    assert off.extender_resource == ""
    assert not asks(admitted(of(KBL, sc.pod(locality="required", shards="0-1")), gate=None, settings=off))
    assert AdmissionSettings.of(ExtenderSettings(narrowing=True)).extender_resource == EXTENDER_RESOURCE


def test_the_resource_joins_a_containers_own_requests_and_limits_and_is_added_once() -> None:
    pod = of(KBL, sc.pod(locality="required", shards="0-1"))
    pod["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "2"}, "limits": {"memory": "1Gi"}}
    out = admitted(pod, gate=controller(False))
    resources = out["spec"]["containers"][0]["resources"]
    assert resources == {"requests": {"cpu": "2", EXTENDER_RESOURCE: "1"}, "limits": {"memory": "1Gi", EXTENDER_RESOURCE: "1"}}
    assert resource_patch(out, NARROWING) == []  # already asks for it: nothing more
    own = of(KBL, sc.pod(dataset_name=None, shards=None))
    own["spec"]["initContainers"] = [{"name": "init", "resources": {"limits": {EXTENDER_RESOURCE: "1"}}}]
    assert resource_patch(own, NARROWING) == []  # an init container asking is enough for IsInterested


def test_a_pod_whose_affinity_cannot_be_computed_still_gets_the_resource() -> None:
    pod = of(KBL, sc.pod(locality="required", shards="0-1"))
    pod["metadata"]["annotations"]["kbl.io/shards"] = "not-a-range"  # unreadable: the affinity is skipped
    out = admitted(pod, gate=controller(True))
    assert not is_gated(out)
    assert asks(out)
