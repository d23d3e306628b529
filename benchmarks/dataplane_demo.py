"""The data plane in ``kbl demo``: real bytes on real disks, placed, hydrated, lost and repaired.

On the demo's cluster (copies of a real EKS node, behind the in-memory API server
:class:`~kube.memory.MemoryApi`), this runs the real placement reconciler and one real node agent
per node (each its own root ``<out>/data/nodes/<node>/`` and its own loopback port, in this
process), over a small generated source in ``<out>/data/source/``:

1. two DataSets are created with no status: a 3x replicated one spread over racks and an
   erasure-coded 4+2 one kept in one zone (over its hosts, so its repairs stay in the zone); the
   reconciler places them, the agents hydrate them (one holder per zone reads each shard from the
   source, the zone's other holders copy or receive their fragment from it) and both become
   ``Ready``;
2. a node and then a whole rack are killed (agents stopped, folders removed, Node objects
   deleted), and a byte is flipped in one surviving replica;
3. a reader asks that replica's agent for the shard, as a pod would: the bad segment is caught
   on the read, never served (the read is answered from a good copy), and the piece quarantined;
   the reconciler repairs onto surviving nodes (make before break), the agents copy from peers or
   rebuild erasure fragments from k others in the zone, the quarantined replica is fetched again;
   both DataSets are ``Ready`` again. The scrub runs at the chart's interval (a day): it plays
   no part;
4. every replica file on every node is compared with the source byte for byte, and every
   erasure-coded shard is read back through an agent's read API and compared with the source.

The figures (bytes hydrated by source kind, bytes repaired, shards lost, times) go into a table
and ``results.json``; the final DataSet objects into ``<out>/data/datasets.json``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.table import Table

from benchmarks.certificates import private_ca
from dataplane.agent.metrics import KINDS
from dataplane.agent.running import Agent, TlsFiles, start_agents
from dataplane.reconciler.reconciling import Reconciler
from dataplane.reconciler.settings import ReconcilerSettings
from kube.api import DATASETS, NODE_HOLDINGS, NODES
from kube.datasets import get_dataset
from kube.memory import MemoryApi
from topology import labels
from topology.datasets import Erasure, Redundancy, Replicas, dataset_object
from topology.errors import KblError
from topology.holdings import NodeHoldings, piece_key

NAMESPACE = "demo"
SHARD_KEY = "part-{index:05d}.bin"


@dataclass(frozen=True, slots=True)
class DemoDataSet:
    """One DataSet of the demo: its name, scheme, failure domain and size."""

    name: str
    redundancy: Redundancy
    failure_domain: str
    shards: int
    shard_bytes: int


@dataclass
class DataPlaneDemo:
    """What the data-plane demo measured."""

    nodes: int
    datasets: list[DemoDataSet]
    source_bytes: int
    killed_nodes: list[str]
    flipped: str
    time_to_ready_s: float
    time_to_repaired_s: float
    hydrated_bytes: dict[str, int]
    repaired_bytes: int
    repaired_by_kind: dict[str, int]
    rebuilt_fragments: int
    rebuilt_bytes: int
    corrupt_found: int
    caught_on_read: int
    read_after_flip_identical: bool
    shards_lost: int
    replicas_checked: int
    replicas_identical: int
    erasure_shards_checked: int
    erasure_shards_identical: int
    ready: dict[str, bool] = field(default_factory=dict)
    tls: bool = False

    @property
    def all_identical(self) -> bool:
        return self.replicas_identical == self.replicas_checked and self.erasure_shards_identical == self.erasure_shards_checked

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "datasets"}
        out["datasets"] = [
            {"name": d.name, "redundancy": str(d.redundancy), "failureDomain": d.failure_domain, "shards": d.shards, "bytes": d.shard_bytes}
            for d in self.datasets
        ]
        out["allIdentical"] = self.all_identical
        return out


#: The agent's scrub interval in the Helm chart (``agent.scrubIntervalSeconds``): the demo runs its
#: agents as the chart would, so bad bytes are caught by reads, not by a scrub every second.
CHART_SCRUB_INTERVAL_S = 86400.0


def demo_datasets(quick: bool) -> list[DemoDataSet]:
    """A 3x replicated DataSet spread over racks and an erasure-coded 4+2 one over one zone's hosts (tens of MiB)."""
    mib = 1 << 20
    if quick:
        return [DemoDataSet("replicated", Replicas(3), "rack", 12, 1 * mib), DemoDataSet("erasure", Erasure(4, 2), "host", 8, 1 * mib)]
    return [DemoDataSet("replicated", Replicas(3), "rack", 32, 4 * mib), DemoDataSet("erasure", Erasure(4, 2), "host", 24, 4 * mib)]


def write_source(root: Path, specs: list[DemoDataSet], seed: int) -> int:
    """Generate each DataSet's shards as files ``<root>/<name>/<shardKey(i)>``; total bytes."""
    rng = np.random.default_rng(seed)
    total = 0
    for spec in specs:
        folder = root / spec.name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        for i in range(spec.shards):
            (folder / SHARD_KEY.format(index=i)).write_bytes(rng.bytes(spec.shard_bytes))
            total += spec.shard_bytes
    return total


def _status(api: MemoryApi, name: str) -> Mapping[str, Any]:
    return (api.get(DATASETS, name, namespace=NAMESPACE) or {}).get("status") or {}


def _condition(status: Mapping[str, Any], kind: str) -> str:
    for cond in status.get("conditions") or []:
        if cond.get("type") == kind:
            return str(cond.get("status"))
    return ""


def _all_ready(api: MemoryApi, specs: list[DemoDataSet], extra: Callable[[], bool] | None = None) -> bool:
    for spec in specs:
        status = _status(api, spec.name)
        if _condition(status, "Ready") != "True" or status.get("transfers"):
            return False
    return extra() if extra is not None else True


def _wait(what: str, check: Callable[[], bool], timeout_s: float) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            raise KblError(f"data-plane demo: {what} did not happen within {timeout_s:.0f} s")
        time.sleep(0.1)
    return time.monotonic() - started


def _victims(api: MemoryApi, node_objects: list[dict[str, Any]], specs: list[DemoDataSet]) -> list[str]:
    """A node that holds pieces of both DataSets, then every node of one rack in another zone."""
    placed = [get_dataset(api, s.name, namespace=NAMESPACE) for s in specs]
    holding = [{n for s in range(ds.placement.shards) for n in ds.placement.holders(s)} for ds in placed if ds.placement]
    both = sorted(set.intersection(*holding)) if holding else []
    by_name = {o["metadata"]["name"]: (o["metadata"].get("labels") or {}) for o in node_objects}
    first = both[0] if both else sorted(by_name)[0]
    zone = by_name[first].get(labels.ZONE, "")
    racks: dict[tuple[str, str], list[str]] = {}  # a rack is its zone and its rack label
    for name, node_labels in sorted(by_name.items()):
        if node_labels.get(labels.ZONE, "") != zone:
            racks.setdefault((node_labels.get(labels.ZONE, ""), node_labels.get(labels.DEFAULT_RACK, name)), []).append(name)
    rack = sorted(racks)[0]
    return [first, *racks[rack]]


def _kill(api: MemoryApi, agents: dict[str, Agent], root: Path, node: str) -> None:
    agents.pop(node).stop()
    shutil.rmtree(root / node, ignore_errors=True)
    api.delete(NODES, node)
    if api.get(NODE_HOLDINGS, node) is not None:  # garbage-collected with its Node in a real cluster
        api.delete(NODE_HOLDINGS, node)


def _flip_a_byte(root: Path, alive: list[str], spec: DemoDataSet) -> tuple[str, Path]:
    for node in alive:
        folder = root / node / NAMESPACE / spec.name
        files = sorted(folder.glob("part-*.bin")) if folder.exists() else []
        if files:
            target = files[0]
            data = bytearray(target.read_bytes())
            data[len(data) // 2] ^= 0xFF
            target.write_bytes(bytes(data))  # behind the agent's back, as a failing disk would
            return node, target
    raise KblError("data-plane demo: no replica file to corrupt")


def _first_zone(node_objects: list[dict[str, Any]]) -> str:
    return sorted({str((o["metadata"].get("labels") or {}).get(labels.ZONE, "")) for o in node_objects})[0]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _verify(
    api: MemoryApi,
    agents: dict[str, Agent],
    source: Path,
    nodes_root: Path,
    *,
    specs: list[DemoDataSet],
    token: str,
    client: httpx.Client,
) -> tuple[int, int, int, int]:
    """(replicas checked, identical, erasure shards checked, identical)."""
    replicas = identical = ec_checked = ec_identical = 0
    headers = {"Authorization": f"Bearer {token}"}
    for spec in specs:
        ds = get_dataset(api, spec.name, namespace=NAMESPACE)
        assert ds.placement is not None
        for shard in range(spec.shards):
            expected = _digest(source / spec.name / SHARD_KEY.format(index=shard))
            if isinstance(spec.redundancy, Replicas):
                for node in ds.placement.holders(shard):
                    replicas += 1
                    path = nodes_root / node / NAMESPACE / spec.name / SHARD_KEY.format(index=shard)
                    identical += int(path.exists() and _digest(path) == expected)
            else:
                ec_checked += 1
                reader = agents[ds.placement.holders(shard)[0]]  # reassembled from its own piece and k-1 peers'
                url = f"{reader.endpoint}/v1/namespaces/{NAMESPACE}/datasets/{spec.name}/shards/{shard}"
                reply = client.get(url, headers=headers)
                ec_identical += int(reply.status_code == 200 and hashlib.sha256(reply.content).hexdigest() == expected)
    return replicas, identical, ec_checked, ec_identical


def _no_corrupt(api: MemoryApi) -> bool:
    for obj in api.list(NODE_HOLDINGS)[0]:
        holdings = NodeHoldings.from_object(obj)
        if any(any(v for v in h.corrupt.values()) for h in holdings.datasets.values()):
            return False
    return True


def _fully_held(api: MemoryApi, specs: list[DemoDataSet]) -> bool:
    """Every target slot reported ready by its node's agent."""
    held = {NodeHoldings.from_object(o).node: NodeHoldings.from_object(o) for o in api.list(NODE_HOLDINGS)[0]}
    for spec in specs:
        ds = get_dataset(api, spec.name, namespace=NAMESPACE)
        if ds.placement is None:
            return False
        for shard in range(ds.placement.shards):
            for piece, idx in enumerate(ds.placement.pieces[shard]):
                node = ds.placement.nodes[idx]
                mine = held.get(node)
                found = mine.of(ds.key, ds.spec.uid) if mine else None
                if found is None or not found.has_ready(piece_key(ds.spec, piece), shard):
                    return False
    return True


def _reader(data: Path, tls: bool) -> tuple[TlsFiles | None, httpx.Client]:
    """The agents' TLS files (a private CA, one certificate for the agents, one for the reader) and
    the reader's client: plain HTTP, or mutual TLS verified against the CA."""
    if not tls:
        return None, httpx.Client(timeout=60.0)
    pki = private_ca(data / "tls", leaves=("agent", "reader"))
    context = ssl.create_default_context(cafile=pki["ca"][0])
    context.load_cert_chain(*pki["reader"])
    return TlsFiles(cert=pki["agent"][0], key=pki["agent"][1], ca=pki["ca"][0]), httpx.Client(timeout=60.0, verify=context)


def run_data_plane(
    node_objects: list[dict[str, Any]], out: Path, *, quick: bool, seed: int = 0, timeout_s: float = 240.0, tls: bool = False
) -> DataPlaneDemo:
    """Run the data-plane demo on ``node_objects`` (module docstring); files under ``out/data``.

    ``tls``: the agents serve HTTPS with client certificates required (mutual TLS, a private CA
    made for the run), copy from each other over it, and the reader presents its own certificate.
    """
    data = out / "data"
    source, nodes_root = data / "source", data / "nodes"
    if nodes_root.exists():
        shutil.rmtree(nodes_root)
    specs = demo_datasets(quick)
    source_bytes = write_source(source, specs, seed)
    api = MemoryApi(history=100_000)
    for obj in node_objects:
        api.put(NODES, obj)
    stop = threading.Event()
    reconciler = Reconciler(api, ReconcilerSettings(node_lost_grace_s=2.0, resync_s=0.5))
    thread = threading.Thread(target=reconciler.run, args=(stop,), name="kbl-reconciler", daemon=True)
    thread.start()
    token = secrets.token_hex(16)
    names = [o["metadata"]["name"] for o in node_objects]
    quick_agents = {"scrub_interval_s": CHART_SCRUB_INTERVAL_S, "resync_s": 0.5}
    tls_files, reader = _reader(data, tls)
    agents = {a.settings.node: a for a in start_agents(api, names, nodes_root, token=token, settings=quick_agents, tls=tls_files)}
    all_agents = dict(agents)
    try:
        started = time.monotonic()
        for spec in specs:
            obj = dataset_object(
                spec.name,
                namespace=NAMESPACE,
                shards=spec.shards,
                shard_size=spec.shard_bytes,
                redundancy=spec.redundancy,
                failure_domain=spec.failure_domain,
            )
            obj["spec"]["source"] = {"path": str((source / spec.name).resolve())}
            obj["spec"]["shardKey"] = SHARD_KEY
            if isinstance(spec.redundancy, Erasure):  # erasure-coded data kept in one zone: rebuilds stay there
                obj["spec"]["nodeSelector"] = {labels.ZONE: _first_zone(node_objects)}
            api.create(DATASETS, obj, namespace=NAMESPACE)
        _wait("both DataSets Ready", lambda: _all_ready(api, specs, lambda: _fully_held(api, specs)), timeout_s)
        time_to_ready = time.monotonic() - started
        before = {k: sum(a.metrics.hydrated(k) for a in all_agents.values()) for k in KINDS}

        victims = _victims(api, node_objects, specs)
        for node in victims:
            _kill(api, agents, nodes_root, node)
        flipped_node, flipped = _flip_a_byte(nodes_root, sorted(agents), specs[0])
        killed_at = time.monotonic()
        # A pod on that node reads the shard through its agent: the bad segment is caught, never served.
        shard = int(flipped.name.removeprefix("part-").removesuffix(".bin"))
        url = f"{agents[flipped_node].endpoint}/v1/namespaces/{NAMESPACE}/datasets/{specs[0].name}/shards/{shard}"
        reply = reader.get(url, headers={"Authorization": f"Bearer {token}"})
        read_ok = reply.status_code == 200 and hashlib.sha256(reply.content).hexdigest() == _digest(source / specs[0].name / flipped.name)
        _wait(
            "repair to full redundancy",
            lambda: _all_ready(api, specs, lambda: _fully_held(api, specs) and _no_corrupt(api) and _intact(flipped, source, specs[0])),
            timeout_s,
        )
        time_to_repaired = time.monotonic() - killed_at
        hydrated = {k: int(sum(a.metrics.hydrated(k) for a in all_agents.values())) for k in KINDS}
        repaired_by_kind = {k: hydrated[k] - int(before[k]) for k in KINDS}
        repaired = sum(repaired_by_kind.values())
        rebuilt = int(sum(a.metrics.rebuilt_pieces._value.get() for a in all_agents.values()))
        rebuilt_bytes = int(sum(a.metrics.rebuilt_bytes._value.get() for a in all_agents.values()))
        corrupt = int(sum(a.metrics.corrupt._value.get() for a in all_agents.values()))
        caught = int(sum(a.metrics.corrupt_on_read._value.get() for a in all_agents.values()))
        lost = 0
        for spec in specs:
            status = _status(api, spec.name)
            lost += len(_ranges(str(status.get("lostShards") or "")))
        checked, same, ec_checked, ec_same = _verify(api, agents, source, nodes_root, specs=specs, token=token, client=reader)
        final = [api.get(DATASETS, s.name, namespace=NAMESPACE) for s in specs]
        (data / "datasets.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": final}, indent=2))
        return DataPlaneDemo(
            nodes=len(names), datasets=specs, source_bytes=source_bytes, killed_nodes=victims,
            flipped=str(flipped.relative_to(out)), time_to_ready_s=time_to_ready, time_to_repaired_s=time_to_repaired,
            hydrated_bytes=hydrated, repaired_bytes=repaired, repaired_by_kind=repaired_by_kind, rebuilt_fragments=rebuilt,
            rebuilt_bytes=rebuilt_bytes, corrupt_found=corrupt, caught_on_read=caught, read_after_flip_identical=read_ok,
            shards_lost=lost, replicas_checked=checked, replicas_identical=same, erasure_shards_checked=ec_checked,
            erasure_shards_identical=ec_same, ready={s.name: _condition(_status(api, s.name), "Ready") == "True" for s in specs},
            tls=tls,
        )  # fmt: skip
    finally:
        stop.set()
        reader.close()
        for agent in agents.values():
            agent.stop()
        thread.join(timeout=10)


def _intact(path: Path, source: Path, spec: DemoDataSet) -> bool:
    """The flipped replica is byte-identical to the source again (scrubbed and re-fetched)."""
    try:
        return path.exists() and _digest(path) == _digest(source / spec.name / path.name)
    except OSError:
        return False


def _ranges(text: str) -> list[int]:
    out: list[int] = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        a, _, b = item.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


_ORDER = ("source", "peer-zone", "peer-cross-zone")


def table(result: DataPlaneDemo) -> Table:
    """The demo's data-plane table."""
    mib = 1 << 20
    t = Table(title=f"Data plane: {result.nodes} agents on real folders, {result.source_bytes / mib:.0f} MiB of source")
    t.add_column("what")
    t.add_column("figure", justify="right")
    for spec in result.datasets:
        what = f"{spec.redundancy}, {spec.shards} shards, by {spec.failure_domain}"
        t.add_row(f"DataSet {NAMESPACE}/{spec.name}", f"{what}, Ready: {result.ready.get(spec.name)}")
    t.add_row("created -> Ready (placed, hydrated, verified)", f"{result.time_to_ready_s:.1f} s")
    first = {k: result.hydrated_bytes[k] - result.repaired_by_kind.get(k, 0) for k in result.hydrated_bytes}
    t.add_row("hydrated: from the source / in-zone peers / other zones", " / ".join(f"{first[k] / mib:.1f}" for k in _ORDER) + " MiB")
    t.add_row("killed", f"{len(result.killed_nodes)} nodes (one node, one rack) + 1 flipped byte")
    t.add_row(
        "repaired: from the source / in-zone peers / other zones",
        " / ".join(f"{result.repaired_by_kind.get(k, 0) / mib:.1f}" for k in _ORDER) + " MiB",
    )
    t.add_row("  of which erasure fragments rebuilt from k others", f"{result.rebuilt_fragments} ({result.rebuilt_bytes / mib:.1f} MiB)")
    t.add_row(
        "flipped byte caught on a read (never served)",
        f"{result.caught_on_read} segment(s); read answered right: {result.read_after_flip_identical}",
    )
    t.add_row("corrupt pieces quarantined (on reads and scrubs)", str(result.corrupt_found))
    t.add_row("loss -> full redundancy", f"{result.time_to_repaired_s:.1f} s")
    t.add_row("replicas byte-identical to the source", f"{result.replicas_identical}/{result.replicas_checked}")
    t.add_row("erasure shards read back identical", f"{result.erasure_shards_identical}/{result.erasure_shards_checked}")
    t.add_row("shards lost", str(result.shards_lost))
    return t


def markdown(result: DataPlaneDemo) -> str:
    """The report section."""
    mib = 1 << 20
    hydrated = ", ".join(f"{k} {v / mib:.1f} MiB" for k, v in result.hydrated_bytes.items())
    return "\n".join(
        [
            "## Data plane",
            "",
            f"{result.nodes} node agents (real processes' code, in this process, each with its own folder under `data/nodes/` "
            f"and its own loopback port) and the placement reconciler, over {result.source_bytes / mib:.0f} MiB generated in "
            "`data/source/`. Two DataSets were created with no status; the reconciler placed them and the agents hydrated them "
            f"(bytes by source: {hydrated}); both were Ready after {result.time_to_ready_s:.1f} s.",
            "",
            f"Then {len(result.killed_nodes)} nodes died (one node, then a whole rack in another zone: folders removed) and a byte "
            f"was flipped in `{result.flipped}`. A read of that shard through its agent caught the bad segment "
            f"({result.caught_on_read} caught on read, never served; the reply was right: {result.read_after_flip_identical}) and "
            f"quarantined the replica. The reconciler repaired onto survivors, the agents copied {result.repaired_bytes / mib:.1f} MiB "
            f"({', '.join(f'{k} {v / mib:.1f} MiB' for k, v in result.repaired_by_kind.items())}) and rebuilt "
            f"{result.rebuilt_fragments} erasure fragments from k others: full redundancy again after "
            f"{result.time_to_repaired_s:.1f} s.",
            "",
            f"- Replicas byte-identical to the source: {result.replicas_identical}/{result.replicas_checked}.",
            "- Erasure-coded shards read back through the read API, identical: "
            f"{result.erasure_shards_identical}/{result.erasure_shards_checked}.",
            f"- Shards lost: {result.shards_lost}. Final DataSet objects: `data/datasets.json`.",
            "",
        ]
    )


__all__ = ["DataPlaneDemo", "DemoDataSet", "demo_datasets", "markdown", "run_data_plane", "table", "write_source"]
