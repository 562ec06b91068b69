"""Generated CSI v1 messages and gRPC stubs, from csi.proto by scripts/gen-csi-proto.sh."""
