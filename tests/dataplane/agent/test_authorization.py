"""Who may read: agents in threads (and as processes) over real HTTP on loopback, RBAC deciding.

The API is :class:`~kube.memory.MemoryApi` answering TokenReviews for the tokens the test lists
(:class:`~tests.dataplane.agent.cluster.ReviewingApi`) and SubjectAccessReviews from the Roles
and bindings the test creates (:func:`kube.rbac.review`: RBAC only, no aggregated roles, no
bootstrap roles, no authorizer but RBAC). One test sends the agent's SubjectAccessReviews over
HTTP to kmock's emulator, answered by the same RBAC evaluation, so the wire format is the one an
API server reads; one runs ``kbl agent`` processes against that emulator with the shipped RBAC.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kmock
import pytest

from dataplane.agent.authenticating import STATIC_USER, Identity, parse_static_tokens
from dataplane.agent.authorizing import READ_PIECES, READ_SHARDS, AccessReviewer
from dataplane.agent.running import DEMO_ROLE, Agent, start_agents
from kube import rbac
from kube.api import CLUSTER_ROLE_BINDINGS, DATASETS, NODES, ROLE_BINDINGS, SUBJECT_ACCESS_REVIEWS, KubeApi
from kube.client import KubeClient
from tests.conftest import ROOT
from tests.dataplane.agent.cluster import (
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
from tests.kube.emulators import Emulator
from tests.manifests.shipped import find, plain_objects

SIZE = 16 * 1024 + 5
TTL_S = 0.6
A_TOKEN, B_TOKEN = "token-of-a-reader", "token-of-b-reader"


@pytest.fixture
def api() -> ReviewingApi:
    api = ReviewingApi({A_TOKEN: "system:serviceaccount:a:reader", B_TOKEN: "system:serviceaccount:b:reader"})
    for name, zone in (("n1", "z"), ("n2", "z")):
        api.put(NODES, node(name, zone))
    grant_dataset_reads(api, "a", "reader")
    grant_dataset_reads(api, "b", "reader")
    return api


@pytest.fixture
def agents(api: ReviewingApi, tmp_path: Path) -> Iterator[dict[str, Agent]]:
    running = start_agents(
        api,
        ["n1", "n2"],
        tmp_path / "nodes",
        token=TOKEN,
        token_review=True,
        settings={"report_min_interval_s": 0.1, "resync_s": 0.2, "scrub_interval_s": 0, "token_cache_s": TTL_S,
                  "access_review_cache_s": TTL_S},
    )  # fmt: skip
    yield {a.settings.node: a for a in running}
    for a in running:
        a.stop()


def in_namespace(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    return {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}


def one_replica_each(api: ReviewingApi, tmp_path: Path) -> dict[str, bytes]:
    """DataSet ``d`` in namespaces a and b, one replica on n1, hydrated; returns each one's bytes."""
    out = {}
    for ns in ("a", "b"):
        src = write_source(tmp_path / f"src-{ns}", 1, SIZE, seed=ord(ns))
        obj = dataset(
            "d", shards=1, size=SIZE, redundancy={"replicas": 1}, nodes=["n1"], rows=[[0]], source={"path": str(tmp_path / f"src-{ns}")}
        )
        put_dataset(api, in_namespace(obj, ns))
        out[ns] = src[0]
    for ns in ("a", "b"):
        wait_for(f"{ns}/d ready on n1", lambda ns=ns: 0 in ready_on_ns(api, ns))  # type: ignore[misc]
    return out


def ready_on_ns(api: KubeApi, ns: str) -> frozenset[int]:
    """The replicas of ``<ns>/d`` that n1 reports ready."""
    h = holdings(api, "n1")
    mine = h.of(f"{ns}/d") if h else None
    return mine.ready.get("replica", frozenset()) if mine else frozenset()


def get(agent: Agent, path: str, token: str) -> httpx.Response:
    return httpx.get(agent.endpoint + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_a_token_of_namespace_a_reads_a_but_gets_403_with_the_reason_on_namespace_b(
    api: ReviewingApi, agents: dict[str, Agent], tmp_path: Path
) -> None:
    data = one_replica_each(api, tmp_path)
    for agent in (agents["n1"], agents["n2"]):  # the holder, and a node that reads through it
        r = get(agent, "/v1/namespaces/a/datasets/d/shards/0", A_TOKEN)
        assert r.status_code == 200
        assert r.content == data["a"]
        r = get(agent, "/v1/namespaces/b/datasets/d/shards/0", A_TOKEN)
        assert r.status_code == 403
        reason = r.json()["detail"]
        assert 'User "system:serviceaccount:a:reader" cannot get resource "datasets"' in reason
        assert 'in the namespace "b"' in reason
        assert data["b"] not in r.content
    assert get(agents["n1"], "/v1/namespaces/b/datasets/d/shards/0", B_TOKEN).content == data["b"]
    assert agents["n1"].metrics.authz_refused._value.get() >= 1


def test_a_reader_may_not_read_raw_pieces_and_a_peer_agent_may_with_its_own_identity(
    api: ReviewingApi, agents: dict[str, Agent], tmp_path: Path
) -> None:
    data = one_replica_each(api, tmp_path)
    path = "/v1/namespaces/a/datasets/d/pieces/0/replica"
    r = get(agents["n1"], path, A_TOKEN)
    assert r.status_code == 403
    assert 'cannot get resource "datasets/pieces"' in r.json()["detail"]
    r = get(agents["n1"], path, TOKEN)  # the agents' own token: their ServiceAccount's identity
    assert r.status_code == 200
    assert r.content == data["a"]
    # A second replica on n2 with the source gone: n2 can only copy it from its peer n1.
    (tmp_path / "src-a").rename(tmp_path / "gone-a")
    obj = dataset(
        "d", shards=1, size=SIZE, redundancy={"replicas": 2}, nodes=["n1", "n2"], rows=[[0, 1]], source={"path": str(tmp_path / "src-a")}
    )
    put_dataset(api, in_namespace(obj, "a"))
    wait_for("the replica copied from the peer", lambda: agents["n2"].metrics.hydrated("peer-zone") == SIZE)
    assert (Path(agents["n2"].settings.root) / "a" / "d" / "part-000.bin").read_bytes() == data["a"]


def test_a_revoked_token_or_a_removed_binding_stops_working_within_the_ttl(
    api: ReviewingApi, agents: dict[str, Agent], tmp_path: Path
) -> None:
    one_replica_each(api, tmp_path)
    path = "/v1/namespaces/a/datasets/d/shards/0"
    assert get(agents["n1"], path, A_TOKEN).status_code == 200
    reviews = len(api.reviews)
    assert get(agents["n1"], path, A_TOKEN).status_code == 200
    assert len(api.reviews) == reviews, "within the TTL the TokenReview answer is reused"
    # The RBAC binding removed: 403 within the access-review TTL.
    api.delete(ROLE_BINDINGS, "dataset-reader-reader", "a")
    removed = time.monotonic()
    wait_for("403 after the binding is gone", lambda: get(agents["n1"], path, A_TOKEN).status_code == 403, timeout_s=5)
    assert time.monotonic() - removed <= TTL_S + 0.5
    # The token revoked (TokenReview now says unauthenticated): 401 within the token TTL.
    assert get(agents["n1"], "/v1/namespaces/b/datasets/d/shards/0", B_TOKEN).status_code == 200
    del api.tokens[B_TOKEN]
    revoked = time.monotonic()
    wait_for(
        "401 after the token is revoked",
        lambda: get(agents["n1"], "/v1/namespaces/b/datasets/d/shards/0", B_TOKEN).status_code == 401,
        timeout_s=5,
    )
    assert time.monotonic() - revoked <= TTL_S + 0.5


def test_an_agent_whose_piece_permission_is_removed_can_no_longer_copy_from_its_peers(
    api: ReviewingApi, agents: dict[str, Agent], tmp_path: Path
) -> None:
    one_replica_each(api, tmp_path)
    api.delete(CLUSTER_ROLE_BINDINGS, DEMO_ROLE)
    time.sleep(TTL_S + 0.1)  # the last allowed answer expires
    r = get(agents["n1"], "/v1/namespaces/a/datasets/d/pieces/0/replica", TOKEN)
    assert r.status_code == 403
    (tmp_path / "src-a").rename(tmp_path / "gone-a")
    obj = dataset(
        "d", shards=1, size=SIZE, redundancy={"replicas": 2}, nodes=["n1", "n2"], rows=[[0, 1]], source={"path": str(tmp_path / "src-a")}
    )
    put_dataset(api, in_namespace(obj, "a"))
    time.sleep(1.0)  # several reconcile passes of n2 (resync 0.2 s): each one is refused
    assert 0 not in ready_on(api, "n2", "d", "replica")
    assert agents["n2"].metrics.hydrated("peer-zone") == 0
    assert not (Path(agents["n2"].settings.root) / "a" / "d" / "part-000.bin").exists()


def test_static_token_lines_carry_user_uid_and_groups_and_a_bare_token_has_the_default_identity() -> None:
    parsed = parse_static_tokens('t1,alice,uid-1,"readers,system:authenticated"\nt2\n# comment\n\nt3,bob,uid-3\n')
    assert parsed == {
        "t1": Identity("alice", "uid-1", ("readers", "system:authenticated")),
        "t2": Identity(STATIC_USER),
        "t3": Identity("bob", "uid-3"),
    }


def test_access_reviews_cross_http_as_the_api_server_reads_them_and_are_cached(emulator: Emulator) -> None:
    """The emulator answers POST subjectaccessreviews with :func:`kube.rbac.review` over the RBAC
    objects below (what the API server's RBAC authorizer would say); the agent's reviewer goes
    through the real client, over a socket."""
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r", "namespace": "a"},
            "rules": [{"apiGroups": ["kbl.io"], "resources": ["datasets"], "verbs": ["get"], "resourceNames": ["d"]}]}  # fmt: skip
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "r", "namespace": "a"},
               "roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "Group", "name": "readers"}]}  # fmt: skip
    seen: list[dict[str, Any]] = []
    resource = kmock.resource(SUBJECT_ACCESS_REVIEWS.group, SUBJECT_ACCESS_REVIEWS.version, SUBJECT_ACCESS_REVIEWS.plural)

    def answer(request: Any) -> Any:
        seen.append(request.data)
        # The API server never stores a review; the emulator does (and would 409 the next one).
        del emulator.kmock.objects[resource, None, request.data["metadata"]["name"]]
        return {**request.data, "status": rbac.review([role, binding], request.data["spec"])}

    emulator.kmock["post", resource] << answer
    reviewer = AccessReviewer(KubeClient.from_url(emulator.url), cache_s=60)
    alice = Identity("alice", "uid-a", ("readers",))
    allowed = reviewer.authorize(alice, "a", "d", READ_SHARDS)
    assert allowed.allowed
    assert 'RoleBinding "r/a"' in allowed.reason
    assert not reviewer.authorize(alice, "a", "other", READ_SHARDS).allowed  # resourceNames honoured
    assert not reviewer.authorize(alice, "a", "d", READ_PIECES).allowed  # a subresource is not the resource
    assert not reviewer.authorize(Identity("mallory", "", ("others",)), "a", "d", READ_SHARDS).allowed
    assert reviewer.authorize(alice, "a", "d", READ_SHARDS).allowed
    assert len(seen) == 4, "the repeated question was answered from the cache"
    attrs = seen[0]["spec"]["resourceAttributes"]
    assert attrs == {"group": DATASETS.group, "resource": "datasets", "subresource": "", "verb": "get", "namespace": "a", "name": "d"}
    assert seen[0]["spec"]["user"] == "alice"
    assert seen[0]["spec"]["uid"] == "uid-a"
    assert seen[0]["spec"]["groups"] == ["readers"]
    assert seen[2]["spec"]["resourceAttributes"]["subresource"] == "pieces"


@pytest.mark.timeout(600)
def test_agent_processes_authorize_readers_and_each_other_with_the_shipped_rbac(emulator: Emulator, tmp_path: Path) -> None:
    """``python -m dataplane.agent`` (``kbl agent``) with TokenReview and SubjectAccessReview on,
    against kmock's emulator over HTTP answering both (:meth:`Emulator.serve_reviews`), with the
    agent's ClusterRole and binding as the plain manifests ship them: a reader is refused another
    namespace, reads its own (relayed by a node that holds nothing), and a second replica is
    copied between the agent processes under the shipped role alone."""
    agent_user = "system:serviceaccount:kbl-system:kbl-agent"
    emulator.serve_reviews({"agent-token": agent_user, A_TOKEN: "system:serviceaccount:a:reader"})
    shipped = [o for _, o in plain_objects(("agent.yaml",))]
    for kind, plural in (("ClusterRole", "clusterroles"), ("ClusterRoleBinding", "clusterrolebindings")):
        emulator.post(f"/apis/rbac.authorization.k8s.io/v1/{plural}", find(shipped, kind, "kbl-agent"))
    reads = ReviewingApi({})
    grant_dataset_reads(reads, "a", "reader")
    for (plural, ns, _), obj in reads.objects.items():
        emulator.post(f"/apis/{plural.split('/')[0]}/v1/namespaces/{ns}/{plural.split('/')[1]}", obj)
    for name in ("n1", "n2"):
        emulator.post("/api/v1/nodes", node(name, "z"))
    src = write_source(tmp_path / "src", 1, SIZE)
    datasets = "/apis/kbl.io/v1alpha1/namespaces/a/datasets"
    obj = dataset("d", shards=1, size=SIZE, redundancy={"replicas": 1}, nodes=["n1"], rows=[[0]], source={"path": str(tmp_path / "src")})
    emulator.post(datasets, in_namespace(obj, "a"))
    (tmp_path / "token").write_text("agent-token\n")
    procs = []
    try:
        for name in ("n1", "n2"):
            log = open(tmp_path / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
            cmd = [sys.executable, "-m", "dataplane.agent", "--node", name, "--root", str(tmp_path / name), "--host", "127.0.0.1",
                   "--port", "0", "--api-url", emulator.url, "--token-file", str(tmp_path / "token"), "--log-level", "info"]  # fmt: skip
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=log, cwd=ROOT))
            log.close()
        api = KubeClient.from_url(emulator.url)
        for name in ("n1", "n2"):
            wait_for(f"{name} reporting", lambda name=name: holdings(api, name) is not None, 240)  # type: ignore[misc]
        wait_for("a/d on n1", lambda: 0 in ready_on_ns(api, "a"))
        n1, n2 = (holdings(api, n).endpoint for n in ("n1", "n2"))  # type: ignore[union-attr]
        r = httpx.get(f"{n2}/v1/namespaces/a/datasets/d/shards/0", headers={"Authorization": f"Bearer {A_TOKEN}"}, timeout=10)
        assert r.status_code == 200, r.text
        assert r.content == src[0]
        r = httpx.get(f"{n1}/v1/namespaces/b/datasets/d/shards/0", headers={"Authorization": f"Bearer {A_TOKEN}"}, timeout=10)
        assert r.status_code == 403
        assert 'in the namespace "b"' in r.json()["detail"]
        r = httpx.get(f"{n1}/v1/namespaces/a/datasets/d/pieces/0/replica", headers={"Authorization": f"Bearer {A_TOKEN}"}, timeout=10)
        assert r.status_code == 403
        (tmp_path / "src").rename(tmp_path / "gone")
        patch = {"status": {"placement": {"nodes": ["n1", "n2"], "shards": [[0, 1]]}}}
        r = httpx.patch(f"{emulator.url}{datasets}/d", json=patch, headers={"Content-Type": "application/merge-patch+json"}, timeout=10)
        assert r.status_code == 200, r.text
        r = httpx.patch(f"{emulator.url}{datasets}/d", json={"spec": {"redundancy": {"replicas": 2}}},
                        headers={"Content-Type": "application/merge-patch+json"}, timeout=10)  # fmt: skip
        assert r.status_code == 200, r.text
        replica = tmp_path / "n2" / "a" / "d" / "part-000.bin"
        wait_for("the second replica copied from the peer process", replica.exists, 60)
        assert replica.read_bytes() == src[0]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
