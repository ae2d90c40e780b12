# The project's virtualenv (the `dev` extra), shared by the demo and the tests.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

VENV="${KOMPILE_VENV:-$REPO_ROOT/.venv}"

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
  fi
  log "installing kompile[dev,compiler,runtime,loadgen] into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$REPO_ROOT[dev,compiler,runtime,loadgen]" 2>&1 \
    | grep -v "^WARNING: Location" || true
  # locust on its own: it monkey-patches the standard library as it is imported.
  { "$VENV/bin/python" -c "import kompile, kopf, pytest, tvm, onnxruntime, kserve" \
    && "$VENV/bin/python" -c "import locust"; } || die "the virtualenv at $VENV is incomplete"
}
