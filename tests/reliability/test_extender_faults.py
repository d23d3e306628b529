"""The extender under API-server faults: restarts, slow or unreachable API servers.

While the cache has not finished its first full sync, ``/readyz`` is ``503`` and filter gives
no wrong answer: a node is never passed on the strength of something the cache has not seen
yet (a DataSet placement for required locality, the dedicated taint of a node). Once synced, the
extender keeps answering from its cache however slow or absent the API server is, and stays
ready. Dropped watches and ``410 Gone`` are covered by ``tests/kube/test_watching.py``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from extender.app import create_app
from extender.serving import WATCHED, start_informers
from extender.state import ClusterState
from kube.api import DATASETS, KBLS, NODES, PLACEMENT_SLICES, PODS, ApiError, Resource, WatchEvent
from kube.watching import InformerSettings
from tests.extender import scenarios as sc
from tests.kube.fakekube import FakeKube
from tests.reliability.calling import AsgiCaller, reply_problem
from tests.reliability.servers import running

FAST = InformerSettings(watch_timeout_s=1, backoff_s=0.02, max_backoff_s=0.1, seed=3)
#: Nodes holding shards 0 and 1 of the scenario's DataSet (what a required pod may be given).
HOLDERS = {"node-0-0-0", "node-1-0-0"}
DEDICATED = sc.dedicated_node("ded-a", "alpha")
OFFERED = ["ded-a", "node-0-0-0", "node-0-1-0", "node-1-0-0", "node-1-1-1"]
REQUIRED = sc.pod("needs-data", locality="required", tolerations=[{"operator": "Exists"}])
FOREIGN = sc.pod("tolerates-all", dataset_name=None, shards=None, tolerations=[{"operator": "Exists"}])


def _objects() -> dict[str, list[dict[str, Any]]]:
    return {
        NODES.plural: [*sc.nodes(), DEDICATED],
        PODS.plural: [sc.pod("running", node_name="node-0-1-0")],
        DATASETS.plural: [sc.dataset()],
        KBLS.plural: [],
        PLACEMENT_SLICES.plural: [],
    }


def _wrong(verb_reply: dict[str, Any], pod: dict[str, Any]) -> list[str]:
    """Offered nodes the filter passed although the true cluster says it must not."""
    passing = set(verb_reply["NodeNames"])
    if pod is REQUIRED:
        return sorted(passing - HOLDERS)
    return sorted(passing & {"ded-a"})


def _filter(caller: AsgiCaller, pod: dict[str, Any]) -> dict[str, Any]:
    request = sc.names_args(pod, OFFERED)
    status, data = caller.post("/filter", orjson.dumps(request))
    assert reply_problem("filter", request, status, data) is None
    assert status == 200
    reply: dict[str, Any] = orjson.loads(data)
    return reply


@pytest.mark.parametrize("order", list(itertools.permutations([NODES, PODS, DATASETS, KBLS])), ids=lambda o: "-".join(r.plural for r in o))
def test_at_every_point_of_a_restart_sync_the_filter_gives_no_wrong_answer(order: tuple[Resource, ...]) -> None:
    state = ClusterState(expect=WATCHED)
    caller = AsgiCaller(create_app(state))
    objects = _objects()
    order = (*order, PLACEMENT_SLICES)  # the DataSet is inline; the slices' list still gates readiness
    try:
        for step, resource in enumerate([None, *order]):
            if resource is not None:
                state.replace(resource, objects[resource.plural])
            assert state.ready == (step == len(order))
            for pod in (REQUIRED, FOREIGN):
                reply = _filter(caller, pod)
                assert _wrong(reply, pod) == [], f"after syncing {[r.plural for r in order[:step]]}: {reply}"
        # Fully synced: scheduling works (the holders pass, the foreign pod gets the shared nodes).
        assert set(_filter(caller, REQUIRED)["NodeNames"]) == HOLDERS
        assert "ded-a" not in _filter(caller, FOREIGN)["NodeNames"]
        assert len(_filter(caller, FOREIGN)["NodeNames"]) == len(OFFERED) - 1
    finally:
        caller.close()


class FlakyApi(FakeKube):
    """A FakeKube whose lists and watches can be made slow (``delay_s``) or fail (``down``)."""

    def __init__(self) -> None:
        super().__init__()
        self.delay_s = 0.0
        self.down = False

    def _gate(self) -> None:
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.down:
            raise ApiError(0, "connection refused (API server down)")

    def list(
        self, resource: Resource, *, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        self._gate()
        return super().list(resource, namespace=namespace, label_selector=label_selector)

    def watch(self, resource: Resource, *, resource_version: str, timeout_s: int = 300) -> Iterator[WatchEvent]:
        self._gate()
        yield from super().watch(resource, resource_version=resource_version, timeout_s=timeout_s)


def _flaky_cluster() -> FlakyApi:
    api = FlakyApi()
    for plural, objs in _objects().items():
        resource = next(r for r in WATCHED if r.plural == plural)
        for obj in objs:
            api.put(resource, obj)
    return api


def test_restart_under_load_with_a_slow_api_server_is_unready_until_synced_and_never_wrong() -> None:
    api = _flaky_cluster()
    api.delay_s = 0.4  # every list and watch takes 0.4 s: the first sync takes seconds
    state = ClusterState(expect=WATCHED)
    answers: list[tuple[bool, str, dict[str, Any]]] = []
    readiness: list[tuple[bool, bool, int]] = []
    errors: list[str] = []
    with running(create_app(state)) as port:
        stop = threading.Event()

        def load() -> None:  # kube-scheduler keeps calling while the extender restarts
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                while not stop.is_set():
                    for pod in (REQUIRED, FOREIGN):
                        was_ready = state.ready
                        try:
                            reply = client.post("/filter", content=orjson.dumps(sc.names_args(pod, OFFERED)))
                            ready = client.get("/readyz")
                            after = state.ready
                        except httpx.HTTPError as exc:
                            errors.append(repr(exc))
                            continue
                        if reply.status_code != 200:
                            errors.append(f"HTTP {reply.status_code}")
                            continue
                        answers.append((was_ready, "required" if pod is REQUIRED else "foreign", reply.json()))
                        readiness.append((was_ready, after, ready.status_code))

        clients = [threading.Thread(target=load, daemon=True) for _ in range(4)]
        for t in clients:
            t.start()
        landed = time.monotonic() + 30  # the scheduler was calling before the informers started
        while not answers and not errors:
            assert time.monotonic() < landed, "no request landed at all"
            time.sleep(0.01)
        informers = start_informers(state, api, settings=FAST)
        try:
            deadline = time.monotonic() + 30
            while not state.ready:
                assert time.monotonic() < deadline, "never synced"
                time.sleep(0.05)
            time.sleep(0.5)  # keep the load on after the sync
        finally:
            stop.set()
            for t in clients:
                t.join(10)
            for informer in informers:
                informer.stop(5)
    assert errors == []
    assert any(not ready for ready, _, _ in answers), "no request landed before the sync ended"
    assert any(ready for ready, _, _ in answers)
    for _, kind, reply in answers:
        assert _wrong(reply, REQUIRED if kind == "required" else FOREIGN) == [], reply
    assert any(not after for _, after, _ in readiness)
    assert all(code == 503 for _, after, code in readiness if not after), "ready before the first full sync"
    assert all(code == 200 for before, _, code in readiness if before), "unready after the sync"
    synced = [reply for ready, kind, reply in answers if ready and kind == "required"]
    assert synced
    assert all(set(reply["NodeNames"]) == HOLDERS for reply in synced)


def test_after_the_sync_the_extender_answers_from_its_cache_while_the_api_server_is_slow_or_down() -> None:
    api = _flaky_cluster()
    state = ClusterState(expect=WATCHED)
    informers = start_informers(state, api, settings=FAST)
    caller = AsgiCaller(create_app(state))
    try:
        deadline = time.monotonic() + 10
        while not state.ready:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        before = _filter(caller, REQUIRED)
        for delay_s, down in ((3.0, False), (0.0, True)):
            api.delay_s, api.down = delay_s, down
            time.sleep(0.3)  # the informers are now stuck in a slow call or backing off
            started = time.monotonic()
            assert _filter(caller, REQUIRED) == before
            assert time.monotonic() - started < 2.0  # answered from the cache, not after the 3 s API call
            assert state.ready
        api.delay_s, api.down = 0.0, False
        api.put(DATASETS, {**sc.dataset(), "status": {"placement": {"nodes": ["node-0-1-0", "node-1-1-0"], "shards": [[0, 1]] * 4}}})
        deadline = time.monotonic() + 10
        while set(_filter(caller, REQUIRED)["NodeNames"]) != {"node-0-1-0"}:
            assert time.monotonic() < deadline, "the recovered watch never delivered the new placement"
            time.sleep(0.05)
        assert any(i.errors for i in informers)
    finally:
        for informer in informers:
            informer.stop(5)
        caller.close()
