"""Security: TLS on the extender, and no credential ever written to a log.

TLS: with a freshly generated self-signed certificate, an HTTPS client that trusts it completes
the handshake and gets answers; one that does not trust it is refused; plain HTTP to the TLS
port gets no answer. Secrets: the Kubernetes client (a kubeconfig with a bearer token, against
kmock's emulator over HTTP, including error paths and an informer retrying), the cloud
providers and the SQS worker (AWS credentials with a session token in the environment, against
moto over HTTP, including failing calls) and the controller loop run with our own loggers at DEBUG
and the libraries at INFO; neither the token nor the secret key nor the session token may appear
in the captured logs or on stdout/stderr. (botocore's own DEBUG output prints the SigV4 canonical
request, session token included: no kbl command turns botocore to DEBUG; see RELIABILITY.md.)
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
from pathlib import Path

import boto3
import httpx
import orjson
import pytest

from controller import Controller, ControllerSettings
from controller.providers import NodeGroupSpec, ProviderError
from controller.providers.awscalls import aws_call
from controller.providers.fake import FakeProvider
from controller.providers.queueing import QueueProvider, Worker
from controller.providers.retrying import Backoff
from extender.app import create_app
from extender.state import ClusterState
from kube.api import KBLS, NODES, PODS, ApiError
from kube.client import KubeClient
from kube.watching import Informer, InformerSettings
from tests.certificates import self_signed
from tests.extender import scenarios as sc
from tests.kube.emulators import Emulator
from tests.kube.fakekube import FakeKube
from tests.placement.scenarios import T0, kbl_object, pod_object
from tests.reliability.servers import running
from topology.examples import make_node
from topology.snapshots import load_snapshot

BEARER = "kbl-test-bearer-7f3a9c2e51d84b6f"
SECRET_KEY = "kbl/test/SecretAccessKey/wJalrXUtnFEMIK7MDENG"
SESSION_TOKEN = "kbl-test-session-token-FwoGZXIvYXdzEBYaD"
ACCESS_KEY = "AKIAKBLTEST000000001"


# ------------------------------------------------------------------ TLS
def test_tls_handshake_with_a_self_signed_certificate_works_and_plain_http_to_the_tls_port_fails(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    app = create_app(ClusterState.from_snapshot(load_snapshot(sc.snapshot())))
    body = orjson.dumps(sc.names_args(sc.pod(locality="required"), ["node-0-0-0", "node-0-1-0"]))
    with running(app, tls=(cert, key)) as port:
        trusted = ssl.create_default_context(cafile=cert)
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=trusted) as client:
            reply = client.post("/filter", content=body)
            assert reply.status_code == 200
            assert reply.json()["NodeNames"] == ["node-0-0-0"]
        with socket.create_connection(("127.0.0.1", port)) as raw, trusted.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
        with pytest.raises(httpx.ConnectError), httpx.Client(verify=ssl.create_default_context()) as untrusting:
            untrusting.post(f"https://127.0.0.1:{port}/filter", content=body)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as plain:
            plain.sendall(b"POST /filter HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            try:
                answer = plain.recv(4096)
            except (ConnectionResetError, TimeoutError):
                answer = b""
        assert not answer.startswith(b"HTTP/1.1 200")
        assert b"NodeNames" not in answer


# ------------------------------------------------------------------ secrets in logs
def _kubeconfig(tmp_path: Path, server: str) -> str:
    path = tmp_path / "kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": BEARER}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "ctx",
    }
    path.write_text(json.dumps(config))
    return str(path)


@pytest.fixture
def secrets_in_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


def _kube_paths(tmp_path: Path, emulator: Emulator) -> None:
    client = KubeClient.from_config(_kubeconfig(tmp_path, emulator.url))
    try:
        emulator.post("/api/v1/nodes", make_node("n1"))
        items, _ = client.list(NODES)
        assert [i["metadata"]["name"] for i in items] == ["n1"]
        with pytest.raises(ApiError):
            client.patch(PODS, "absent", {"metadata": {"labels": {"a": "b"}}}, namespace="default")
        client.get(NODES, "absent")
        informer = Informer(
            client, NODES, on_event=lambda _e: None, on_relist=lambda _i: None, settings=InformerSettings(watch_timeout_s=1, seed=1)
        ).start()
        assert informer.synced.wait(10)
        informer.stop(5)
    finally:
        client.close()


def _cloud_paths(moto_server: str) -> str:
    """Run the paths; returns the Kubernetes events the controller wrote (another log)."""
    session = boto3.session.Session()  # credentials from the environment, as in production
    sqs = session.client("sqs", endpoint_url=moto_server)
    queue = sqs.create_queue(QueueName="kbl-requests-secrets")["QueueUrl"]
    replies = sqs.create_queue(QueueName="kbl-replies-secrets")["QueueUrl"]
    now = [T0]
    fake = FakeProvider(lambda: now[0])
    backoff = Backoff(attempts=2, base_s=0.0, sleep=lambda _s: None)
    controller_side = QueueProvider(sqs, queue, replies, clock=lambda: now[0], backoff=backoff)
    controller_side.create_group(NodeGroupSpec("g", "default/k", "us-east-1a", "m6i.xlarge", 1, 3), "token")
    worker = Worker(sqs, queue, replies, fake, max_nodes_total=5, clock=lambda: now[0], backoff=backoff)
    assert worker.poll_once() == 1
    assert [g.name for g in controller_side.list_groups()] == ["g"]
    eks = session.client("eks", endpoint_url=moto_server)
    with pytest.raises(ProviderError):
        aws_call(backoff, eks.describe_nodegroup, clusterName="no-such-cluster", nodegroupName="g")
    kube = FakeKube()
    kube.put(NODES, make_node("gen-a0"))
    kube.put(KBLS, kbl_object("k"))
    kube.put(PODS, pod_object("p", kbl="k"))
    cloud = FakeProvider(lambda: now[0])
    cloud.inject("create_group", ProviderError("ThrottlingException", "slow down", retryable=True))
    Controller(kube, cloud, ControllerSettings(cluster_name="secrets"), clock=lambda: now[0]).reconcile_once()
    assert any(e["reason"] == "CapacityActionFailed" for e in kube.events)
    return json.dumps(kube.events)


@pytest.mark.usefixtures("secrets_in_env")
def test_no_credential_appears_in_logs_of_the_kube_client_providers_worker_and_controller(
    tmp_path: Path,
    emulator: Emulator,
    moto_server: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)  # the libraries (botocore, urllib3, kubernetes) at INFO, as `kbl serve` runs them by default
    for ours in ("kbl", "placement", "extender", "topology", "benchmarks"):
        caplog.set_level(logging.DEBUG, logger=ours)  # our own code at its most talkative
    _kube_paths(tmp_path, emulator)
    events = _cloud_paths(moto_server)
    out, err = capfd.readouterr()
    captured = caplog.text + out + err + events
    assert caplog.records  # the paths did log
    for secret in (BEARER, SECRET_KEY, SESSION_TOKEN):
        assert secret not in captured, f"a credential leaked into the logs: {secret[:12]}..."
