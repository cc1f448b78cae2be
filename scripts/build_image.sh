#!/usr/bin/env bash
# Build the mpcnet images without a container registry.
#  1. base images (cached): Debian bookworm minbase rootfs made by mmdebstrap from the mirrors in this machine's
#     own apt configuration, then `docker import`: mpcnet-base:bookworm (python3) and
#     mpcnet-broker-base:bookworm (mosquitto);
#  2. wheelhouse: every Python dependency as a wheel (pip, from the machine's pip configuration);
#  3. docker build --build-arg BASE=... for mpcnet:latest (the Dockerfile default stays python:3.11-slim) and
#     mpcnet-broker:latest (docker/broker; default debian:bookworm-slim).
# Prints build time and image sizes.  Env: IMAGE (mpcnet:latest), BROKER_IMAGE (mpcnet-broker:latest),
# BASE_IMAGE (mpcnet-base:bookworm), BROKER_BASE (mpcnet-broker-base:bookworm), REBUILD_BASE=1 to rebuild the
# bases even when they exist, NO_BROKER=1 to skip the broker image.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE="${IMAGE:-mpcnet:latest}"
BROKER_IMAGE="${BROKER_IMAGE:-mpcnet-broker:latest}"
BASE_IMAGE="${BASE_IMAGE:-mpcnet-base:bookworm}"
BROKER_BASE="${BROKER_BASE:-mpcnet-broker-base:bookworm}"
PY="${PYTHON:-.venv/bin/python}"
start=$(date +%s)
command -v docker >/dev/null || { echo "build_image: docker is not installed" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# base_image NAME PACKAGES: a minbase rootfs with PACKAGES, imported as NAME (skipped when NAME exists)
notes=()
base_image() {
  local name="$1" include="$2"
  # the package list is a label of the base: a base made from another list (an older mpcnet) is rebuilt
  if [ "${REBUILD_BASE:-0}" != 1 ] && [ "$(docker image inspect "$name" --format \
      '{{ index .Config.Labels "org.mpcnet.base-packages" }}' 2>/dev/null)" = "$include" ]; then
    notes+=("$name cached"); return
  fi
  command -v mmdebstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq mmdebstrap >/dev/null; }
  local sources=""
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list; do
    [ -s "$f" ] && grep -qE '^(Types: deb|deb )' "$f" && { sources="$f"; break; }
  done
  [ -n "$sources" ] || { echo "build_image: no apt sources in /etc/apt to build the base from" >&2; exit 1; }
  echo "build_image: $name rootfs ($include) from the mirrors in $sources"
  mmdebstrap --quiet --variant=minbase --include="$include" \
    --aptopt='Acquire::Retries "3"' bookworm "$tmp/base.tar" "$sources"
  docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "LABEL org.mpcnet.base-packages=$include" \
    "$tmp/base.tar" "$name" >/dev/null
  rm -f "$tmp/base.tar"
  notes+=("$name built")
}

# iproute2 and nftables: tc and nft for the network drills (docker-compose.drills.yml grants NET_ADMIN; the
# roles themselves never use them)
base_image "$BASE_IMAGE" python3,python3-venv,ca-certificates,passwd,iproute2,nftables
rm -rf build/wheelhouse
"$PY" -m pip wheel --quiet --wheel-dir build/wheelhouse '.[dp]' 
docker build --quiet --build-arg "BASE=$BASE_IMAGE" -t "$IMAGE" . >/dev/null
size=$(docker image inspect "$IMAGE" --format '{{.Size}}')
summary="image $IMAGE: $((size / 1000000)) MB"
if [ "${NO_BROKER:-0}" != 1 ]; then
  base_image "$BROKER_BASE" mosquitto,mosquitto-clients
  docker build --quiet --build-arg "BASE=$BROKER_BASE" -t "$BROKER_IMAGE" docker/broker >/dev/null
  bsize=$(docker image inspect "$BROKER_IMAGE" --format '{{.Size}}')
  summary="$summary; $BROKER_IMAGE: $((bsize / 1000000)) MB"
fi
end=$(date +%s)
echo "$summary; built in $((end - start)) s (${notes[*]})"
