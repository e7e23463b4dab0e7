// Command coredns-kind is CoreDNS v1.15 with the plugins the Corefile kubeadm writes names
// (errors, health, ready, kubernetes, prometheus, forward, cache, loop, reload,
// loadbalance), for the kind node image. kubeadm's Corefile forwards to the pod's
// /etc/resolv.conf; on a kind node built here that names Docker's embedded resolver
// (127.0.0.11), which is not reachable from a pod's network namespace, so nothing outside
// the cluster is resolved, as the machine's network rule asks. The plugin order follows
// CoreDNS' plugin.cfg.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

var directives = []string{
	"reload",
	"bind",
	"ready",
	"health",
	"prometheus",
	"errors",
	"log",
	"loadbalance",
	"cache",
	"kubernetes",
	"loop",
	"forward",
}

func init() {
	dnsserver.Directives = directives
}

func main() {
	coremain.Run()
}
