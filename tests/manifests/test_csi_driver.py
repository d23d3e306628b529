"""The chart installs the CSI driver the way kubelet finds and calls it: a CSIDriver object for
ephemeral inline volumes with pod info, the driver's socket where the registrar tells kubelet it is,
mounts that reach the pods' folders, and arguments ``kbl csi`` itself accepts."""

from __future__ import annotations

from typing import Any

from kbl import cli
from tests.manifests.shipped import find, plain_objects, pod_spec
from topology import labels

OBJECTS = plain_objects()


def _containers() -> dict[str, Any]:
    return {c["name"]: c for c in pod_spec(find(OBJECTS, "DaemonSet", "kbl-agent"))["containers"]}


def test_the_csidriver_object_asks_for_ephemeral_volumes_pod_info_and_no_attach() -> None:
    driver = find(OBJECTS, "CSIDriver", labels.CSI_DRIVER)
    assert driver["spec"]["attachRequired"] is False
    assert driver["spec"]["podInfoOnMount"] is True
    assert driver["spec"]["volumeLifecycleModes"] == ["Ephemeral"]


def test_the_driver_listens_where_the_registrar_tells_kubelet_and_its_mounts_reach_the_pods() -> None:
    spec = pod_spec(find(OBJECTS, "DaemonSet", "kbl-agent"))
    volumes = {v["name"]: v for v in spec["volumes"]}
    csi, registrar = _containers()["csi"], _containers()["node-driver-registrar"]
    args = cli.build_parser("csi").parse_args(csi["args"])
    assert args.command == "csi"
    socket_mount = next(m for m in csi["volumeMounts"] if m["name"] == "csi-socket")
    assert args.socket == f"{socket_mount['mountPath']}/csi.sock"
    registration = next(a for a in registrar["args"] if a.startswith("--kubelet-registration-path="))
    assert registration.split("=", 1)[1] == f"{volumes['csi-socket']['hostPath']['path']}/csi.sock"
    assert f"--csi-address={args.socket}" in registrar["args"]
    pods = next(m for m in csi["volumeMounts"] if m["name"] == "kubelet-pods")
    assert pods["mountPropagation"] == "Bidirectional"
    assert pods["mountPath"] == volumes["kubelet-pods"]["hostPath"]["path"]
    assert csi["securityContext"]["privileged"] is True, "mount(2) and Bidirectional propagation need it"
    assert volumes["dev-fuse"]["hostPath"] == {"path": "/dev/fuse", "type": "CharDevice"}


def test_the_driver_reads_the_agents_disk_read_only_and_calls_the_agent_of_its_own_pod() -> None:
    containers = _containers()
    csi, agent = containers["csi"], containers["agent"]
    args = cli.build_parser("csi").parse_args(csi["args"])
    data = next(m for m in csi["volumeMounts"] if m["name"] == "data")
    assert data["readOnly"] is True
    assert data["mountPath"] == args.root
    port = agent["args"][agent["args"].index("--port") + 1]
    assert args.agent_url == f"http://127.0.0.1:{port}"
    token = next(m for m in csi["volumeMounts"] if m["name"] == "kbl-token")
    assert args.token_file.startswith(token["mountPath"] + "/")


def test_with_agent_tls_the_driver_speaks_https_to_its_agent_checks_the_service_name_and_presents_the_agents_certificate() -> None:
    import yaml

    from tests.manifests.shipped import generator

    rendered = generator().render({"agent": {"tls": {"enabled": True}}}, release="kbl", namespace="kbl-system")
    objects = [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]
    spec = pod_spec(find(objects, "DaemonSet", "kbl-agent"))
    containers = {c["name"]: c for c in spec["containers"]}
    args = cli.build_parser("csi").parse_args(containers["csi"]["args"])
    agent = containers["agent"]["args"]
    assert args.agent_url == f"https://127.0.0.1:{agent[agent.index('--port') + 1]}"
    certificate = find(objects, "Certificate", "kbl-agent")
    assert args.tls_name in certificate["spec"]["dnsNames"]
    secrets = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    mounts = {m["mountPath"]: secrets[m["name"]] for m in containers["csi"]["volumeMounts"] if m["name"] in secrets}
    for path, key in ((args.ca_file, "ca.crt"), (args.cert_file, "tls.crt"), (args.key_file, "tls.key")):
        folder, _, name = path.rpartition("/")
        assert (mounts[folder], name) == (certificate["spec"]["secretName"], key)
