#!/usr/bin/env bash
# Builds a Debian bookworm root filesystem tarball with mmdebstrap for the kind node image
# and its images: `rootfs.sh <name> <comma-separated packages>` prints the path of
#   ${XDG_CACHE_HOME:-~/.cache}/promethios/kind/rootfs/<name>-<hash>.tar
# where <hash> covers this recipe, the package list and the mirrors, so a tree is built once
# and reused until one of them changes. Recommends are not installed (a node needs only what
# it names), and documentation, man pages and translations are left out.
set -euo pipefail
name="$1"
packages="$2"
DEBIAN_MIRROR="${PROMETHIOS_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SECURITY_MIRROR="${PROMETHIOS_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
dir="${XDG_CACHE_HOME:-$HOME/.cache}/promethios/kind/rootfs"
key="$( { cat "$0"; echo "$packages $DEBIAN_MIRROR $DEBIAN_SECURITY_MIRROR"; } | sha256sum | cut -c1-16)"
tarball="$dir/$name-$key.tar"
mkdir -p "$dir"
if [[ -s "$tarball" ]]; then
  echo "$tarball"
  exit 0
fi
echo "kind-image: building the $name root filesystem with mmdebstrap" >&2
start=$SECONDS
# usr-is-merged stands in for usrmerge (and the perl it drags in), as in hack/image/base.sh.
mmdebstrap --variant=minbase --include="usr-is-merged,$packages" \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook='chroot "$1" dpkg --purge usrmerge libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl perl libperl5.36 perl-modules-5.36 libgdbm-compat4 || true' \
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
  --format=tar bookworm "$tarball.tmp" \
  "deb $DEBIAN_MIRROR bookworm main" \
  "deb $DEBIAN_MIRROR bookworm-updates main" \
  "deb $DEBIAN_SECURITY_MIRROR bookworm-security main" </dev/null >&2
mv "$tarball.tmp" "$tarball"
echo "kind-image: $name root filesystem built in $((SECONDS - start)) s ($(du -h "$tarball" | cut -f1))" >&2
echo "$tarball"
