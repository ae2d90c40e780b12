# Debian packages the local cluster needs; installed once, skipped when present.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CLUSTER_PACKAGES=(golang-go etcd-server golang-github-modern-go-reflect2-dev openssl make rsync prometheus
  iproute2 iptables curl)

# The compiler's cross toolchain: exporting ARM64 artifacts links them with aarch64 gcc.
COMPILER_PACKAGES=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)

install_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  # No init system here: keep packages from starting their daemons (etcd-server would).
  as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
