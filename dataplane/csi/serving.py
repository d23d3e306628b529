"""The CSI Identity and Node services over gRPC on a unix socket (the official ``csi.v1`` protobuf).

Node service only (``attachRequired: false``, ephemeral inline volumes): no Controller service,
no ``NodeStageVolume`` (``STAGE_UNSTAGE_VOLUME`` is not advertised, so the CO never calls it; a
call gets ``UNIMPLEMENTED``), no volume stats. Codes, as the CSI spec asks:

- missing ``volume_id`` / ``target_path`` / ``volume_capability``, a block volume, a writable
  publish, no ``dataset`` attribute, no pod info: ``INVALID_ARGUMENT``;
- no such DataSet: ``NOT_FOUND``; the pod's service account may not get it: ``PERMISSION_DENIED``
  (and a Warning Event ``DataSetAccessDenied`` on the pod);
- the target already holds another volume: ``ALREADY_EXISTS``; the FUSE daemon could not start
  (agent unreachable): ``UNAVAILABLE`` (kubelet retries).
"""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from pathlib import Path
from typing import Any, NoReturn

import grpc

from dataplane.csi.proto import csi_pb2, csi_pb2_grpc
from dataplane.csi.publishing import Publisher, PublishError
from dataplane.csi.settings import DRIVER_NAME
from dataplane.csi.volumes import InvalidVolumeError, ask_of

log = logging.getLogger(__name__)

VERSION = "0.1.0"


def _abort(context: grpc.ServicerContext, code: str, message: str) -> NoReturn:
    context.abort(getattr(grpc.StatusCode, code), message)  # raises
    raise AssertionError("context.abort returned")


class Identity(csi_pb2_grpc.IdentityServicer):
    def __init__(self, ready: Any = lambda: True) -> None:
        self.ready = ready

    def GetPluginInfo(self, request: csi_pb2.GetPluginInfoRequest, context: grpc.ServicerContext) -> csi_pb2.GetPluginInfoResponse:  # noqa: N802
        return csi_pb2.GetPluginInfoResponse(name=DRIVER_NAME, vendor_version=VERSION)

    def GetPluginCapabilities(  # noqa: N802
        self, request: csi_pb2.GetPluginCapabilitiesRequest, context: grpc.ServicerContext
    ) -> csi_pb2.GetPluginCapabilitiesResponse:
        return csi_pb2.GetPluginCapabilitiesResponse(capabilities=[])  # node service only

    def Probe(self, request: csi_pb2.ProbeRequest, context: grpc.ServicerContext) -> csi_pb2.ProbeResponse:  # noqa: N802
        response = csi_pb2.ProbeResponse()
        response.ready.value = bool(self.ready())
        return response


class Node(csi_pb2_grpc.NodeServicer):
    def __init__(self, publisher: Publisher, node_id: str) -> None:
        self.publisher = publisher
        self.node_id = node_id

    def NodeGetInfo(self, request: csi_pb2.NodeGetInfoRequest, context: grpc.ServicerContext) -> csi_pb2.NodeGetInfoResponse:  # noqa: N802
        return csi_pb2.NodeGetInfoResponse(node_id=self.node_id)

    def NodeGetCapabilities(  # noqa: N802
        self, request: csi_pb2.NodeGetCapabilitiesRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeGetCapabilitiesResponse:
        return csi_pb2.NodeGetCapabilitiesResponse(capabilities=[])

    def NodePublishVolume(  # noqa: N802
        self, request: csi_pb2.NodePublishVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodePublishVolumeResponse:
        if not request.HasField("volume_capability"):
            _abort(context, "INVALID_ARGUMENT", "volume_capability is required")
        if request.volume_capability.HasField("block"):
            _abort(context, "INVALID_ARGUMENT", "a DataSet volume is a filesystem, not a block device")
        try:
            ask = ask_of(request.volume_id, request.target_path, request.readonly, dict(request.volume_context))
        except InvalidVolumeError as exc:
            _abort(context, "INVALID_ARGUMENT", str(exc))
        try:
            self.publisher.publish(ask)
        except PublishError as exc:
            log.warning("NodePublishVolume %s: %s", request.volume_id, exc)
            _abort(context, exc.code, str(exc))
        return csi_pb2.NodePublishVolumeResponse()

    def NodeUnpublishVolume(  # noqa: N802
        self, request: csi_pb2.NodeUnpublishVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeUnpublishVolumeResponse:
        if not request.volume_id:
            _abort(context, "INVALID_ARGUMENT", "volume_id is required")
        if not request.target_path:
            _abort(context, "INVALID_ARGUMENT", "target_path is required")
        try:
            self.publisher.unpublish(request.volume_id, request.target_path)
        except PublishError as exc:
            _abort(context, exc.code, str(exc))
        return csi_pb2.NodeUnpublishVolumeResponse()


class Driver:
    """The gRPC server on ``socket`` and the healer that restarts dead FUSE daemons."""

    def __init__(self, publisher: Publisher, node_id: str, socket: str, *, heal_every_s: float = 5.0) -> None:
        self.publisher = publisher
        self.socket = socket
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        csi_pb2_grpc.add_IdentityServicer_to_server(Identity(), self.server)  # type: ignore[no-untyped-call]
        csi_pb2_grpc.add_NodeServicer_to_server(Node(publisher, node_id), self.server)  # type: ignore[no-untyped-call]
        self.heal_every_s = heal_every_s
        self.stopping = threading.Event()

    def start(self) -> Driver:
        path = Path(self.socket)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        self.server.add_insecure_port(f"unix://{path}")
        self.server.start()
        if self.heal_every_s > 0:
            threading.Thread(target=self._heal, daemon=True, name="kbl-csi-heal").start()
        return self

    def _heal(self) -> None:
        while not self.stopping.wait(self.heal_every_s):
            try:
                self.publisher.heal()
            except Exception:
                log.exception("healing volumes")

    def stop(self) -> None:
        self.stopping.set()
        self.server.stop(grace=1).wait()
