package hostnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// ensureUp makes the bridge (once its subnet is checked against the
// host's routes), turns on IPv4 forwarding, and starts the DNS forwarder
// on the bridge's address. Runs with s.mu held.
func (s *Service) ensureUp(ctx context.Context) error {
	if s.up {
		return nil
	}
	cfg := s.d.Config
	if err := ensureBridge(cfg); err != nil {
		return err
	}
	// Routing the guests' traffic out is forwarding; the host's other
	// interfaces gain nothing from it that banger's tables do not allow:
	// they forward only to and from the bridge.
	if err := writeSysctl("/proc/sys/net/ipv4/ip_forward", "1"); err != nil {
		return fmt.Errorf("turn on IPv4 forwarding for bridge-mode guests: %w", err)
	}
	// A port published on 127.0.0.1 is translated to a guest's address
	// with the loopback source kept, which the kernel drops on any
	// interface that does not allow it: only the bridge does.
	if err := writeSysctl("/proc/sys/net/ipv4/conf/"+cfg.Bridge+"/route_localnet", "1"); err != nil {
		return err
	}
	if s.dns == nil {
		f, err := s.startDNS(ctx)
		if err != nil {
			return err
		}
		s.dns = f
	}
	s.up = true
	return nil
}

func writeSysctl(path, v string) error {
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == v {
		return nil
	}
	return os.WriteFile(path, []byte(v), 0o644)
}

// ensureBridge makes the bridge with the gateway's address, or checks
// the one there is.
func ensureBridge(cfg Config) error {
	gw := netlink.Addr{IPNet: &net.IPNet{IP: cfg.Gateway().AsSlice(), Mask: net.CIDRMask(cfg.Subnet.Bits(), 32)}}
	l, err := netlink.LinkByName(cfg.Bridge)
	if err != nil {
		if err := CheckSubnet(cfg.Subnet, cfg.Bridge); err != nil {
			return err
		}
		// Its MAC is the gateway's own, not the lowest of its ports': a
		// bridge made anew (by a reconcile) answers guests at the address
		// they already know.
		mac, _ := net.ParseMAC(store.MACFor(cfg.Gateway()))
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: cfg.Bridge, HardwareAddr: mac}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("make bridge %s: %w", cfg.Bridge, err)
		}
		if l, err = netlink.LinkByName(cfg.Bridge); err != nil {
			return fmt.Errorf("bridge %s: %w", cfg.Bridge, err)
		}
	} else if l.Type() != "bridge" {
		return fmt.Errorf("%s is a %s, not a bridge: give bridge_name another name: %w", cfg.Bridge, l.Type(), errdefs.ErrConflict)
	}
	if err := netlink.AddrReplace(l, &gw); err != nil {
		return fmt.Errorf("address %s on bridge %s: %w", gw.IPNet, cfg.Bridge, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("bring up bridge %s: %w", cfg.Bridge, err)
	}
	return nil
}

// CheckSubnet refuses a subnet that overlaps a route of the host's, but
// for routes through the bridge itself (banger's own).
func CheckSubnet(p netip.Prefix, bridge string) error {
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list the host's routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			continue // a default route overlaps everything
		}
		if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil && l.Attrs().Name == bridge {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		a, ok := netip.AddrFromSlice(r.Dst.IP.To4())
		if !ok {
			continue
		}
		if q := netip.PrefixFrom(a, ones); q.Overlaps(p) {
			dev := ""
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
				dev = " (dev " + l.Attrs().Name + ")"
			}
			return fmt.Errorf("bridge_subnet %s overlaps the host's route to %s%s: give bridge_subnet a range this host does not use: %w", p, q, dev, errdefs.ErrConflict)
		}
	}
	return nil
}

// makeTap makes a persistent tap named name on bridge, up. A tap left
// by name from before is replaced.
func makeTap(name, bridge string) error {
	if linkExists(name) {
		if err := deleteLink(name); err != nil {
			return err
		}
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", bridge, err)
	}
	tap := &netlink.Tuntap{
		LinkAttrs: netlink.LinkAttrs{Name: name},
		Mode:      netlink.TUNTAP_MODE_TAP,
		// As the VMM attaches: no packet info, virtio headers.
		Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_ONE_QUEUE | netlink.TUNTAP_TUN_EXCL,
	}
	if err := netlink.LinkAdd(tap); err != nil {
		return fmt.Errorf("make tap %s: %w", name, err)
	}
	// The queue is the VMM's to attach to: a descriptor kept open here
	// would hold it (EBUSY).
	for _, f := range tap.Fds {
		f.Close()
	}
	if err := plugTap(name, br); err != nil {
		deleteLink(name)
		return err
	}
	return nil
}

// plugTap puts a tap on the bridge, up (again, for one a bridge made
// anew lost).
func plugTap(name string, br netlink.Link) error {
	l, err := netlink.LinkByName(name)
	if err == nil {
		err = netlink.LinkSetMaster(l, br)
	}
	if err == nil {
		err = netlink.LinkSetUp(l)
	}
	if err != nil {
		return fmt.Errorf("put tap %s on bridge %s: %w", name, br.Attrs().Name, err)
	}
	return nil
}

func linkExists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}

// deleteLink removes a link; one that is not there is no error.
func deleteLink(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return err
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}

// ourTaps names the links under TapPrefix.
func ourTaps() ([]string, error) {
	ls, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []string
	for _, l := range ls {
		if n := l.Attrs().Name; strings.HasPrefix(n, TapPrefix) {
			out = append(out, n)
		}
	}
	return out, nil
}

// tablesExist says whether banger has a table in this namespace.
func tablesExist() bool {
	c, err := newConn()
	if err != nil {
		return false
	}
	ts, err := c.ListTables()
	if err != nil {
		return false
	}
	for _, t := range ts {
		if t.Name == TableName {
			return true
		}
	}
	return false
}

// Check says whether bridge mode can work on this host, and if not why.
func Check(cfg Config) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("bridge mode needs the daemon to run as root: %w", errdefs.ErrUnavailable)
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return fmt.Errorf("no /dev/net/tun (modprobe tun): %w", errdefs.ErrUnavailable)
	}
	c, err := newConn()
	if err == nil {
		_, err = c.ListTables()
	}
	if err != nil {
		return fmt.Errorf("nftables does not answer (%v): the kernel needs nf_tables: %w", err, errdefs.ErrUnavailable)
	}
	return CheckSubnet(cfg.Subnet, cfg.Bridge)
}
