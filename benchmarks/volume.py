"""``kbl bench volume``: read throughput through the ``data.kbl.io`` volume next to its floors.

Real agents in this process (threads, own roots, loopback ports) over the in-memory API, the CSI
driver's publisher mounting real volumes (a FUSE daemon per volume, bind mounts for local
replicas) in a temporary folder; needs root and ``/dev/fuse`` (it says so and exits 2 otherwise).
A reader streams every shard of the volume in 1 MiB ``read()`` calls, one shard after the other,
as a training loop would. Each figure stands beside its floor, measured in the same run on the same
bytes, floor and volume alternated, best of ``--rounds`` (the volume is published afresh each
round, so FUSE starts cold; local reads, a few tens of ms each, alternate 5 times per round):

- **local replicas** (held by the reader's node, bind-mounted) vs reading the agent's own files;
- **remote replicas** (held by another node) vs a streaming ``GET`` of the same shards from the
  reader's node agent's read API (what the FUSE daemon itself calls);
- **erasure-coded shards** (2+1, no fragment on the reader's node) vs the same ``GET``.

Both sides read through the page cache as it stands after hydration (the agents' files are warm
for the floor and the volume alike). Targets: local >= 0.95x, remote >= 0.8x (erasure is reported
against the 0.8x target too); a miss exits 1.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dataplane.agent import Agent, start_agents
from kube.api import DATASETS, NODES
from kube.memory import MemoryApi
from topology import labels

NS = "bench"
TOKEN = "bench-token"  # noqa: S105 - a loopback test token
READ = 1 << 20
TARGETS = {"local": 0.95, "remote": 0.8, "erasure": 0.8}
LOCAL_REPEATS = 10


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="OUT", help="write the figures as JSON")
    parser.add_argument("--shards", type=int, default=4, help="shards per DataSet (default %(default)s)")
    parser.add_argument("--shard-mib", type=float, default=64.0, help="MiB per shard (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="best of this many rounds per figure (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="4 shards of 16 MiB, 2 rounds")


def unavailable() -> str:
    import importlib.util

    from dataplane.csi.mounting import can_mount

    why = can_mount()
    if why:
        return why
    if importlib.util.find_spec("pyfuse3") is None:
        return "pyfuse3 is not installed (pip install '.[csi]' after apt-get install libfuse3-dev)"
    return ""


def _dataset(name: str, size: int, red: dict[str, Any], nodes: list[str], rows: list[list[int]], src: Path) -> dict[str, Any]:  # noqa: PLR0917 - one DataSet, field by field
    return {
        "apiVersion": labels.API_VERSION,
        "kind": "DataSet",
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}"},
        "spec": {"shards": len(rows), "shardSize": str(size), "redundancy": red, "source": {"path": str(src)}, "shardKey": "{index}.bin"},
        "status": {"placement": {"nodes": nodes, "shards": rows}},
    }


def _ready(agent: Agent, ds: str) -> int:
    with agent.hydrator.lock:
        state = agent.hydrator.local.get(f"{NS}/{ds}")
        return len(state.ready) if state is not None else 0


def _wait(check: Callable[[], bool], timeout_s: float = 600.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the agents did not converge")
        time.sleep(0.01)


def _read_files(paths: list[Path]) -> int:
    """Stream every file in 1 MiB reads; returns the bytes read."""
    total = 0
    buf = bytearray(READ)
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            while n := os.readv(fd, [buf]):
                total += n
        finally:
            os.close(fd)
    return total


def _get(agent: Agent, ds: str, shards: int) -> int:
    """The floor: every shard streamed from the agent's read API, 1 MiB reads into one buffer, by
    the leanest client Python has (``http.client``, as the FUSE daemon's own)."""
    total = 0
    url = urlsplit(agent.endpoint)
    buf = bytearray(READ)
    for i in range(shards):
        conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=60)
        try:
            conn.request("GET", f"/v1/namespaces/{NS}/datasets/{ds}/shards/{i}", headers={"Authorization": f"Bearer {TOKEN}"})
            response = conn.getresponse()
            while n := response.readinto(buf):
                total += n
        finally:
            conn.close()
    return total


def _timed(fn: Callable[[], int], expect: int) -> float:
    t = time.perf_counter()
    got = fn()
    elapsed = time.perf_counter() - t
    if got != expect:
        raise RuntimeError(f"read {got} bytes, expected {expect}")
    return elapsed


def measure(shards: int, shard_bytes: int, rounds: int, work: Path) -> dict[str, Any]:
    from dataplane.csi.publishing import Publisher
    from dataplane.csi.settings import CsiSettings
    from dataplane.csi.volumes import VolumeAsk

    api = MemoryApi()
    names = ["n1", "n2", "n3", "n4"]
    for n in names:
        api.put(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": n, "uid": f"uid-{n}", "labels": {labels.ZONE: "a"}}})
    src = work / "source"
    src.mkdir()
    for i in range(shards):
        (src / f"{i}.bin").write_bytes(os.urandom(shard_bytes))
    total = shards * shard_bytes
    agents = start_agents(api, names, work / "nodes", token=TOKEN, settings={"report_min_interval_s": 0.2, "scrub_interval_s": 0})
    by = {a.settings.node: a for a in agents}
    out: dict[str, Any] = {"shards": shards, "shard_bytes": shard_bytes, "rounds": rounds}
    try:
        kinds = {
            "local": _dataset("local", shard_bytes, {"replicas": 1}, ["n1"], [[0]] * shards, src),
            "remote": _dataset("remote", shard_bytes, {"replicas": 1}, ["n2"], [[0]] * shards, src),
            "erasure": _dataset("erasure", shard_bytes, {"erasure": {"data": 2, "parity": 1}}, ["n2", "n3", "n4"],
                                [[0, 1, 2]] * shards, src),
        }  # fmt: skip
        for obj in kinds.values():
            api.create(DATASETS, obj, namespace=NS)
        _wait(lambda: _ready(by["n1"], "local") == shards and _ready(by["n2"], "remote") == shards)
        _wait(lambda: all(_ready(by[n], "erasure") == shards for n in ("n2", "n3", "n4")))
        (work / "token").write_text(TOKEN)
        settings = CsiSettings(
            node="n1", root=by["n1"].settings.root, agent_url=by["n1"].endpoint, token_file=str(work / "token"),
            socket=str(work / "csi.sock"), state_dir=str(work / "state"), authorize=False,
        )  # fmt: skip
        publisher = Publisher(api, settings)
        for kind in kinds:
            floor_s, volume_s = [], []
            for r in range(rounds):
                target = work / "pods" / f"{kind}-{r}"
                ask = VolumeAsk(f"vol-{kind}-{r}", str(target), NS, kind, "bench-0", "uid-bench-0", "default")
                publisher.publish(ask)
                try:
                    volume_files = [target / f"{i}.bin" for i in range(shards)]
                    bound = len(publisher.volumes[ask.volume_id].binds)
                    if kind == "local":
                        # Both sides read the same cached inode in a few tens of ms: alternate them
                        # several times per round so that a burst of load on the shared cores hits both.
                        files = [Path(by["n1"].settings.root) / NS / "local" / f"{i}.bin" for i in range(shards)]
                        for _ in range(LOCAL_REPEATS):
                            floor_s.append(_timed(lambda files=files: _read_files(files), total))  # type: ignore[misc]
                            volume_s.append(_timed(partial(_read_files, volume_files), total))
                    else:  # FUSE starts cold on every publish: one read per round each
                        floor_s.append(_timed(lambda kind=kind: _get(by["n1"], kind, shards), total))  # type: ignore[misc]
                        volume_s.append(_timed(partial(_read_files, volume_files), total))
                finally:
                    publisher.unpublish(ask.volume_id, ask.target)
            floor, volume = total / min(floor_s) / 1e6, total / min(volume_s) / 1e6
            out[kind] = {
                "floor": "local file read" if kind == "local" else "read API GET (the reader's node agent)",
                "floor_MBps": round(floor, 1),
                "volume_MBps": round(volume, 1),
                "ratio": round(volume / floor, 3),
                "target": TARGETS[kind],
                "bind_mounted_shards": bound,
            }
    finally:
        for a in agents:
            a.stop()
    return out


def run(args: argparse.Namespace) -> int:
    reason = unavailable()
    if reason:
        print(f"kbl bench volume: cannot mount here: {reason}")
        return 2
    shards, mib, rounds = (4, 16.0, 2) if args.quick else (args.shards, args.shard_mib, args.rounds)
    with tempfile.TemporaryDirectory(prefix="kbl-bench-volume-") as tmp:
        figures = measure(shards, int(mib * 1024 * 1024), rounds, Path(tmp))
    print(f"data.kbl.io volume reads, {shards} shards x {mib:g} MiB per DataSet, 1 MiB reads, best of {rounds}")
    missed = []
    for kind in ("local", "remote", "erasure"):
        f = figures[kind]
        ok = f["ratio"] >= f["target"]
        missed += [] if ok else [kind]
        print(
            f"  {kind:8s} volume {f['volume_MBps']:8.1f} MB/s  vs {f['floor']:40s} {f['floor_MBps']:8.1f} MB/s  "
            f"ratio {f['ratio']:.2f} (target >= {f['target']:.2f}) {'ok' if ok else 'MISSED'}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 1 if missed else 0
