#!/usr/bin/env bash
# Regenerate the committed protobuf/gRPC modules from proto/ (mpcnet/v1/).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
OUT="${1:-.}"
"$PY" -m grpc_tools.protoc -Iproto --python_out="$OUT" --pyi_out="$OUT" --grpc_python_out="$OUT" \
  proto/mpcnet/v1/mpc.proto proto/mpcnet/v1/secagg.proto
