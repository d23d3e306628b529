"""A few real-socket tests: uvicorn on 127.0.0.1 with an ephemeral port, plain and TLS, and `kbl serve`."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks.serving import LocalServer, free_port
from extender.app import create_app
from extender.serving import ServerOptions, config
from extender.state import ClusterState
from tests.certificates import self_signed
from tests.extender import scenarios as sc
from topology.snapshots import load_snapshot


@pytest.fixture(params=["http", "https"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | bool]]:
    state = ClusterState.from_snapshot(load_snapshot(sc.snapshot()))
    tls = self_signed(tmp_path) if request.param == "https" else None
    with LocalServer(create_app(state), tls=tls) as server:
        yield server.url, tls[0] if tls else True


def test_filter_and_prioritize_over_a_real_socket_plain_and_tls(served: tuple[str, str | bool]) -> None:
    url, ca = served  # the self-signed certificate is its own CA (kube-scheduler's tlsConfig.caFile)
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca) if isinstance(ca, str) else True
    with httpx.Client(base_url=url, verify=verify) as client:
        body = json.dumps(sc.names_args(sc.pod(), ["node-0-0-0", "node-0-1-1"]))
        reply = client.post("/filter", content=body, headers={"Content-Type": "application/json"})
        assert reply.status_code == 200
        assert reply.json()["NodeNames"] == ["node-0-0-0", "node-0-1-1"]
        scores = client.post("/prioritize", content=body, headers={"Content-Type": "application/json"}).json()
        assert scores == [{"Host": "node-0-0-0", "Score": 10}, {"Host": "node-0-1-1", "Score": 0}]
        assert client.get("/readyz").status_code == 200


def test_kbl_serve_from_a_snapshot_answers_on_its_port(tmp_path: Path) -> None:
    snap = tmp_path / "snap.json"
    snap.write_text(json.dumps(sc.snapshot()))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kbl", "serve", "--snapshot", str(snap), "--host", "127.0.0.1", "--port", str(port), "--url-prefix", "kbl/"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                reply = httpx.post(
                    f"http://127.0.0.1:{port}/kbl/filter", json=sc.names_args(sc.pod(locality="required"), ["node-0-0-0", "node-0-1-1"])
                )
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert reply.json()["NodeNames"] == ["node-0-0-0"]
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def test_uvicorn_runs_on_uvloop_and_httptools_which_are_dependencies() -> None:
    cfg = config(create_app(ClusterState.from_snapshot(load_snapshot(sc.snapshot()))), ServerOptions(host="127.0.0.1", port=0))
    assert (cfg.loop, cfg.http) == ("uvloop", "httptools")
