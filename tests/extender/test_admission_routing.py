"""The webhook routes the pods it cannot narrow by name to kbl's exhaustive profile, and only those."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from benchmarks.driving import NodeAffinity
from extender.admission import AdmissionSettings, apply_patch, review
from extender.app import create_app
from extender.settings import ExtenderSettings
from extender.state import ClusterState
from tests.extender import scenarios as sc
from topology.clusters import Cluster
from topology.errors import KblError
from topology.snapshots import load_snapshot

KBL = "kbl-scheduler"
EXHAUSTIVE = "kbl-scheduler-exhaustive"
ROUTING = AdmissionSettings(scheduler_name=KBL, exhaustive_scheduler_name=EXHAUSTIVE)


def cluster() -> Cluster:
    return load_snapshot(sc.snapshot()).cluster()


def on(scheduler: str | None, pod: dict[str, Any]) -> dict[str, Any]:
    """``pod`` with ``spec.schedulerName`` set (the API server defaults it before admission)."""
    pod["spec"]["schedulerName"] = scheduler or "default-scheduler"
    return pod


def admitted(pod: dict[str, Any], settings: AdmissionSettings = ROUTING, c: Cluster | None = None) -> dict[str, Any]:
    """The pod as the API server stores it after the webhook's reply."""
    body = {"request": {"uid": "u", "operation": "CREATE", "object": pod}}
    response = review(body, c or cluster(), settings)["response"]
    assert response["allowed"] is True
    if "patch" not in response:
        return pod
    return apply_patch(pod, json.loads(base64.b64decode(response["patch"])))


def test_a_preferred_pod_with_placed_data_is_routed_to_the_exhaustive_profile() -> None:
    pod = admitted(on(KBL, sc.pod(shards="2")))
    assert pod["spec"]["schedulerName"] == EXHAUSTIVE
    assert NodeAffinity.of(pod).preferred  # its preferred zone and rack terms too


@pytest.mark.parametrize("scheduler", ["default-scheduler", "another-scheduler", EXHAUSTIVE])
def test_pods_of_another_scheduler_are_never_routed(scheduler: str) -> None:
    for pod in (sc.pod(shards="2"), sc.pod(locality="required")):
        assert admitted(on(scheduler, pod))["spec"]["schedulerName"] == scheduler


def test_a_required_pod_narrowed_by_name_keeps_its_profile() -> None:
    pod = admitted(on(KBL, sc.pod(locality="required", shards="0-1")))
    assert pod["spec"]["schedulerName"] == KBL
    assert NodeAffinity.of(pod).names  # PreFilter already gives the exact holders


def test_a_required_pod_with_only_the_zone_fallback_is_routed() -> None:
    settings = AdmissionSettings(max_names=1, scheduler_name=KBL, exhaustive_scheduler_name=EXHAUSTIVE)
    pod = admitted(on(KBL, sc.pod(locality="required")), settings)
    assert pod["spec"]["schedulerName"] == EXHAUSTIVE
    assert NodeAffinity.of(pod).names is None  # a zone term: sampling could still hide a holder


def test_without_the_setting_nothing_is_routed() -> None:
    for settings in (AdmissionSettings(), AdmissionSettings(max_names=1)):
        for pod in (sc.pod(shards="2"), sc.pod(locality="required")):
            assert admitted(on(KBL, pod), settings)["spec"]["schedulerName"] == KBL


@pytest.mark.parametrize(
    "pod",
    [
        sc.pod(dataset_name=None, shards=None),  # reads nothing through kbl: gains the adaptive speed
        sc.pod(dataset_name="unknown"),
        sc.pod(shards="99"),
    ],
)
def test_pods_without_a_usable_data_wish_stay_on_their_profile(pod: dict[str, Any]) -> None:
    assert admitted(on(KBL, pod)) == on(KBL, pod)


def test_routing_needs_two_distinct_scheduler_names() -> None:
    with pytest.raises(ValueError, match="differ"):
        ExtenderSettings(exhaustive_scheduler_name="kbl-scheduler")
    with pytest.raises(KblError, match="replace"):
        apply_patch({"spec": {}}, [{"op": "replace", "path": "/spec/schedulerName", "value": EXHAUSTIVE}])


def test_the_extender_routes_at_mutate_with_its_settings() -> None:
    settings = ExtenderSettings(exhaustive_scheduler_name=EXHAUSTIVE)
    state = ClusterState.from_snapshot(load_snapshot(sc.snapshot()), settings)
    app = create_app(state, settings)
    body = {"request": {"uid": "u", "operation": "CREATE", "object": on(KBL, sc.pod(shards="2"))}}
    reply = sc.call(app, "/mutate", body).json()
    ops = json.loads(base64.b64decode(reply["response"]["patch"]))
    assert {"op": "replace", "path": "/spec/schedulerName", "value": EXHAUSTIVE} in ops
