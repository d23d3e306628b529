"""Informers against kmock's Kubernetes emulator over real HTTP: sync, drop and resume, 410 relist."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from extender.app import create_app
from extender.serving import start_informers
from extender.state import ClusterState
from kube.api import DATASETS, NODES, PODS, WatchEvent
from kube.client import KubeClient
from kube.watching import Informer, InformerSettings
from tests.extender import scenarios as sc
from tests.kube.emulators import Emulator
from topology.examples import make_node

FAST = InformerSettings(watch_timeout_s=5, backoff_s=0.05, max_backoff_s=0.2, seed=7)


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


class Recorder:
    def __init__(self) -> None:
        self.events: list[WatchEvent] = []
        self.relists: list[list[Mapping[str, Any]]] = []

    def on_event(self, event: WatchEvent) -> None:
        self.events.append(event)

    def on_relist(self, items: Iterable[Mapping[str, Any]]) -> None:
        self.relists.append(list(items))

    def names(self) -> list[str]:
        return [e.object["metadata"]["name"] for e in self.events]


def informer(emu: Emulator, rec: Recorder, resource: Any = NODES) -> Informer:
    return Informer(KubeClient.from_url(emu.url), resource, on_event=rec.on_event, on_relist=rec.on_relist, settings=FAST)


def test_informer_is_synced_only_after_the_first_full_list_then_streams_changes(emulator: Emulator) -> None:
    emulator.post("/api/v1/nodes", make_node("n1"))
    rec = Recorder()
    inf = informer(emulator, rec)
    assert not inf.synced.is_set()
    inf.start()
    assert inf.synced.wait(10)
    assert [o["metadata"]["name"] for o in rec.relists[0]] == ["n1"]
    emulator.post("/api/v1/nodes", make_node("n2"))
    wait_for(lambda: "n2" in rec.names())
    assert inf.stop(5)


def test_a_dropped_watch_resumes_from_the_last_resource_version(emulator: Emulator) -> None:
    # The first watch streams one event and the connection ends, as a proxy or API server restart does.
    emulator.kmock["watch"][:1] << ({"type": "ADDED", "object": {"metadata": {"name": "n0", "resourceVersion": "7"}}},)
    rec = Recorder()
    inf = informer(emulator, rec).start()
    assert inf.synced.wait(10)
    wait_for(lambda: inf.watches >= 2)
    emulator.post("/api/v1/nodes", make_node("after-drop"))
    wait_for(lambda: "after-drop" in rec.names())
    assert inf.lists == 1  # resumed, not relisted
    watches = emulator.requests("watch")
    assert watches[1].params["resourceVersion"] == "7"
    assert "n0" in rec.names()
    assert inf.stop(5)


def test_410_gone_forces_a_relist_that_forgets_deleted_objects(emulator: Emulator) -> None:
    emulator.post("/api/v1/nodes", make_node("stays"))
    emulator.post("/api/v1/nodes", make_node("goes"))
    state = ClusterState(expect=(NODES,))
    emulator.kmock["watch"][:1] << 410
    inf = Informer(
        KubeClient.from_url(emulator.url),
        NODES,
        on_event=lambda e: state.apply(e, NODES),
        on_relist=lambda items: state.replace(NODES, items),
        settings=FAST,
    )
    inf.start()
    wait_for(lambda: inf.lists >= 2)
    assert inf.errors >= 1
    assert "410" in (inf.last_error or "") or "Gone" in (inf.last_error or "")
    emulator.delete("/api/v1/nodes/goes")
    wait_for(lambda: "goes" not in state.cluster.nodes)
    assert set(state.cluster.nodes) == {"stays"}
    assert state.relists["nodes"] >= 2
    assert inf.stop(5)


def test_410_sent_as_an_error_event_inside_the_stream_also_relists(emulator: Emulator) -> None:
    gone = {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "code": 410,
            "reason": "Expired",
            "message": "too old resource version: 1 (42)",
        },
    }
    emulator.kmock["watch"][:1] << (gone,)
    rec = Recorder()
    inf = informer(emulator, rec).start()
    wait_for(lambda: inf.lists >= 2)
    assert inf.last_error is not None
    assert "too old resource version" in inf.last_error
    assert inf.stop(5)


def test_server_errors_back_off_and_recover(emulator: Emulator) -> None:
    emulator.kmock["watch"][:2] << 500
    rec = Recorder()
    inf = informer(emulator, rec).start()
    assert inf.synced.wait(10)
    wait_for(lambda: inf.watches >= 3)
    emulator.post("/api/v1/nodes", make_node("late"))
    wait_for(lambda: "late" in rec.names())
    assert inf.errors == 2
    assert inf.lists == 1
    assert inf.stop(5)


def test_stop_ends_a_blocked_watch_at_once(emulator: Emulator) -> None:
    rec = Recorder()
    inf = Informer(
        KubeClient.from_url(emulator.url),
        NODES,
        on_event=rec.on_event,
        on_relist=rec.on_relist,
        settings=InformerSettings(watch_timeout_s=300),
    ).start()
    assert inf.synced.wait(10)
    wait_for(lambda: inf.watches >= 1)
    started = time.monotonic()
    assert inf.stop(5)
    assert time.monotonic() - started < 5


def test_extender_behind_informers_is_ready_after_sync_and_scores_from_the_watched_state(emulator: Emulator) -> None:
    for node in sc.nodes():
        emulator.post("/api/v1/nodes", node)
    emulator.post(f"/apis/kbl.io/v1alpha1/namespaces/{sc.NAMESPACE}/datasets", sc.dataset())
    state = ClusterState(expect=(NODES, PODS, DATASETS))
    app = create_app(state)
    assert sc.call(app, "/readyz", method="GET").status_code == 503
    client = KubeClient.from_url(emulator.url)
    informers = start_informers(state, client, (NODES, PODS, DATASETS), FAST)
    wait_for(lambda: state.ready)
    assert sc.call(app, "/readyz", method="GET").status_code == 200
    got = sc.scores(sc.call(app, "/prioritize", sc.names_args(sc.pod(), ["node-0-0-0", "node-0-1-1"])))
    assert got == {"node-0-0-0": 10, "node-0-1-1": 0}
    emulator.post(f"/api/v1/namespaces/{sc.NAMESPACE}/pods", sc.pod("bound", cpu="63", node_name="node-0-0-0"))
    wait_for(lambda: state.pod("uid-bound") is not None)
    got = sc.scores(sc.call(app, "/prioritize", sc.names_args(sc.pod(), ["node-0-0-0", "node-0-0-1"])))
    assert got["node-0-0-1"] == 10  # the holder is full now: its rack-mate wins
    for inf in informers:
        assert inf.stop(5)
