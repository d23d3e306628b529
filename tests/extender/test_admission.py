"""The mutating webhook: AdmissionReview in, a base64 JSONPatch of node affinity out."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from benchmarks.driving import NodeAffinity, term_matches
from extender.admission import AdmissionSettings, affinity_patch, apply_patch, narrowing, review
from extender.app import create_app
from extender.state import ClusterState
from tests.extender import scenarios as sc
from topology.clusters import Cluster
from topology.pods import Pod
from topology.snapshots import load_snapshot

HOLDERS = ["node-0-0-0", "node-1-0-0"]


def cluster() -> Cluster:
    return load_snapshot(sc.snapshot()).cluster()


def request(pod: dict[str, Any], operation: str = "CREATE") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "operation": operation, "object": pod},
    }


def patch_of(reply: dict[str, Any]) -> list[dict[str, Any]]:
    response = reply["response"]
    assert response["patchType"] == "JSONPatch"
    ops: list[dict[str, Any]] = json.loads(base64.b64decode(response["patch"]))
    return ops


def test_required_pod_is_narrowed_to_the_nodes_holding_every_shard() -> None:
    reply = review(request(sc.pod(locality="required", shards="0-1")), cluster())
    assert reply["apiVersion"] == "admission.k8s.io/v1"
    assert reply["kind"] == "AdmissionReview"
    assert reply["response"]["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert reply["response"]["allowed"] is True
    ops = patch_of(reply)
    assert ops == [
        {
            "op": "add",
            "path": "/spec/affinity",
            "value": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": HOLDERS}]}]
                    }
                }
            },
        }
    ]
    patched = apply_patch(sc.pod(locality="required"), ops)
    assert NodeAffinity.of(patched).names == frozenset(HOLDERS)


def test_too_many_holders_fall_back_to_their_zones() -> None:
    narrow = narrowing(cluster(), Pod.from_object(sc.pod(locality="required")), AdmissionSettings(max_names=1))
    assert narrow is not None
    zones = ["us-east-1a", "us-east-1b"]
    assert narrow.required == {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": zones}]}


def test_preferred_pod_is_steered_to_the_zone_and_racks_holding_its_data() -> None:
    c = cluster()
    narrow = narrowing(c, Pod.from_object(sc.pod(shards="2")), AdmissionSettings(max_racks=2))
    assert narrow is not None
    assert narrow.required is None
    zone_term, *rack_terms = narrow.preferred
    assert zone_term["weight"] == 50
    holders = {"node-0-1-0", "node-1-1-0"}
    for term in rack_terms:  # each named rack holds a replica of shard 2
        in_rack = [n for n in c.nodes.values() if term_matches(n, term["preference"])]
        assert in_rack
        assert holders & {n.name for n in in_rack}
    assert len(rack_terms) == 2


@pytest.mark.parametrize(
    "pod",
    [
        sc.pod(dataset_name=None, shards=None),  # reads nothing through kbl
        sc.pod(dataset_name="unknown"),
        sc.pod(shards="99"),  # out of range: the extender explains it
        sc.pod(locality="required", node_name="node-0-0-0"),  # already bound
    ],
)
def test_pods_the_webhook_cannot_help_are_admitted_unchanged(pod: dict[str, Any]) -> None:
    reply = review(request(pod), cluster())
    assert reply["response"] == {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": True}


def test_unreadable_reviews_are_allowed_without_a_patch() -> None:
    for body in [None, {}, {"request": "x"}, request({"kind": "Pod", "metadata": 7})]:
        assert review(body, cluster())["response"]["allowed"] is True
    assert "patch" not in review(request(sc.pod(locality="required"), operation="UPDATE"), cluster())["response"]


def test_existing_node_affinity_is_kept_and_anded() -> None:
    pod = sc.pod(locality="required")
    own = {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}
    pod["spec"]["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [own, {"matchFields": [{"key": "x"}]}]},
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": own}],
        },
        "podAntiAffinity": {},
    }
    ops = patch_of(review(request(pod), cluster()))
    patched = apply_patch(pod, ops)
    terms = patched["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"] == own["matchExpressions"]
    assert all(any(f.get("key") == "metadata.name" for f in t["matchFields"]) for t in terms)
    assert patched["spec"]["affinity"]["podAntiAffinity"] == {}
    assert NodeAffinity.of(patched).names == frozenset(HOLDERS)
    preferred = sc.pod(shards="2")
    mine = [{"weight": 1, "preference": own}]
    preferred["spec"]["affinity"] = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": mine}}
    patched = apply_patch(preferred, patch_of(review(request(preferred), cluster())))
    assert len(patched["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]) > 1


def test_patch_paths_are_json_pointers_into_the_pod() -> None:
    pod = sc.pod(locality="required")
    pod["spec"]["affinity"] = {}
    narrow = narrowing(cluster(), Pod.from_object(pod))
    assert narrow is not None
    (op,) = affinity_patch(pod, narrow)
    assert op["path"] == "/spec/affinity/nodeAffinity"


def test_the_extender_serves_the_webhook_at_mutate() -> None:
    state = ClusterState.from_snapshot(load_snapshot(sc.snapshot()))
    app = create_app(state)
    response = sc.call(app, "/mutate", request(sc.pod(locality="required")))
    assert response.status_code == 200
    reply = response.json()
    assert reply["response"]["allowed"] is True
    assert patch_of(reply)[0]["path"] == "/spec/affinity"
    assert sc.call(app, "/mutate", content=b"{not json").status_code == 400
