"""The fast path of ``Pod.from_object`` against the validating one.

``Pod.from_object`` reads a well-formed object by plain dict walking and hands anything else to
``Pod.from_object_checked`` (the FieldReader path). The two must agree on every object: the same
:class:`Pod`, or the same error naming the same field. Objects are generated around the pod the
API server serves (``topology.examples.make_pod``) with each field the pod reads either kept,
dropped, nulled or replaced by a value of another JSON type, plus every Pod in the fixture
directories.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from topology import labels
from topology.errors import KblError
from topology.examples import make_pod
from topology.pods import Pod

FIXTURE_DIRS = (Path(__file__).resolve().parents[1] / "fixtures", Path(__file__).resolve().parents[3] / "shared" / "fixtures")

#: JSON values of every type (what a malformed object may carry where a pod field should be).
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from(["", "x", "500m", "1Gi", "bogus"]),
    st.lists(st.sampled_from(["a", 1]), max_size=2),
    st.dictionaries(st.sampled_from(["a", "cpu"]), st.sampled_from(["1", 2, None]), max_size=2),
)
QUANTITIES = st.sampled_from(["1", "250m", "2", "1Gi", "512Mi", "0", "1.5", "bad", "-1"])
RESOURCE_NAMES = st.sampled_from(["cpu", "memory", "ephemeral-storage", "nvidia.com/gpu", "pods"])
REQUESTS = st.dictionaries(RESOURCE_NAMES, QUANTITIES | st.integers(0, 4), max_size=3)
RESOURCES = st.fixed_dictionaries({}, optional={"requests": REQUESTS | JUNK, "limits": REQUESTS | JUNK})
CONTAINER: st.SearchStrategy[Any] = (
    st.fixed_dictionaries({"name": st.just("c")}, optional={"resources": RESOURCES | JUNK}) | st.just([]) | st.none()
)
CONTAINERS = st.lists(CONTAINER, max_size=3)
STR_MAP = st.dictionaries(st.sampled_from(["a", "b", "app"]), st.sampled_from(["1", "x"]) | st.integers(0, 1), max_size=2)
ANNOTATIONS = st.fixed_dictionaries(
    {},
    optional={
        labels.POD_DATASET: st.sampled_from(["genomes", ""]),
        labels.POD_SHARDS: st.sampled_from(["0-3,9", "1", "", "3-1", "x"]),
        labels.POD_LOCALITY: st.sampled_from(["preferred", " Required ", "maybe"]),
        labels.POD_KBL: st.sampled_from(["k", ""]),
        "other": st.sampled_from(["v", ""]) | st.integers(0, 1),
    },
)
TOLERATION = st.fixed_dictionaries(
    {},
    optional={
        "key": st.sampled_from(["kbl.io/dedicated", ""]) | st.none(),
        "operator": st.sampled_from(["Equal", "Exists", ""]) | st.integers(0, 1),
        "value": st.sampled_from(["k"]) | st.none(),
        "effect": st.sampled_from(["NoSchedule", ""]) | st.none(),
    },
) | st.sampled_from(["", 1])
CONDITION = st.fixed_dictionaries(
    {"type": st.sampled_from(["PodScheduled", "Ready"])},
    optional={"status": st.sampled_from(["False", "True"]), "reason": st.sampled_from(["Unschedulable", "x"])},
) | st.sampled_from(["", 1])
STRING_FIELD = st.sampled_from(["n1", "x", ""])

#: (section, field) -> values of the right JSON type it may take instead of the served one (JUNK
#: gives the values of every other type)
FIELDS: dict[tuple[str, str], st.SearchStrategy[Any]] = {
    ("metadata", "name"): st.sampled_from(["p", "q"]),
    ("metadata", "namespace"): st.sampled_from(["lab", ""]),
    ("metadata", "uid"): STRING_FIELD,
    ("metadata", "creationTimestamp"): STRING_FIELD,
    ("metadata", "annotations"): ANNOTATIONS,
    ("metadata", "labels"): STR_MAP,
    ("metadata", "ownerReferences"): st.lists(
        st.fixed_dictionaries({}, optional={"kind": st.sampled_from(["Job", "ReplicaSet"]) | JUNK}) | JUNK, max_size=2
    ),
    ("spec", "containers"): CONTAINERS,
    ("spec", "initContainers"): CONTAINERS,
    ("spec", "overhead"): REQUESTS,
    ("spec", "tolerations"): st.lists(TOLERATION, max_size=3),
    ("spec", "nodeName"): STRING_FIELD,
    ("spec", "schedulerName"): STRING_FIELD,
    ("spec", "nodeSelector"): STR_MAP,
    ("status", "phase"): st.sampled_from(["Pending", "Running", "Succeeded", ""]),
    ("status", "conditions"): st.lists(CONDITION, max_size=3),
}


@st.composite
def pod_objects(draw: st.DrawFn) -> Any:
    """A served pod with some fields changed, some sections broken, or not an object at all."""
    obj = make_pod(
        "p",
        namespace="lab",
        dataset="genomes",
        shards="0-3",
        locality="preferred",
        kbl="k",
        node_selector={"zone": "a"},
        unschedulable=draw(st.booleans()),
    )
    for (section, name), values in FIELDS.items():
        action = draw(st.sampled_from(["keep"] * 5 + ["drop", "set", "set", "junk"]))
        if action == "drop":
            obj[section].pop(name, None)
        elif action == "set":
            obj[section][name] = draw(values)
        elif action == "junk" and draw(st.integers(0, 3)) == 0:  # one field in ~70 broken: most pods reach the end
            obj[section][name] = draw(JUNK)
    for section in ("metadata", "spec", "status"):
        if draw(st.integers(0, 29)) == 0:
            obj[section] = draw(JUNK)
    if draw(st.integers(0, 49)) == 0:
        return draw(JUNK)
    return obj


def outcome(build: Any, obj: Any) -> tuple[str, Any]:
    """What building a pod from ``obj`` gives: the pod, or the error's type and message."""
    try:
        return "pod", build(obj)
    except KblError as exc:  # ObjectError names the pod and the field
        return "error", (type(exc).__name__, str(exc))


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pod_objects())
def test_the_fast_and_validating_paths_build_the_same_pod_or_raise_the_same_error(obj: Any) -> None:
    snapshot = copy.deepcopy(obj)
    fast = outcome(Pod.from_object, obj)
    checked = outcome(Pod.from_object_checked, obj)
    assert fast == checked
    assert obj == snapshot  # neither path changes the object it reads


def test_a_served_pod_takes_the_fast_path_and_a_malformed_one_still_names_its_field() -> None:
    served = make_pod("p", namespace="lab", dataset="genomes", shards="0-3", kbl="k", tolerations=[{"key": "a", "operator": "Exists"}])
    pod = Pod.from_object(served)
    assert pod == Pod.from_object_checked(served)
    assert pod.requests.cpu_m == 1000
    assert pod.requests.pods == 1
    assert pod.data is not None
    assert pod.data.shards == (0, 1, 2, 3)
    broken = copy.deepcopy(served)
    broken["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "lots"
    with pytest.raises(KblError, match=r"spec\.containers\[0\]\.resources\.requests"):
        Pod.from_object(broken)


def _fixture_pods() -> list[Any]:
    pods: list[Any] = []
    for directory in FIXTURE_DIRS:
        for path in sorted(directory.rglob("*.json")) if directory.exists() else ():
            data = json.loads(path.read_text())
            items = data.get("items", [data]) if isinstance(data, dict) else data
            pods.extend(item for item in items if isinstance(item, dict) and item.get("kind") == "Pod")
    return pods


def test_every_fixture_pod_builds_the_same_through_both_paths() -> None:
    # the fixture directories hold no Pod today (nodes and Karpenter objects); the served pods of
    # the examples stand in, and any Pod fixture added later is checked here too
    pods = [*_fixture_pods(), make_pod("a"), make_pod("b", node_name="n1", unschedulable=False), make_pod("c", unschedulable=True)]
    for obj in pods:
        assert outcome(Pod.from_object, obj) == outcome(Pod.from_object_checked, obj)


def test_both_paths_sum_containers_take_the_larger_init_container_and_add_the_overhead() -> None:
    gpu = "nvidia.com/gpu"
    obj = make_pod("p", namespace="lab")
    obj["spec"]["containers"] = [
        {"name": "a", "resources": {"requests": {"cpu": "1", gpu: "1", "hugepages-2Mi": "2Mi"}}},
        {"name": "b", "resources": {"limits": {"cpu": "500m", gpu: "2"}}},  # requests default to limits
        {"name": "c"},
    ]
    obj["spec"]["initContainers"] = [{"name": "i", "resources": {"requests": {"cpu": "2", gpu: "2", "memory": "1Gi"}}}]
    obj["spec"]["overhead"] = {"cpu": "100m", gpu: "1"}
    pod = Pod.from_object(obj)
    assert pod == Pod.from_object_checked(obj)
    assert pod.requests.cpu_m == 2000 + 100  # the init container's 2 CPUs beat the containers' 1.5
    assert pod.requests.memory_b == 2**30
    assert dict(pod.requests.extended) == {gpu: 3 + 1, "hugepages-2Mi": 2 * 2**20}  # 1 + 2 beat the init's 2
