#!/usr/bin/env bash
# `make kind-image`: builds kind's node image for the pinned Kubernetes version without a
# registry, and saves it as a docker-archive outside the checkout:
#   ${XDG_CACHE_HOME:-~/.cache}/promethios/kind/<kubernetes version>/node-image.tar
# tagged localhost/promethios-kind-node:<kubernetes version>. Prints the archive's path.
#
# The node is a Debian bookworm tree (hack/kind/rootfs.sh) with systemd, containerd, runc,
# the CNI plugins and ipset, the kubelet/kubectl and kube-router (NetworkPolicy) from
# testenv/build.sh, kubeadm and crictl from hack/kind/tools.sh, and the files under
# hack/kind/node/. The images kubeadm deploys are built here too, under the names
# `kubeadm config images list` gives, and saved into the node's /kind/images, which the
# node imports into containerd at boot:
#   kube-apiserver, kube-controller-manager, kube-scheduler: one image (the testenv `kube`
#     multi-call binary) tagged three times; kube-proxy: a Debian tree with iptables plus
#     the `kubenode` binary; etcd: testenv's etcd; coredns: hack/kind/tools.sh's coredns-kind;
#   pause: testenv/cmd/pause.
# With a registry at hand none of this is needed: kind's published kindest/node image works.
# Skips the build when the archive's inputs are unchanged.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=../../testenv/versions.env
source "$root/testenv/versions.env"
# shellcheck source=../image/lib.sh
source "$root/hack/image/lib.sh"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/promethios"
kind_dir="$cache/kind/${KUBERNETES_VERSION}"
bin="$kind_dir/bin"
testenv_bin="$cache/testenv/${KUBERNETES_VERSION}/bin"
ref="localhost/promethios-kind-node:${KUBERNETES_VERSION}"
archive="$kind_dir/node-image.tar"
NODE_PACKAGES="systemd,systemd-sysv,containerd,runc,containernetworking-plugins,iptables,ipset,conntrack,iproute2,ethtool,socat,util-linux,mount,kmod,procps,ca-certificates,libseccomp2"
PROXY_PACKAGES="iptables,conntrack,kmod"

"$here/tools.sh"
for b in kube kubenode etcd kube-router; do
  [[ -x "$testenv_bin/$b" ]] || { echo "kind-image: $testenv_bin/$b is missing; run make testenv" >&2; exit 1; }
done
node_rootfs="$("$here/rootfs.sh" node "$NODE_PACKAGES")"
proxy_rootfs="$("$here/rootfs.sh" kube-proxy "$PROXY_PACKAGES")"
inputs="$( { echo "$node_rootfs $proxy_rootfs"; cat "$0"; find "$here/node" -type f -print0 | sort -z | xargs -0 sha256sum;
  ls -l --time-style=+%s "$bin" "$testenv_bin"; } | sha256sum | cut -c1-16)"
if [[ -s "$archive" && "$(cat "$archive.inputs" 2>/dev/null)" == "$inputs" ]]; then
  echo "kind-image: $ref up to date ($archive)" >&2
  echo "$archive"
  exit 0
fi
start=$SECONDS
stage="$(mktemp -d -t promethios-kind-image.XXXXXX)"
trap 'rm -rf "$stage"; image_cleanup' EXIT
mkdir -p "$stage/images"

# image_from <tar-or-scratch> <ref> <dir to add at /> [buildah config args...]: commits an
# image whose one layer is the tree (plus the base tarball, if any) and saves it for the node.
image_from() {
  local base="$1" name="$2" tree="$3"
  shift 3
  local c
  c="$(buildah_cmd from scratch)"
  [[ "$base" != scratch ]] && buildah_cmd add "$c" "$base" / >/dev/null
  buildah_cmd add "$c" "$tree" / >/dev/null
  buildah_cmd config --env PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin "$@" "$c"
  buildah_cmd commit --rm --quiet "$c" "$name" >/dev/null
  local file="${name##*/}"
  file="${file//:/_}.tar"
  rm -f "$stage/images/$file"
  buildah_cmd push --quiet "$name" "docker-archive:$stage/images/$file:$name" >&2
}

kubeadm_images="$("$bin/kubeadm" config images list --kubernetes-version "$KUBERNETES_VERSION")"
image_named() { grep "/$1:" <<<"$kubeadm_images"; }
echo "kind-image: building the control plane's images" >&2
mkdir -p "$stage/kube/usr/local/bin" "$stage/proxy/usr/local/bin" "$stage/etcd/usr/local/bin" "$stage/dns" "$stage/pause"
cp "$testenv_bin/kube" "$stage/kube/usr/local/bin/kube"
for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do ln -s kube "$stage/kube/usr/local/bin/$c"; done
image_from scratch "$(image_named kube-apiserver)" "$stage/kube"
# The other two are tags of the same image (the node's load script adds them after import).
{ echo "$(image_named kube-apiserver) $(image_named kube-controller-manager)"
  echo "$(image_named kube-apiserver) $(image_named kube-scheduler)"; } >"$stage/images/tags"
cp "$testenv_bin/kubenode" "$stage/proxy/usr/local/bin/kube-proxy"
image_from "$proxy_rootfs" "$(image_named kube-proxy)" "$stage/proxy"
cp "$testenv_bin/etcd" "$stage/etcd/usr/local/bin/etcd"
image_from scratch "$(image_named etcd)" "$stage/etcd" \
  --label "org.opencontainers.image.version=${ETCD_VERSION}"
cp "$bin/coredns-kind" "$stage/dns/coredns"
image_from scratch "$(image_named coredns)" "$stage/dns" --entrypoint '["/coredns"]' \
  --label "org.opencontainers.image.version=${COREDNS_VERSION}"
cp "$bin/pause" "$stage/pause/pause"
image_from scratch "$(image_named pause)" "$stage/pause" --entrypoint '["/pause"]'

echo "kind-image: assembling the node image $ref" >&2
tree="$stage/node"
mkdir -p "$tree/usr/bin" "$tree/kind" "$tree/etc/systemd/system/multi-user.target.wants"
cp -a "$here/node/." "$tree/"
sed -i "s|registry.k8s.io/pause:[0-9.]*|$(image_named pause)|" "$tree/etc/containerd/config.toml"
cp "$testenv_bin/kubenode" "$tree/usr/bin/kubelet"
cp "$testenv_bin/kube" "$tree/usr/bin/kubectl"
cp "$testenv_bin/kube-router" "$tree/usr/bin/kube-router"
cp "$bin/kubeadm" "$bin/crictl" "$tree/usr/bin/"
cp -a "$stage/images" "$tree/kind/images"
echo "$KUBERNETES_VERSION" >"$tree/kind/version"
for unit in containerd.service kubelet.service promethios-load-images.service promethios-cni.service \
  promethios-kube-router.service; do
  ln -sf "/etc/systemd/system/$unit" "$tree/etc/systemd/system/multi-user.target.wants/$unit"
done
ln -sf /lib/systemd/system/containerd.service "$tree/etc/systemd/system/multi-user.target.wants/containerd.service"
# A container has no consoles, udev or hardware clock to look after.
for unit in getty.target console-getty.service systemd-udevd.service systemd-udev-trigger.service \
  systemd-modules-load.service systemd-remount-fs.service systemd-timesyncd.service; do
  ln -sf /dev/null "$tree/etc/systemd/system/$unit"
done
c="$(buildah_cmd from scratch)"
buildah_cmd add "$c" "$node_rootfs" / >/dev/null
buildah_cmd add "$c" "$tree" / >/dev/null
buildah_cmd config \
  --env container=docker \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --entrypoint '["/usr/local/bin/entrypoint", "/sbin/init"]' \
  --cmd '' \
  --stop-signal SIGRTMIN+3 \
  --label "org.opencontainers.image.description=kind node ${KUBERNETES_VERSION} built from source (promethios)" \
  "$c"
buildah_cmd commit --rm --quiet "$c" "$ref" >/dev/null
rm -f "$archive.tmp"
buildah_cmd push --quiet "$ref" "docker-archive:$archive.tmp:$ref" >&2
mv "$archive.tmp" "$archive"
echo "$inputs" >"$archive.inputs"
# The archive is what is kept; buildah's copies are not needed (its storage is shared with
# `make image`, so only this script's images are removed).
buildah_cmd rmi "$ref" $kubeadm_images >/dev/null 2>&1 || true
echo "kind-image: built $ref in $((SECONDS - start)) s; archive $(du -h "$archive" | cut -f1)" >&2
echo "$archive"
