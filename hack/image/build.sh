#!/usr/bin/env bash
# `make image`: builds the project's one image from the Dockerfile with buildah (no
# daemon), FROM the local Debian base (hack/image/base.sh) instead of python:3.11-slim,
# and saves it as a docker-archive in the cache for `ctr images import`:
#   ${XDG_CACHE_HOME:-~/.cache}/promethios/images/out/promethios-operator.tar
# tagged ghcr.io/promethios/promethios-operator:<version from pyproject.toml>, the name the
# chart (appVersion), the manifests and the operator's default sidecar image use.
# Skips the build when the inputs (Dockerfile, pyproject.toml, README.md, operator/, base)
# are unchanged since the last one. Prints the archive path on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"
cd "$root"

version="$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
app_version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/promethios-operator/Chart.yaml)"
if [[ "$version" != "$app_version" ]]; then
  echo "image: pyproject.toml version $version differs from the chart's appVersion $app_version" >&2
  exit 1
fi
ref="ghcr.io/promethios/promethios-operator:$version"
archive="$image_out/promethios-operator.tar"
mkdir -p "$image_out"

base="$("$here/base.sh")"
inputs="$( { echo "$base"; cat Dockerfile .dockerignore pyproject.toml README.md;
  find operator -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info*' -print0 | sort -z |
  xargs -0 sha256sum; } | sha256sum | cut -c1-16)"
if [[ -s "$archive" && "$(cat "$archive.inputs" 2>/dev/null)" == "$inputs" ]]; then
  echo "image: $ref up to date ($archive)" >&2
  echo "$archive"
  exit 0
fi
echo "image: building $ref FROM $base" >&2
start=$SECONDS
# --isolation chroot and --network host: RUN steps get no network namespace, CNI or
# cgroups of their own (pip reaches PyPI through the host network). The host's CA bundle
# is lent to RUN steps (not committed), so pip trusts what the host trusts, e.g. a
# TLS-inspecting proxy's CA. No --layers: buildah 1.28 does not key a RUN step's cache on
# the content of a `--mount=type=bind,from=<stage>`, so a cached final stage could keep
# stale wheels; the inputs hash above already skips builds that are not needed.
trust=()
host_ca=/etc/ssl/certs/ca-certificates.crt
[[ -s "$host_ca" ]] && trust=(--volume "$host_ca:$host_ca:ro")
buildah_cmd bud --isolation chroot --network host "${trust[@]}" \
  --build-arg "PYTHON_IMAGE=$base" -t "$ref" -f Dockerfile . >&2
rm -f "$archive.tmp"
buildah_cmd push --quiet "$ref" "docker-archive:$archive.tmp:$ref" >&2
mv "$archive.tmp" "$archive"
echo "$inputs" >"$archive.inputs"
buildah_cmd rmi --prune >/dev/null 2>&1 || true  # drop the images this build replaced
size="$(buildah_cmd images --format "{{.Size}}" "$ref" 2>/dev/null | head -1 || true)"
echo "image: built $ref in $((SECONDS - start)) s; archive $(du -h "$archive" | cut -f1)${size:+, image size $size}" >&2
echo "$archive"
