package hostnet

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
)

// reserved are the IPv4 ranges, beyond those netip names, that hold no
// one's public address: a carrier's, or no one's at all. Documentation (192.0.2.0/24, 198.51.100.0/24,
// 203.0.113.0/24) and benchmarking (198.18.0.0/15) ranges are not among
// them: no network reaches the host's own through them, and the e2e
// suite's stand-in internet lives there.
var reserved = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "this network (0.0.0.0/8)"},
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT (100.64.0.0/10)"},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved (240.0.0.0/4)"},
}

// whyNotPublic says why an allow list's answer may not open a: it is
// the host's, its networks', or no one's, which is how a name under the
// guest's allow list, answered by whoever controls that name's DNS,
// would open the way to the host's own services or its network (DNS
// rebinding). "" is a public address. subnet is banger's bridge, own
// the host's addresses, open the networks guest_lan opens: an operator
// named those, so a private address there may be opened, but never the
// host's own, loopback, link-local or multicast.
func whyNotPublic(a netip.Addr, subnet netip.Prefix, own []netip.Addr, open []netip.Prefix) string {
	a = a.Unmap()
	switch {
	case !a.IsValid():
		return "not an address"
	case a.IsUnspecified():
		return "unspecified"
	case a.IsLoopback():
		return "loopback"
	case a.IsLinkLocalUnicast():
		return "link-local"
	case a.IsMulticast():
		return "multicast"
	case subnet.Contains(a):
		return "banger's bridge subnet"
	case slices.Contains(own, a):
		return "one of the host's own addresses"
	case slices.ContainsFunc(open, func(p netip.Prefix) bool { return p.Contains(a) }):
		return ""
	case a.IsPrivate():
		return "private"
	}
	for _, r := range reserved {
		if r.prefix.Contains(a) {
			return r.why
		}
	}
	return ""
}

// hostAddrs reads the host's own addresses, as they are now: an
// interface comes up, or an address is added, between two lookups.
func hostAddrs() ([]netip.Addr, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("read the host's addresses: %w", err)
	}
	var out []netip.Addr
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}

// publicFilter is what an allow list's answers are judged by
// (whyNotPublic).
type publicFilter struct {
	subnet netip.Prefix
	open   []netip.Prefix
	// own reads the host's addresses; when it fails, nothing is opened.
	own func() ([]netip.Addr, error)
}

// split parts addrs into those an allow list may open and the rest, each
// with why not.
func (f publicFilter) split(addrs []netip.Addr) (open []netip.Addr, refused map[netip.Addr]string, err error) {
	if len(addrs) == 0 {
		return nil, nil, nil
	}
	mine, err := f.own()
	if err != nil {
		return nil, nil, err
	}
	refused = map[netip.Addr]string{}
	for _, a := range addrs {
		if why := whyNotPublic(a, f.subnet, mine, f.open); why != "" {
			refused[a] = why
		} else {
			open = append(open, a)
		}
	}
	return open, refused, nil
}
