"""Reads that check every byte, decode only what a range touches, and copies that honour the transfer.

Agents in threads of the test process over MemoryApi, real files, real HTTP on loopback, small
segments (16 KiB) so that a few hundred KiB make many. The placement is written by the test (as
the reconciler would); the reconciler is not what these tests claim to test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dataplane.agent.running import Agent, start_agents
from kube.api import NODES
from tests.dataplane.agent.cluster import NS, TOKEN, ReviewingApi, dataset, node, put_dataset, ready_on, wait_for, write_source

SEG = 16 * 1024
SIZE = 10 * SEG + 321  # eleven segments, the last one short
ZONES = {"n1": "a", "n2": "a", "n3": "a", "n4": "b", "n5": "b", "n6": "b"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def api() -> ReviewingApi:
    api = ReviewingApi({})
    for name, zone in ZONES.items():
        api.put(NODES, node(name, zone))
    return api


@pytest.fixture
def agents(api: ReviewingApi, tmp_path: Path) -> Iterator[dict[str, Agent]]:
    running = start_agents(
        api,
        list(ZONES),
        tmp_path / "nodes",
        token=TOKEN,
        settings={"report_min_interval_s": 0.1, "resync_s": 0.1, "scrub_interval_s": 0, "segment_bytes": SEG, "retry_max_s": 0.5},
    )
    yield {a.settings.node: a for a in running}
    for a in running:
        a.stop()


def flip(path: Path, at: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw))


def read(agent: Agent, ds: str, shard: int, **kwargs: str) -> httpx.Response:
    headers = {**AUTH, **({"Range": kwargs.pop("range")} if "range" in kwargs else {})}
    return httpx.get(f"{agent.endpoint}/v1/namespaces/{NS}/datasets/{ds}/shards/{shard}", headers=headers, params=kwargs, timeout=30)


def test_a_flipped_byte_in_a_replica_is_never_served_and_the_read_is_answered_from_a_good_copy(
    api: ReviewingApi, agents: dict[str, Agent], tmp_path: Path
) -> None:
    src = write_source(tmp_path / "src", 1, SIZE)
    put_dataset(
        api,
        dataset(
            "r", shards=1, size=SIZE, redundancy={"replicas": 2}, nodes=["n1", "n2"], rows=[[0, 1]], source={"path": str(tmp_path / "src")}
        ),
    )
    for n in ("n1", "n2"):
        wait_for(f"replica on {n}", lambda n=n: ready_on(api, n, "r", "replica") == {0})  # type: ignore[misc]
    path = Path(agents["n1"].settings.root) / NS / "r" / "part-000.bin"
    flip(path, 7 * SEG + 5)  # deep in the stream: the status line is out before the bad segment is met
    (tmp_path / "src").rename(tmp_path / "away")  # only n2's copy is good now
    r = read(agents["n1"], "r", 0)
    assert r.status_code == 200
    assert r.content == src[0], "the bytes after the bad segment came from n2, not from the bad file"
    assert agents["n1"].metrics.corrupt_on_read._value.get() == 1
    assert (Path(agents["n1"].settings.root) / ".kbl-quarantine" / NS / "r" / "0.replica").exists()
    wait_for("the bad replica fetched again", lambda: path.is_file() and path.read_bytes() == src[0])
    assert read(agents["n1"], "r", 0).content == src[0]


def test_a_corrupt_first_segment_with_no_good_copy_is_an_error_status_never_a_200(
    api: ReviewingApi, agents: dict[str, Agent], tmp_path: Path
) -> None:
    write_source(tmp_path / "src", 1, SIZE)
    put_dataset(
        api,
        dataset("one", shards=1, size=SIZE, redundancy={"replicas": 1}, nodes=["n1"], rows=[[0]], source={"path": str(tmp_path / "src")}),
    )
    wait_for("replica on n1", lambda: ready_on(api, "n1", "one", "replica") == {0})
    path = Path(agents["n1"].settings.root) / NS / "one" / "part-000.bin"
    flip(path, 100)
    r = read(agents["n1"], "one", 0, local="true")
    assert r.status_code == 503, r.text
    assert "checksum" in r.text


def test_a_flipped_byte_in_a_fragment_is_never_decoded_into_a_read(api: ReviewingApi, agents: dict[str, Agent], tmp_path: Path) -> None:
    src = write_source(tmp_path / "src", 1, SIZE)
    put_dataset(
        api,
        dataset(
            "ec",
            shards=1,
            size=SIZE,
            redundancy={"erasure": {"data": 4, "parity": 2}},
            nodes=list(ZONES),
            rows=[[0, 1, 2, 3, 4, 5]],
            source={"path": str(tmp_path / "src")},
        ),
    )
    for p, n in enumerate(ZONES):
        wait_for(f"fragment {p} on {n}", lambda n=n, p=p: ready_on(api, n, "ec", str(p)) == {0})  # type: ignore[misc]
    fragment = Path(agents["n1"].settings.root) / NS / "ec" / ".pieces" / "0.0"
    flip(fragment, fragment.stat().st_size // 2)
    r = read(agents["n1"], "ec", 0)
    assert r.status_code == 200
    assert r.content == src[0]
    assert (Path(agents["n1"].settings.root) / ".kbl-quarantine" / NS / "ec" / "0.0").exists()
    wait_for("the bad fragment rebuilt", lambda: ready_on(api, "n1", "ec", "0") == {0} and fragment.is_file())
    assert read(agents["n2"], "ec", 0).content == src[0]


def test_a_range_read_of_an_erasure_coded_shard_decodes_only_the_segments_it_touches(
    api: ReviewingApi, agents: dict[str, Agent], tmp_path: Path
) -> None:
    src = write_source(tmp_path / "src", 1, SIZE)
    put_dataset(
        api,
        dataset(
            "ec",
            shards=1,
            size=SIZE,
            redundancy={"erasure": {"data": 4, "parity": 2}},
            nodes=list(ZONES),
            rows=[[0, 1, 2, 3, 4, 5]],
            source={"path": str(tmp_path / "src")},
        ),
    )
    for p, n in enumerate(ZONES):
        wait_for(f"fragment {p} on {n}", lambda n=n, p=p: ready_on(api, n, "ec", str(p)) == {0})  # type: ignore[misc]
    reader = agents["n4"]
    decoded = reader.metrics.decoded_segments
    before = decoded._value.get()
    r = read(reader, "ec", 0, range=f"bytes={3 * SEG + 10}-{3 * SEG + 19}")
    assert r.status_code == 206
    assert r.content == src[0][3 * SEG + 10 : 3 * SEG + 20]
    assert decoded._value.get() - before == 1, "ten bytes inside one segment decode that segment alone"
    r = read(reader, "ec", 0, range=f"bytes={SEG - 1}-{2 * SEG}")
    assert r.content == src[0][SEG - 1 : 2 * SEG + 1]
    assert decoded._value.get() - before == 1 + 3
    r = read(reader, "ec", 0, range="bytes=-5")
    assert r.content == src[0][-5:]
    # The peers' segment tables are read once, not once per ranged read.
    tables = sum(a.metrics.records_served._value.get() for a in agents.values())
    for _ in range(3):
        assert read(reader, "ec", 0, range="bytes=0-9").content == src[0][:10]
    assert sum(a.metrics.records_served._value.get() for a in agents.values()) == tables


def test_a_transfer_copies_from_its_from_node_not_the_nearest_holder(api: ReviewingApi, agents: dict[str, Agent], tmp_path: Path) -> None:
    """n1 (zone a) and n4 (zone b) hold the shard; the reconciler moves n4's slot to n2 (zone a)
    with a transfer from n4. n2 copies from n4 as told, although n1 is in its own zone."""
    write_source(tmp_path / "src", 1, SIZE)
    source = {"path": str(tmp_path / "src")}
    put_dataset(api, dataset("t", shards=1, size=SIZE, redundancy={"replicas": 2}, nodes=["n1", "n4"], rows=[[0, 1]], source=source))
    for n in ("n1", "n4"):
        wait_for(f"replica on {n}", lambda n=n: ready_on(api, n, "t", "replica") == {0})  # type: ignore[misc]
    sent = {n: agents[n].metrics.served_bytes.labels("piece")._value.get() for n in ("n1", "n4")}
    put_dataset(
        api,
        dataset(
            "t",
            shards=1,
            size=SIZE,
            redundancy={"replicas": 2},
            nodes=["n1", "n2", "n4"],
            rows=[[0, 1]],
            source=source,
            transfers=[{"shard": 0, "piece": 1, "from": "n4", "to": "n2"}],
        ),
    )
    wait_for("replica on n2", lambda: ready_on(api, "n2", "t", "replica") == {0})
    assert agents["n4"].metrics.served_bytes.labels("piece")._value.get() - sent["n4"] == SIZE
    assert agents["n1"].metrics.served_bytes.labels("piece")._value.get() == sent["n1"]


def test_a_replicated_shard_is_read_from_the_source_once_per_zone_and_copied_from_that_holder(
    api: ReviewingApi, agents: dict[str, Agent], tmp_path: Path
) -> None:
    """3x on n1, n2 (zone a) and n4 (zone b), all empty at once: n1 and n4 read the source (one
    per zone), n2 waits for n1 and copies from it."""
    src = write_source(tmp_path / "src", 2, SIZE)
    source = {"path": str(tmp_path / "src")}
    put_dataset(
        api, dataset("z", shards=2, size=SIZE, redundancy={"replicas": 3}, nodes=["n1", "n2", "n4"], rows=[[0, 1, 2]] * 2, source=source)
    )
    for n in ("n1", "n2", "n4"):
        wait_for(f"replicas on {n}", lambda n=n: ready_on(api, n, "z", "replica") == {0, 1})  # type: ignore[misc]
    reads = {n: agents[n].metrics.source_requests._value.get() for n in ZONES}
    assert reads == {"n1": 2, "n2": 0, "n3": 0, "n4": 2, "n5": 0, "n6": 0}
    assert agents["n2"].metrics.hydrated("peer-zone") == 2 * SIZE
    for n in ("n1", "n2", "n4"):
        for s in (0, 1):
            assert (Path(agents[n].settings.root) / NS / "z" / f"part-{s:03d}.bin").read_bytes() == src[s]


def test_an_agent_exports_the_bytes_it_still_has_to_hydrate_per_dataset(
    api: ReviewingApi, agents: dict[str, Agent], tmp_path: Path
) -> None:
    """n1 holds both shards; n2 is given them too but the source is gone and n1 is not yet there:
    n2 reports both shards' bytes remaining, then 0 once it has copied them from n1."""
    write_source(tmp_path / "src", 2, SIZE)
    source = {"path": str(tmp_path / "src")}
    put_dataset(api, dataset("p", shards=2, size=SIZE, redundancy={"replicas": 1}, nodes=["n1"], rows=[[0], [0]], source=source))
    wait_for("replicas on n1", lambda: ready_on(api, "n1", "p", "replica") == {0, 1})
    gauge = agents["n3"].metrics.dataset_remaining
    put_dataset(api, dataset("q", shards=2, size=SIZE, redundancy={"replicas": 1}, nodes=["n3"], rows=[[0], [0]], source=None))
    wait_for("n3 reports what it lacks", lambda: gauge.labels(NS, "q")._value.get() == 2 * SIZE)
    put_dataset(
        api, dataset("p", shards=2, size=SIZE, redundancy={"replicas": 2}, nodes=["n1", "n2"], rows=[[0, 1], [0, 1]], source=source)
    )
    wait_for("replicas on n2", lambda: ready_on(api, "n2", "p", "replica") == {0, 1})
    wait_for("nothing left to hydrate on n2", lambda: agents["n2"].metrics.dataset_remaining.labels(NS, "p")._value.get() == 0)


def test_agents_read_only_the_holdings_of_the_nodes_they_copy_from_and_nothing_in_steady_state(
    api: ReviewingApi, agents: dict[str, Agent], tmp_path: Path
) -> None:
    """No agent watches NodeHoldings; a copy reads the holdings of the placement's holders of that
    piece only; once everything is held, no agent reads any (a holdings write wakes nobody)."""
    write_source(tmp_path / "src", 4, SIZE)
    source = {"path": str(tmp_path / "src")}
    put_dataset(api, dataset("s", shards=4, size=SIZE, redundancy={"replicas": 2}, nodes=["n1", "n2"], rows=[[0, 1]] * 4, source=source))
    for n in ("n1", "n2"):
        wait_for(f"replicas on {n}", lambda n=n: ready_on(api, n, "s", "replica") == {0, 1, 2, 3})  # type: ignore[misc]
    reads = {n: a.metrics.api_reads.labels("nodeholdings")._value.get() for n, a in agents.items()}
    assert {n: reads[n] for n in ("n3", "n4", "n5", "n6")} == dict.fromkeys(("n3", "n4", "n5", "n6"), 0.0)
    assert reads["n1"] > 0 or reads["n2"] > 0  # n2 waited for n1 (its zone's reader), then copied from it
    time.sleep(1.5)  # steady state: holdings heartbeats and reports go on, nobody reads them
    assert {n: a.metrics.api_reads.labels("nodeholdings")._value.get() for n, a in agents.items()} == reads
    assert all(informer.resource.plural != "nodeholdings" for a in agents.values() for informer in a.informers)


def test_a_piece_gone_between_look_up_and_read_is_a_404_to_a_peer_and_a_good_read_to_a_pod(
    api: ReviewingApi, agents: dict[str, Agent], tmp_path: Path
) -> None:
    """A piece released (or a staged fragment cleaned up) while a request is on its way: the peer
    gets a 404 and copies from another holder, a reader still gets the shard from another copy."""
    src = write_source(tmp_path / "src", 1, SIZE)
    put_dataset(
        api,
        dataset(
            "g", shards=1, size=SIZE, redundancy={"replicas": 2}, nodes=["n1", "n2"], rows=[[0, 1]], source={"path": str(tmp_path / "src")}
        ),
    )
    for n in ("n1", "n2"):
        wait_for(f"replica on {n}", lambda n=n: ready_on(api, n, "g", "replica") == {0})  # type: ignore[misc]
    (Path(agents["n1"].settings.root) / NS / "g" / "part-000.bin").unlink()  # behind the agent's back
    r = httpx.get(f"{agents['n1'].endpoint}/v1/namespaces/{NS}/datasets/g/pieces/0/replica", headers=AUTH, timeout=30)
    assert r.status_code == 404, r.text
    r = read(agents["n1"], "g", 0)
    assert r.status_code == 200
    assert r.content == src[0]


def test_a_repair_is_copied_before_a_move_whose_old_holder_still_has_the_piece(
    api: ReviewingApi, agents: dict[str, Agent], tmp_path: Path
) -> None:
    """One copy at a time on n3 (a fresh agent with parallel_copies=1, throttled): shard 0 moves
    to n3 from n1 (n1 keeps it until released), shard 1 lost its other holder and comes to n3 too.
    The repair (no transfer) starts first; the move waits."""
    write_source(tmp_path / "src", 2, SIZE)
    source = {"path": str(tmp_path / "src")}
    put_dataset(api, dataset("o", shards=2, size=SIZE, redundancy={"replicas": 1}, nodes=["n1", "n2"], rows=[[0], [1]], source=source))
    wait_for("shard 0 on n1", lambda: ready_on(api, "n1", "o", "replica") == {0})
    wait_for("shard 1 on n2", lambda: ready_on(api, "n2", "o", "replica") == {1})
    slow = start_agents(
        api,
        ["n3b"],
        tmp_path / "slow",
        token=TOKEN,
        settings={"parallel_copies": 1, "bandwidth_bytes_per_s": SIZE, "burst_bytes": 1, "resync_s": 0.1, "report_min_interval_s": 0.1},
    )[0]
    api.put(NODES, node("n3b", "a"))
    try:
        put_dataset(
            api,
            dataset(
                "o",
                shards=2,
                size=SIZE,
                redundancy={"replicas": 1},
                nodes=["n1", "n3b"],
                rows=[[1], [1]],
                source=source,
                transfers=[{"shard": 0, "piece": 0, "from": "n1", "to": "n3b"}],
            ),
        )

        def ready_here() -> set[tuple[int, str]]:
            state = slow.hydrator.local.get(f"{NS}/o")
            return set(state.ready) if state is not None else set()

        wait_for("the first copy on n3b", lambda: len(ready_here()) >= 1)
        assert ready_here() == {(1, "replica")}, "the repair came first"
        wait_for("both on n3b", lambda: len(ready_here()) == 2)
    finally:
        slow.stop()
