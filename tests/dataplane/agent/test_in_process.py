"""Agents in threads of the test process over MemoryApi, real files and real HTTP on loopback.

The placement is written by the test (as the reconciler would): the reconciler is built and
tested elsewhere and is not what these tests claim to test. Every scenario asserts bytes on disk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dataplane.agent.running import Agent, start_agents
from dataplane.agent.scrubbing import scrub_once
from kube.api import DATASETS, NODE_HOLDINGS, NODES
from tests.dataplane.agent.cluster import (
    NS,
    TOKEN,
    ReviewingApi,
    dataset,
    grant_dataset_reads,
    holdings,
    node,
    put_dataset,
    ready_on,
    wait_for,
    write_source,
)

SIZE = 64 * 1024 + 17
NODES_ZONES = {"n1": "a", "n2": "a", "n3": "b", "n4": "b"}


@pytest.fixture
def api() -> ReviewingApi:
    api = ReviewingApi({"sa-token-good": "system:serviceaccount:ml:reader"})
    grant_dataset_reads(api, NS, "reader")
    for name, zone in NODES_ZONES.items():
        api.put(NODES, node(name, zone))
    return api


@pytest.fixture
def agents(api: ReviewingApi, tmp_path: Path) -> Iterator[dict[str, Agent]]:
    running = start_agents(
        api,
        list(NODES_ZONES),
        tmp_path / "nodes",
        token=TOKEN,
        token_review=True,
        settings={"report_min_interval_s": 0.1, "resync_s": 0.2, "scrub_interval_s": 0},
    )
    yield {a.settings.node: a for a in running}
    for a in running:
        a.stop()


def get(agent: Agent, path: str, token: str | None = TOKEN, headers: dict[str, str] | None = None) -> httpx.Response:
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    return httpx.get(agent.endpoint + path, headers=h, timeout=10)


def on_disk(agent: Agent, ds: str, name: str) -> bytes | None:
    """The file's bytes, or ``None`` when it is not there (the agent may delete it while we look)."""
    try:
        return (Path(agent.settings.root) / NS / ds / name).read_bytes()
    except FileNotFoundError:
        return None


def test_replicas_become_ready_byte_identical_and_reported(api: ReviewingApi, agents: dict[str, Agent], tmp_path: Path) -> None:
    src = write_source(tmp_path / "src", 4, SIZE)
    rows = [[0, 2], [1, 3], [0, 3], [1, 2]]
    put_dataset(
        api,
        dataset(
            "r",
            shards=4,
            size=SIZE,
            redundancy={"replicas": 2},
            nodes=["n1", "n2", "n3", "n4"],
            rows=rows,
            source={"path": str(tmp_path / "src")},
        ),
    )
    names = ["n1", "n2", "n3", "n4"]
    for s, row in enumerate(rows):
        for idx in row:
            wait_for(f"shard {s} on {names[idx]}", lambda n=names[idx], s=s: s in ready_on(api, n, "r", "replica"))  # type: ignore[misc]
            assert on_disk(agents[names[idx]], "r", f"part-{s:03d}.bin") == src[s]
    # Nothing where the placement puts nothing.
    assert on_disk(agents["n2"], "r", "part-000.bin") is None
    h = holdings(api, "n1")
    assert h is not None
    assert h.endpoint == agents["n1"].endpoint
    assert h.capacity_bytes > 0
    obj = api.get(NODE_HOLDINGS, "n1")
    assert obj is not None
    assert obj["metadata"]["ownerReferences"][0]["uid"] == "uid-n1"


def test_erasure_fragments_are_encoded_and_a_shard_reads_back_whole_with_ranges(
    api: ReviewingApi, agents: dict[str, Agent], tmp_path: Path
) -> None:
    src = write_source(tmp_path / "src", 2, SIZE)
    put_dataset(
        api,
        dataset(
            "e",
            shards=2,
            size=SIZE,
            redundancy={"erasure": {"data": 2, "parity": 1}},
            nodes=["n1", "n2", "n3"],
            rows=[[0, 1, 2], [1, 2, 0]],
            source={"path": str(tmp_path / "src")},
        ),
    )
    wait_for("every fragment ready", lambda: all(ready_on(api, n, "e", str(p)) for n, p in (("n1", 0), ("n2", 1), ("n3", 2))))
    wait_for("shard 1 fragments", lambda: 1 in ready_on(api, "n1", "e", "2") and 1 in ready_on(api, "n2", "e", "0"))
    assert (Path(agents["n1"].settings.root) / NS / "e" / ".pieces" / "0.0").exists()
    (tmp_path / "src").rename(tmp_path / "gone")  # decoding must not need the source
    r = get(agents["n4"], f"/v1/namespaces/{NS}/datasets/e/shards/1")
    assert r.status_code == 200
    assert r.content == src[1]
    r = get(agents["n1"], f"/v1/namespaces/{NS}/datasets/e/shards/0", headers={"Range": "bytes=100-199"})
    assert r.status_code == 206
    assert r.content == src[0][100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{SIZE}"


def test_reads_need_a_token_a_token_review_accepts_and_ranges_are_honoured(
    api: ReviewingApi, agents: dict[str, Agent], tmp_path: Path
) -> None:
    src = write_source(tmp_path / "src", 1, SIZE)
    put_dataset(
        api, dataset("a", shards=1, size=SIZE, redundancy={"replicas": 1}, nodes=["n1"], rows=[[0]], source={"path": str(tmp_path / "src")})
    )
    wait_for("ready", lambda: 0 in ready_on(api, "n1", "a", "replica"))
    path = f"/v1/namespaces/{NS}/datasets/a/shards/0"
    assert get(agents["n1"], path, token=None).status_code == 401
    assert get(agents["n1"], path, token="forged").status_code == 401
    assert get(agents["n1"], f"/v1/namespaces/{NS}/datasets/a/pieces/0/replica", token=None).status_code == 401
    before = len(api.reviews)
    for _ in range(3):
        r = get(agents["n1"], path, token="sa-token-good")
        assert r.status_code == 200
        assert r.content == src[0]
    reviews = [rv for rv in api.reviews[before:] if rv["spec"]["token"] == "sa-token-good"]
    assert len(reviews) == 1, "the TokenReview answer is cached"
    assert reviews[0]["spec"]["audiences"] == ["kbl-agent"]
    r = get(agents["n1"], path, headers={"Range": "bytes=-10"})
    assert r.status_code == 206
    assert r.content == src[0][-10:]
    r = get(agents["n1"], path, headers={"Range": f"bytes={SIZE}-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{SIZE}"
    # n2 holds nothing: it reads through the holder.
    r = get(agents["n2"], path, headers={"Range": "bytes=5-9"})
    assert r.status_code == 206
    assert r.content == src[0][5:10]
    r = get(agents["n2"], path + "?local=true")
    assert r.status_code == 404


def test_a_bit_flip_is_found_by_the_scrub_quarantined_and_repaired_from_a_peer(
    api: ReviewingApi, agents: dict[str, Agent], tmp_path: Path
) -> None:
    src = write_source(tmp_path / "src", 1, SIZE)
    put_dataset(
        api,
        dataset(
            "f", shards=1, size=SIZE, redundancy={"replicas": 2}, nodes=["n1", "n2"], rows=[[0, 1]], source={"path": str(tmp_path / "src")}
        ),
    )
    wait_for("both ready", lambda: 0 in ready_on(api, "n1", "f", "replica") and 0 in ready_on(api, "n2", "f", "replica"))
    (tmp_path / "src").rename(tmp_path / "gone")
    path = Path(agents["n1"].settings.root) / NS / "f" / "part-000.bin"
    raw = bytearray(path.read_bytes())
    raw[1234] ^= 0x10
    path.write_bytes(bytes(raw))
    assert scrub_once(agents["n1"].hydrator) == (1, 1)
    assert (Path(agents["n1"].settings.root) / ".kbl-quarantine" / NS / "f" / "0.replica").read_bytes() == bytes(raw)
    # The metric is counted just after the piece is renamed into place: wait for both.
    wait_for(
        "repaired from the peer",
        lambda: path.exists() and path.read_bytes() == src[0] and agents["n1"].metrics.hydrated("peer-zone") == SIZE,
    )
    wait_for("reported ready again", lambda: 0 in ready_on(api, "n1", "f", "replica"))
    assert any(e["reason"] == "PieceCorrupt" for e in api.events)


def test_a_full_disk_is_reported_and_nothing_half_written_remains(api: ReviewingApi, tmp_path: Path) -> None:
    write_source(tmp_path / "src", 3, SIZE)
    agent = start_agents(
        api,
        ["n1"],
        tmp_path / "small",
        token=TOKEN,
        settings={"capacity_bytes": SIZE + SIZE // 2, "report_min_interval_s": 0.1, "resync_s": 0.2, "parallel_copies": 1},
    )[0]
    try:
        put_dataset(
            api,
            dataset(
                "big",
                shards=3,
                size=SIZE,
                redundancy={"replicas": 1},
                nodes=["n1"],
                rows=[[0], [0], [0]],
                source={"path": str(tmp_path / "src")},
            ),
        )

        def reported() -> bool:
            obj: Any = api.get(NODE_HOLDINGS, "n1")
            return bool(obj) and any(c["type"] == "DiskFull" for c in obj["status"].get("conditions", []))

        wait_for("DiskFull in the holdings", reported)
        assert any(e["reason"] == "DiskFull" for e in api.events)
        folder = Path(agent.settings.root) / NS / "big"
        whole = [p for p in folder.iterdir() if p.is_file()]
        assert len(whole) == 1
        assert whole[0].stat().st_size == SIZE  # one fits, whole; the others are absent, not partial
        assert list((Path(agent.settings.root) / ".kbl-tmp").iterdir()) == []
        assert len(ready_on(api, "n1", "big", "replica")) == 1
    finally:
        agent.stop()


def test_a_released_piece_is_deleted_only_after_its_transfer_ends_and_a_deleted_dataset_leaves(
    api: ReviewingApi, agents: dict[str, Agent], tmp_path: Path
) -> None:
    src = write_source(tmp_path / "src", 1, SIZE)
    base = {"shards": 1, "size": SIZE, "redundancy": {"replicas": 1}, "source": {"path": str(tmp_path / "src")}}
    put_dataset(api, dataset("m", nodes=["n1"], rows=[[0]], **base))  # type: ignore[arg-type]
    wait_for("on n1", lambda: 0 in ready_on(api, "n1", "m", "replica"))
    (tmp_path / "src").rename(tmp_path / "gone")
    # Make before break: the slot moves to n2 while n1 stays the transfer's source.
    put_dataset(api, dataset("m", nodes=["n2"], rows=[[0]], transfers=[{"shard": 0, "piece": 0, "from": "n1", "to": "n2"}], **base))  # type: ignore[arg-type]
    wait_for("on n2", lambda: 0 in ready_on(api, "n2", "m", "replica"))
    assert on_disk(agents["n2"], "m", "part-000.bin") == src[0]
    assert on_disk(agents["n1"], "m", "part-000.bin") == src[0], "kept while the transfer names n1"
    put_dataset(api, dataset("m", nodes=["n2"], rows=[[0]], **base))  # type: ignore[arg-type]
    wait_for("released on n1", lambda: on_disk(agents["n1"], "m", "part-000.bin") is None)
    api.delete(DATASETS, "m", NS)
    wait_for("folder gone on n2", lambda: not (Path(agents["n2"].settings.root) / NS / "m").exists())


def test_a_dataset_recreated_with_another_uid_starts_over(api: ReviewingApi, agents: dict[str, Agent], tmp_path: Path) -> None:
    write_source(tmp_path / "src", 1, SIZE)
    base = {
        "shards": 1,
        "size": SIZE,
        "redundancy": {"replicas": 1},
        "nodes": ["n1"],
        "rows": [[0]],
        "source": {"path": str(tmp_path / "src")},
    }
    put_dataset(api, dataset("u", uid="one", **base))  # type: ignore[arg-type]
    wait_for("ready", lambda: 0 in ready_on(api, "n1", "u", "replica"))
    new = write_source(tmp_path / "src", 1, SIZE, seed=99)
    put_dataset(api, dataset("u", uid="two", **base))  # type: ignore[arg-type]
    wait_for("new bytes", lambda: on_disk(agents["n1"], "u", "part-000.bin") == new[0])
    assert (Path(agents["n1"].settings.root) / NS / "u" / ".kbl" / "uid").read_text() == "two"
    assert hashlib.sha256(new[0]).hexdigest() != ""


def test_a_dataset_that_stops_parsing_keeps_its_bytes(api: ReviewingApi, agents: dict[str, Agent], tmp_path: Path) -> None:
    src = write_source(tmp_path / "src", 1, SIZE)
    base = {
        "shards": 1,
        "size": SIZE,
        "redundancy": {"replicas": 1},
        "nodes": ["n1"],
        "rows": [[0]],
        "source": {"path": str(tmp_path / "src")},
    }
    put_dataset(api, dataset("t", **base))  # type: ignore[arg-type]
    wait_for("ready", lambda: 0 in ready_on(api, "n1", "t", "replica"))
    broken = dataset("t", **base)  # type: ignore[arg-type]
    broken["spec"]["redundancy"] = {"replicas": 0}
    put_dataset(api, broken)
    wait_for("the broken version seen", lambda: "ml/t" in agents["n1"].view.invalid)
    agents["n1"].hydrator.reconcile()
    assert on_disk(agents["n1"], "t", "part-000.bin") == src[0]
