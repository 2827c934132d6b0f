package nftrules

import (
	"net/netip"
	"testing"

	"github.com/google/nftables"
)

// The guard's users: u1 under deny, u2 under an allow list, u3 learning;
// other uids of the VMM range run VMs whose egress is open.
const (
	vmmFrom = 1900000000
	u1, u2  = vmmFrom + 42, vmmFrom + 43
	u3      = vmmFrom + 44
	openVM  = vmmFrom + 50
	user    = 1000
)

func testGuard() Guard {
	return Guard{UIDFrom: vmmFrom, UIDCount: 65536,
		Connected: []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")},
		Open:      []netip.Prefix{netip.MustParsePrefix(mirror + "/32")},
		Resolvers: []netip.Addr{netip.MustParseAddr("192.0.2.53")},
		Users: []User{
			{VM: "u1", ID: "id-u1", UID: u1, DNSPort: 40001, Egress: EgressDeny},
			{VM: "u2", ID: "id-u2", UID: u2, DNSPort: 40002, Egress: EgressAllow, Allowed: []netip.Addr{netip.MustParseAddr(opened)}},
			{VM: "u3", ID: "id-u3", UID: u3, DNSPort: 40003, Egress: EgressOpen},
		}}
}

// What user-mode guests send, judged by the socket's uid: only the
// VMMs' uids are held; none reaches the host's own addresses, its LAN
// (but what guest_lan opens), link-local or loopback, but DNS to the
// host's resolvers and each its own DNS listener, which no other socket
// reaches; past that, each its policy.
func TestGuard(t *testing.T) {
	g := testGuard().Table()
	if g.Table.Name != GuardTable || g.Table.Family != nftables.TableFamilyIPv4 {
		t.Fatalf("table %+v", g.Table)
	}
	for _, tt := range []struct {
		name string
		p    packet
		want string
	}{
		{"another user is not held", tcp(hostLAN, public, 443).from(user), "accept"},
		{"another user reaches the host", tcp("127.0.0.1", "127.0.0.1", 22).from(user), "accept"},
		{"a packet of no socket's is not held", tcp(hostLAN, public, 443), "accept"},
		{"open reaches the internet", tcp(hostLAN, public, 443).from(openVM), "accept"},
		{"open does not reach the host's LAN address", tcp(hostLAN, hostLAN, 22).from(openVM), "reset"},
		{"open does not reach the host's loopback", udp("127.0.0.1", "127.0.0.1", 631).from(openVM), "prohibited"},
		{"open does not reach the bridge's gateway", tcp(hostLAN, gw, 22).from(openVM), "reset"},
		{"open does not reach the LAN", tcp(hostLAN, lanPeer, 22).from(openVM), "reset"},
		{"open reaches what guest_lan opens", tcp(hostLAN, mirror, 80).from(openVM), "accept"},
		{"open does not reach the metadata service", tcp(hostLAN, "169.254.169.254", 80).from(openVM), "reset"},
		{"open asks the host's resolver", udp(hostLAN, "192.0.2.53", 53).from(openVM), "accept"},
		{"replies to the guest pass", tcp(hostLAN, lanPeer, 40000).from(openVM).with(reply), "accept"},
		{"the uid range's last", tcp(hostLAN, hostLAN, 22).from(vmmFrom + 65535), "reset"},
		{"past the uid range", tcp(hostLAN, hostLAN, 22).from(vmmFrom + 65536), "accept"},
		{"deny reaches nothing outside", tcp(hostLAN, public, 443).from(u1), "reset"},
		{"deny reaches its DNS listener", udp("127.0.0.1", "127.0.0.1", 40001).from(u1), "accept"},
		{"deny does not reach another's listener", udp("127.0.0.1", "127.0.0.1", 40002).from(u1), "prohibited"},
		{"guest_lan does not lift deny", tcp(hostLAN, mirror, 80).from(u1), "reset"},
		{"allow reaches its set", tcp(hostLAN, opened, 443).from(u2), "accept"},
		{"allow refuses the rest", udp(hostLAN, "203.0.113.11", 443).from(u2), "prohibited"},
		{"guest_lan does not lift an allow list", tcp(hostLAN, mirror, 80).from(u2), "reset"},
		{"learn reaches the internet", tcp(hostLAN, public, 443).from(u3), "accept"},
		{"another user's question to u1's listener", udp("127.0.0.1", "127.0.0.1", 40001).from(user), "prohibited"},
		{"root's, over TCP", tcp("127.0.0.1", "127.0.0.1", 40001).from(0), "reset"},
	} {
		if got := testHost.eval(t, g, "output", tt.p); got != tt.want {
			t.Errorf("%s: %s (uid %d): %s, want %s", tt.name, tt.p, tt.p.uid, got, tt.want)
		}
	}
	// Whatever server a user under a policy asks, its question goes to
	// its own listener; no one else's is touched.
	for _, tt := range []struct {
		p    packet
		want string
	}{
		{udp(hostLAN, "8.8.8.8", 53).from(u1), "dnat 127.0.0.1:40001"},
		{tcp(hostLAN, "192.0.2.53", 53).from(u2), "dnat 127.0.0.1:40002"},
		{udp(hostLAN, "8.8.8.8", 53).from(u3), "dnat 127.0.0.1:40003"},
		{udp(hostLAN, "8.8.8.8", 53).from(openVM), "accept"},
		{udp(hostLAN, "8.8.8.8", 53).from(user), "accept"},
		{udp(hostLAN, "8.8.8.8", 5353).from(u1), "accept"},
	} {
		if got := testHost.eval(t, g, "dns", tt.p); got != tt.want {
			t.Errorf("dns: %s (uid %d): %s, want %s", tt.p, tt.p.uid, got, tt.want)
		}
	}
}

// With no user under a policy, the guard still keeps the range's
// guests off the host.
func TestGuardWithoutUsers(t *testing.T) {
	g := testGuard()
	g.Users = nil
	table := g.Table()
	if len(table.Sets) != 0 {
		t.Errorf("sets %v", table.Sets)
	}
	if got := testHost.eval(t, table, "output", tcp(hostLAN, hostLAN, 22).from(openVM)); got != "reset" {
		t.Errorf("to the host: %s", got)
	}
	if got := testHost.eval(t, table, "dns", udp(hostLAN, "8.8.8.8", 53).from(openVM)); got != "accept" {
		t.Errorf("dns: %s", got)
	}
}
