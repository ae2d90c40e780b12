# etcd (on loopback) and the Kubernetes control plane (on the cluster bridge's host address,
# where pods reach it through the `kubernetes` Service).
source "$(dirname "${BASH_SOURCE[0]}")/pki.sh"
source "$(dirname "${BASH_SOURCE[0]}")/network.sh"
source "$(dirname "${BASH_SOURCE[0]}")/processes.sh"

CONTROL_PLANE=(etcd kube-apiserver kube-controller-manager kube-scheduler)
ADMIN_KUBECONFIG="$KOMPILE_STATE/admin.kubeconfig"

apiserver_ready() {
  curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "$APISERVER_URL/readyz"
}

start_control_plane() {
  ensure_network
  mkdir -p "$KOMPILE_STATE/etcd"
  start_process etcd "$(command -v etcd)" --name kompile --data-dir "$KOMPILE_STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "kompile=http://127.0.0.1:$ETCD_PEER_PORT" --logger zap --log-level warn
  wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health" || die "etcd did not start (see $LOGS/etcd.log)"

  start_process kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address "$HOST_IP" --advertise-address "$HOST_IP" --secure-port "$APISERVER_PORT" --insecure-port 0 \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --authorization-mode Node,RBAC --allow-privileged=true --profiling=false \
    --kubelet-preferred-address-types InternalIP --enable-admission-plugins PodNodeSelector
  wait_for kube-apiserver 90 apiserver_ready || die "kube-apiserver did not start (see $LOGS/kube-apiserver.log)"

  start_process kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$KOMPILE_STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$KOMPILE_STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$KOMPILE_STATE/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --port 0 --secure-port 10257 \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --use-service-account-credentials=true --leader-elect=false
  start_process kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$KOMPILE_STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig "$KOMPILE_STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig "$KOMPILE_STATE/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --port 0 --secure-port 10259 --leader-elect=false
  wait_for "the default ServiceAccount" 60 \
    kubectl --kubeconfig "$ADMIN_KUBECONFIG" get serviceaccount default -n default \
    || die "kube-controller-manager does not make ServiceAccounts (see $LOGS/kube-controller-manager.log)"
}

stop_control_plane() {
  local i
  for ((i = ${#CONTROL_PLANE[@]} - 1; i >= 0; i--)); do stop_process "${CONTROL_PLANE[$i]}"; done
}
