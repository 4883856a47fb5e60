#!/usr/bin/env bash
# Builds Quanta's image from the root Dockerfile with podman, making the local base image first
# when it is missing (nothing is pulled).
#
#   tools/container/build-image.sh [TAG]      default TAG: quanta:dev
#
# The machine's CA bundle goes to `npm ci` as a build secret (never into a layer), so the build
# also works behind a TLS-inspecting proxy whose CA only this machine trusts. QUANTA_PODMAN_RUNTIME
# picks the OCI runtime (default runc; crun fails on some kernels).
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:-quanta:dev}
runtime=${QUANTA_PODMAN_RUNTIME:-runc}
ca=${QUANTA_BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

tools/container/make-base-image.sh
secret=()
[ -s "$ca" ] && secret=(--secret "id=npm-ca,src=$ca")
podman --runtime "$runtime" build --pull=never "${secret[@]}" -t "$tag" .
# Each build leaves untagged stage images: the build cache. Those of the last day stay (a build
# after a source change reuses the install layers); older ones go, so repeated CI runs on one
# machine do not fill its disk.
podman image prune --force --filter until=24h >/dev/null || true
podman image ls "$tag"
