#!/usr/bin/env bash
# Builds the embedded Kubernetes control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, kwok, helm) and the real node's
# components (kubelet, kube-proxy, CoreDNS, kube-router) from Go module sources at the
# versions pinned in versions.env, into a cache outside the checkout:
# ${XDG_CACHE_HOME:-~/.cache}/promethios/testenv/<kubernetes version>/.
# Idempotent: when every binary is present and stamped, it does nothing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/promethios/testenv/${KUBERNETES_VERSION}"
bin="$cache/bin"
# "r2": the recipe revision (r2 added the real node's binaries and helm's version stamps).
stamp="$cache/.complete-r2-${KUBERNETES_VERSION}-${ETCD_VERSION}-${KWOK_VERSION}-${HELM_VERSION}-${COREDNS_VERSION}-${KUBE_ROUTER_VERSION}"
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
if [[ ! -x "$bin/kubenode" ]]; then
  echo "testenv: building kubelet, kube-proxy ${KUBERNETES_VERSION}"
  go build -ldflags "-s -w $kv" -o "$bin/kubenode.tmp" ./cmd/kubenode
  mv "$bin/kubenode.tmp" "$bin/kubenode"
fi
for c in kubelet kube-proxy; do
  ln -sf kubenode "$bin/$c"
done
if [[ ! -x "$bin/coredns" ]]; then
  echo "testenv: building coredns ${COREDNS_VERSION}"
  (cd coredns && go build -ldflags "-s -w" -o "$bin/coredns.tmp" .)
  mv "$bin/coredns.tmp" "$bin/coredns"
fi
if [[ ! -x "$bin/kube-router" ]]; then
  echo "testenv: building kube-router ${KUBE_ROUTER_VERSION}"
  GOBIN="$bin" GOFLAGS="-trimpath" go install \
    -ldflags "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=${KUBE_ROUTER_VERSION}" \
    "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@${KUBE_ROUTER_VERSION}"
fi
# helm's release build stamps its version and the Kubernetes version its client-go module
# stands for (v0.37 -> 1.37), which `helm template`/`helm lint` assume without
# --kube-version; unstamped, they assume v1.20 and refuse charts needing newer.
helm_stamp="$bin/.helm-${HELM_VERSION}-stamped"
if [[ ! -x "$bin/helm" || ! -f "$helm_stamp" ]]; then
  echo "testenv: building helm ${HELM_VERSION}"
  helm_mod="$(go mod download -json "helm.sh/helm/v3@${HELM_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')"
  client_go="$(sed -n 's/^[[:space:]]*k8s.io\/client-go v\([0-9]*\)\.\([0-9]*\)\..*/\1 \2/p' "$helm_mod" | head -1)"
  read -r cg_major cg_minor <<<"$client_go"
  helm_kube_major=$((cg_major + 1))
  hv=""
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    hv+=" -X $pkg.k8sVersionMajor=${helm_kube_major} -X $pkg.k8sVersionMinor=${cg_minor}"
  done
  hv+=" -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
  hv+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  GOBIN="$bin" GOFLAGS="-trimpath" go install -ldflags "-s -w $hv" \
    "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
  touch "$helm_stamp"
fi
"$bin/kube-apiserver" --version
"$bin/etcd" --version | head -1
"$bin/kubelet" --version
"$bin/coredns" -version | head -1
"$bin/helm" version --short
touch "$stamp"
echo "testenv: built in $((SECONDS - start)) s into $cache"
