// Command coredns is CoreDNS with only the plugins a test cluster's DNS
// needs (the kubernetes plugin and what a kubeadm Corefile names, less the
// forwarder: the pods of scripts/k8s have no upstream). Go is a build tool
// for the tests here, never part of the product.
package main

import (
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"

	"github.com/coredns/coredns/coremain"
)

func main() {
	coremain.Run()
}
