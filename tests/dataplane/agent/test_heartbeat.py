"""The agent's heartbeat does not wait for its loop: a pass that takes long (a store scan of a
big DataSet, a slow API) never makes a live agent look silent to the reconciler, which repairs
the pieces of an agent silent past its TTL elsewhere (``--agent-ttl-s``)."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dataplane.agent.hydrating import Hydrator
from dataplane.agent.running import start_agents
from kube.api import NODE_HOLDINGS, NODES
from tests.dataplane.agent.cluster import TOKEN, ReviewingApi, node

HEARTBEAT_S = 1.0
PASS_S = 5.0


def test_a_pass_far_longer_than_the_heartbeat_never_delays_the_heartbeat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = ReviewingApi({})
    api.put(NODES, node("n1", "a"))
    original = Hydrator.reconcile
    in_pass = threading.Event()
    slow_passes: list[tuple[float, float]] = []

    def slow(self: Hydrator) -> int:
        started = time.monotonic()
        in_pass.set()
        time.sleep(PASS_S)  # as a pass stuck on a slow store scan or API call would
        try:
            return original(self)
        finally:
            slow_passes.append((started, time.monotonic()))

    monkeypatch.setattr(Hydrator, "reconcile", slow)
    (agent,) = start_agents(
        api, ["n1"], tmp_path / "nodes", token=TOKEN,
        settings={"heartbeat_s": HEARTBEAT_S, "report_min_interval_s": 0.1, "resync_s": 0.2, "scrub_interval_s": 0},
    )  # fmt: skip
    try:
        assert in_pass.wait(10)
        seen: list[tuple[float, Any]] = []
        watch_from = time.monotonic()
        while time.monotonic() - watch_from < PASS_S + 1:
            obj = api.get(NODE_HOLDINGS, "n1")
            beat = ((obj or {}).get("status") or {}).get("heartbeatTime")
            if beat is not None and (not seen or seen[-1][1] != beat):
                seen.append((time.monotonic(), beat))
            time.sleep(0.05)
    finally:
        agent.stop()
    # The loop really was stuck: a whole pass of PASS_S overlapped most of the watch.
    assert slow_passes, "the loop finished no pass"
    assert any(end - start >= PASS_S for start, end in slow_passes)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(seen)]
    assert len(seen) >= 4, seen
    assert max(gaps) < 2.5 * HEARTBEAT_S, (gaps, seen)  # a loop-driven heartbeat would show a PASS_S gap
