import copy
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from topology import labels
from topology.errors import ObjectError
from topology.examples import make_node
from topology.nodes import Node, is_synthetic
from topology.snapshots import _typed_node


def test_real_eks_node_gets_region_zone_and_exact_allocatable(eks_node: dict[str, Any]) -> None:
    node = Node.from_object(eks_node)
    assert node.name == "ip-192-168-25-169.ec2.internal"
    assert node.region == "us-east-1"
    assert node.zone == "us-east-1/us-east-1a"
    assert node.allocatable.cpu_m == 63770
    assert node.allocatable.memory_b == 126956280 * 1024
    assert node.allocatable.storage_b == 76215832858
    assert node.allocatable.pods == 198
    assert node.instance_type == "hpc7g.16xlarge"
    assert node.ready


def test_node_without_rack_label_is_alone_in_a_synthetic_rack(eks_node: dict[str, Any]) -> None:
    node = Node.from_object(eks_node)
    assert is_synthetic(node.rack)
    assert node.name in node.rack
    other = Node.from_object(make_node("other", zone="us-east-1a", rack=None))
    assert other.rack != node.rack
    assert other.zone == node.zone


def test_legacy_failure_domain_labels_are_the_fallback() -> None:
    node = Node.from_object(make_node("n1", region="eu-west-1", zone="eu-west-1b", legacy_labels_only=True))
    assert labels.ZONE not in node.labels
    assert node.region == "eu-west-1"
    assert node.zone == "eu-west-1/eu-west-1b"


def test_modern_labels_win_over_legacy_ones(eks_node: dict[str, Any]) -> None:
    obj = copy.deepcopy(eks_node)
    obj["metadata"]["labels"][labels.LEGACY_ZONE] = "us-east-1z"
    assert Node.from_object(obj).zone == "us-east-1/us-east-1a"


def test_node_missing_every_topology_label_gets_synthetic_domains_not_a_crash(eks_node: dict[str, Any]) -> None:
    obj = copy.deepcopy(eks_node)
    for key in (labels.REGION, labels.ZONE, labels.LEGACY_REGION, labels.LEGACY_ZONE):
        del obj["metadata"]["labels"][key]
    node = Node.from_object(obj)
    assert is_synthetic(node.region)
    assert is_synthetic(node.zone)
    assert is_synthetic(node.rack)


def test_rack_label_is_configurable() -> None:
    obj = make_node("n1", extra_labels={"example.com/rack": "R7"})
    assert Node.from_object(obj, rack_label="example.com/rack").rack == "us-east-1/us-east-1a/R7"


def test_same_rack_name_in_two_zones_is_two_racks() -> None:
    a = Node.from_object(make_node("a", zone="us-east-1a", rack="rack-1"))
    b = Node.from_object(make_node("b", zone="us-east-1b", rack="rack-1"))
    assert a.rack != b.rack


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda o: o["metadata"].pop("name"), "metadata.name"),
        (lambda o: o["status"]["allocatable"].__setitem__("cpu", "lots"), "status.allocatable"),
        (lambda o: o["metadata"]["labels"].__setitem__("x", 5), "metadata.labels.x"),
        (lambda o: o["spec"].__setitem__("taints", [{"effect": "NoSchedule"}]), "spec.taints[0]"),
        (lambda o: o["spec"].__setitem__("unschedulable", "yes"), "spec.unschedulable"),
        (lambda o: o.__setitem__("metadata", []), "metadata"),
    ],
)
def test_malformed_node_is_rejected_naming_the_field(eks_node: dict[str, Any], mutate: Any, field: str) -> None:
    obj = copy.deepcopy(eks_node)
    mutate(obj)
    with pytest.raises(ObjectError) as info:
        Node.from_object(obj)
    assert info.value.field == field
    assert field in str(info.value)


def test_taints_and_readiness_are_read() -> None:
    obj = make_node("n1", taints=[{"key": labels.DEDICATED_TAINT, "value": "kbl-a", "effect": "NoSchedule"}])
    obj["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    node = Node.from_object(obj)
    assert str(node.taints[0]) == "kbl.io/dedicated=kbl-a:NoSchedule"
    assert not node.ready


_label_values = st.one_of(st.text(max_size=8), st.integers(-(2**53), 2**53), st.none())
_label_keys = st.sampled_from([labels.ZONE, labels.REGION, labels.DEFAULT_RACK, "x", labels.KBL_LABEL])
_parts = st.sets(st.sampled_from(["labels", "annotations", "allocatable", "conditions", "spec", "status", "providerID"]))
_taint = st.fixed_dictionaries(
    {"key": st.one_of(st.text(min_size=1, max_size=5), st.none()), "effect": st.sampled_from(["NoSchedule", ""])}
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    extra_labels=st.dictionaries(_label_keys, _label_values, max_size=4),
    drop=_parts,
    taints=st.one_of(st.none(), st.lists(_taint, max_size=2)),
    flags=st.tuples(
        st.one_of(st.none(), st.booleans(), st.just("yes"), st.just(0)),
        st.sampled_from(["True", "False", "Unknown"]),
        st.sampled_from(["3920m", "4", "lots", "1.5"]),
        st.lists(st.one_of(st.just("2026-11-30T10:00:00Z"), st.none(), st.integers(0, 2**40), st.just("")), min_size=1, max_size=2),
    ),
)
def test_the_fast_readers_read_every_node_exactly_as_the_careful_one(
    eks_node: dict[str, Any],
    extra_labels: dict[str, Any],
    drop: set[str],
    taints: Any,
    flags: tuple[Any, str, str, list[Any]],
) -> None:
    """The dict reader (watch events, caches) and the bytes reader (snapshots and typed lists)."""
    unschedulable, ready, cpu, since = flags  # since: lastTransitionTime of each Ready condition
    obj = copy.deepcopy(eks_node)
    obj["metadata"]["labels"].update(extra_labels)
    obj["status"]["allocatable"]["cpu"] = cpu
    conditions = [{"type": "MemoryPressure", "status": "False", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    for i, t in enumerate(since):  # the last Ready condition decides
        cond = {"type": "Ready", "status": ready if i == len(since) - 1 else "True"}
        if t is not None:
            cond["lastTransitionTime"] = t
        conditions.append(cond)
    obj["status"]["conditions"] = conditions
    obj["spec"]["taints"] = taints
    obj["spec"]["unschedulable"] = unschedulable
    for part in sorted(drop, key=lambda p: p in ("spec", "status")):
        if part in ("labels", "annotations"):
            obj["metadata"].pop(part, None)
        elif part in ("allocatable", "conditions"):
            obj["status"].pop(part, None)
        elif part == "providerID":
            obj["spec"].pop(part, None)
        else:
            obj.pop(part, None)
    try:
        careful: Node | ObjectError = Node.read_carefully(obj)
    except ObjectError as exc:
        careful = exc
    try:
        fast: Node | ObjectError = Node.from_object(obj)
    except ObjectError as exc:
        fast = exc
    typed = _typed_node(msgspec.Raw(orjson.dumps(obj)), None, labels.DEFAULT_RACK)  # None: left to the careful reader
    if isinstance(careful, ObjectError):
        assert isinstance(fast, ObjectError)
        assert (fast.field, str(fast)) == (careful.field, str(careful))
        assert typed is None
    else:
        assert fast == careful
        assert typed is None or typed == careful
    if "conditions" not in drop and "status" not in drop and isinstance(careful, Node):
        assert careful.ready == (ready == "True")
        assert careful.ready_transition == (since[-1] if isinstance(since[-1], str) else "")
