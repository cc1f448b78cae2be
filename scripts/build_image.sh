#!/usr/bin/env bash
# Build the mpcnet image without a container registry.
#  1. base image (cached): a Debian bookworm minbase rootfs with python3, made by mmdebstrap from the
#     mirrors in this machine's own apt configuration, then `docker import` as mpcnet-base:bookworm;
#  2. wheelhouse: every Python dependency as a wheel (pip, from the machine's pip configuration);
#  3. docker build --build-arg BASE=mpcnet-base:bookworm (the Dockerfile default stays python:3.11-slim).
# Prints the build time and the image size.  Env: IMAGE (mpcnet:latest), BASE_IMAGE (mpcnet-base:bookworm),
# REBUILD_BASE=1 to rebuild the base even when it exists.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE="${IMAGE:-mpcnet:latest}"
BASE_IMAGE="${BASE_IMAGE:-mpcnet-base:bookworm}"
PY="${PYTHON:-.venv/bin/python}"
start=$(date +%s)
command -v docker >/dev/null || { echo "build_image: docker is not installed" >&2; exit 1; }
if [ "${REBUILD_BASE:-0}" = 1 ] || ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  command -v mmdebstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq mmdebstrap >/dev/null; }
  sources=""
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list; do
    [ -s "$f" ] && grep -qE '^(Types: deb|deb )' "$f" && { sources="$f"; break; }
  done
  [ -n "$sources" ] || { echo "build_image: no apt sources in /etc/apt to build the base from" >&2; exit 1; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "build_image: base rootfs from the mirrors in $sources"
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates,passwd \
    --aptopt='Acquire::Retries "3"' bookworm "$tmp/base.tar" "$sources"
  docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$tmp/base.tar" "$BASE_IMAGE" >/dev/null
  base_note="built"
else
  base_note="cached"
fi
rm -rf build/wheelhouse
"$PY" -m pip wheel --quiet --wheel-dir build/wheelhouse .
docker build --quiet --build-arg "BASE=$BASE_IMAGE" -t "$IMAGE" . >/dev/null
end=$(date +%s)
size=$(docker image inspect "$IMAGE" --format '{{.Size}}')
echo "image $IMAGE: $((size / 1000000)) MB, built in $((end - start)) s (base $BASE_IMAGE $base_note)"
