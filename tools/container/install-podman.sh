#!/usr/bin/env bash
# Installs what building and running Quanta's image needs on a Debian host (as root): podman, runc
# (this kernel runs containers with runc, not crun) and debootstrap (for the base image), and the
# containers.conf without default ulimits that podman needs here. Does nothing that is already done.
set -euo pipefail
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null
fi
conf=/etc/containers/containers.conf
if [ ! -f "$conf" ]; then
  mkdir -p /etc/containers
  printf '[containers]\ndefault_ulimits = []\n' >"$conf"
fi
