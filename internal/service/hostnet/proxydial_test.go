package hostnet

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
)

// The proxy's dialer holds the guest's line: a policy's names, and never
// the host's own or private addresses, however the guest names them.
func TestProxyDialerRefuses(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	own := func() ([]netip.Addr, error) { return []netip.Addr{netip.MustParseAddr("198.18.0.1")}, nil }
	d := ProxyDialer{Subnet: netip.MustParsePrefix("10.213.0.0/24"), own: own}
	allow, _ := ParseEgress("allow=api.test")
	tests := []struct {
		policy Egress
		host   string
		want   string
	}{
		{Egress{Mode: EgressOpen}, "127.0.0.1", "loopback"},
		{Egress{Mode: EgressOpen}, "localhost", "loopback"},
		{Egress{Mode: EgressOpen}, "[::1]", "loopback"},
		{Egress{Mode: EgressOpen}, "169.254.169.254", "link-local"},
		{Egress{Mode: EgressOpen}, "10.213.0.5", "bridge subnet"},
		{Egress{Mode: EgressOpen}, "192.168.1.1", "private"},
		{Egress{Mode: EgressOpen}, "198.18.0.1", "host's own"},
		{Egress{Mode: EgressDeny}, "203.0.113.7", "egress is deny"},
		{allow, "203.0.113.7", "names, not addresses"},
		{allow, "other.test", "allow list"},
	}
	for _, tt := range tests {
		c, err := d.Dial(context.Background(), "v1", tt.policy, tt.host, port)
		if err == nil {
			c.Close()
			t.Errorf("%s under %s: dialed", tt.host, tt.policy)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s under %s: %v, want %q", tt.host, tt.policy, err, tt.want)
		}
	}
}
