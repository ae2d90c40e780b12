# Kubelet nodes: each its own containerd (two kubelets on one containerd would kill each
# other's pods), its pods on the cluster bridge, labelled as one hardware pool.
source "$(dirname "${BASH_SOURCE[0]}")/pki.sh"
source "$(dirname "${BASH_SOURCE[0]}")/processes.sh"
source "$(dirname "${BASH_SOURCE[0]}")/network.sh"

# umoci packs the pause image the nodes need (hack/images needs it too, but runs after the cluster).
NODE_PACKAGES=(containerd runc containernetworking-plugins conntrack iptables umoci)
NODE_LABEL="kompile.dev/hardware-target"
CNI_BIN=/usr/lib/cni
PAUSE_IMAGE="docker.io/local/pause:3.4.1"

# The two pools: labels this CPU can honestly run (an AVX-512 pool only where the CPU has
# AVX-512, its BF16 class where it has AVX512-BF16: the pool a BF16 compile is served on), so
# a model compiled for a pool runs on its nodes. Override with KOMPILE_NODE_POOLS.
node_pools() {
  if [ -n "${KOMPILE_NODE_POOLS:-}" ]; then echo "$KOMPILE_NODE_POOLS"
  elif grep -qw avx512_bf16 /proc/cpuinfo; then echo "x86-avx512-bf16 x86-avx2"
  elif grep -qw avx512f /proc/cpuinfo; then echo "x86-avx512 x86-avx2"
  else echo "x86-avx2 x86-generic"; fi
}

# node index (1..) -> name, address on the bridge, pod address range
node_name() { echo "kompile-node-$1"; }
node_ip() { echo "10.244.0.$((10 + $1))"; }
node_pods() { echo "10.244.$1.2-10.244.$1.254"; }

_containerd_config() { # dir
  local dir=$1
  cat >"$dir/containerd.toml" <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
[grpc]
  address = "$dir/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Without it every pod sandbox fails: runc may not lower its own oom_score_adj here.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN"
    conf_dir = "$dir/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
TOML
}

_cni_config() { # dir index
  local dir=$1 i=$2 range
  range=$(node_pods "$i")
  mkdir -p "$dir/net.d"
  cat >"$dir/net.d/10-kompile.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "kompile",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$dir/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "rangeStart": "${range%-*}", "rangeEnd": "${range#*-}", "gateway": "$HOST_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
JSON
}

_kubelet_config() { # dir ip
  local dir=$1 ip=$2
  cat >"$dir/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
port: 10250
readOnlyPort: 0
healthzBindAddress: $ip
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  x509: {clientCAFile: $PKI/ca.crt}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
tlsCertFile: $PKI/node-$(basename "$dir").crt
tlsPrivateKeyFile: $PKI/node-$(basename "$dir").key
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
# Images arrive by import, never by pull: keep them whatever the disk fills to. The eviction
# manager deletes unused images too when a disk signal fires (it took the pause image once,
# while an image build filled the disk for a moment), so its disk floors are small and absolute.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "256Mi", imagefs.available: "256Mi"}
serializeImagePulls: false
YAML
}

# The sandbox ("pause") image, built from Kubernetes' own pause.c in the source we build from.
ensure_pause_image() {
  local archive="$KOMPILE_CACHE/images/pause.tar"
  [ -f "$archive" ] && return 0
  local tmp
  tmp=$(mktemp -d)
  tar -xzf "$KOMPILE_CACHE"/src/kubernetes_*.orig.tar.gz -C "$tmp" --wildcards '*/build/pause/linux/pause.c'
  mkdir -p "$tmp/rootfs" "$KOMPILE_CACHE/images"
  gcc -Os -static -DVERSION=v3.4.1-kompile -o "$tmp/rootfs/pause" "$tmp"/*/build/pause/linux/pause.c
  strip "$tmp/rootfs/pause"
  umoci_image "$tmp" "$PAUSE_IMAGE" "$archive" /pause
  rm -rf "$tmp"
  log "built the pause image"
}

# A single-layer OCI image archive from a root filesystem folder.
umoci_image() { # workdir ref archive entrypoint
  local work=$1 ref=$2 archive=$3 entry=$4 name=image
  umoci init --layout "$work/oci" >/dev/null
  umoci new --image "$work/oci:$name" >/dev/null
  umoci insert --image "$work/oci:$name" "$work/rootfs" / >/dev/null
  umoci config --image "$work/oci:$name" --config.entrypoint "$entry" --architecture amd64 --os linux >/dev/null
  umoci gc --layout "$work/oci" >/dev/null
  # containerd names an imported OCI image by this annotation.
  python3 - "$work/oci/index.json" "$ref" <<'PY'
import json, sys
path, ref = sys.argv[1], sys.argv[2]
index = json.load(open(path))
for m in index["manifests"]:
    m.setdefault("annotations", {})["io.containerd.image.name"] = ref
    m["annotations"]["org.opencontainers.image.ref.name"] = ref.rsplit(":", 1)[1]
json.dump(index, open(path, "w"))
PY
  tar -C "$work/oci" -cf "$archive" .
}

ctr_node() { # index ctr-args...
  local i=$1; shift
  as_root ctr --address "$KOMPILE_STATE/nodes/$(node_name "$i")/containerd.sock" -n k8s.io "$@"
}

# Import an image archive into a node's containerd unless that exact image is already there.
import_image() { # index archive ref
  local i=$1 archive=$2 ref=$3 want have
  want=$({ tar -xOf "$archive" index.json 2>/dev/null || tar -xOf "$archive" ./index.json; } | python3 -c 'import json,sys; print(json.load(sys.stdin)["manifests"][0]["digest"])' || true)
  have=$(ctr_node "$i" images ls "name==$ref" 2>/dev/null | awk 'NR==2 {print $3}')
  if [ -n "$want" ] && [ "$want" = "$have" ]; then return 0; fi
  ctr_node "$i" images import "$archive" >/dev/null
  log "imported $ref into $(node_name "$i")"
}

start_nodes() {
  ensure_network
  ensure_pause_image
  local i=0 pool name ip dir
  for pool in $(node_pools); do
    i=$((i + 1))
    name=$(node_name "$i"); ip=$(node_ip "$i"); dir="$KOMPILE_STATE/nodes/$name"
    mkdir -p "$dir"
    bridge_has_address "$ip" || as_root ip addr add "$ip/32" dev "$BRIDGE"
    node_pki "$name" "$ip"
    _containerd_config "$dir"
    _cni_config "$dir" "$i"
    _kubelet_config "$dir" "$ip"
    # A containerd killed earlier leaves its socket file behind: wait for an answer, not the file.
    running "containerd-$name" || as_root rm -f "$dir/containerd.sock"
    start_process "containerd-$name" "$(command -v containerd)" --config "$dir/containerd.toml"
    wait_for "containerd of $name" 30 ctr_node "$i" version \
      || die "containerd of $name did not start (see $LOGS/containerd-$name.log)"
    import_image "$i" "$KOMPILE_CACHE/images/pause.tar" "$PAUSE_IMAGE"
    start_process "kubelet-$name" "$K8S_BIN/kubelet" \
      --kubeconfig "$KOMPILE_STATE/node-$name.kubeconfig" --config "$dir/kubelet.yaml" \
      --container-runtime remote --container-runtime-endpoint "unix://$dir/containerd.sock" \
      --hostname-override "$name" --node-ip "$ip" --node-labels "$NODE_LABEL=$pool" \
      --root-dir "$dir/kubelet" --cert-dir "$dir/pki" --v 1
  done
  # One kube-proxy serves every node: they share this host's network namespace and iptables.
  start_process kube-proxy "$K8S_BIN/kube-proxy" --kubeconfig "$KOMPILE_STATE/kube-proxy.kubeconfig" \
    --proxy-mode iptables --cluster-cidr "$POD_CIDR" --hostname-override "$(node_name 1)" \
    --bind-address "$HOST_IP" --metrics-bind-address 127.0.0.1:10249 --healthz-bind-address 127.0.0.1:10256 \
    --conntrack-max-per-core 0
  for ((n = 1; n <= i; n++)); do
    wait_for "node $(node_name "$n")" 120 node_ready "$(node_name "$n")" \
      || die "$(node_name "$n") is not Ready (see $LOGS/kubelet-$(node_name "$n").log)"
  done
}

# Ready, as reported by the kubelet running now: etcd state kept from an earlier cluster (or
# another machine) still says Ready=True with an old heartbeat, so a heartbeat from before this
# kubelet's start (its pid file's time) does not count.
node_ready() {
  local ready beat started
  read -r ready beat < <(kubectl --kubeconfig "$ADMIN_KUBECONFIG" get node "$1" \
    -o jsonpath='{range .status.conditions[?(@.type=="Ready")]}{.status} {.lastHeartbeatTime}{end}' 2>/dev/null)
  [ "$ready" = True ] || return 1
  started=$(stat -c %Y "$PIDS/kubelet-$1.pid" 2>/dev/null) || return 1
  [ "$(date -d "$beat" +%s 2>/dev/null || echo 0)" -ge "$started" ]
}

node_count() { local n=0 p; for p in $(node_pools); do n=$((n + 1)); done; echo "$n"; }

stop_nodes() {
  local i name dir pidfile mount
  stop_process kube-proxy
  for ((i = 1; i <= $(node_count); i++)); do
    name=$(node_name "$i"); dir="$KOMPILE_STATE/nodes/$name"
    stop_process "kubelet-$name"
    # Containers outlive containerd: end each container and its shim by the pid files in
    # their bundles, then containerd itself.
    if [ -d "$dir/state" ]; then
      while read -r pidfile; do
        as_root kill -9 "$(cat "$pidfile")" 2>/dev/null || true
      done < <(find "$dir/state" \( -name init.pid -o -name shim.pid \) 2>/dev/null)
    fi
    stop_process "containerd-$name"
    # What the kubelet and containerd mounted (volumes, root filesystems, /dev/shm), deepest first.
    while read -r mount; do
      as_root umount -l "$mount" 2>/dev/null || true
    done < <(awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r)
  done
}

# The pods' network namespaces (containerd's CNI names them cni-*; the only containerds on
# this host are the nodes'), removed when the cluster's state is purged.
remove_pod_netns() {
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '/^cni-/ {print $1}'); do as_root ip netns del "$ns" 2>/dev/null || true; done
}
