package agent

import (
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"
)

// Network is the guest's address, from the kernel command line:
// banger.ip=ADDR/PREFIX and banger.gw=ADDR.
type Network struct {
	Addr    *netlink.Addr
	Gateway net.IP
}

// NetworkFromCmdline reads banger.ip and banger.gw; a missing banger.ip
// means no network.
func NetworkFromCmdline(c Cmdline) (*Network, error) {
	ip := c.Params["banger.ip"]
	if ip == "" {
		return nil, nil
	}
	addr, err := netlink.ParseAddr(ip)
	if err != nil {
		return nil, fmt.Errorf("banger.ip=%s: %w", ip, err)
	}
	n := &Network{Addr: addr}
	if gw := c.Params["banger.gw"]; gw != "" {
		if n.Gateway = net.ParseIP(gw); n.Gateway == nil {
			return nil, fmt.Errorf("banger.gw=%s: not an address", gw)
		}
	}
	return n, nil
}

// Up brings up lo, and eth0 with the configured address and route.
func (n *Network) Up() error {
	if lo, err := netlink.LinkByName("lo"); err == nil {
		netlink.LinkSetUp(lo)
	}
	if n == nil {
		return nil
	}
	var eth netlink.Link
	var err error
	for i := 0; i < 100; i++ {
		if eth, err = netlink.LinkByName("eth0"); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("eth0: %w", err)
	}
	if err := netlink.AddrReplace(eth, n.Addr); err != nil {
		return fmt.Errorf("address eth0: %w", err)
	}
	if err := netlink.LinkSetUp(eth); err != nil {
		return fmt.Errorf("bring up eth0: %w", err)
	}
	if n.Gateway != nil {
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: n.Gateway}); err != nil {
			return fmt.Errorf("default route: %w", err)
		}
	}
	return nil
}
