"""Agents as real processes (``python -m dataplane.agent``, the parser and run of ``kbl agent``) on loopback, each with its own folder,
against kmock's Kubernetes API emulator over HTTP.

The placement is written by the test (what the placement reconciler would write after a loss):
the reconciler is built and tested elsewhere and is not what these tests claim to test. Every
scenario asserts bytes on disk.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dataplane.agent.coding import Codec
from kube.client import KubeClient
from tests.conftest import ROOT
from tests.dataplane.agent.cluster import NS, TOKEN, dataset, holdings, node, ready_on, wait_for, write_source
from tests.kube.emulators import Emulator

SIZE = 256 * 1024 + 3
ZONES = {"n1": "a", "n2": "a", "n3": "a", "n4": "a", "n5": "b"}
DATASETS = "/apis/kbl.io/v1alpha1/namespaces/ml/datasets"


class Processes:
    def __init__(self, emulator: Emulator, base: Path) -> None:
        self.emulator = emulator
        self.base = base
        self.token_file = base / "token"
        self.token_file.write_text(TOKEN + "\n")
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def root(self, name: str) -> Path:
        return self.base / "nodes" / name

    def start(self, name: str, *extra: str) -> None:
        log = open(self.base / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        cmd = [
            sys.executable,
            "-m",
            "dataplane.agent",
            "--node",
            name,
            "--root",
            str(self.root(name)),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--api-url",
            self.emulator.url,
            "--token-file",
            str(self.token_file),
            "--static-tokens-file",
            str(self.token_file),
            "--no-token-review",
            "--no-access-review",
            "--log-level",
            "info",
            *extra,
        ]
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()

    def log(self, name: str) -> str:
        return (self.base / f"{name}.log").read_text(errors="replace")[-3000:]


@pytest.fixture
def cluster(emulator: Emulator, tmp_path: Path) -> Iterator[Processes]:
    for name, zone in ZONES.items():
        emulator.post("/api/v1/nodes", node(name, zone))
    procs = Processes(emulator, tmp_path)
    yield procs
    procs.stop_all()


def patch_status(emulator: Emulator, name: str, status: dict[str, Any]) -> None:
    r = httpx.patch(
        f"{emulator.url}{DATASETS}/{name}", json={"status": status}, headers={"Content-Type": "application/merge-patch+json"}, timeout=10
    )
    assert r.status_code == 200, r.text


def wait_started(api: KubeClient, names: list[str]) -> None:
    """Every agent up and reporting (a process start imports FastAPI, kubernetes and numpy: slow on
    a loaded 2-core machine, so this wait is generous and separate from the data-plane waits)."""
    for n in names:
        wait_for(f"{n} reporting", lambda n=n: holdings(api, n) is not None, 240)  # type: ignore[misc]


def metric(endpoint: str, name: str) -> float:
    text = httpx.get(endpoint + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name) and not line.startswith("#"))


@pytest.mark.timeout(900)
def test_agents_hydrate_survive_the_loss_of_r_minus_1_and_m_holders_from_zone_peers_and_scrub_a_bit_flip(
    cluster: Processes, emulator: Emulator, tmp_path: Path
) -> None:
    """3x replicas and 2+1 erasure: Ready-equivalent (every assigned piece byte-correct, holdings
    report it), then two replica holders and one fragment holder SIGKILLed with their folders
    removed; the test re-places their slots in zone a (as the reconciler would) and the data is
    whole again, rebuilt from in-zone peers with the source moved away (zero source reads);
    then a flipped bit is found by the scrub and repaired."""
    api = KubeClient.from_url(emulator.url)
    src = write_source(tmp_path / "src", 2, SIZE)
    source = {"path": str(tmp_path / "src")}
    emulator.post(
        DATASETS,
        dataset(
            "rep", shards=2, size=SIZE, redundancy={"replicas": 3}, nodes=["n1", "n2", "n5"], rows=[[0, 1, 2], [0, 1, 2]], source=source
        ),
    )
    emulator.post(
        DATASETS,
        dataset(
            "ec",
            shards=2,
            size=SIZE,
            redundancy={"erasure": {"data": 2, "parity": 1}},
            nodes=["n1", "n2", "n3"],
            rows=[[0, 1, 2], [0, 1, 2]],
            source=source,
        ),
    )
    t0 = time.monotonic()
    for name in ZONES:
        cluster.start(name, "--scrub-interval-s", "1")
    wait_started(api, list(ZONES))
    try:
        for n in ("n1", "n2", "n5"):
            wait_for(f"rep on {n}", lambda n=n: ready_on(api, n, "rep", "replica") == {0, 1}, 120)  # type: ignore[misc]
            print(f"rep on {n} after {time.monotonic() - t0:.1f} s")
        for p, n in enumerate(("n1", "n2", "n3")):
            wait_for(f"ec fragment {p} on {n}", lambda n=n, p=p: ready_on(api, n, "ec", str(p)) == {0, 1}, 120)  # type: ignore[misc]
    except AssertionError:
        raise AssertionError(cluster.log("n1")) from None
    codec = Codec(2, 1)
    fragments = {s: codec.encode(src[s]) for s in (0, 1)}
    for n in ("n1", "n2", "n5"):
        for s in (0, 1):
            assert (cluster.root(n) / NS / "rep" / f"part-{s:03d}.bin").read_bytes() == src[s]
    for p, n in enumerate(("n1", "n2", "n3")):
        for s in (0, 1):
            assert (cluster.root(n) / NS / "ec" / ".pieces" / f"{s}.{p}").read_bytes() == fragments[s][p]
    endpoint = {n: holdings(api, n).endpoint for n in ZONES}  # type: ignore[union-attr]
    assert httpx.get(f"{endpoint['n4']}/v1/namespaces/{NS}/datasets/rep/shards/0", timeout=10).status_code == 401
    r = httpx.get(f"{endpoint['n4']}/v1/namespaces/{NS}/datasets/ec/shards/1", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert r.status_code == 200
    assert r.content == src[1]

    print(f"ready after {time.monotonic() - t0:.1f} s")
    from_source = {n: metric(endpoint[n], "kbl_agent_source_requests_total") for n in ZONES}
    # Lose r-1 = 2 replica holders (n2, n5) and m = 1 fragment holder (n2), disks gone too.
    (tmp_path / "src").rename(tmp_path / "src-away")
    for n in ("n2", "n5"):
        cluster.kill(n)
        import shutil

        shutil.rmtree(cluster.root(n))
    patch_status(emulator, "rep", {"placement": {"nodes": ["n1", "n3", "n4"], "shards": [[0, 1, 2], [0, 1, 2]]}})
    patch_status(emulator, "ec", {"placement": {"nodes": ["n1", "n4", "n3"], "shards": [[0, 1, 2], [0, 1, 2]]}})
    for n in ("n3", "n4"):
        wait_for(f"rep repaired on {n}", lambda n=n: ready_on(api, n, "rep", "replica") == {0, 1}, 120)  # type: ignore[misc]
    wait_for("fragment 1 rebuilt on n4", lambda: ready_on(api, "n4", "ec", "1") == {0, 1}, 120)
    for n in ("n1", "n3", "n4"):
        for s in (0, 1):
            assert (cluster.root(n) / NS / "rep" / f"part-{s:03d}.bin").read_bytes() == src[s]
    for s in (0, 1):
        assert (cluster.root("n4") / NS / "ec" / ".pieces" / f"{s}.1").read_bytes() == fragments[s][1]
    for n in ("n3", "n4"):
        assert metric(endpoint[n], 'kbl_agent_hydrated_bytes_total{kind="peer-zone"}') > 0
        assert metric(endpoint[n], "kbl_agent_source_requests_total") == from_source[n], cluster.log(n)
    print(f"repaired after {time.monotonic() - t0:.1f} s")

    # A bit flip on n1 is found by the scrub (every second) and repaired from an in-zone peer.
    path = cluster.root("n1") / NS / "rep" / "part-001.bin"
    raw = bytearray(path.read_bytes())
    raw[SIZE // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    quarantined = cluster.root("n1") / ".kbl-quarantine" / NS / "rep" / "1.replica"
    wait_for("bit flip quarantined", quarantined.exists, 120)
    wait_for("bit flip repaired", lambda: path.is_file() and path.read_bytes() == src[1], 120)
    assert metric(endpoint["n1"], "kbl_agent_pieces_corrupt_total") == 1
    print(f"scrubbed after {time.monotonic() - t0:.1f} s")


@pytest.mark.timeout(900)
def test_an_agent_killed_mid_copy_leaves_no_file_under_its_final_name_and_resumes_from_its_last_checkpoint(
    cluster: Processes, emulator: Emulator, tmp_path: Path
) -> None:
    """SIGKILL while a throttled copy is half done (checkpoints every 512 KiB): nothing under the
    final name; after the restart the copy goes on after its last checkpoint (the bytes before it
    are not read again) and the piece completes byte for byte, leaving no temporary file."""
    api = KubeClient.from_url(emulator.url)
    size = 6 * 1024 * 1024 + 5
    src = write_source(tmp_path / "src", 1, size)
    emulator.post(
        DATASETS,
        dataset("slow", shards=1, size=size, redundancy={"replicas": 1}, nodes=["n1"], rows=[[0]], source={"path": str(tmp_path / "src")}),
    )
    cluster.start("n1", "--bandwidth-mbps", "8", "--scrub-interval-s", "0", "--checkpoint-mib", "0.5")
    tmp = cluster.root("n1") / ".kbl-tmp"
    final = cluster.root("n1") / NS / "slow" / "part-000.bin"
    wait_for("a checkpointed copy in progress", lambda: tmp.is_dir() and any(p.name.endswith(".part.json") for p in tmp.iterdir()), 240)
    time.sleep(0.5)
    cluster.kill("n1")
    assert not final.exists()
    partial = [p for p in tmp.iterdir() if p.name.endswith(".part")]
    assert partial
    assert all(p.stat().st_size < size for p in partial)
    cluster.start("n1", "--scrub-interval-s", "0")
    wait_for("finished after restart", lambda: ready_on(api, "n1", "slow", "replica") == {0}, 240)
    assert final.read_bytes() == src[0]
    assert list(tmp.iterdir()) == []
    endpoint = holdings(api, "n1").endpoint  # type: ignore[union-attr]
    assert metric(endpoint, "kbl_agent_resumed_bytes_total") >= 512 * 1024, cluster.log("n1")


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.mark.timeout(900)
def test_an_agent_encoding_a_shard_larger_than_its_memory_bound_stays_within_it(
    cluster: Processes, emulator: Emulator, tmp_path: Path
) -> None:
    """A 2+1 shard of 192 MiB encoded by one agent process, which also stages the two other
    fragments for its zone's holders: its peak RSS stays below the shard's size, so memory does not
    grow with the shard (before segments it held shard, copy and fragments at once, about 3.5x)."""
    api = KubeClient.from_url(emulator.url)
    size = 192 * 1024 * 1024 + 7
    src = write_source(tmp_path / "src", 1, size)
    emulator.post(
        DATASETS,
        dataset(
            "big",
            shards=1,
            size=size,
            redundancy={"erasure": {"data": 2, "parity": 1}},
            nodes=["n1", "n2", "n3"],
            rows=[[0, 1, 2]],
            source={"path": str(tmp_path / "src")},
        ),
    )
    cluster.start("n1", "--scrub-interval-s", "0")
    wait_started(api, ["n1"])
    wait_for("the fragment on n1", lambda: ready_on(api, "n1", "big", "0") == {0}, 300)
    staged = cluster.root("n1") / ".kbl-staging" / NS / "big" / "uid-1"
    assert sorted(p.name for p in staged.iterdir()) == ["0.1", "0.1.json", "0.2", "0.2.json"], "n2's and n3's fragments staged"
    peak = peak_rss_bytes(cluster.procs["n1"].pid)
    assert peak < size, f"peak RSS {peak / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB shard"
    codec = Codec(2, 1)
    step = 1 << 20
    with open(cluster.root("n1") / NS / "big" / ".pieces" / "0.0", "rb") as f:
        first = codec.encode(src[0][:step])[0]
        assert f.read(len(first)) == first, "the fragment file starts with the first segment's fragment"
        f.seek(-2 * len(first), 2)
        tail = f.read()
    last = codec.encode(src[0][(size // step) * step :])[0]
    assert tail.endswith(last), "and ends with the last (short) segment's"


@pytest.mark.timeout(900)
def test_a_holder_killed_while_its_fragment_streams_leaves_nothing_behind_and_gets_it_rebuilt(
    cluster: Processes, emulator: Emulator, tmp_path: Path
) -> None:
    """2+1 over three agents of one zone, at 64 Mbit/s each so the encode lasts a few seconds: n2 is
    SIGKILLed while n1 streams it its fragment. The encoder drops n2's stream and finishes for n1
    and n3; the restarted n2 finds no partial copy and rebuilds its fragment from the two others of
    its zone (the source is not read again). Left out: a real network (loopback), separate disks."""
    api = KubeClient.from_url(emulator.url)
    size = 24 * (1 << 20) + 11
    src = write_source(tmp_path / "src", 1, size)
    for n in ("n1", "n2", "n3"):
        cluster.start(n, "--scrub-interval-s", "0", "--bandwidth-mbps", "64", "--stream-window-segments", "4")
    wait_started(api, ["n1", "n2", "n3"])
    emulator.post(
        DATASETS,
        dataset(
            "live",
            shards=1,
            size=size,
            redundancy={"erasure": {"data": 2, "parity": 1}},
            nodes=["n1", "n2", "n3"],
            rows=[[0, 1, 2]],
            source={"path": str(tmp_path / "src")},
        ),
    )
    tmp = cluster.root("n2") / ".kbl-tmp"

    def streaming_to_n2() -> bool:
        return sum(f.stat().st_size for f in tmp.glob("*.part")) >= 2 << 20 if tmp.is_dir() else False

    wait_for("n2 receiving its fragment", streaming_to_n2, 120)
    assert not ready_on(api, "n1", "live", "0"), "the encode was still running when n2 died"
    cluster.kill("n2")
    wait_for("n1 and n3 ready", lambda: ready_on(api, "n1", "live", "0") == {0} and ready_on(api, "n3", "live", "2") == {0}, 300)
    n1 = holdings(api, "n1").endpoint  # type: ignore[union-attr]
    wait_for("n2's stream dropped", lambda: metric(n1, 'kbl_agent_streamed_fragments_total{outcome="dropped"}') == 1, 60)
    assert metric(n1, 'kbl_agent_streamed_fragments_total{outcome="done"}') == 1, "n3's stream went on"
    assert metric(n1, "kbl_agent_staged_fragments_total") == 0
    cluster.start("n2", "--scrub-interval-s", "0")
    wait_for("n2's fragment", lambda: ready_on(api, "n2", "live", "1") == {0}, 300)
    assert [f.name for f in tmp.iterdir()] == [], "no partial copy left by the killed stream"
    codec = Codec(2, 1)
    step = 1 << 20
    expected = b"".join(codec.encode(src[0][i : i + step])[1] for i in range(0, size, step))
    assert (cluster.root("n2") / NS / "live" / ".pieces" / "0.1").read_bytes() == expected
    n2 = holdings(api, "n2").endpoint  # type: ignore[union-attr]
    assert metric(n2, "kbl_agent_rebuilt_fragments_total") == 1
    assert metric(n2, "kbl_agent_source_requests_total") == 0, cluster.log("n2")
