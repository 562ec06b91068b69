#!/usr/bin/env bash
# Regenerate the Python modules for csi_shim/proto/csi.proto with grpcio-tools.
#
# protoc names a generated module's imports after the .proto file's path below the include
# root, so the file is compiled from a scratch tree where it sits at
# shardcache_csi/proto/csi.proto: the generated gRPC module then imports
# `shardcache_csi.proto.csi_pb2`, the package's real import name (the folder on disk is
# csi_shim/, mapped by setuptools), with no post-editing of generated code.
#
# Usage: scripts/gen-csi-proto.sh   (from anywhere; uses .venv/bin/python unless PYTHON is set)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
out="$root/csi_shim/proto"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

mkdir -p "$scratch/src/shardcache_csi/proto" "$scratch/gen"
cp "$out/csi.proto" "$scratch/src/shardcache_csi/proto/csi.proto"
"$python" -m grpc_tools.protoc \
  -I "$scratch/src" \
  --python_out="$scratch/gen" --pyi_out="$scratch/gen" --grpc_python_out="$scratch/gen" \
  shardcache_csi/proto/csi.proto
for f in csi_pb2.py csi_pb2.pyi csi_pb2_grpc.py; do
  cp "$scratch/gen/shardcache_csi/proto/$f" "$out/$f"
done
echo "regenerated: $(cd "$out" && ls csi_pb2.py csi_pb2.pyi csi_pb2_grpc.py | tr '\n' ' ')"
