# Images without a registry: a debootstrap base, our Dockerfiles built by buildah, each image
# saved as an OCI archive and imported into every node's containerd. Rebuilt only when what
# goes into them changes (a content key over their Dockerfile and the project's sources).
source "$(dirname "${BASH_SOURCE[0]}")/nodes.sh"

IMAGE_PACKAGES=(debootstrap buildah umoci)
IMAGES_DIR="$KOMPILE_CACHE/images"
BASE_IMAGE_REF="localhost/kompile-base:bookworm"
# name -> Dockerfile; the refs are what the operator's defaults and the chart name.
declare -A DOCKERFILES=(
  [kompile-runtime]=runtime-image/Dockerfile
  [kompile-compiler]=compiler-image/Dockerfile
  [kompile-operator]=operator/Dockerfile
)
export STORAGE_DRIVER="${STORAGE_DRIVER:-overlay}" BUILDAH_ISOLATION=chroot
# buildah's own storage (the base image, build layers) lives with the rest of the cache.
BUILDAH_ROOT="$KOMPILE_CACHE/buildah"
buildah_() { as_root buildah --root "$BUILDAH_ROOT/storage" --runroot "$BUILDAH_ROOT/run" "$@"; }

# Each image's content key, computed once per run so every step names the same image: its
# Dockerfile, and the project's sources and dependencies (every image installs the package).
_sources_key=$(cd "$REPO_ROOT" && { cat pyproject.toml; find operator compiler-image runtime-image -type f \
  \( -name '*.py' -o -name Dockerfile \) -not -path '*/__pycache__/*' | sort | xargs sha256sum; } | sha256sum)
declare -A IMAGE_KEYS=()
for _name in "${!DOCKERFILES[@]}"; do
  IMAGE_KEYS[$_name]=$({ cat "$REPO_ROOT/${DOCKERFILES[$_name]}"; echo "$_sources_key"; } | sha256sum | cut -c1-32)
done
unset _name _sources_key

# Tagged by content: a rebuilt image has a new tag, so Deployments that name it roll.
image_ref() { echo "docker.io/local/$1:${IMAGE_KEYS[$1]:0:12}"; }

ensure_base_image() {
  buildah_ inspect --type image "$BASE_IMAGE_REF" >/dev/null 2>&1 && return 0
  local tmp start=$SECONDS
  tmp=$(mktemp -d)
  log "debootstrap: a Debian bookworm base with python3 (about a minute)"
  as_root debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$tmp/rootfs" \
    >"$tmp/debootstrap.log" 2>&1 || { tail -20 "$tmp/debootstrap.log"; die "debootstrap failed"; }
  as_root rm -rf "$tmp/rootfs/var/cache/apt/archives/"*.deb "$tmp/rootfs/var/lib/apt/lists/"*
  local ctr
  ctr=$(buildah_ from scratch)
  buildah_ copy "$ctr" "$tmp/rootfs" / >/dev/null
  buildah_ config --cmd /bin/bash "$ctr"
  buildah_ commit -q "$ctr" "$BASE_IMAGE_REF" >/dev/null
  buildah_ rm "$ctr" >/dev/null
  as_root rm -rf "$tmp"
  log "base image $BASE_IMAGE_REF in $((SECONDS - start)) s"
}

# The wheels every image installs from, fetched once from the package index on this host.
ensure_wheels() {
  local stamp="$REPO_ROOT/.whl/.complete" key
  key=$(sha256sum "$REPO_ROOT/pyproject.toml" | cut -c1-16)
  [ "$(cat "$stamp" 2>/dev/null)" = "$key" ] && return 0
  log "fetching wheels for the images into .whl/"
  python3 -m pip download -q --disable-pip-version-check --only-binary=:all: -d "$REPO_ROOT/.whl" \
    "$REPO_ROOT[runtime,compiler,loadgen]" "setuptools>=77" wheel 2>&1 | grep -v "^WARNING: Location" || true
  echo "$key" >"$stamp"
}

build_image() { # name
  local name=$1 file=${DOCKERFILES[$1]} key archive="$IMAGES_DIR/$1.tar" start=$SECONDS
  key=${IMAGE_KEYS[$name]}
  if [ -f "$archive" ] && [ "$(cat "$IMAGES_DIR/$name.key" 2>/dev/null)" = "$key" ]; then return 0; fi
  mkdir -p "$IMAGES_DIR"
  log "building $(image_ref "$name") from $file"
  buildah_ bud -q --layers=false --network host -f "$REPO_ROOT/$file" \
    --build-arg BASE_IMAGE="$BASE_IMAGE_REF" --build-arg PIP_ARGS="--no-index --find-links /wheels" \
    -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
    -t "$(image_ref "$name")" "$REPO_ROOT" >"$IMAGES_DIR/$name.build.log" 2>&1 \
    || { tail -30 "$IMAGES_DIR/$name.build.log"; die "building $name failed (log: $IMAGES_DIR/$name.build.log)"; }
  rm -f "$archive"
  # Uncompressed: the archive is read once per node, and gzip would cost more than it saves.
  buildah_ push -q --disable-compression "$(image_ref "$name")" "oci-archive:$archive:$(image_ref "$name")" >/dev/null
  echo "$key" >"$IMAGES_DIR/$name.key"
  log "built $(image_ref "$name"): $(du -h "$archive" | cut -f1) in $((SECONDS - start)) s"
}

import_images() {
  local name i pids=()
  # One import per node at a time, the nodes side by side: each has its own containerd.
  for ((i = 1; i <= $(node_count); i++)); do
    (for name in "$@"; do
      import_image "$i" "$IMAGES_DIR/$name.tar" "$(image_ref "$name")"
    done
    prune_images "$i") &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || die "importing images failed"; done
  write_images_env
}

# What the chart and the operator are told to run: KOMPILE_{OPERATOR,COMPILER,RUNTIME}_IMAGE.
IMAGES_ENV="$IMAGES_DIR/images.env"
write_images_env() {
  {
    echo "KOMPILE_OPERATOR_IMAGE=$(image_ref kompile-operator)"
    echo "KOMPILE_COMPILER_IMAGE=$(image_ref kompile-compiler)"
    echo "KOMPILE_RUNTIME_IMAGE=$(image_ref kompile-runtime)"
  } >"$IMAGES_ENV"
}

# Older builds of our images on a node: removed once the new ones are in (no registry to
# refetch from, so only what the current sources built is kept). The kubelet also names each
# image by its config digest (a `sha256:...` ref); an old image's digest ref would keep all its
# layers on disk, so refs are kept by what they point at, not by name.
prune_images() { # index
  local keep=("$PAUSE_IMAGE") name ref digest
  for name in "${!DOCKERFILES[@]}"; do keep+=("$(image_ref "$name")"); done
  local listing kept_digests
  listing=$(ctr_node "$1" images ls 2>/dev/null | awk 'NR > 1 {print $1, $3}')
  kept_digests=$(for ref in "${keep[@]}"; do awk -v r="$ref" '$1 == r {print $2}' <<<"$listing"; done)
  while read -r ref digest; do
    [ -n "$ref" ] || continue
    case "$ref" in docker.io/local/* | sha256:*) ;; *) continue ;; esac
    if ! grep -qxF "$digest" <<<"$kept_digests"; then
      ctr_node "$1" images rm --sync "$ref" >/dev/null 2>&1 || true
    fi
  done <<<"$listing"
}

# buildah's storage keeps every earlier build: drop all but the current tag of each image.
prune_builds() {
  local name ref
  for name in "${!DOCKERFILES[@]}"; do
    for ref in $(buildah_ images --format '{{.Name}}:{{.Tag}}' 2>/dev/null | grep "/$name:" || true); do
      [ "$ref" = "$(image_ref "$name")" ] || buildah_ rmi "$ref" >/dev/null 2>&1 || true
    done
  done
  buildah_ rmi --prune >/dev/null 2>&1 || true
}
