"""The official CSI ``csi.v1`` protobuf (v1.12.0, Apache-2.0: NOTICE.md) and the modules grpcio-tools made from it."""
