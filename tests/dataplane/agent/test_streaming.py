"""The zone's encoder streams its zone peers' fragments to them as it encodes (agents in threads, real HTTP on loopback).

The placement is written by the test (as the reconciler would). The agents' bandwidth is bounded
so that the encode of a 12 MiB shard lasts long enough to be watched from outside.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dataplane.agent.coding import Codec
from dataplane.agent.running import Agent, start_agents
from kube.api import NODES
from tests.dataplane.agent.cluster import (
    NS,
    TOKEN,
    ReviewingApi,
    dataset,
    grant_dataset_reads,
    node,
    put_dataset,
    ready_on,
    wait_for,
    write_source,
)

SIZE = 12 * (1 << 20) + 5
ZONE = ["n1", "n2", "n3"]


@pytest.fixture
def api() -> ReviewingApi:
    api = ReviewingApi({})
    grant_dataset_reads(api, NS, "reader")
    for name in ZONE:
        api.put(NODES, node(name, "a"))
    return api


def start(api: ReviewingApi, root: Path, **settings: float) -> dict[str, Agent]:
    base = {"report_min_interval_s": 0.1, "resync_s": 0.2, "scrub_interval_s": 0, "stream_window_segments": 2}
    running = start_agents(api, ZONE, root, token=TOKEN, token_review=True, settings={**base, **settings})
    return {a.settings.node: a for a in running}


@pytest.fixture
def slow(api: ReviewingApi, tmp_path: Path) -> Iterator[dict[str, Agent]]:
    """Three agents of one zone at 8 MB/s each (the encoder's source read is the slowest stage)."""
    agents = start(api, tmp_path / "nodes", bandwidth_bytes_per_s=8e6)
    yield agents
    for a in agents.values():
        a.stop()


def sample(agent: Agent, name: str, **labels: str) -> float:
    return agent.metrics.registry.get_sample_value(name, labels) or 0.0


def fragment(src: bytes, codec: Codec, p: int) -> bytes:
    step = 1 << 20
    return b"".join(codec.encode(src[i : i + step])[p] for i in range(0, len(src), step))


def partial_bytes(agent: Agent) -> int:
    tmp = Path(agent.settings.root) / ".kbl-tmp"
    return sum(f.stat().st_size for f in tmp.glob("*.part")) if tmp.is_dir() else 0


def test_zone_peers_receive_their_fragments_while_the_encode_runs_and_nothing_is_staged(
    api: ReviewingApi, slow: dict[str, Agent], tmp_path: Path
) -> None:
    src = write_source(tmp_path / "src", 1, SIZE)
    put_dataset(
        api,
        dataset(
            "e",
            shards=1,
            size=SIZE,
            redundancy={"erasure": {"data": 2, "parity": 1}},
            nodes=ZONE,
            rows=[[0, 1, 2]],
            source={"path": str(tmp_path / "src")},
        ),
    )
    encoder = slow["n1"].hydrator
    wait_for("the encode started", lambda: bool(encoder.live), 30)
    seen = {"n2": 0, "n3": 0}

    def watched() -> bool:
        if encoder.live:  # the encode is running: what have the holders written so far?
            for n, most in list(seen.items()):
                seen[n] = max(most, partial_bytes(slow[n]))
        return all(ready_on(api, n, "e", str(p)) == {0} for p, n in enumerate(ZONE))

    wait_for("every fragment ready", watched, 60)
    assert min(seen.values()) >= 1 << 20, f"the holders wrote their fragments during the encode: {seen}"
    codec = Codec(2, 1)
    for p, n in enumerate(ZONE):
        assert (Path(slow[n].settings.root) / NS / "e" / ".pieces" / f"0.{p}").read_bytes() == fragment(src[0], codec, p)
    assert sample(slow["n1"], "kbl_agent_streamed_fragments_total", outcome="done") == 2
    assert sample(slow["n1"], "kbl_agent_staged_fragments_total") == 0
    staging = Path(slow["n1"].settings.root) / ".kbl-staging"
    assert not any(f.is_file() for f in staging.rglob("*")) if staging.exists() else True, "nothing written twice on the encoder's disk"
    assert sample(slow["n1"], "kbl_agent_source_requests_total") == 1
    for n in ("n2", "n3"):
        assert sample(slow[n], "kbl_agent_source_requests_total") == 0, "one source read for the zone"
        assert (
            slow[n].metrics.hydrated("peer-zone")
            == (Path(slow[n].settings.root) / NS / "e" / ".pieces").joinpath(f"0.{ZONE.index(n)}").stat().st_size
        )
        assert partial_bytes(slow[n]) == 0
    r = httpx.get(f"{slow['n3'].endpoint}/v1/namespaces/{NS}/datasets/e/shards/0", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert r.content == src[0]


def test_a_live_stream_needs_the_agents_identity(api: ReviewingApi, slow: dict[str, Agent], tmp_path: Path) -> None:
    """The stream route is authorized as every piece read: no token, 401; a reader's token (may read shards), 403."""
    api.tokens["reader-token"] = "system:serviceaccount:ml:reader"
    write_source(tmp_path / "src", 1, SIZE)
    put_dataset(
        api,
        dataset(
            "e",
            shards=1,
            size=SIZE,
            redundancy={"erasure": {"data": 2, "parity": 1}},
            nodes=ZONE,
            rows=[[0, 1, 2]],
            source={"path": str(tmp_path / "src")},
        ),
    )
    wait_for("the encode started", lambda: bool(slow["n1"].hydrator.live), 30)
    url = f"{slow['n1'].endpoint}/v1/namespaces/{NS}/datasets/e/pieces/0/1/live"
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer reader-token"}, timeout=10).status_code == 403
    wait_for("every fragment ready", lambda: all(ready_on(api, n, "e", str(p)) == {0} for p, n in enumerate(ZONE)), 60)
    assert httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).status_code == 404, "no stream once encoded"


def test_without_streaming_the_encoder_stages_its_zone_peers_fragments_as_before(api: ReviewingApi, tmp_path: Path) -> None:
    agents = start(api, tmp_path / "nodes", stream_window_segments=0)
    try:
        src = write_source(tmp_path / "src", 1, 3 * (1 << 20) + 1)
        put_dataset(
            api,
            dataset(
                "e",
                shards=1,
                size=len(src[0]),
                redundancy={"erasure": {"data": 2, "parity": 1}},
                nodes=ZONE,
                rows=[[0, 1, 2]],
                source={"path": str(tmp_path / "src")},
            ),
        )
        wait_for("every fragment ready", lambda: all(ready_on(api, n, "e", str(p)) == {0} for p, n in enumerate(ZONE)), 60)
        assert sample(agents["n1"], "kbl_agent_staged_fragments_total") == 2
        assert sample(agents["n1"], "kbl_agent_streamed_fragments_total", outcome="done") == 0
        codec = Codec(2, 1)
        assert (Path(agents["n2"].settings.root) / NS / "e" / ".pieces" / "0.1").read_bytes() == fragment(src[0], codec, 1)
    finally:
        for a in agents.values():
            a.stop()
