#!/usr/bin/env bash
# Regenerate tests/kubelet/proto/pluginregistration_pb2*.py (the kubelet's plugin
# registration API, used by the kubelet-in-a-box harness) with grpcio-tools. As in
# gen-csi-proto.sh, the .proto is compiled where its path is the import name
# (kubelet/proto/, tests/ being on pytest's pythonpath), so no generated file is edited.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
"$python" -m grpc_tools.protoc \
  -I "$root/tests" \
  --python_out="$root/tests" --pyi_out="$root/tests" --grpc_python_out="$root/tests" \
  kubelet/proto/pluginregistration.proto
echo "regenerated tests/kubelet/proto/pluginregistration_pb2*.py"
