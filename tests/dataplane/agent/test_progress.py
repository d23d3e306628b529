"""The agent's per-DataSet progress gauges, read from its own Prometheus registry while a real
agent (a thread of the test process, real files, MemoryApi) hydrates a throttled DataSet.

The placement is written by the test as the reconciler would; what is claimed here is only what
the agent's gauges say about its own hydration.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataplane.agent.running import Agent, start_agents
from kube.api import DATASETS, NODES
from kube.memory import MemoryApi
from tests.dataplane.agent.cluster import NS, TOKEN, dataset, node, put_dataset, ready_on, wait_for, write_source

SHARDS = 4
SIZE = 384 * 1024
RATE = 512 * 1024  # bytes per second: the whole DataSet takes about 3 s


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[MemoryApi, Agent]]:
    api = MemoryApi()
    api.put(NODES, node("n1", "a"))
    running = start_agents(
        api,
        ["n1"],
        tmp_path / "nodes",
        token=TOKEN,
        settings={
            "report_min_interval_s": 0.1,
            "resync_s": 0.2,
            "scrub_interval_s": 0,
            "bandwidth_bytes_per_s": RATE,
            "burst_bytes": 64 * 1024,
            "parallel_copies": 1,
        },
    )
    yield api, running[0]
    for a in running:
        a.stop()


def _sample(agent: Agent, metric: str) -> float | None:
    return agent.metrics.registry.get_sample_value(metric, {"namespace": NS, "name": "ds"})


def test_the_per_dataset_gauges_count_down_the_bytes_left_show_the_throughput_and_leave_with_the_dataset(
    agent: tuple[MemoryApi, Agent], tmp_path: Path
) -> None:
    api, a = agent
    write_source(tmp_path / "src", SHARDS, SIZE)
    put_dataset(
        api,
        dataset(
            "ds",
            shards=SHARDS,
            size=SIZE,
            redundancy={"replicas": 1},
            nodes=["n1"],
            rows=[[0]] * SHARDS,
            source={"path": str(tmp_path / "src")},
        ),
    )
    remaining: list[float] = []
    rates: list[float] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(ready_on(api, "n1", "ds", "replica")) < SHARDS:
        left = _sample(a, "kbl_agent_dataset_bytes_remaining")
        rate = _sample(a, "kbl_agent_dataset_throughput_bytes_per_second")
        if left is not None:
            remaining.append(left)
        if rate is not None:
            rates.append(rate)
        time.sleep(0.05)
    wait_for("every shard ready", lambda: len(ready_on(api, "n1", "ds", "replica")) == SHARDS, 60)
    wait_for("nothing left to hydrate", lambda: _sample(a, "kbl_agent_dataset_bytes_remaining") == 0, 10)

    assert remaining, "the gauge never appeared while the DataSet hydrated"
    assert max(remaining) <= SHARDS * SIZE
    assert max(remaining) > 0
    assert all(later <= earlier for earlier, later in itertools.pairwise(remaining)), "bytes left never grow"
    # The moving average starts from 0 and is sampled once a second: after ~3 s of throttled
    # copying it is positive and cannot exceed what the bucket lets through (plus its burst).
    final_rate = _sample(a, "kbl_agent_dataset_throughput_bytes_per_second")
    assert final_rate is not None
    assert 0 < max([*rates, final_rate]) <= 2 * RATE

    api.delete(DATASETS, "ds", namespace=NS)
    wait_for("the gauges go with the DataSet", lambda: _sample(a, "kbl_agent_dataset_bytes_remaining") is None, 10)
    assert _sample(a, "kbl_agent_dataset_throughput_bytes_per_second") is None
