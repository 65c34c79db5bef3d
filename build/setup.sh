#!/usr/bin/env bash
# Installs whatever this machine lacks for building and testing the agent:
# Debian packages and npm packages. Safe to run again: it only acts on gaps.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(
  crun busybox-static iproute2 util-linux kmod        # containers, network, namespaces
  qemu-system-x86 e2fsprogs xz-utils binutils         # the guest: QEMU, root image, kernel unpacking, strip
  python3-grpcio python3-protobuf                     # the independent Python client
  protobuf-compiler protobuf-compiler-grpc            # its stubs
  g++ make python3                                    # native addons (node-gyp)
)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# node-gyp must build against the running node's own headers: it would
# otherwise try to download them, and this machine has no such network.
node_prefix=$(node -p 'require("path").resolve(process.execPath, "..", "..")')
if [ -f "$node_prefix/include/node/node_api.h" ]; then
  export npm_config_nodedir="$node_prefix"
else
  echo "setup: $node_prefix/include/node/node_api.h is missing: install Node's headers (Debian: libnode-dev / nodejs headers)" >&2
  exit 1
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi
