# Shared settings for the hack/ scripts. Sourced, never run.
# Everything the harness makes lives under KOMPILE_CACHE (build outputs, kept
# across clusters) and KOMPILE_STATE (one cluster's certs, data, pids, logs).
set -Eeuo pipefail
# set -e ends a script silently; name the command that ended it, so a failed CI run says where.
# A deliberate `return 1` or `exit 1` is no such failure.
trap '_failed=$?; case $BASH_COMMAND in return* | exit*) ;; *) log "error: exit $_failed at ${BASH_SOURCE[0]}:${LINENO}: $BASH_COMMAND" ;; esac' ERR

KOMPILE_CACHE="${KOMPILE_CACHE:-$HOME/.cache/kompile}"
KOMPILE_STATE="${KOMPILE_STATE:-$KOMPILE_CACHE/cluster}"
K8S_VERSION="1.20.2"
K8S_BIN="$KOMPILE_CACHE/kubernetes-$K8S_VERSION/bin"
HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_ROOT="$(cd "$HACK_DIR/.." && pwd)"

# Ports on loopback. Overridable so two clusters (a developer's and CI's) can coexist.
ETCD_PORT="${KOMPILE_ETCD_PORT:-2379}"
ETCD_PEER_PORT="${KOMPILE_ETCD_PEER_PORT:-2380}"
APISERVER_PORT="${KOMPILE_APISERVER_PORT:-6443}"
SERVICE_CIDR="10.96.0.0/16"
FIRST_SERVICE_IP="10.96.0.1"

# The cluster's own network: a bridge the harness creates. Pods sit on it and reach the host's
# services (API server, S3, Prometheus) at HOST_IP; loopback is out of a pod's reach.
BRIDGE="${KOMPILE_BRIDGE:-kompile0}"
POD_CIDR="10.244.0.0/16"
HOST_IP="10.244.0.1"
S3_PORT="${KOMPILE_S3_PORT:-8333}"
PROMETHEUS_PORT="${KOMPILE_PROMETHEUS_PORT:-9090}"

log() { printf '[hack %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Run as root, or through sudo when a non-root user calls us.
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
