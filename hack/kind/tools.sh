#!/usr/bin/env bash
# Builds what the kind node image and `pytest --cluster=kind` need beyond testenv/build.sh's
# binaries, from Go module sources, into
#   ${XDG_CACHE_HOME:-~/.cache}/promethios/kind/<kubernetes version>/bin/:
# kind itself, kubeadm (from the testenv module, so it matches the kubelet), crictl (kind's
# `load docker-image` asks it for image IDs), the pod sandbox's pause (testenv/cmd/pause)
# and a CoreDNS with the plugins kubeadm's Corefile names (testenv/coredns/kind).
# Idempotent: a stamp naming every version skips the work.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
testenv="$(cd "$here/../../testenv" && pwd)"
# shellcheck source=../../testenv/versions.env
source "$testenv/versions.env"
KIND_VERSION=v0.33.0
CRICTL_VERSION=v1.37.0
bin="${XDG_CACHE_HOME:-$HOME/.cache}/promethios/kind/${KUBERNETES_VERSION}/bin"
recipe="$(sha256sum "$0" "$testenv/cmd/pause/main.go" "$testenv/coredns/kind/main.go" | sha256sum | cut -c1-12)"
stamp="$bin/.complete-${KIND_VERSION}-${CRICTL_VERSION}-${recipe}"
if [[ -f "$stamp" ]]; then
  exit 0
fi
mkdir -p "$bin"
export CGO_ENABLED=0
start=$SECONDS
major="${KUBERNETES_VERSION#v}"; major="${major%%.*}"
minor="$(echo "$KUBERNETES_VERSION" | cut -d. -f2)"
kv=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kv+=" -X $pkg.gitVersion=${KUBERNETES_VERSION} -X $pkg.gitMajor=${major} -X $pkg.gitMinor=${minor}"
  kv+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=2026-01-01T00:00:00Z"
done
cd "$testenv"
echo "kind-image: building kubeadm ${KUBERNETES_VERSION}, pause, coredns-kind" >&2
GOFLAGS="-mod=mod -trimpath" go build -ldflags "-s -w $kv" -o "$bin/kubeadm" k8s.io/kubernetes/cmd/kubeadm
GOFLAGS="-mod=mod -trimpath" go build -ldflags "-s -w" -o "$bin/pause" ./cmd/pause
(cd coredns && GOFLAGS="-mod=mod -trimpath" go build -ldflags "-s -w" -o "$bin/coredns-kind" ./kind)
echo "kind-image: building kind ${KIND_VERSION}, crictl ${CRICTL_VERSION}" >&2
GOBIN="$bin" GOFLAGS="-trimpath" go install -ldflags "-s -w" "sigs.k8s.io/kind@${KIND_VERSION}"
GOBIN="$bin" GOFLAGS="-trimpath" go install \
  -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=${CRICTL_VERSION}" \
  "sigs.k8s.io/cri-tools/cmd/crictl@${CRICTL_VERSION}"
rm -f "$bin"/.complete-*
touch "$stamp"
echo "kind-image: tools built in $((SECONDS - start)) s into $bin" >&2
