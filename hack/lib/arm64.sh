# An aarch64 Python with TVM's aarch64 wheel, run on this x86 host under qemu-user: the tests
# run cross-compiled ARM64 artifacts in it. Cached under ~/.cache/kompile/arm64 (~400 MB).
#
# debootstrap's first stage unpacks Debian's arm64 packages without running any of them, so no
# binfmt_misc (nor root inside a chroot) is needed; the rest are unpacked with dpkg-deb here.
ARM64_DIR="$KOMPILE_CACHE/arm64"
ARM64_PACKAGES=(qemu-user-static debootstrap)

ensure_arm64_python() {
  local key stamp="$ARM64_DIR/.complete"
  key="bookworm python3.11 $(grep -o '"apache-tvm[^"]*"\|"apache-tvm-ffi[^"]*"' "$REPO_ROOT/pyproject.toml" | sort -u | tr -d '\n')"
  [ "$(cat "$stamp" 2>/dev/null)" = "$key" ] && return 0
  local start=$SECONDS
  log "an aarch64 Python with TVM for qemu-user into $ARM64_DIR (about a minute)"
  as_root rm -rf "$ARM64_DIR"
  mkdir -p "$ARM64_DIR"
  as_root debootstrap --arch=arm64 --foreign --variant=minbase \
    --include=python3.11-minimal,libpython3.11-stdlib,libstdc++6 bookworm "$ARM64_DIR/root" \
    >"$ARM64_DIR/debootstrap.log" 2>&1 || { tail -20 "$ARM64_DIR/debootstrap.log"; die "debootstrap (arm64) failed"; }
  local deb
  for deb in "$ARM64_DIR"/root/var/cache/apt/archives/*.deb; do as_root dpkg-deb -x "$deb" "$ARM64_DIR/root"; done
  as_root rm -f "$ARM64_DIR"/root/var/cache/apt/archives/*.deb
  # Merged /usr: the first stage leaves /lib a plain folder, where the loader is looked for.
  as_root ln -sf ../usr/lib/ld-linux-aarch64.so.1 "$ARM64_DIR/root/lib/ld-linux-aarch64.so.1"
  python3 -m pip install -q --disable-pip-version-check --target "$ARM64_DIR/site" --only-binary=:all: \
    --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 --python-version 3.11 --implementation cp \
    "$(grep -o '"apache-tvm==[^"]*"' "$REPO_ROOT/pyproject.toml" | head -1 | tr -d '"')" \
    "$(grep -o '"apache-tvm-ffi==[^"]*"' "$REPO_ROOT/pyproject.toml" | head -1 | tr -d '"')" numpy \
    2>&1 | grep -v "^WARNING" || true
  [ -d "$ARM64_DIR/site/tvm" ] || die "the aarch64 TVM wheel did not install into $ARM64_DIR/site"
  echo "$key" >"$stamp"
  log "aarch64 Python ready in $((SECONDS - start)) s"
}
