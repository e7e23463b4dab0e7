#!/usr/bin/env bash
# Installs the Debian packages the image build and the real node need, where missing:
# the container runtime (containerd, runc, the CNI plugins), the image builders (buildah,
# mmdebstrap; docker.io for users who prefer `docker build`), the packet-filter tools
# kube-proxy, kube-router and the launcher's clean-up drive (iptables, ipset, nftables,
# conntrack) and a static busybox (the pod sandbox image). Installing starts no service.
# Idempotent: with everything installed it only checks, and needs neither root nor network.
set -euo pipefail
packages=(
  containerd runc containernetworking-plugins
  buildah mmdebstrap docker.io
  iptables ipset nftables conntrack iproute2
  busybox-static
)
missing=()
for p in "${packages[@]}"; do
  status="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)"
  [[ "$status" == installed ]] || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "host packages: all present"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "host packages missing: ${missing[*]}; run as root: apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "host packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "host packages: installed ${missing[*]}"
