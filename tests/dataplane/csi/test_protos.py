"""The committed CSI protobuf modules are exactly what grpcio-tools makes from the committed csi.proto."""

from __future__ import annotations

from pathlib import Path

from dataplane.csi.generating import GENERATED, PROTO, ROOT, generate
from dataplane.csi.proto import csi_pb2


def test_the_committed_generated_modules_are_what_grpcio_tools_makes_from_the_committed_proto(tmp_path: Path) -> None:
    for path in generate(tmp_path):
        committed = ROOT / PROTO.parent / path.name
        assert committed.read_bytes() == path.read_bytes(), f"{committed} is stale: run python -m dataplane.csi.generating"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(GENERATED)


def test_the_proto_is_the_official_csi_v1_package_with_its_node_and_identity_services() -> None:
    services = csi_pb2.DESCRIPTOR.services_by_name
    assert csi_pb2.DESCRIPTOR.package == "csi.v1"
    assert {"NodePublishVolume", "NodeUnpublishVolume", "NodeGetInfo"} <= set(services["Node"].methods_by_name)
    assert set(services["Identity"].methods_by_name) == {"GetPluginInfo", "GetPluginCapabilities", "Probe"}
