package hostnet

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/banger-dev/banger/internal/kit/testkit"
	"github.com/banger-dev/banger/internal/wire/errdefs"
	"github.com/vishvananda/netlink"
)

// The host's own routes, read as any user may: a subnet over one of them
// is refused, the default route is no overlap.
func TestCheckSubnet(t *testing.T) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	testkit.Need(t, err == nil, fmt.Sprintf("no netlink here (%v): any user on Linux reads the routes, a sandbox may not", err))
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() || r.Table != 254 {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		a, _ := netip.AddrFromSlice(r.Dst.IP.To4())
		p := netip.PrefixFrom(a, ones)
		if err := CheckSubnet(p, "banger-test0"); !errors.Is(err, errdefs.ErrConflict) {
			t.Errorf("subnet %s, a route of this host's: %v, want a conflict", p, err)
		}
	}
	// TEST-NET-2 is documentation only: no host routes it.
	if err := CheckSubnet(netip.MustParsePrefix("198.51.100.0/24"), "banger-test0"); err != nil {
		t.Errorf("198.51.100.0/24: %v", err)
	}
}
