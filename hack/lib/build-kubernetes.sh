# Builds the Kubernetes server binaries from Debian's `kubernetes` source package
# with Debian's Go, and caches them under $K8S_BIN. Idempotent: a finished build is
# marked by a stamp file and never redone.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

K8S_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
# Bump when the recipe changes, so cached binaries from an older recipe are rebuilt.
K8S_RECIPE=3

build_kubernetes() {
  local stamp="$K8S_BIN/.recipe-$K8S_RECIPE"
  [ -f "$stamp" ] && return 0
  local work="$KOMPILE_CACHE/src"
  local apt_dir="$work/apt"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/sources.list.d"

  # A private apt configuration that only adds deb-src lines, so the machine's own
  # apt state is untouched.
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
    > "$apt_dir/sources.list.d/debian-src.sources"
  # The private lists are root-owned; downloading as root keeps apt from warning about _apt.
  local apt_opts=(-o APT::Sandbox::User=root -o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
    -o "Dir::State::Lists=$apt_dir/lists")
  if ! ls "$work"/kubernetes_*.dsc >/dev/null 2>&1; then
    log "downloading Debian's kubernetes source package"
    apt-get "${apt_opts[@]}" update -qq
    (cd "$work" && apt-get "${apt_opts[@]}" source --download-only kubernetes >/dev/null)
  fi

  local tree="$work/kubernetes"
  rm -rf "$tree"
  mkdir -p "$tree"
  log "unpacking the source"
  local orig
  orig=$(ls "$work"/kubernetes_*.orig.tar.* | head -n1)
  tar -xf "$orig" -C "$tree" --strip-components=1

  # Go >= 1.18 breaks reflect2 v1.0.1 (the API server faults in mapiternext on the
  # first watch); Debian ships v1.0.2, which is API-compatible.
  rm -rf "$tree/vendor/github.com/modern-go/reflect2"
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$tree/vendor/github.com/modern-go/reflect2"
  rm -f "$tree/vendor/github.com/modern-go/reflect2/go.mod" "$tree/vendor/github.com/modern-go/reflect2/go.sum"

  # The OpenAPI validators (go-openapi/validate and kube-openapi's copy of it, which
  # checks custom resources) treat a value as null when
  # reflect.DeepEqual(reflect.Zero(T), reflect.ValueOf(v)) holds. Built with Go >= 1.19 that
  # is true for "" (both point at the runtime's zero buffer), so custom resources could not
  # hold empty strings ('must be of type string: "null"'). The check was meant for nil only.
  local zero_check='if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {'
  local typev
  for typev in "$tree/vendor/github.com/go-openapi/validate/type.go" \
               "$tree/vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go"; do
    grep -qF "$zero_check" "$typev" || die "$typev is not the expected version; revisit the empty-string patch"
    ZERO_CHECK="$zero_check" perl -pi -e 's/\Q$ENV{ZERO_CHECK}\E/if data == nil {/' "$typev"
    grep -qF "$zero_check" "$typev" && die "could not patch $typev"
  done

  # Module mode wants go.mod updates it cannot download; GOPATH mode builds from vendor/.
  mkdir -p "$tree/.go/src/k8s.io"
  ln -sfn ../../.. "$tree/.go/src/k8s.io/kubernetes"
  local what=""
  for c in "${K8S_COMPONENTS[@]}"; do what="$what cmd/$c"; done
  log "building Kubernetes v$K8S_VERSION ($what ) - about 6 minutes on 2 cores, once"
  local start=$SECONDS
  (cd "$tree/.go/src/k8s.io/kubernetes" && \
    GOPATH="$tree/.go" GO111MODULE=off CGO_ENABLED=0 GOFLAGS=-mod=vendor \
    KUBE_GIT_VERSION="v$K8S_VERSION" KUBE_GIT_TREE_STATE=clean \
    make WHAT="${what# }" >"$work/build.log" 2>&1) \
    || { tail -n 40 "$work/build.log" >&2; die "Kubernetes build failed (log: $work/build.log)"; }
  mkdir -p "$K8S_BIN"
  rm -f "$K8S_BIN"/.recipe-*
  for c in "${K8S_COMPONENTS[@]}"; do
    install -m 0755 "$tree/_output/bin/$c" "$K8S_BIN/$c"
  done
  rm -rf "$tree"
  touch "$stamp"
  log "Kubernetes built in $((SECONDS - start)) s, cached in $K8S_BIN"
}
