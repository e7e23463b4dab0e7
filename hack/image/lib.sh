# Shared settings of the image scripts (sourced, not run): where images are cached and
# how buildah is invoked. Buildah runs without a daemon (nothing to start, stop or
# network), with its storage in the cache and a throw-away run root. Image builds are
# serialised by a lock, and what buildah insists on creating outside the cache
# (/var/lib/containers/cache, its blob-info cache) is removed again if it was not there.
promethios_cache="${XDG_CACHE_HOME:-$HOME/.cache}/promethios/images"
image_storage="$promethios_cache/storage"
image_out="$promethios_cache/out"
mkdir -p "$promethios_cache"

image_runroot=""
image_had_var_lib_containers=""
image_init() {
  [[ -n "$image_runroot" ]] && return 0
  exec 9>"$promethios_cache/.lock"
  flock 9
  [[ -e /var/lib/containers ]] && image_had_var_lib_containers=yes
  image_runroot="$(mktemp -d -t promethios-buildah-run.XXXXXX)"
  mkdir -p "$promethios_cache/cni"
  # Buildah's network set-up would otherwise create /etc/cni/net.d; builds use the host
  # network (--network host), so this directory stays empty.
  printf '[network]\nnetwork_config_dir = "%s"\n' "$promethios_cache/cni" >"$image_runroot/containers.conf"
  export CONTAINERS_CONF="$image_runroot/containers.conf"
  trap 'image_cleanup' EXIT
}

buildah_cmd() {
  image_init
  buildah --root "$image_storage" --runroot "$image_runroot" --storage-driver overlay "$@"
}

# Unmount whatever buildah's overlay driver left mounted under the storage or run root,
# drop the run root, and remove /var/lib/containers if buildah created it.
image_cleanup() {
  local mounts m
  mounts="$(awk -v s="$image_storage" -v r="$image_runroot" \
    'index($5, s) == 1 || index($5, r) == 1 {print $5}' /proc/self/mountinfo | sort -r)"
  for m in $mounts; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  [[ -n "$image_runroot" ]] && rm -rf "$image_runroot"
  [[ -z "$image_had_var_lib_containers" ]] && rm -rf /var/lib/containers
  return 0
}
