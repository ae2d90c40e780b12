# The bridge pods attach to, and the kernel settings a Service's ClusterIP needs.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

bridge_has_address() { # ip
  # Read the list whole: `ip | grep -q` under pipefail fails when grep stops early.
  local addresses
  addresses=$(ip -4 -o addr show dev "$BRIDGE")
  [[ "$addresses" == *" inet $1/"* ]]
}

ensure_network() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    as_root ip link add "$BRIDGE" type bridge
    log "created bridge $BRIDGE"
  fi
  bridge_has_address "$HOST_IP" || as_root ip addr add "$HOST_IP/${POD_CIDR#*/}" dev "$BRIDGE"
  as_root ip link set "$BRIDGE" up
  # Pod to ClusterIP to a pod on the same bridge: bridged frames must pass iptables (DNAT and
  # its reverse), and the host forwards between pods and Services.
  as_root sysctl -qw net.ipv4.ip_forward=1
  as_root sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null \
    || log "warning: net.bridge.bridge-nf-call-iptables is not available; pod-to-Service traffic may fail"
}

remove_network() {
  ip link show "$BRIDGE" >/dev/null 2>&1 || return 0
  as_root ip link del "$BRIDGE"
  log "removed bridge $BRIDGE"
}
