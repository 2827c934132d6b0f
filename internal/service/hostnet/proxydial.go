package hostnet

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// ProxyDialer makes the connections a VM's secrets proxy makes for its
// guest. They leave from the daemon, outside the rules that hold the
// guest's own traffic, so the same rules are applied here: the VM's
// egress policy by name, and never an address of the host's own, of its
// networks, or of no one (whyNotPublic), whatever a name resolves to.
type ProxyDialer struct {
	// Upstream is the DNS server (ADDR:PORT) names are resolved with;
	// "" is the host's.
	Upstream string
	// Subnet is banger's bridge; Open the networks guest_lan opens.
	Subnet netip.Prefix
	Open   []netip.Prefix
	// Record notes what a name resolved to, for a VM whose policy
	// records lookups (learn, allow); nil records nothing.
	Record func(ctx context.Context, vm, name string, addrs []netip.Addr) error
	// own reads the host's addresses (hostAddrs when nil).
	own func() ([]netip.Addr, error)
}

// Dial reaches host:port for vm under policy, or says why not.
func (d ProxyDialer) Dial(ctx context.Context, vm string, policy Egress, host, port string) (net.Conn, error) {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	refuse := func(why string) (net.Conn, error) {
		return nil, fmt.Errorf("%s: %s: %w", host, why, errdefs.ErrPermission)
	}
	addr, perr := netip.ParseAddr(strings.Trim(host, "[]"))
	isAddr := perr == nil
	switch {
	case policy.Mode == EgressDeny:
		return refuse("vm " + vm + "'s egress is deny")
	case isAddr && policy.Mode == EgressAllow:
		return refuse("vm " + vm + "'s egress allows names, not addresses")
	case !isAddr && !policy.Allows(host):
		return refuse("not in vm " + vm + "'s egress allow list")
	}
	var addrs []netip.Addr
	if isAddr {
		addrs = []netip.Addr{addr}
	} else {
		var err error
		if addrs, err = d.resolve(ctx, host); err != nil {
			return nil, fmt.Errorf("look up %s: %w", host, err)
		}
		if d.Record != nil && policy.Records() {
			d.Record(ctx, vm, host, addrs)
		}
	}
	own := d.own
	if own == nil {
		own = hostAddrs
	}
	open, refused, err := publicFilter{subnet: d.Subnet, open: d.Open, own: own}.split(addrs)
	if err != nil {
		return nil, err
	}
	if len(open) == 0 {
		for a, why := range refused {
			return refuse(fmt.Sprintf("%s is %s, which guests do not reach", a, why))
		}
		return refuse("no address")
	}
	var dialer net.Dialer
	var last error
	for _, a := range open {
		c, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(a.String(), port))
		if err == nil {
			return c, nil
		}
		last = err
	}
	return nil, last
}

func (d ProxyDialer) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	r := net.DefaultResolver
	if up := d.Upstream; up != "" {
		r = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, network, up)
		}}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ips, err := r.LookupNetIP(ctx, "ip4", host)
	if err != nil {
		return nil, err
	}
	for i := range ips {
		ips[i] = ips[i].Unmap()
	}
	return ips, nil
}
