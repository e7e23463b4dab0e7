// Command coredns is CoreDNS v1.15 with only the plugins the real node's cluster DNS
// needs: bind (listen on the node's bridge address only), the kubernetes plugin answers cluster.local (and reverse lookups), and nothing
// forwards anywhere, so a pod can resolve Services and nothing outside the cluster.
// Building from a plugin list of our own (CoreDNS' documented way to choose plugins at
// compile time) leaves out the cloud-provider and forwarding plugins of the stock binary.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

// directives is the plugin chain order; it follows the order of CoreDNS' plugin.cfg.
var directives = []string{
	"bind",
	"ready",
	"health",
	"errors",
	"log",
	"loadbalance",
	"cache",
	"kubernetes",
}

func init() {
	dnsserver.Directives = directives
}

func main() {
	coremain.Run()
}
