// Command kubenode is a multi-call binary holding the node components of the Promethios
// test environment's real node: kubelet and kube-proxy. Like cmd/kube, it picks the
// component from the name it was invoked as (build.sh creates one symlink per component),
// so `kubelet --version` behaves exactly like the upstream binary. It is separate from
// cmd/kube so that clusters with only kwok nodes never wait for the kubelet to build.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

var components = map[string]func() *cobra.Command{
	"kubelet":    func() *cobra.Command { return kubelet.NewKubeletCommand(context.Background()) },
	"kube-proxy": proxy.NewProxyCommand,
}

func main() {
	name := filepath.Base(os.Args[0])
	if name == "kubenode" && len(os.Args) > 1 {
		// `kubenode kubelet --flags` works too, for callers without symlinks.
		name = os.Args[1]
		os.Args = os.Args[1:]
	}
	newCommand, ok := components[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "kubenode: unknown component %q (want kubelet or kube-proxy)\n", name)
		os.Exit(2)
	}
	os.Exit(cli.Run(newCommand()))
}
