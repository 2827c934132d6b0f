package agent

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"
)

// Network is the guest's address, from the kernel command line:
// banger.ip=ADDR/PREFIX, banger.gw=ADDR, banger.mtu=BYTES and
// banger.dns=ADDR.
type Network struct {
	Addr    *netlink.Addr
	Gateway net.IP
	// DNS, when set, is the resolver /etc/resolv.conf must name: a
	// bridge-mode guest's is banger's forwarder, whatever the image says.
	DNS net.IP
	// MTU is eth0's MTU; 0 leaves the kernel's.
	MTU int
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
	if d := c.Params["banger.dns"]; d != "" {
		if n.DNS = net.ParseIP(d); n.DNS == nil {
			return nil, fmt.Errorf("banger.dns=%s: not an address", d)
		}
	}
	if m := c.Params["banger.mtu"]; m != "" {
		// 68 is IPv4's minimum; 65535 the largest a virtio-net device
		// without an MTU of its own takes.
		if n.MTU, err = strconv.Atoi(m); err != nil || n.MTU < 68 || n.MTU > 65535 {
			return nil, fmt.Errorf("banger.mtu=%s: want a number from 68 to 65535", m)
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
	if n.MTU > 0 {
		if err := netlink.LinkSetMTU(eth, n.MTU); err != nil {
			return fmt.Errorf("eth0 mtu %d: %w", n.MTU, err)
		}
	}
	if err := netlink.AddrReplace(eth, n.Addr); err != nil {
		return fmt.Errorf("address eth0: %w", err)
	}
	// The guest announces itself as eth0 comes up (a gratuitous ARP):
	// passt learns the guest's MAC from the first frame it sees, and until
	// then a connection forwarded to the guest (the first SSH session
	// after a cold start) went nowhere until passt gave up on it, 10 s
	// later. A guest whose address is static has no other reason to send
	// a frame before someone talks to it.
	os.WriteFile("/proc/sys/net/ipv4/conf/eth0/arp_notify", []byte("1"), 0o644)
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

// WriteResolver points path (/etc/resolv.conf) at the configured DNS
// server, replacing a symlink (systemd-resolved's) rather than writing
// through it.
func (n *Network) WriteResolver(path string) error {
	if n == nil || n.DNS == nil {
		return nil
	}
	tmp := path + ".banger"
	if err := os.WriteFile(tmp, []byte("nameserver "+n.DNS.String()+"\n"), 0o644); err != nil {
		return fmt.Errorf("resolver: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("resolver: %w", err)
	}
	return nil
}
