#!/usr/bin/env bash
# `make e2e-images`: the end-to-end tests' image (tests/e2e/images/Containerfile) FROM the
# project's image built by build.sh, with the test agent and the demo's fake provider,
# saved as ${XDG_CACHE_HOME:-~/.cache}/promethios/images/out/promethios-e2e.tar
# (localhost/promethios/e2e:1). Skipped when its inputs are unchanged. Prints the path.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"
cd "$root"

ref="localhost/promethios/e2e:1"
archive="$image_out/promethios-e2e.tar"
src=tests/e2e/images
upstream=localdev/promethios_local/demo/upstream.py
"$here/build.sh" >/dev/null
base_inputs="$(cat "$image_out/promethios-operator.tar.inputs")"
base="ghcr.io/promethios/promethios-operator:$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
inputs="$( { echo "$base $base_inputs"; cat "$src/Containerfile" "$src/agent.py" \
  "$src/fake_provider.py" "$upstream"; } | sha256sum | cut -c1-16)"
if [[ -s "$archive" && "$(cat "$archive.inputs" 2>/dev/null)" == "$inputs" ]]; then
  echo "image: $ref up to date ($archive)" >&2
  echo "$archive"
  exit 0
fi
context="$(mktemp -d -t promethios-e2e-context.XXXXXX)"
trap 'rm -rf "$context"; image_cleanup' EXIT
cp "$src/Containerfile" "$src/agent.py" "$src/fake_provider.py" "$upstream" "$context/"
echo "image: building $ref FROM $base" >&2
start=$SECONDS
buildah_cmd bud --isolation chroot --network host \
  --build-arg "BASE_IMAGE=$base" -t "$ref" -f "$context/Containerfile" "$context" >&2
rm -f "$archive.tmp"
buildah_cmd push --quiet "$ref" "docker-archive:$archive.tmp:$ref" >&2
mv "$archive.tmp" "$archive"
echo "$inputs" >"$archive.inputs"
buildah_cmd rmi --prune >/dev/null 2>&1 || true  # drop the images this build replaced
echo "image: built $ref in $((SECONDS - start)) s" >&2
echo "$archive"
