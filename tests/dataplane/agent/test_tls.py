"""Agents over HTTPS with client certificates required (mutual TLS), real certificates on loopback.

A private CA (what the chart's cert-manager CA Issuer makes) signs one certificate for server and
client use; :func:`~dataplane.agent.running.start_agents` runs the agents with it, as the chart's
``agent.tls.enabled`` runs the DaemonSet with ``--tls-cert/--tls-key/--tls-client-ca/--peer-ca``.
The placement is written by the test (the reconciler is not what these tests claim to test).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dataplane.agent.running import Agent, TlsFiles, start_agents
from kube.api import NODES
from tests.certificates import private_ca
from tests.dataplane.agent.cluster import NS, TOKEN, ReviewingApi, dataset, holdings, node, put_dataset, ready_on, wait_for, write_source

SIZE = 48 * 1024 + 9


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, tuple[str, str]]:
    return private_ca(tmp_path / "pki", leaves=("agent", "reader"))


@pytest.fixture
def api() -> ReviewingApi:
    api = ReviewingApi({})
    for name in ("n1", "n2", "n3"):
        api.put(NODES, node(name, "z"))
    return api


@pytest.fixture
def agents(api: ReviewingApi, pki: dict[str, tuple[str, str]], tmp_path: Path) -> Iterator[dict[str, Agent]]:
    cert, key = pki["agent"]
    running = start_agents(
        api,
        ["n1", "n2", "n3"],
        tmp_path / "nodes",
        token=TOKEN,
        tls=TlsFiles(cert=cert, key=key, ca=pki["ca"][0]),
        settings={"report_min_interval_s": 0.1, "resync_s": 0.2, "scrub_interval_s": 0},
    )
    yield {a.settings.node: a for a in running}
    for a in running:
        a.stop()


def client(ca: str, cert: tuple[str, str] | None) -> httpx.Client:
    context = ssl.create_default_context(cafile=ca)
    if cert is not None:
        context.load_cert_chain(*cert)
    return httpx.Client(verify=context, timeout=10, headers={"Authorization": f"Bearer {TOKEN}"})


def test_a_caller_without_a_client_certificate_from_the_ca_is_refused_by_the_handshake(
    agents: dict[str, Agent], pki: dict[str, tuple[str, str]], tmp_path: Path
) -> None:
    agent = agents["n1"]
    assert agent.endpoint.startswith("https://127.0.0.1:")
    ca = pki["ca"][0]
    with client(ca, pki["reader"]) as good:
        assert good.get(agent.endpoint + "/healthz").status_code == 200
    with client(ca, None) as anonymous, pytest.raises(httpx.TransportError):  # the server's alert: certificate required
        anonymous.get(agent.endpoint + "/healthz")
    stranger = private_ca(tmp_path / "other", leaves=("peer",))["peer"]  # a certificate, but not from the agents' CA
    with client(ca, stranger) as other, pytest.raises(httpx.TransportError):
        other.get(agent.endpoint + "/healthz")
    with pytest.raises(httpx.TransportError):  # plain HTTP on the HTTPS port
        httpx.get(agent.endpoint.replace("https://", "http://") + "/healthz", timeout=5)
    assert agent.metrics.served_bytes.labels("piece")._value.get() == 0


def test_a_replicated_dataset_hydrates_copies_between_peers_and_reads_back_over_mutual_tls(
    api: ReviewingApi, agents: dict[str, Agent], pki: dict[str, tuple[str, str]], tmp_path: Path
) -> None:
    src = write_source(tmp_path / "src", 2, SIZE)
    source = {"path": str(tmp_path / "src")}
    put_dataset(api, dataset("r", shards=2, size=SIZE, redundancy={"replicas": 1}, nodes=["n1"], rows=[[0], [0]], source=source))
    wait_for("both shards on n1", lambda: ready_on(api, "n1", "r", "replica") == {0, 1})
    h = holdings(api, "n1")
    assert h is not None
    assert h.endpoint == agents["n1"].endpoint
    assert h.endpoint.startswith("https://")
    # The source gone, a second replica on n2: it can only come from n1, over mutual TLS.
    (tmp_path / "src").rename(tmp_path / "gone")
    put_dataset(
        api, dataset("r", shards=2, size=SIZE, redundancy={"replicas": 2}, nodes=["n1", "n2"], rows=[[0, 1], [0, 1]], source=source)
    )
    wait_for("both shards on n2", lambda: ready_on(api, "n2", "r", "replica") == {0, 1})
    assert agents["n2"].metrics.hydrated("peer-zone") == 2 * SIZE
    assert agents["n1"].metrics.served_bytes.labels("piece")._value.get() == 2 * SIZE
    for s, data in src.items():
        assert (Path(agents["n2"].settings.root) / NS / "r" / f"part-{s:03d}.bin").read_bytes() == data
    # Read back through the read API: from a holder, and through n3 (which relays from a holder).
    with client(pki["ca"][0], pki["reader"]) as reader:
        for name in ("n1", "n3"):
            for s, data in src.items():
                r = reader.get(f"{agents[name].endpoint}/v1/namespaces/{NS}/datasets/r/shards/{s}")
                assert r.status_code == 200
                assert r.content == data
        r = reader.get(f"{agents['n3'].endpoint}/v1/namespaces/{NS}/datasets/r/shards/1", headers={"Range": "bytes=100-199"})
        assert r.status_code == 206
        assert r.content == src[1][100:200]
