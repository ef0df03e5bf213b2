// vcsim: govmomi's vCenter simulator as a standalone process, for tests and `make demo`.
//
// Built from Debian's golang-github-vmware-govmomi-dev source (package simulator has no main).
// Extended with changed-block tracking (cbt.go), which vcsim lacks.
// Prints one line "VCSIM_URL=<url>" and "VCSIM_READY" on stdout once serving, then waits for SIGTERM/SIGINT.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"github.com/vmware/govmomi/simulator"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	useTLS := flag.Bool("tls", true, "serve HTTPS with a self-signed certificate")
	username := flag.String("username", "", "only accept this user name (with -password)")
	password := flag.String("password", "", "only accept this password (with -username)")
	clusters := flag.Int("cluster", 1, "clusters per datacenter")
	hosts := flag.Int("host", 3, "hosts per cluster")
	standalone := flag.Int("standalone-host", 1, "standalone hosts per datacenter")
	vms := flag.Int("vm", 2, "virtual machines per resource pool")
	datastores := flag.Int("ds", 1, "datastores")
	portgroups := flag.Int("pg", 1, "distributed port groups per datacenter")
	autostart := flag.Bool("autostart", true, "power on the model's VMs")
	flag.Int64Var(&cbtPageBytes, "cbt-page-bytes", cbtPageBytes, "disk bytes one QueryChangedDiskAreas answer covers")
	flag.DurationVar(&simulator.SessionIdleTimeout, "session-idle-timeout", 0,
		"end a session idle this long, as vCenter does after 30 minutes (0: never)")
	flag.Parse()

	model := simulator.VPX()
	model.Cluster = *clusters
	model.ClusterHost = *hosts
	model.Host = *standalone
	model.Machine = *vms
	model.Datastore = *datastores
	model.Portgroup = *portgroups
	model.Autostart = *autostart

	if err := model.Create(); err != nil {
		log.Fatal(err)
	}
	defer model.Remove()
	wrapVMs() // changed-block tracking (cbt.go)

	u := &url.URL{Host: *listen}
	if *username != "" {
		u.User = url.UserPassword(*username, *password)
	}
	model.Service.Listen = u
	if *useTLS {
		model.Service.TLS = new(tls.Config)
	}

	server := model.Service.NewServer()
	defer server.Close()

	plain := *server.URL
	plain.User = nil
	fmt.Printf("VCSIM_URL=%s\n", plain.String())
	fmt.Println("VCSIM_READY")
	_ = os.Stdout.Sync()

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	<-signals
}
