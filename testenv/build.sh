#!/usr/bin/env bash
# Builds the embedded Kubernetes control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, kwok, helm) from Go module
# sources at the versions pinned in versions.env, into a cache outside the
# checkout: ${XDG_CACHE_HOME:-~/.cache}/promethios/testenv/<kubernetes version>/.
# Idempotent: when every binary is present and stamped, it does nothing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/promethios/testenv/${KUBERNETES_VERSION}"
bin="$cache/bin"
stamp="$cache/.complete-${KUBERNETES_VERSION}-${ETCD_VERSION}-${KWOK_VERSION}-${HELM_VERSION}"
if [[ -f "$stamp" ]]; then
  echo "testenv: up to date in $cache"
  exit 0
fi
mkdir -p "$bin"
export GOFLAGS="-mod=mod -trimpath" CGO_ENABLED=0
start=$SECONDS
major="${KUBERNETES_VERSION#v}"; major="${major%%.*}"
minor="$(echo "$KUBERNETES_VERSION" | cut -d. -f2)"
build_date="2026-01-01T00:00:00Z"  # fixed, so rebuilds are reproducible
kv=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kv+=" -X $pkg.gitVersion=${KUBERNETES_VERSION} -X $pkg.gitMajor=${major} -X $pkg.gitMinor=${minor}"
  kv+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=${build_date}"
done

cd "$here"
if [[ ! -x "$bin/kube" ]]; then
  echo "testenv: building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl ${KUBERNETES_VERSION}"
  go build -ldflags "-s -w $kv" -o "$bin/kube.tmp" ./cmd/kube
  mv "$bin/kube.tmp" "$bin/kube"
fi
for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  ln -sf kube "$bin/$c"
done
if [[ ! -x "$bin/etcd" ]]; then
  echo "testenv: building etcd ${ETCD_VERSION}"
  go build -ldflags "-s -w" -o "$bin/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$bin/etcd.tmp" "$bin/etcd"
fi
if [[ ! -x "$bin/kwok" ]]; then
  echo "testenv: building kwok ${KWOK_VERSION}"
  GOBIN="$bin" GOFLAGS="-trimpath" go install \
    -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION}" \
    "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
fi
if [[ ! -x "$bin/helm" ]]; then
  echo "testenv: building helm ${HELM_VERSION}"
  GOBIN="$bin" GOFLAGS="-trimpath" go install \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" \
    "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
fi
"$bin/kube-apiserver" --version
"$bin/etcd" --version | head -1
touch "$stamp"
echo "testenv: built in $((SECONDS - start)) s into $cache"
