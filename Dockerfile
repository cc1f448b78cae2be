# One image for every role; the command picks it:
#   docker run IMAGE coordinator|dealer|node --id N|client ...|round ...|watch ...
# Users with a registry build it the usual way (BASE defaults to python:3.11-slim):
#   pip wheel --wheel-dir build/wheelhouse '.[dp]' && docker build -t mpcnet .
# This machine has no registry: `make image` builds an offline base from Debian's packages
# (scripts/build_image.sh: mmdebstrap + docker import) and passes BASE=mpcnet-base:bookworm.
ARG BASE=python:3.11-slim
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/mpcnet/bin:$PATH
# Wheels only, no index: the image build never reaches a package registry.
# tc and nft for `mpcnet drill --compose` (network faults, only with docker-compose.drills.yml's NET_ADMIN);
# the offline base has them already, python:3.11-slim gets them from Debian.
RUN command -v tc >/dev/null && command -v nft >/dev/null \
 || (apt-get update && apt-get install -y --no-install-recommends iproute2 nftables && rm -rf /var/lib/apt/lists/*)
COPY build/wheelhouse /tmp/wheelhouse
RUN python3 -m venv /opt/mpcnet \
 && /opt/mpcnet/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheelhouse 'mpcnet[dp]' \
 && rm -rf /tmp/wheelhouse \
 && useradd --system --uid 10001 --home-dir /var/lib/mpcnet --create-home mpcnet \
 && install -d -o mpcnet -g mpcnet -m 0700 /var/lib/mpcnet/certs /var/lib/mpcnet/state \
 && install -d -o mpcnet -g mpcnet -m 0750 /var/lib/mpcnet/rounds
# (those directories are the mount points of docker-compose.yml's volumes: a fresh named volume takes their
# owner, so the unprivileged roles can write certificates, journals and round files there)
# No secret in the image: the cluster secret, certificates and config are mounted at run time.
USER mpcnet
WORKDIR /var/lib/mpcnet
ENTRYPOINT ["mpcnet"]
CMD ["--help"]
