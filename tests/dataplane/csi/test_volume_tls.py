"""With agents serving HTTPS and demanding client certificates (chart value ``agent.tls.enabled``),
the volume's FUSE daemon checks the agent's certificate by the name it carries while connecting to
127.0.0.1, presents the agent's client certificate, and the pod reads the right bytes."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from dataplane.agent.running import TlsFiles, start_agents
from dataplane.csi.publishing import Publisher, PublishError
from dataplane.csi.settings import CsiSettings
from dataplane.csi.volumes import VolumeAsk
from kube.api import NODES
from tests.certificates import private_ca
from tests.dataplane.agent.cluster import NS, TOKEN, dataset, node, put_dataset, ready_on, wait_for, write_source
from tests.dataplane.csi.test_volume_reads import pod_reads
from tests.dataplane.csi.world import RbacApi, mounts_unavailable

pytestmark = pytest.mark.skipif(bool(mounts_unavailable()), reason=mounts_unavailable() or "mounts available")


def test_a_pod_reads_through_an_agent_that_demands_mutual_tls_and_a_wrong_name_is_refused() -> None:
    folder = Path(tempfile.mkdtemp(prefix="kbl-csi-tls-", dir="/tmp"))
    pki = private_ca(folder / "pki", leaves=("agent",))
    api = RbacApi()
    for n in ("n1", "n2"):
        api.put(NODES, node(n, "z"))
    cert, key = pki["agent"]
    agents = start_agents(api, ["n1", "n2"], folder / "nodes", token=TOKEN, tls=TlsFiles(cert=cert, key=key, ca=pki["ca"][0]),
                          settings={"report_min_interval_s": 0.1, "resync_s": 0.2, "scrub_interval_s": 0})  # fmt: skip
    try:
        by = {a.settings.node: a for a in agents}
        source = write_source(folder / "src", 1, 300_000)
        put_dataset(api, dataset("r", shards=1, size=300_000, redundancy={"replicas": 1}, nodes=["n2"], rows=[[0]],
                                 source={"path": str(folder / "src")}))  # fmt: skip
        wait_for("the replica on n2", lambda: ready_on(api, "n2", "r", "replica") == {0})
        (folder / "token").write_text(TOKEN)
        port = by["n1"].endpoint.rsplit(":", 1)[1]
        settings = CsiSettings(
            node="n1", root=by["n1"].settings.root, agent_url=f"https://127.0.0.1:{port}", token_file=str(folder / "token"),
            socket=str(folder / "csi.sock"), state_dir=str(folder / "state"), authorize=False,
            ca_file=pki["ca"][0], cert_file=cert, key_file=key, tls_name="localhost",
        )  # fmt: skip
        publisher = Publisher(api, settings)
        target = folder / "pod" / "vol"
        publisher.publish(VolumeAsk("v", str(target), NS, "r", "p", "uid-p", "reader"))
        try:
            assert pod_reads(target / "part-000.bin") == source[0]
        finally:
            publisher.unpublish("v", str(target))
        wrong = Publisher(api, CsiSettings(**{**{k: getattr(settings, k) for k in settings.__slots__}, "tls_name": "elsewhere.example"}))
        with pytest.raises(PublishError) as refused:
            wrong.publish(VolumeAsk("w", str(folder / "pod" / "w"), NS, "r", "p", "uid-p", "reader"))
        assert refused.value.code == "UNAVAILABLE"
        assert "certificate" in str(refused.value).lower()
    finally:
        for a in agents:
            a.stop()
        shutil.rmtree(folder, ignore_errors=True)
