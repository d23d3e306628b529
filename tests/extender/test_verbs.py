"""Filter and prioritize through HTTP payloads exactly as kube-scheduler sends them."""

from __future__ import annotations

from typing import Any

import pytest

from extender.app import create_app
from extender.settings import ExtenderSettings
from extender.state import ClusterState
from tests.extender import scenarios as sc
from topology import labels
from topology.examples import make_node
from topology.snapshots import load_snapshot

ALL = [f"node-{z}-{r}-{h}" for z in range(2) for r in range(2) for h in range(3)]
HOLDERS = {"node-0-0-0", "node-1-0-0"}


def app_for(settings: ExtenderSettings | None = None, **kw: Any) -> Any:
    state = ClusterState.from_snapshot(load_snapshot(sc.snapshot(**kw)), settings)
    return create_app(state)


def test_prioritize_in_names_form_ranks_holders_then_rack_then_zone() -> None:
    got = sc.scores(sc.call(app_for(), "/prioritize", sc.names_args(sc.pod(), ALL)))
    assert list(got) == ALL  # every offered node, in request order, nothing else
    assert {n for n, s in got.items() if s == 10} == HOLDERS
    rack_mates = {"node-0-0-1", "node-0-0-2", "node-1-0-1", "node-1-0-2"}
    zone_only = set(ALL) - HOLDERS - rack_mates
    assert min(got[n] for n in rack_mates) > max(got[n] for n in zone_only)


def test_prioritize_in_full_nodes_form_built_from_the_real_node_gives_the_same_scores(eks_node: dict[str, Any]) -> None:
    objects = {n["metadata"]["name"]: n for n in sc.nodes()}
    real = make_node("node-0-0-0", zone="us-east-1a", rack="rack-0", template=eks_node)
    objects["node-0-0-0"] = real
    app = app_for()
    by_names = sc.scores(sc.call(app, "/prioritize", sc.names_args(sc.pod(), ALL)))
    by_nodes = sc.scores(sc.call(app, "/prioritize", sc.nodes_args(sc.pod(), [objects[n] for n in ALL])))
    assert by_nodes == by_names


def test_filter_answers_in_the_form_of_the_request_with_exact_field_names_and_nulls() -> None:
    app = app_for()
    offered = ALL[:5]
    reply = sc.call(app, "/filter", sc.names_args(sc.pod(), offered)).json()
    assert set(reply) == {"Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"}
    assert reply["Nodes"] is None
    assert reply["NodeNames"] == offered
    assert reply["Error"] == ""
    objects = [n for n in sc.nodes() if n["metadata"]["name"] in offered]
    reply = sc.call(app, "/filter", sc.nodes_args(sc.pod(), objects)).json()
    assert reply["NodeNames"] is None
    assert reply["Nodes"]["items"] == objects  # the objects as given, so kube-scheduler can use them


def test_filter_accepts_a_null_node_list_items_as_go_marshals_an_empty_slice() -> None:
    body: dict[str, Any] = {"Pod": sc.pod(), "Nodes": {"metadata": {}, "items": None}, "NodeNames": None}
    reply = sc.call(app_for(), "/filter", body).json()
    assert reply["Nodes"]["items"] == []


def test_no_reply_names_a_node_that_was_not_offered() -> None:
    app = app_for()
    offered = ["node-1-1-2", "ghost-node", "node-0-0-0"]
    for locality in (None, "required"):
        reply = sc.call(app, "/filter", sc.names_args(sc.pod(locality=locality), offered)).json()
        named = set(reply["NodeNames"]) | set(reply["FailedNodes"]) | set(reply["FailedAndUnresolvableNodes"])
        assert named <= set(offered)
    got = sc.scores(sc.call(app, "/prioritize", sc.names_args(sc.pod(), offered)))
    assert list(got) == offered
    assert got["ghost-node"] == 0  # unknown to the cache: scored as all-remote


def test_pod_without_kbl_annotations_gets_a_neutral_answer() -> None:
    app = app_for()
    plain = sc.pod(dataset_name=None, shards=None)
    assert set(sc.scores(sc.call(app, "/prioritize", sc.names_args(plain, ALL))).values()) == {0}
    assert sc.call(app, "/filter", sc.names_args(plain, ALL)).json()["NodeNames"] == ALL


def test_all_equal_candidates_score_zero() -> None:
    got = sc.scores(sc.call(app_for(), "/prioritize", sc.names_args(sc.pod(), ["node-0-0-0", "node-1-0-0"])))
    assert got == {"node-0-0-0": 0, "node-1-0-0": 0}


def test_required_locality_passes_only_nodes_holding_every_requested_shard() -> None:
    reply = sc.call(app_for(), "/filter", sc.names_args(sc.pod(locality="required"), ALL)).json()
    assert set(reply["NodeNames"]) == HOLDERS
    assert set(reply["FailedAndUnresolvableNodes"]) == set(ALL) - HOLDERS
    assert reply["FailedNodes"] == {}
    assert "holds 0% of the requested data" in reply["FailedAndUnresolvableNodes"]["node-0-0-1"]
    # shards 0-3 are on no single node: nobody passes, and the reason says how much each holds
    reply = sc.call(app_for(), "/filter", sc.names_args(sc.pod(locality="required", shards="0-3"), ALL)).json()
    assert reply["NodeNames"] == []
    assert "holds 50% of the requested data" in reply["FailedAndUnresolvableNodes"]["node-0-0-0"]


def test_required_holder_without_room_is_left_to_preemption() -> None:
    # node-0-0-0 is full of bound pods (63.77 cpu allocatable): preemption could help there
    fillers = [sc.pod(f"filler-{i}", dataset_name=None, shards=None, cpu="15", node_name="node-0-0-0") for i in range(4)]
    app = app_for(pods=fillers)
    reply = sc.call(app, "/filter", sc.names_args(sc.pod(locality="required", cpu="4"), ALL)).json()
    assert reply["NodeNames"] == ["node-1-0-0"]
    assert "preempting" in reply["FailedNodes"]["node-0-0-0"]
    assert "node-0-0-0" not in reply["FailedAndUnresolvableNodes"]


@pytest.mark.parametrize(
    ("annotations", "problem"),
    [({"dataset_name": "missing"}, "not found"), ({"shards": "2-9"}, "out of range"), ({"shards": "x"}, "bad shard item")],
)
def test_unusable_data_wish_still_schedules_when_preferred_and_explains_when_required(annotations: dict[str, Any], problem: str) -> None:
    app = app_for()
    reply = sc.call(app, "/filter", sc.names_args(sc.pod(**annotations), ALL)).json()
    assert reply["NodeNames"] == ALL
    assert set(sc.scores(sc.call(app, "/prioritize", sc.names_args(sc.pod(**annotations), ALL))).values()) == {0}
    reply = sc.call(app, "/filter", sc.names_args(sc.pod(locality="required", **annotations), ALL)).json()
    assert reply["NodeNames"] == []
    assert all(problem in why for why in reply["FailedAndUnresolvableNodes"].values())
    assert set(reply["FailedAndUnresolvableNodes"]) == set(ALL)


def test_unplaced_dataset_is_explained() -> None:
    app = app_for(datasets=[sc.dataset(placed=False)])
    reply = sc.call(app, "/filter", sc.names_args(sc.pod(locality="required"), ALL[:2])).json()
    assert all("no status.placement" in why for why in reply["FailedAndUnresolvableNodes"].values())


def test_dedicated_node_rejects_foreign_pods_even_when_they_tolerate_everything() -> None:
    app = app_for(extra_nodes=[sc.dedicated_node("ded-a", "alpha")])
    offered = ["ded-a", "node-0-0-0"]
    tolerant = sc.pod(tolerations=[{"operator": "Exists"}])
    reply = sc.call(app, "/filter", sc.names_args(tolerant, offered)).json()
    assert reply["NodeNames"] == ["node-0-0-0"]
    assert "dedicated to KBL alpha" in reply["FailedAndUnresolvableNodes"]["ded-a"]
    other = sc.pod(kbl="beta", tolerations=[{"operator": "Exists"}])
    assert sc.call(app, "/filter", sc.names_args(other, offered)).json()["NodeNames"] == ["node-0-0-0"]


def test_pods_of_a_dedicated_kbl_are_kept_to_its_group() -> None:
    app = app_for(extra_nodes=[sc.dedicated_node("ded-a", "alpha"), sc.dedicated_node("ded-b", "alpha", rack="rack-1")])
    toleration = {"key": labels.DEDICATED_TAINT, "operator": "Equal", "value": "alpha", "effect": "NoSchedule"}
    member = sc.pod(kbl="alpha", tolerations=[toleration])
    reply = sc.call(app, "/filter", sc.names_args(member, ["ded-a", "node-0-0-0", "ded-b"])).json()
    assert reply["NodeNames"] == ["ded-a", "ded-b"]
    assert "dedicated node group" in reply["FailedAndUnresolvableNodes"]["node-0-0-0"]


def test_a_kbl_object_in_shared_mode_does_not_keep_its_pods_to_the_group() -> None:
    kbl = {
        "apiVersion": labels.API_VERSION,
        "kind": "KBL",
        "metadata": {"name": "alpha", "namespace": sc.NAMESPACE},
        "spec": {"nodeGroup": {"mode": "shared"}},
    }
    app = app_for(extra_nodes=[sc.dedicated_node("ded-a", "alpha")], kbls=[kbl])
    reply = sc.call(app, "/filter", sc.names_args(sc.pod(kbl="alpha"), ["ded-a", "node-0-0-0"])).json()
    assert reply["NodeNames"] == ["ded-a", "node-0-0-0"]


def test_verbs_are_served_under_the_configured_prefix_only() -> None:
    app = app_for(ExtenderSettings(url_prefix="/kbl/v1"))
    assert sc.call(app, "/kbl/v1/filter", sc.names_args(sc.pod(), ALL)).status_code == 200
    assert sc.call(app, "/filter", sc.names_args(sc.pod(), ALL)).status_code == 404
    assert sc.call(app, "/healthz", method="GET").status_code == 200
