"""The driver's gRPC services as a CO sees them, csi-sanity style: over a real unix socket, the
official csi.v1 messages, every refusal with the code the CSI spec names."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from dataplane.csi.proto import csi_pb2, csi_pb2_grpc
from dataplane.csi.publishing import Publisher
from dataplane.csi.serving import Driver
from dataplane.csi.settings import DRIVER_NAME, CsiSettings
from kube.api import DATASETS
from tests.dataplane.agent.cluster import NS, dataset, put_dataset
from tests.dataplane.csi.world import RbacApi, code_of, grant_get, publish_request, user


@pytest.fixture
def api() -> RbacApi:
    api = RbacApi()
    grant_get(api, "reader", NS, "reads")
    put_dataset(api, dataset("reads", shards=2, size=1000, redundancy={"replicas": 1}, nodes=["n1"], rows=[[0], [0]], source=None))
    return api


@pytest.fixture
def stubs(api: RbacApi) -> Iterator[tuple[csi_pb2_grpc.IdentityStub, csi_pb2_grpc.NodeStub, Path]]:
    folder = Path(tempfile.mkdtemp(prefix="kbl-csi-", dir="/tmp"))  # a unix socket path must stay short
    settings = CsiSettings(
        node="n1", root=str(folder / "root"), agent_url="http://127.0.0.1:9", token_file=str(folder / "token"),
        socket=str(folder / "csi.sock"), state_dir=str(folder / "state"), mount_timeout_s=2,
    )
    driver = Driver(Publisher(api, settings), "n1", settings.socket, heal_every_s=0).start()
    channel = grpc.insecure_channel(f"unix://{settings.socket}")
    yield csi_pb2_grpc.IdentityStub(channel), csi_pb2_grpc.NodeStub(channel), folder  # type: ignore[no-untyped-call]
    channel.close()
    driver.stop()
    shutil.rmtree(folder, ignore_errors=True)


Stubs = tuple[csi_pb2_grpc.IdentityStub, csi_pb2_grpc.NodeStub, Path]


def test_identity_names_the_driver_reports_ready_and_advertises_no_controller_service(stubs: Stubs) -> None:
    identity, _, _ = stubs
    info = identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest())
    assert info.name == DRIVER_NAME
    assert info.vendor_version
    capabilities = identity.GetPluginCapabilities(csi_pb2.GetPluginCapabilitiesRequest()).capabilities
    assert all(c.service.type != csi_pb2.PluginCapability.Service.CONTROLLER_SERVICE for c in capabilities)
    assert identity.Probe(csi_pb2.ProbeRequest()).ready.value is True


def test_node_info_is_this_node_and_no_staging_is_advertised_or_served(stubs: Stubs) -> None:
    _, node, folder = stubs
    assert node.NodeGetInfo(csi_pb2.NodeGetInfoRequest()).node_id == "n1"
    caps = node.NodeGetCapabilities(csi_pb2.NodeGetCapabilitiesRequest()).capabilities
    assert csi_pb2.NodeServiceCapability.RPC.STAGE_UNSTAGE_VOLUME not in [c.rpc.type for c in caps]
    stage = csi_pb2.NodeStageVolumeRequest(volume_id="v", staging_target_path=str(folder / "s"))
    assert code_of(lambda: node.NodeStageVolume(stage)) == grpc.StatusCode.UNIMPLEMENTED


def test_a_publish_missing_what_it_needs_is_an_invalid_argument_and_mounts_nothing(stubs: Stubs) -> None:
    _, node, folder = stubs
    target = folder / "pod" / "mount"
    good = publish_request("v1", target, "reads")
    no_id = publish_request("", target, "reads")
    no_target = publish_request("v1", "", "reads")
    relative = publish_request("v1", "pod/mount", "reads")
    no_dataset = publish_request("v1", target, None)
    writable = publish_request("v1", target, "reads", readonly=False)
    no_capability = csi_pb2.NodePublishVolumeRequest()
    no_capability.CopyFrom(good)
    no_capability.ClearField("volume_capability")
    block = csi_pb2.NodePublishVolumeRequest()
    block.CopyFrom(good)
    block.volume_capability.block.SetInParent()
    no_pod_info = csi_pb2.NodePublishVolumeRequest()
    no_pod_info.CopyFrom(good)
    del no_pod_info.volume_context["csi.storage.k8s.io/serviceAccount.name"]
    for bad in (no_id, no_target, relative, no_dataset, writable, no_capability, block, no_pod_info):
        assert code_of(lambda bad=bad: node.NodePublishVolume(bad)) == grpc.StatusCode.INVALID_ARGUMENT
    assert not target.exists()


def test_a_publish_of_a_dataset_that_does_not_exist_is_not_found(stubs: Stubs) -> None:
    _, node, folder = stubs
    assert code_of(lambda: node.NodePublishVolume(publish_request("v1", folder / "t", "nope"))) == grpc.StatusCode.NOT_FOUND


def test_a_pod_whose_service_account_may_not_get_the_dataset_is_refused_with_an_event_on_the_pod(api: RbacApi, stubs: Stubs) -> None:
    _, node, folder = stubs
    request = publish_request("v1", folder / "t", "reads", sa="stranger", pod="curious-0")
    with pytest.raises(grpc.RpcError) as refused:
        node.NodePublishVolume(request)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "stranger" in (refused.value.details() or "")
    assert "reads" in (refused.value.details() or "")
    review = api.access_reviews[-1]["spec"]
    assert review["user"] == user("stranger")
    assert review["resourceAttributes"] == {"namespace": NS, "verb": "get", "group": "kbl.io", "resource": "datasets", "name": "reads"}
    events = [e for e in api.events if e["involved"]["metadata"]["name"] == "curious-0"]
    assert len(events) == 1
    assert events[0]["type"] == "Warning"
    assert events[0]["reason"] == "DataSetAccessDenied"
    assert events[0]["involved"]["kind"] == "Pod"
    assert events[0]["involved"]["metadata"]["namespace"] == NS
    assert not (folder / "t").exists()


def test_a_grant_in_another_namespace_or_for_another_dataset_does_not_open_this_one(api: RbacApi, stubs: Stubs) -> None:
    _, node, folder = stubs
    grant_get(api, "other", "elsewhere", "reads")
    grant_get(api, "other", NS, "not-reads")
    request = publish_request("v1", folder / "t", "reads", sa="other")
    assert code_of(lambda: node.NodePublishVolume(request)) == grpc.StatusCode.PERMISSION_DENIED
    assert api.get(DATASETS, "reads", namespace=NS) is not None


def test_an_allowed_pod_whose_agent_is_unreachable_gets_unavailable_so_kubelet_retries(stubs: Stubs) -> None:
    _, node, folder = stubs
    (folder / "token").write_text("t")
    request = publish_request("v1", folder / "t", "reads")
    assert code_of(lambda: node.NodePublishVolume(request)) == grpc.StatusCode.UNAVAILABLE


def test_unpublish_needs_its_arguments_and_is_a_no_op_for_a_volume_never_published(stubs: Stubs) -> None:
    _, node, folder = stubs
    missing_id = csi_pb2.NodeUnpublishVolumeRequest(target_path=str(folder / "t"))
    missing_target = csi_pb2.NodeUnpublishVolumeRequest(volume_id="v1")
    assert code_of(lambda: node.NodeUnpublishVolume(missing_id)) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: node.NodeUnpublishVolume(missing_target)) == grpc.StatusCode.INVALID_ARGUMENT
    never = csi_pb2.NodeUnpublishVolumeRequest(volume_id="never", target_path=str(folder / "never"))
    assert code_of(lambda: node.NodeUnpublishVolume(never)) is None
    assert code_of(lambda: node.NodeUnpublishVolume(never)) is None
