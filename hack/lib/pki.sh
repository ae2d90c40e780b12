# Certificates and kubeconfigs for the local cluster, made once per cluster state.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PKI="$KOMPILE_STATE/pki"

_sign() { # name subject [san]
  local name=$1 subj=$2 san=${3:-}
  # Kept while it still names what is asked (a new address means a new certificate).
  if [ -f "$PKI/$name.crt" ]; then
    [ -z "$san" ] && return 0
    [ "$(openssl x509 -in "$PKI/$name.crt" -noout -ext subjectAltName 2>/dev/null | tail -n +2 | tr -d ' ')" \
      = "$(echo "$san" | sed 's/IP:/IPAddress:/g')" ] && return 0
  fi
  openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  local ext="$PKI/$name.ext"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$san" ]; then echo "extendedKeyUsage=serverAuth,clientAuth"; echo "subjectAltName=$san";
    else echo "extendedKeyUsage=clientAuth"; fi
  } >"$ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$ext"
}

APISERVER_URL="https://$HOST_IP:$APISERVER_PORT"

_kubeconfig() { # name cert user
  local name=$1 cert=$2 user=$3 file="$KOMPILE_STATE/$1.kubeconfig"
  [ -f "$file" ] && grep -qF "server: $APISERVER_URL" "$file" && return 0
  cat >"$file" <<KC
apiVersion: v1
kind: Config
clusters:
- name: kompile
  cluster:
    server: $APISERVER_URL
    certificate-authority: $PKI/ca.crt
users:
- name: $user
  user:
    client-certificate: $PKI/$cert.crt
    client-key: $PKI/$cert.key
contexts:
- name: kompile
  context: {cluster: kompile, user: $user}
current-context: kompile
KC
}

make_pki() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  if [ ! -f "$PKI/ca.crt" ]; then
    log "writing certificates to $PKI"
    openssl genrsa -out "$PKI/ca.key" 2048 2>/dev/null
    openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=kompile-local-ca" -days 3650 -sha256 \
      -out "$PKI/ca.crt" 2>/dev/null
  fi
  _sign apiserver "/CN=kube-apiserver" \
    "IP:127.0.0.1,IP:$HOST_IP,IP:$FIRST_SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  _sign admin "/O=system:masters/CN=kompile-admin"
  _sign controller-manager "/CN=system:kube-controller-manager"
  _sign scheduler "/CN=system:kube-scheduler"
  _sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  if [ ! -f "$PKI/sa.key" ]; then
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  _kubeconfig admin admin kompile-admin
  _kubeconfig controller-manager controller-manager system:kube-controller-manager
  _kubeconfig scheduler scheduler system:kube-scheduler
  _sign kube-proxy "/CN=system:kube-proxy"
  _kubeconfig kube-proxy kube-proxy system:kube-proxy
}

node_pki() { # node-name node-ip
  _sign "node-$1" "/O=system:nodes/CN=system:node:$1" "IP:$2,DNS:$1"
  _kubeconfig "node-$1" "node-$1" "system:node:$1"
}
