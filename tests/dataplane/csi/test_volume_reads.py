"""A pod reads its DataSet through the volume: real agents (threads over MemoryApi, real files,
loopback HTTP), the driver over its unix socket, real bind and FUSE mounts in temporary folders,
and a separate process reading the mounted files, as a pod's container would.

Node n1 runs the driver. DataSet ``reads`` (1 replica per shard): shard 0 on n1 (local, a bind
mount), shard 1 on n2 only (read through n1's agent from n2). DataSet ``coded`` (erasure 2+1 on
n2, n3, n4): never whole anywhere, decoded by n1's agent.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from dataplane.agent.running import Agent, start_agents
from dataplane.csi import mounting
from dataplane.csi.fusing import SUBTYPE
from dataplane.csi.proto import csi_pb2, csi_pb2_grpc
from dataplane.csi.publishing import Publisher
from dataplane.csi.serving import Driver
from dataplane.csi.settings import CsiSettings
from kube.api import NODES
from tests.dataplane.agent.cluster import NS, TOKEN, dataset, node, put_dataset, ready_on, wait_for, write_source
from tests.dataplane.csi.world import RbacApi, code_of, grant_get, mounts_unavailable, publish_request

pytestmark = pytest.mark.skipif(bool(mounts_unavailable()), reason=mounts_unavailable() or "mounts available")

SEG = 64 * 1024
SIZE = 5 * SEG + 123
ZONES = {"n1": "a", "n2": "a", "n3": "b", "n4": "b"}

# What a pod's process sees: the bytes, or the errno of the first failing call.
READER = """
import os, sys
try:
    with open(sys.argv[1], "rb") as f:
        data = f.read()
except OSError as exc:
    print(exc.errno, end=""); sys.exit(3)
sys.stdout.buffer.write(data)
"""


def pod_reads(path: Path, timeout_s: float = 20) -> bytes | int:
    """The file's bytes as another process reads them, or the errno it failed with."""
    done = subprocess.run([sys.executable, "-c", READER, str(path)], capture_output=True, timeout=timeout_s, check=False)
    return done.stdout if done.returncode == 0 else int(done.stdout or -1)


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[RbacApi, dict[str, Agent], Path, dict[str, dict[int, bytes]]]]:
    folder = Path(tempfile.mkdtemp(prefix="kbl-csi-", dir="/tmp"))
    api = RbacApi()
    grant_get(api, "reader", NS, "reads")
    grant_get(api, "reader", NS, "coded")
    for name, zone in ZONES.items():
        api.put(NODES, node(name, zone))
    running = start_agents(
        api, list(ZONES), folder / "nodes", token=TOKEN,
        settings={"report_min_interval_s": 0.1, "resync_s": 0.1, "scrub_interval_s": 0, "segment_bytes": SEG, "retry_max_s": 0.5},
    )
    agents = {a.settings.node: a for a in running}
    (folder / "src-reads" / "reads").mkdir(parents=True)
    sources = {"reads": write_source(folder / "src-reads", 2, SIZE, name="reads/part-{index}.bin"),
               "coded": write_source(folder / "src-coded", 1, SIZE, name="coded-{index}.bin", seed=11)}
    put_dataset(api, dataset("reads", shards=2, size=SIZE, redundancy={"replicas": 1}, nodes=["n1", "n2"], rows=[[0], [1]],
                             source={"path": str(folder / "src-reads")}, shard_key="reads/part-{index}.bin"))
    put_dataset(api, dataset("coded", shards=1, size=SIZE, redundancy={"erasure": {"data": 2, "parity": 1}}, nodes=["n2", "n3", "n4"],
                             rows=[[0, 1, 2]], source={"path": str(folder / "src-coded")}, shard_key="coded-{index}.bin", uid="uid-2"))
    wait_for("shard 0 of reads on n1", lambda: ready_on(api, "n1", "reads", "replica") == {0})
    wait_for("shard 1 of reads on n2", lambda: ready_on(api, "n2", "reads", "replica") == {1})
    for n, key in (("n2", "0"), ("n3", "1"), ("n4", "2")):
        wait_for(f"fragment {key} on {n}", lambda n=n, key=key: ready_on(api, n, "coded", key) == {0})  # type: ignore[misc]
    # The sources go: every byte a pod reads now comes from the agents.
    shutil.rmtree(folder / "src-reads")
    shutil.rmtree(folder / "src-coded")
    yield api, agents, folder, sources
    for a in running:
        a.stop()
    shutil.rmtree(folder, ignore_errors=True)


World = tuple[RbacApi, dict[str, Agent], Path, dict[str, dict[int, bytes]]]


@pytest.fixture
def driver(world: World) -> Iterator[tuple[csi_pb2_grpc.NodeStub, Publisher, Path]]:
    api, agents, folder, _ = world
    run = Path(tempfile.mkdtemp(prefix="d-", dir=folder))
    (run / "token").write_text(TOKEN)
    settings = CsiSettings(
        node="n1", root=str(agents["n1"].settings.root), agent_url=agents["n1"].endpoint, token_file=str(run / "token"),
        socket=str(run / "csi.sock"), state_dir=str(run / "state"), read_timeout_s=5,
    )
    publisher = Publisher(api, settings)
    server = Driver(publisher, "n1", settings.socket, heal_every_s=0).start()
    channel = grpc.insecure_channel(f"unix://{settings.socket}")
    yield csi_pb2_grpc.NodeStub(channel), publisher, run  # type: ignore[no-untyped-call]
    channel.close()
    server.stop()
    for p in list(publisher.volumes.values()):
        publisher.unpublish(p.volume_id, p.target)


def test_a_pod_reads_a_local_replica_a_remote_replica_and_an_erasure_coded_shard_byte_identical_to_the_source(
    world: World, driver: tuple[csi_pb2_grpc.NodeStub, Publisher, Path]
) -> None:
    _, agents, _, sources = world
    stub, _, run = driver
    reads, coded = run / "pods" / "a" / "reads", run / "pods" / "a" / "coded"
    stub.NodePublishVolume(publish_request("vol-reads", reads, "reads"))
    stub.NodePublishVolume(publish_request("vol-coded", coded, "coded"))
    assert sorted(p.relative_to(reads).as_posix() for p in reads.rglob("*") if p.is_file()) == ["reads/part-0.bin", "reads/part-1.bin"]
    assert pod_reads(reads / "reads" / "part-0.bin") == sources["reads"][0]
    assert pod_reads(reads / "reads" / "part-1.bin") == sources["reads"][1]
    assert pod_reads(coded / "coded-0.bin") == sources["coded"][0]
    table = dict(mounting.mounts())
    assert table[str(reads)] == f"fuse.{SUBTYPE}"
    assert table[str(coded)] == f"fuse.{SUBTYPE}"
    assert str(reads / "reads" / "part-0.bin") in table, "the local replica is a bind mount of the agent's file"
    assert str(reads / "reads" / "part-1.bin") not in table
    local = Path(agents["n1"].settings.root) / NS / "reads" / "reads" / "part-0.bin"
    assert os.stat(reads / "reads" / "part-0.bin").st_ino == local.stat().st_ino, "no copy: the agent's own inode"
    with pytest.raises(OSError, match=r"Read-only file system|Permission denied") as refused:
        (reads / "reads" / "part-0.bin").open("ab")
    assert refused.value.errno in (errno.EROFS, errno.EACCES)
    with pytest.raises(OSError, match=r"Read-only file system|Permission denied") as refused:
        (reads / "reads" / "part-1.bin").open("ab")
    assert refused.value.errno in (errno.EROFS, errno.EACCES)
    assert agents["n1"].metrics.served_bytes.labels("shard-decoded")._value.get() >= SIZE


def test_publish_and_unpublish_are_idempotent_and_unpublish_leaves_no_mount_and_no_folder(
    driver: tuple[csi_pb2_grpc.NodeStub, Publisher, Path]
) -> None:
    stub, publisher, run = driver
    target = run / "pods" / "b" / "vol"
    request = publish_request("vol-b", target, "reads")
    stub.NodePublishVolume(request)
    before = mounting.mounted_under(target)
    stub.NodePublishVolume(request)
    assert mounting.mounted_under(target) == before
    assert len(before) == 2
    other = publish_request("vol-other", target, "reads")
    assert code_of(lambda: stub.NodePublishVolume(other)) == grpc.StatusCode.ALREADY_EXISTS
    unpublish = csi_pb2.NodeUnpublishVolumeRequest(volume_id="vol-b", target_path=str(target))
    stub.NodeUnpublishVolume(unpublish)
    stub.NodeUnpublishVolume(unpublish)
    assert mounting.mounted_under(target) == []
    assert not target.exists()
    assert publisher.volumes == {}


def test_a_fuse_daemon_that_dies_fails_reads_at_once_with_enotconn_and_the_driver_mounts_it_again(
    world: World, driver: tuple[csi_pb2_grpc.NodeStub, Publisher, Path]
) -> None:
    _, _, _, sources = world
    stub, publisher, run = driver
    target = run / "pods" / "c" / "vol"
    stub.NodePublishVolume(publish_request("vol-c", target, "reads"))
    with (target / "reads" / "part-0.bin").open("rb") as held_local:
        daemon = publisher.volumes["vol-c"].process
        assert daemon is not None
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait(10)
        assert pod_reads(target / "reads" / "part-1.bin", timeout_s=10) == errno.ENOTCONN
        assert held_local.read() == sources["reads"][0], "an open local replica reads on from the disk"
    assert publisher.heal() == ["vol-c"]
    assert pod_reads(target / "reads" / "part-1.bin") == sources["reads"][1]
    assert pod_reads(target / "reads" / "part-0.bin") == sources["reads"][0]
    assert str(target / "reads" / "part-0.bin") in dict(mounting.mounts()), "the local replica is bound again"


def test_a_read_the_agent_cannot_answer_fails_with_eio_instead_of_hanging(
    world: World, driver: tuple[csi_pb2_grpc.NodeStub, Publisher, Path]
) -> None:
    _, _, _, _ = world
    stub, _publisher, run = driver
    target = run / "pods" / "d" / "vol"
    stub.NodePublishVolume(publish_request("vol-d", target, "reads"))
    (run / "token").write_text("a-token-the-agent-refuses")  # the daemon re-reads it: every ranged GET is now a 401
    assert pod_reads(target / "reads" / "part-1.bin", timeout_s=15) == errno.EIO


def test_a_restarted_driver_still_unpublishes_what_its_predecessor_published_and_heals_its_dead_daemon(
    world: World, driver: tuple[csi_pb2_grpc.NodeStub, Publisher, Path]
) -> None:
    api, _, _, sources = world
    stub, publisher, run = driver
    target = run / "pods" / "e" / "vol"
    stub.NodePublishVolume(publish_request("vol-e", target, "reads"))
    daemon = publisher.volumes["vol-e"].process
    assert daemon is not None
    successor = Publisher(api, publisher.settings)  # what a new driver process reads from --state-dir
    assert set(successor.volumes) == {"vol-e"}
    assert successor.heal() == [], "the predecessor's daemon is alive: nothing to heal"
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.wait(10)
    assert successor.heal() == ["vol-e"]
    assert pod_reads(target / "reads" / "part-1.bin") == sources["reads"][1]
    successor.unpublish("vol-e", str(target))
    assert mounting.mounted_under(target) == []
    assert not target.exists()
    publisher.volumes.clear()
