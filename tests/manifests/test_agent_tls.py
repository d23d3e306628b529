"""``agent.tls`` in the chart: the certificate reaches the agent's flags, and the agent accepts them.

Rendered with Helm's own engine; the DaemonSet with TLS on is validated against the Kubernetes
schemas like the shipped files; the arguments are parsed by ``kbl agent``'s own parser. That the
flags do what they say over real sockets is ``tests/dataplane/agent/test_tls.py``.
"""

from __future__ import annotations

import argparse
from typing import Any

import kubernetes_validate
import yaml

from dataplane.agent.commanding import configure
from tests.manifests.shipped import MANIFESTS, find, generator, load_docs, of_kind, pod_spec

Obj = dict[str, Any]
GEN = generator()


def _render(values: Obj) -> list[Obj]:
    rendered = GEN.render(values, release="kbl", namespace="kbl-system")
    return [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]


def _agent(objects: list[Obj]) -> tuple[Obj, argparse.Namespace, dict[str, str]]:
    """The agent container, its parsed arguments, and mount path -> Secret name of its Secret volumes."""
    spec = pod_spec(find(objects, "DaemonSet", "kbl-agent"))
    container = next(c for c in spec["containers"] if c["name"] == "agent")  # beside it: the CSI driver
    parser = argparse.ArgumentParser()
    configure(parser)
    args = parser.parse_args(container["args"][1:])  # after the `agent` subcommand
    secrets = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    mounts = {m["mountPath"]: secrets[m["name"]] for m in container["volumeMounts"] if m["name"] in secrets}
    return container, args, mounts


def _secret_of(path: str, mounts: dict[str, str]) -> tuple[str, str]:
    folder, _, key = path.rpartition("/")
    return mounts[folder], key


def test_by_default_the_agent_serves_plain_http_and_mounts_no_certificate() -> None:
    container, args, mounts = _agent(_render({}))
    assert (args.tls_cert, args.tls_key, args.tls_client_ca, args.peer_ca) == (None, None, None, None)
    assert mounts == {}
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTP"


def test_tls_with_cert_manager_mounts_the_certificate_it_issues_and_turns_on_mutual_tls() -> None:
    objects = _render({"agent": {"tls": {"enabled": True}}})
    container, args, mounts = _agent(objects)
    cert = find(objects, "Certificate", "kbl-agent")
    secret = cert["spec"]["secretName"]
    assert _secret_of(args.tls_cert, mounts) == (secret, "tls.crt")
    assert _secret_of(args.tls_key, mounts) == (secret, "tls.key")
    assert _secret_of(args.tls_client_ca, mounts) == (secret, "ca.crt")
    assert _secret_of(args.peer_ca, mounts) == (secret, "ca.crt")
    # Readers verify the Service's name; peers present the same certificate as a client.
    service = find(objects, "Service", "kbl-agent")
    assert f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc" in cert["spec"]["dnsNames"]
    assert {"server auth", "client auth"} <= set(cert["spec"]["usages"])
    issuer = find(objects, "Issuer", cert["spec"]["issuerRef"]["name"])
    ca = find(objects, "Certificate", "kbl-agent-ca")
    assert issuer["spec"]["ca"]["secretName"] == ca["spec"]["secretName"]
    assert ca["spec"]["isCA"] is True
    # The kubelet has no client certificate: the probes cannot speak HTTP to a mutual-TLS port.
    assert "tcpSocket" in container["readinessProbe"]
    assert "tcpSocket" in container["livenessProbe"]
    daemonset = find(objects, "DaemonSet", "kbl-agent")
    kubernetes_validate.validate(daemonset, "1.30.0", strict=True)


def test_tls_from_a_provided_secret_renders_no_cert_manager_objects() -> None:
    objects = _render({"agent": {"tls": {"enabled": True, "secretName": "my-agent-tls", "certManager": {"enabled": False}}}})
    _, args, mounts = _agent(objects)
    assert _secret_of(args.tls_cert, mounts) == ("my-agent-tls", "tls.crt")
    assert not [o for o in objects if o["apiVersion"].startswith("cert-manager.io/")]


def test_tls_without_client_certificates_serves_https_and_probes_over_https() -> None:
    objects = _render({"agent": {"tls": {"enabled": True, "requireClientCertificates": False}}})
    container, args, _ = _agent(objects)
    assert args.tls_cert is not None
    assert args.tls_client_ca is None
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert container["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"


def test_the_plain_agent_tls_file_is_the_charts_cert_manager_objects() -> None:
    shipped = load_docs(MANIFESTS / "agent-tls.yaml")
    rendered = [o for o in _render({"agent": {"tls": {"enabled": True}}}) if o["apiVersion"].startswith("cert-manager.io/")]
    assert shipped == rendered
    assert {o["kind"] for o in shipped} == {"Issuer", "Certificate"}
    assert all(c["spec"]["issuerRef"]["kind"] == "Issuer" for c in of_kind(shipped, "Certificate"))


def test_the_agent_service_account_carries_the_role_given_or_none() -> None:
    """Helm merges maps: a user's ``{}`` keeps the default key; ``null`` on the key removes it."""
    arn = "arn:aws:iam::123456789012:role/data"
    account = find(
        _render({"agent": {"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": arn}}}}), "ServiceAccount", "kbl-agent"
    )
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": arn}
    account = find(
        _render({"agent": {"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": None}}}}), "ServiceAccount", "kbl-agent"
    )
    assert "annotations" not in account["metadata"]
