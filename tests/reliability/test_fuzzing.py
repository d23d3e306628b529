"""Fuzzing the extender's wire format: generated requests never get a 5xx or a wrong answer.

Two generators. Our own hypothesis strategies build kube-scheduler-shaped ``ExtenderArgs`` in
both forms (``NodeNames``, and ``Nodes`` with the real EKS node objects), in PascalCase and in
the other casings Go's decoder accepts, then mutate one field (dropped, ``null``, wrong type):
at least 1,000 cases per verb, always on. Schemathesis generates from the OpenAPI document of
:mod:`tests.reliability.schemas`: schema-valid (positive) requests must get ``200`` with a
correct answer, invalid (negative) ones ``200`` or ``400`` with the reason: 500 cases per verb
and mode always on (1,000 per verb), 1,000 per verb and mode behind ``KBL_SLOW=1``. Every reply is judged by
:func:`tests.reliability.calling.reply_problem`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from extender.app import create_app
from extender.settings import ExtenderSettings
from extender.state import ClusterState
from tests.extender import scenarios as sc
from tests.reliability.calling import AsgiCaller, encode, reply_problem
from tests.reliability.schemas import openapi_document
from topology.snapshots import load_snapshot

VERBS = ("filter", "prioritize", "bind", "preempt")
#: Cases per verb of our own generator (always on).
WIRE_CASES = 1000
#: Schemathesis cases per verb and mode (positive and negative): always on (1,000 per verb), and
#: with KBL_SLOW=1 (2,000 per verb).
SCHEMA_CASES = 500
SCHEMA_CASES_SLOW = 1000

NODE_OBJECTS = sc.nodes(extra=[sc.dedicated_node("ded-a", "genomics"), sc.dedicated_node("ded-b", "other", rack="rack-1")])
NODE_NAMES = [n["metadata"]["name"] for n in NODE_OBJECTS]


@pytest.fixture(scope="module")
def caller() -> Iterator[AsgiCaller]:
    snapshot = sc.snapshot(extra_nodes=NODE_OBJECTS[12:], pods=[sc.pod("busy", node_name="node-0-0-0", cpu="90")])
    state = ClusterState.from_snapshot(load_snapshot(snapshot), ExtenderSettings(max_body_bytes=512 * 1024))
    caller = AsgiCaller(create_app(state))
    yield caller
    caller.close()


FAST = settings(max_examples=WIRE_CASES, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))

# ------------------------------------------------------------------ our own generator
pods = st.builds(
    sc.pod,
    name=st.sampled_from(["reader", "p-1", "x"]),
    dataset_name=st.sampled_from([sc.DATASET, "missing", None]),
    shards=st.sampled_from(["0-1", "2", "0-3", "3-0", "0-99", "", "a-b", None]),
    locality=st.sampled_from(["required", "preferred", "Required", "bogus", None]),
    kbl=st.sampled_from(["genomics", "other", None]),
    cpu=st.sampled_from(["1", "100m", "64", "0"]),
    tolerations=st.sampled_from([(), ({"operator": "Exists"},)]),
)
offered = st.lists(st.sampled_from([*NODE_NAMES, "not-in-cache"]), max_size=len(NODE_NAMES) + 1)
CASINGS: list[Callable[[str], str]] = [str, str.lower, str.upper]
casing = st.sampled_from(CASINGS)


@st.composite
def extender_args(draw: st.DrawFn) -> dict[str, Any]:
    """``ExtenderArgs`` in either form, wrapper keys in a casing Go accepts."""
    pod, names, case = draw(pods), draw(offered), draw(casing)
    if draw(st.booleans()):
        body = sc.names_args(pod, names)
    else:
        by_name = {n["metadata"]["name"]: n for n in NODE_OBJECTS}
        body = sc.nodes_args(pod, [by_name.get(n) or {"metadata": {"name": n}} for n in names])
    return {case(k): v for k, v in body.items()}


@st.composite
def bind_args(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "PodName": draw(st.sampled_from(["reader", "p-1", "x"])),
        "PodNamespace": draw(st.sampled_from([sc.NAMESPACE, "default"])),
        "PodUID": draw(st.sampled_from(["uid-reader", "", "uid-unknown"])),
        "Node": draw(st.sampled_from([*NODE_NAMES, "not-in-cache"])),
    }


@st.composite
def preempt_args(draw: st.DrawFn) -> dict[str, Any]:
    pod = draw(pods)
    nodes = draw(st.lists(st.sampled_from([*NODE_NAMES, "not-in-cache"]), max_size=4, unique=True))
    uids = st.lists(st.sampled_from(["u1", "u2", "u3"]), max_size=3, unique=True)
    if draw(st.booleans()):
        meta = {n: {"Pods": [{"UID": u} for u in draw(uids)], "NumPDBViolations": draw(st.integers(0, 3))} for n in nodes}
        return {"Pod": pod, "NodeNameToVictims": None, "NodeNameToMetaVictims": meta}
    full = {n: {"Pods": [sc.pod(f"v-{u}", uid=u) for u in draw(uids)], "NumPDBViolations": draw(st.integers(0, 3))} for n in nodes}
    return {"Pod": pod, "NodeNameToVictims": full, "NodeNameToMetaVictims": None}


WRONG = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text(max_size=8),
    st.just([]), st.just({}), st.just([1, "a"]), st.just({"x": [None]}),
)  # fmt: skip


def _paths(obj: Any, prefix: tuple[Any, ...] = (), depth: int = 0) -> list[tuple[Any, ...]]:
    """Every path into ``obj`` down to ``depth`` 6 (dict keys and list indexes)."""
    out = [prefix] if prefix else []
    if depth >= 6:
        return out
    if isinstance(obj, dict):
        for key, value in obj.items():
            out += _paths(value, (*prefix, key), depth + 1)
    elif isinstance(obj, list):
        for i, value in enumerate(obj[:3]):
            out += _paths(value, (*prefix, i), depth + 1)
    return out


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[dict[str, Any]]) -> Any:
    """A valid body with one field dropped, nulled or given a wrong type (or left intact)."""
    body = copy.deepcopy(draw(base))
    paths = _paths(body)
    if not paths or draw(st.integers(0, 9)) == 0:
        return body
    path = draw(st.sampled_from(paths))
    parent = body
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[last]
    else:
        parent[last] = draw(WRONG)
    return body


def _check_all(caller: AsgiCaller, verb: str, strategy: st.SearchStrategy[Any]) -> int:
    seen = 0

    @FAST
    @given(strategy)
    def one(body: Any) -> None:
        nonlocal seen
        seen += 1
        status, data = caller.post(f"/{verb}", encode(body))
        problem = reply_problem(verb, body, status, data)
        assert problem is None, problem

    one()
    return seen


STRATEGIES = {"filter": extender_args(), "prioritize": extender_args(), "bind": bind_args(), "preempt": preempt_args()}


@pytest.mark.parametrize("verb", VERBS)
def test_generated_and_mutated_requests_get_a_correct_answer_or_a_400_never_a_5xx(caller: AsgiCaller, verb: str) -> None:
    assert _check_all(caller, verb, mutated(STRATEGIES[verb])) >= WIRE_CASES


def test_both_request_forms_and_every_casing_give_the_same_verdict_and_scores(caller: AsgiCaller) -> None:
    @settings(max_examples=300, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(pod=pods, names=st.lists(st.sampled_from(NODE_NAMES), max_size=len(NODE_NAMES), unique=True))
    def same(pod: dict[str, Any], names: list[str]) -> None:
        by_name = {n["metadata"]["name"]: n for n in NODE_OBJECTS}
        forms = [
            sc.names_args(pod, names),
            sc.nodes_args(pod, [by_name[n] for n in names]),
            {k.lower(): v for k, v in sc.names_args(pod, names).items()},
        ]
        answers = []
        for body in forms:
            status, data = caller.post("/filter", orjson.dumps(body))
            assert status == 200, data
            reply = orjson.loads(data)
            passing = reply["NodeNames"] if reply["NodeNames"] is not None else [i["metadata"]["name"] for i in reply["Nodes"]["items"]]
            status, scores = caller.post("/prioritize", orjson.dumps(body))
            assert status == 200, scores
            answers.append((passing, reply["FailedNodes"], reply["FailedAndUnresolvableNodes"], orjson.loads(scores)))
        assert answers[0] == answers[1] == answers[2]

    same()


# ------------------------------------------------------------------ schemathesis
def _schemathesis(caller: AsgiCaller, verb: str, mode: GenerationMode, cases: int) -> int:
    schema = schemathesis.openapi.from_dict(openapi_document())
    operation = schema[f"/{verb}"]["POST"]
    seen = 0

    @settings(max_examples=cases, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(operation.as_strategy(generation_mode=mode))
    def one(case: Any) -> None:
        nonlocal seen
        seen += 1
        status, data = caller.post(f"/{verb}", encode(case.body))
        problem = reply_problem(verb, case.body, status, data)
        assert problem is None, problem
        if mode == GenerationMode.POSITIVE:
            assert status == 200, f"a schema-valid request was refused: {data!r:.300}"

    one()
    return seen


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
@pytest.mark.parametrize("verb", VERBS)
def test_schemathesis_cases_from_the_openapi_document_never_get_a_5xx(caller: AsgiCaller, verb: str, mode: GenerationMode) -> None:
    assert _schemathesis(caller, verb, mode, SCHEMA_CASES) >= SCHEMA_CASES


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
@pytest.mark.parametrize("verb", VERBS)
def test_schemathesis_1000_cases_per_verb_and_mode_never_get_a_5xx(caller: AsgiCaller, verb: str, mode: GenerationMode) -> None:
    assert _schemathesis(caller, verb, mode, SCHEMA_CASES_SLOW) >= SCHEMA_CASES_SLOW
