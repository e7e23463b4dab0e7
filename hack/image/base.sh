#!/usr/bin/env bash
# Builds the local Debian bookworm base image the project's Dockerfile builds FROM when no
# registry is reachable: an mmdebstrap `minbase` root filesystem with Python 3.11 and pip,
# imported into buildah's storage as localhost/promethios-base:bookworm-<hash>.
#
# It stands in for python:3.11-slim: `python`, `pip` and the console scripts pip installs
# (/usr/local/bin) are on PATH, and PIP_BREAK_SYSTEM_PACKAGES lets pip install system-wide
# (the image has no other Python software to protect). The <hash> covers this recipe, so
# the base is rebuilt only when it changes; prints the image reference on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"

DEBIAN_MIRROR="${PROMETHIOS_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SECURITY_MIRROR="${PROMETHIOS_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
# The tree is built merged: usr-is-merged stands in for usrmerge (and the perl it drags
# in), which mmdebstrap installs for its own set-up and the customize hook purges.
PACKAGES="usr-is-merged,python3,python3-pip,python-is-python3,ca-certificates"

key="$( { cat "$0"; echo "$DEBIAN_MIRROR $DEBIAN_SECURITY_MIRROR"; } | sha256sum | cut -c1-16)"
ref="localhost/promethios-base:bookworm-$key"
rootfs="$promethios_cache/base-bookworm-$key.tar"
mkdir -p "$promethios_cache"

if buildah_cmd inspect --type image "$ref" >/dev/null 2>&1; then
  echo "$ref"
  exit 0
fi
if [[ ! -s "$rootfs" ]]; then
  echo "image: building the Debian bookworm root filesystem with mmdebstrap" >&2
  start=$SECONDS
  # Documentation, man pages and translations never help in a container.
  mmdebstrap --variant=minbase --include="$PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='chroot "$1" dpkg --purge usrmerge libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl perl libperl5.36 perl-modules-5.36 libgdbm-compat4' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/log/*' \
    --format=tar bookworm "$rootfs.tmp" \
    "deb $DEBIAN_MIRROR bookworm main" \
    "deb $DEBIAN_MIRROR bookworm-updates main" \
    "deb $DEBIAN_SECURITY_MIRROR bookworm-security main" </dev/null >&2
  mv "$rootfs.tmp" "$rootfs"
  echo "image: root filesystem built in $((SECONDS - start)) s ($(du -h "$rootfs" | cut -f1))" >&2
fi
echo "image: importing the root filesystem as $ref" >&2
ctr="$(buildah_cmd from scratch)"
buildah_cmd add "$ctr" "$rootfs" / >/dev/null
buildah_cmd config \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 \
  --env PIP_BREAK_SYSTEM_PACKAGES=1 \
  --cmd python3 \
  --label org.opencontainers.image.description="Debian bookworm minbase + python3 (promethios local base)" \
  "$ctr"
buildah_cmd commit --rm --quiet "$ctr" "$ref" >/dev/null
echo "$ref"
