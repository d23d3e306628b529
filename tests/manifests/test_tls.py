"""The documented self-signed TLS path works: kube-scheduler's verification would accept it.

``manifests/tls/make-certs.sh`` is run as shipped (openssl), then a real TLS server on
127.0.0.1 presents its certificate and a client verifies it exactly as kube-scheduler's Go
client does with the shipped ``tlsConfig``: against ``ca.crt`` only, for ``serverName``.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from tests.manifests.shipped import MANIFESTS, scheduler_config

SCRIPT = MANIFESTS / "tls" / "make-certs.sh"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="the documented path needs the openssl command")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tls")
    done = subprocess.run(["sh", str(SCRIPT), str(out)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "create secret generic kbl-extender-tls --type=kubernetes.io/tls" in done.stdout
    return out


def _handshake(certs: Path, server_name: str, ca: Path) -> str:
    """Serve once with tls.crt/tls.key on loopback; connect verifying against ``ca``; return the
    negotiated protocol version."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certs / "tls.crt", certs / "tls.key")
    client_ctx = ssl.create_default_context(cafile=str(ca))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, client_ctx.wrap_socket(raw, server_hostname=server_name) as tls:
            version = tls.version() or ""
            tls.sendall(b"x")
            return version
    finally:
        thread.join(timeout=5)
        listener.close()


def test_scheduler_verifies_the_extender_certificate_for_the_configured_server_name(certs: Path) -> None:
    (ext,) = scheduler_config()["extenders"]
    server_name = ext["tlsConfig"]["serverName"]
    assert ext["tlsConfig"]["caFile"].endswith("/ca.crt")
    assert _handshake(certs, server_name, certs / "ca.crt").startswith("TLS")


def test_a_wrong_name_or_another_ca_is_refused(certs: Path, tmp_path: Path) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(certs, "evil.example.com", certs / "ca.crt")
    other = tmp_path / "other"
    subprocess.run(["sh", str(SCRIPT), str(other)], capture_output=True, timeout=60, check=True)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(certs, "kbl-extender.kbl-system.svc", other / "ca.crt")


def test_private_keys_are_not_world_readable(certs: Path) -> None:
    for key in ("tls.key", "ca.key"):
        assert (certs / key).stat().st_mode & 0o077 == 0, key
