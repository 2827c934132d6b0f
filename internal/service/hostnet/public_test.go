package hostnet

import (
	"context"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/store"
)

func TestWhyNotPublic(t *testing.T) {
	subnet := netip.MustParsePrefix("10.213.0.0/24")
	own := []netip.Addr{netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8::7")}
	// guest_lan opens a LAN mirror, and (wrongly) link-local and the
	// bridge: only the private mirror is opened by it.
	open := []netip.Prefix{netip.MustParsePrefix("192.168.1.10/32"), netip.MustParsePrefix("169.254.0.0/16"), netip.MustParsePrefix("10.213.0.0/24")}
	for _, tt := range []struct {
		addr, why string
	}{
		{"93.184.215.14", ""},
		{"1.1.1.1", ""},
		{"2606:4700::1111", ""},
		// Documentation and benchmarking ranges are public enough: the
		// e2e suite's outside internet uses them.
		{"203.0.113.10", ""},
		{"198.18.0.2", ""},
		{"198.19.255.254", ""},
		{"192.0.2.1", ""},
		{"127.0.0.1", "loopback"},
		{"127.1.2.3", "loopback"},
		{"::1", "loopback"},
		{"::ffff:127.0.0.1", "loopback"},
		{"0.0.0.0", "unspecified"},
		{"::", "unspecified"},
		{"0.1.2.3", "this network"},
		{"169.254.169.254", "link-local"},
		{"fe80::1", "link-local"},
		{"10.0.0.1", "private"},
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"192.168.1.1", "private"},
		{"fd00::1", "private"},
		{"::ffff:10.0.0.1", "private"},
		{"100.64.0.1", "carrier-grade NAT"},
		{"100.127.255.254", "carrier-grade NAT"},
		{"224.0.0.251", "multicast"},
		{"239.255.255.250", "multicast"},
		{"ff02::1", "multicast"},
		{"255.255.255.255", "broadcast"},
		{"240.0.0.1", "reserved"},
		{"10.213.0.1", "banger's bridge subnet"},
		{"192.168.1.10", ""},
		{"192.168.1.11", "private"},
		{"198.51.100.7", "one of the host's own addresses"},
		{"2001:db8::7", "one of the host's own addresses"},
		{"::ffff:198.51.100.7", "one of the host's own addresses"},
		// Neighbours of the ranges are public.
		{"172.32.0.1", ""},
		{"100.128.0.1", ""},
		{"169.255.0.1", ""},
		{"1.0.0.0", ""},
		{"223.255.255.255", ""},
	} {
		got := whyNotPublic(netip.MustParseAddr(tt.addr), subnet, own, open)
		if (tt.why == "") != (got == "") || !strings.Contains(got, tt.why) {
			t.Errorf("whyNotPublic(%s) = %q, want %q", tt.addr, got, tt.why)
		}
	}
	// A bridge subnet that is not private is still the bridge's.
	if got := whyNotPublic(netip.MustParseAddr("203.0.113.200"), netip.MustParsePrefix("203.0.113.128/25"), nil, nil); got != "banger's bridge subnet" {
		t.Errorf("an address on a public bridge subnet: %q", got)
	}
}

// A VM attached again (after a daemon restart) gets back what its
// allowed names resolved to, but only the public addresses (and those
// guest_lan opens): a record an older daemon made may hold others.
func TestAttachedReopensOnlyPublicAddresses(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := New(Deps{Store: st, Log: slog.New(slog.DiscardHandler), Config: Config{Bridge: "banger0", Subnet: netip.MustParsePrefix("10.213.0.0/24"),
		Open: []netip.Prefix{netip.MustParsePrefix("192.168.1.10/32")}}})
	policy, _ := ParseEgress("allow=a.test")
	spec := Spec{VM: "g", ID: "id", Egress: policy}
	if _, _, err := s.attached(ctx, spec); err != nil {
		t.Fatal(err)
	}
	var addrs []netip.Addr
	for _, a := range []string{"203.0.113.10", "127.0.0.1", "10.9.9.9", "169.254.169.254", "10.213.0.1", "198.18.0.2", "192.168.1.10", "192.168.1.11"} {
		addrs = append(addrs, netip.MustParseAddr(a))
	}
	if err := st.RecordResolved(ctx, "g", "a.test", addrs); err != nil {
		t.Fatal(err)
	}
	if err := st.RecordResolved(ctx, "g", "b.test", []netip.Addr{netip.MustParseAddr("203.0.113.20")}); err != nil {
		t.Fatal(err)
	}
	a, _, err := s.attached(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for ip := range a.allowed {
		got = append(got, ip.String())
	}
	slices.Sort(got)
	if want := []string{"192.168.1.10", "198.18.0.2", "203.0.113.10"}; !slices.Equal(got, want) {
		t.Errorf("allowed again: %v, want %v (b.test is not on the list)", got, want)
	}
}
