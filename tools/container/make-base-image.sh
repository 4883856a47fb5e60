#!/usr/bin/env bash
# Makes the base image that the root Dockerfile builds FROM, locally, since none can be pulled
# here: a Debian bookworm root from debootstrap (minbase) off this machine's own apt mirror, with
# tini and ca-certificates, plus this machine's Node.js (node and npm, which must be major 20,
# the major the repo is tested on), imported with `podman import`.
#
#   tools/container/make-base-image.sh            skip when the image exists
#   tools/container/make-base-image.sh --force    rebuild it
#
# Needs root, podman and debootstrap (tools/container/install-podman.sh installs them).
set -euo pipefail

IMAGE=${QUANTA_BASE_IMAGE:-localhost/quanta-base:bookworm-node20}
SUITE=bookworm
NODE_MAJOR=20
force=false
for arg in "$@"; do
  case "$arg" in
    --force) force=true ;;
    *) echo "usage: $0 [--force]" >&2; exit 2 ;;
  esac
done

if ! $force && podman image exists "$IMAGE"; then
  echo "$IMAGE exists (--force rebuilds it)"
  exit 0
fi

node_bin=$(command -v node) || {
  echo "node is not on PATH: the image takes this machine's Node.js $NODE_MAJOR" >&2
  exit 1
}
node_bin=$(readlink -f "$node_bin")
node_version=$("$node_bin" -p 'process.versions.node')
if [ "${node_version%%.*}" != "$NODE_MAJOR" ]; then
  echo "node $node_version at $node_bin: the image needs Node.js $NODE_MAJOR" >&2
  exit 1
fi
npm_dir=$(readlink -f "$(dirname "$(readlink -f "$(command -v npm)")")/..")
[ -f "$npm_dir/bin/npm-cli.js" ] || { echo "npm not found next to node (looked in $npm_dir)" >&2; exit 1; }

# The first bookworm mirror of this machine's apt sources (deb822 .sources or one-line .list).
mirror=$(
  {
    awk -v suite="$SUITE" '
      /^URIs:/ { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) { print uri; exit } }
    ' /etc/apt/sources.list.d/*.sources 2>/dev/null || true
    awk -v suite="$SUITE" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i == suite) { print $(i - 1); exit } }' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true
  } | grep -v '^\[' | head -1
)
[ -n "$mirror" ] || { echo "no $SUITE mirror in /etc/apt/sources.list*" >&2; exit 1; }

work=$(mktemp -d /var/tmp/quanta-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
echo "debootstrap $SUITE (minbase) from $mirror"
debootstrap --variant=minbase --include=ca-certificates,tini,passwd \
  "$SUITE" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
  { tail -30 "$work/debootstrap.log" >&2; exit 1; }

echo "node $node_version and npm $("$node_bin" "$npm_dir/bin/npm-cli.js" -v) from this machine"
install -m 0755 "$node_bin" "$root/usr/local/bin/node"
mkdir -p "$root/usr/local/lib/node_modules"
cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
# node's shared libraries (libstdc++, libgcc_s, libc) come from the Debian root: it must run there.
chroot "$root" /usr/local/bin/node -e 'require("node:crypto").randomBytes(1)' ||
  { echo "node does not run in the $SUITE root (ldd $node_bin)" >&2; exit 1; }

# Nothing that apt or man pages need at run time stays in the image.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/* \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*

echo "podman import -> $IMAGE"
tar --numeric-owner --xattrs -C "$root" -c . |
  podman import \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    - "$IMAGE" >/dev/null
podman image ls "$IMAGE"
