package nftrules

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/wire/api"
)

// The test bridge's host: banger0 at 10.213.0.1, a LAN at 192.168.1.0/24
// (the host is 192.168.1.5 there) of which guest_lan opens a mirror,
// 192.168.1.10, and the internet beyond eth0.
const (
	gw      = "10.213.0.1"
	hostLAN = "192.168.1.5"
	mirror  = "192.168.1.10"
	lanPeer = "192.168.1.7"
	public  = "93.184.215.14"
	opened  = "203.0.113.10"
)

var testHost = host{addrs: []netip.Addr{netip.MustParseAddr(gw), netip.MustParseAddr(hostLAN), netip.MustParseAddr("127.0.0.1")}}

// The guests: a1 and a2 of uid 1000, b1 and b2 of uid 2000, each under
// another policy and publishing another kind of port.
var (
	a1 = Guest{VM: "a1", ID: "id-a1", Owner: 1000, Tap: "bg-id-a1", MAC: mac("02:b4:0a:d5:00:02"), IP: netip.MustParseAddr("10.213.0.2"),
		Egress: EgressOpen, Ports: []api.PortForward{{HostPort: 2222, GuestPort: 22}}}
	a2 = Guest{VM: "a2", ID: "id-a2", Owner: 1000, Tap: "bg-id-a2", MAC: mac("02:b4:0a:d5:00:03"), IP: netip.MustParseAddr("10.213.0.3"),
		Egress: EgressDeny, Ports: []api.PortForward{{HostIP: "0.0.0.0", HostPort: 8080, GuestPort: 80}}}
	b1 = Guest{VM: "b1", ID: "id-b1", Owner: 2000, Tap: "bg-id-b1", MAC: mac("02:b4:0a:d5:00:04"), IP: netip.MustParseAddr("10.213.0.4"),
		Egress: EgressAllow, Allowed: []netip.Addr{netip.MustParseAddr(opened)},
		Ports: []api.PortForward{{HostIP: hostLAN, HostPort: 5353, GuestPort: 53, Proto: "udp"}}}
	b2 = Guest{VM: "b2", ID: "id-b2", Owner: 2000, Tap: "bg-id-b2", MAC: mac("02:b4:0a:d5:00:05"), IP: netip.MustParseAddr("10.213.0.5")}
)

func testBridge(guests ...Guest) Bridge {
	return Bridge{Name: "banger0", Gateway: netip.MustParseAddr(gw), Subnet: netip.MustParsePrefix("10.213.0.0/24"),
		Connected: []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")},
		Open:      []netip.Prefix{netip.MustParsePrefix(mirror + "/32")}, Guests: guests}
}

// tables returns the ip and bridge tables of b, checked for their names
// and families.
func tables(t *testing.T, b Bridge) (ip, br Table) {
	t.Helper()
	ts := b.Tables()
	if len(ts) != 2 || ts[0].Table.Name != TableName || ts[0].Table.Family != nftables.TableFamilyIPv4 ||
		ts[1].Table.Name != TableName || ts[1].Table.Family != nftables.TableFamilyBridge {
		t.Fatalf("Tables() = %+v, want banger's ip and bridge tables", ts)
	}
	return ts[0], ts[1]
}

func (g Guest) addr() string { return g.IP.String() }

// What each guest's packets to the world become on their way through
// the host (forward): its policy decides, after the LAN's ban and
// before the refusal of anything else.
func TestForward(t *testing.T) {
	ip, _ := tables(t, testBridge(a1, a2, b1, b2))
	for _, tt := range []struct {
		name string
		p    packet
		want string
	}{
		{"open reaches the internet", tcp(a1.addr(), public, 443).via("banger0", "eth0"), "accept"},
		{"learn is open", udp(b2.addr(), public, 443).via("banger0", "eth0"), "accept"},
		{"deny refuses tcp with a reset", tcp(a2.addr(), public, 443).via("banger0", "eth0"), "reset"},
		{"deny refuses udp as prohibited", udp(a2.addr(), public, 443).via("banger0", "eth0"), "prohibited"},
		{"allow reaches its set", tcp(b1.addr(), opened, 443).via("banger0", "eth0"), "accept"},
		{"allow refuses the rest", tcp(b1.addr(), "203.0.113.11", 443).via("banger0", "eth0"), "reset"},
		{"the LAN is refused to open", tcp(a1.addr(), lanPeer, 22).via("banger0", "eth0"), "reset"},
		{"guest_lan opens the mirror to open", tcp(a1.addr(), mirror, 80).via("banger0", "eth0"), "accept"},
		{"guest_lan does not lift deny", tcp(a2.addr(), mirror, 80).via("banger0", "eth0"), "reset"},
		{"guest_lan does not lift an allow list", tcp(b1.addr(), mirror, 80).via("banger0", "eth0"), "reset"},
		{"the metadata service is refused", tcp(a1.addr(), "169.254.169.254", 80).via("banger0", "eth0"), "reset"},
		{"multicast is refused", udp(a1.addr(), "239.255.255.250", 1900).via("banger0", "eth0"), "prohibited"},
		{"an address no guest has is refused", tcp("10.213.0.99", public, 443).via("banger0", "eth0"), "reset"},
		{"a guest's address from elsewhere is not a guest", tcp(a1.addr(), public, 443).via("eth1", "eth0"), "accept"},
		{"replies come back", tcp(public, a2.addr(), 40000).via("eth0", "banger0").with(reply), "accept"},
		{"nothing new comes in", tcp(public, a1.addr(), 22).via("eth0", "banger0"), "drop"},
		{"a published port comes in", tcp(public, a2.addr(), 80).via("eth0", "banger0").with(published), "accept"},
		{"one owner's guests reach each other through the gateway", tcp(a1.addr(), a2.addr(), 22).via("banger0", "banger0"), "accept"},
		{"owners apart through the gateway", tcp(a1.addr(), b1.addr(), 22).via("banger0", "banger0"), "reset"},
		{"owners apart, the other way", udp(b2.addr(), a2.addr(), 53).via("banger0", "banger0"), "prohibited"},
		{"another owner's published port is anyone's", tcp(a1.addr(), a2.addr(), 80).via("banger0", "banger0").with(published), "accept"},
		{"the host's other traffic is not banger's", tcp("192.168.1.7", public, 443).via("eth1", "eth0"), "accept"},
	} {
		if got := testHost.eval(t, ip, "forward", tt.p); got != tt.want {
			t.Errorf("%s: %s → %s, want %s", tt.name, tt.p, got, tt.want)
		}
	}
}

// A guest of one owner never reaches a guest of another through the
// gateway, by any protocol, whatever its policy; one of its own, it does.
func TestOwnersApartRouted(t *testing.T) {
	guests := []Guest{a1, a2, b1, b2}
	ip, _ := tables(t, testBridge(guests...))
	for _, from := range guests {
		for _, to := range guests {
			if from.VM == to.VM {
				continue
			}
			for _, p := range []packet{tcp(from.addr(), to.addr(), 22), udp(from.addr(), to.addr(), 53), ping(from.addr(), to.addr())} {
				got := testHost.eval(t, ip, "forward", p.via("banger0", "banger0"))
				if apart := from.Owner != to.Owner; apart != (got == "reset" || got == "prohibited") {
					t.Errorf("%s (uid %d) → %s (uid %d), %s: %s", from.VM, from.Owner, to.VM, to.Owner, p, got)
				}
			}
		}
	}
	// With one owner there is nothing to keep apart: no sets.
	if ip, br := tables(t, testBridge(a1, a2)); len(ip.Sets)+len(br.Sets) != 0 {
		t.Errorf("one owner's guests: sets %v %v", ip.Sets, br.Sets)
	}
}

// Of the host's own addresses, a guest reaches DNS and a ping on the
// bridge's address, and replies; nothing else, on any address of the
// host's, whatever its policy.
func TestInput(t *testing.T) {
	ip, _ := tables(t, testBridge(a1, a2, b1, b2))
	for _, g := range []Guest{a1, a2, b1, b2} {
		for _, dst := range []string{gw, hostLAN} {
			for _, port := range []uint16{22, 53, 80, 2222, 5353, 8080} {
				for _, p := range []packet{tcp(g.addr(), dst, port), udp(g.addr(), dst, port)} {
					want := "reset"
					if p.proto == unix.IPPROTO_UDP {
						want = "prohibited"
					}
					if dst == gw && port == 53 {
						want = "accept"
					}
					if got := testHost.eval(t, ip, "input", p.via("banger0", "")); got != want {
						t.Errorf("%s: %s: %s, want %s", g.VM, p, got, want)
					}
				}
			}
		}
		for _, tt := range []struct {
			p    packet
			want string
		}{
			{ping(g.addr(), gw), "accept"},
			{ping(g.addr(), hostLAN), "prohibited"},
			{packet{src: g.IP, dst: netip.MustParseAddr(gw), proto: unix.IPPROTO_ICMP, icmp: 13}, "prohibited"},
			{tcp(g.addr(), hostLAN, 22).with(reply), "accept"},
		} {
			if got := testHost.eval(t, ip, "input", tt.p.via("banger0", "")); got != tt.want {
				t.Errorf("%s: %s: %s, want %s", g.VM, tt.p, got, tt.want)
			}
		}
	}
	// The host's own traffic from elsewhere is not banger's to judge.
	if got := testHost.eval(t, ip, "input", tcp(lanPeer, hostLAN, 22).via("eth1", "")); got != "accept" {
		t.Errorf("ssh to the host from its LAN: %s", got)
	}
}

// A published port forwards to the guest that published it, and only
// on the addresses and protocol it was published on: "" is 127.0.0.1
// from the host only, 0.0.0.0 every address of the host's, and an
// address that one.
func TestPublishedPorts(t *testing.T) {
	guests := []Guest{a1, a2, b1, b2}
	ip, _ := tables(t, testBridge(guests...))
	for _, tt := range []struct {
		chain string
		p     packet
		want  string
	}{
		{"output", tcp("127.0.0.1", "127.0.0.1", 2222), "dnat 10.213.0.2:22"},
		{"output", tcp(hostLAN, hostLAN, 2222), "accept"},
		{"prerouting", tcp(lanPeer, hostLAN, 2222).via("eth1", ""), "accept"},
		{"prerouting", tcp(lanPeer, hostLAN, 8080).via("eth1", ""), "dnat 10.213.0.3:80"},
		{"prerouting", tcp(a1.addr(), gw, 8080).via("banger0", ""), "dnat 10.213.0.3:80"},
		{"output", tcp("127.0.0.1", "127.0.0.1", 8080), "dnat 10.213.0.3:80"},
		{"prerouting", udp(lanPeer, hostLAN, 8080).via("eth1", ""), "accept"},
		{"prerouting", tcp(a1.addr(), public, 8080).via("banger0", ""), "accept"},
		{"prerouting", udp(lanPeer, hostLAN, 5353).via("eth1", ""), "dnat 10.213.0.4:53"},
		{"output", udp(hostLAN, hostLAN, 5353), "dnat 10.213.0.4:53"},
		{"prerouting", tcp(lanPeer, hostLAN, 5353).via("eth1", ""), "accept"},
		{"prerouting", udp(a1.addr(), gw, 5353).via("banger0", ""), "accept"},
		{"prerouting", tcp(lanPeer, hostLAN, 9999).via("eth1", ""), "accept"},
	} {
		if got := testHost.eval(t, ip, tt.chain, tt.p); got != tt.want {
			t.Errorf("%s: %s: %s, want %s", tt.chain, tt.p, got, tt.want)
		}
	}
	// Whatever reaches which address of the host's, a port's translation
	// goes to its own guest.
	for _, g := range guests {
		for _, f := range g.Ports {
			for _, chain := range []string{"prerouting", "output"} {
				for _, dst := range []string{gw, hostLAN, "127.0.0.1", public} {
					p := tcp(lanPeer, dst, uint16(f.HostPort))
					if f.UDP() {
						p.proto = unix.IPPROTO_UDP
					}
					got := testHost.eval(t, ip, chain, p)
					if strings.HasPrefix(got, "dnat ") && got != fmt.Sprintf("dnat %s:%d", g.IP, f.GuestPort) {
						t.Errorf("%s's port %d: %s: %s", g.VM, f.HostPort, p, got)
					}
				}
			}
		}
	}
}

// The guests' traffic leaves with the host's address; between guests
// on the bridge it keeps theirs, but for a published port's, which
// comes back through the host.
func TestMasquerade(t *testing.T) {
	ip, _ := tables(t, testBridge(a1, b1))
	for _, tt := range []struct {
		p    packet
		want string
	}{
		{tcp(a1.addr(), public, 443).via("", "eth0"), "masquerade"},
		{tcp(a1.addr(), b1.addr(), 22).via("", "banger0"), "accept"},
		{tcp(a1.addr(), b1.addr(), 53).via("", "banger0").with(published), "masquerade"},
		{tcp("127.0.0.1", a1.addr(), 22).via("", "banger0"), "masquerade"},
		{tcp(hostLAN, public, 443).via("", "eth0"), "accept"},
	} {
		if got := testHost.eval(t, ip, "postrouting", tt.p); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.p, got, tt.want)
		}
	}
}

// On the bridge each tap speaks only as its guest (its MAC, its address,
// IPv4 and ARP), and a frame of one owner's guest reaches no other
// owner's, addressed to it or flooded; one of its own owner's, it does.
func TestBridgeTable(t *testing.T) {
	guests := []Guest{a1, a2, b1, b2}
	_, br := tables(t, testBridge(guests...))
	for _, tt := range []struct {
		name, chain string
		p           packet
		want        string
	}{
		{"as itself, to its owner's", "prerouting", tcp(a1.addr(), a2.addr(), 22).via("bg-id-a1", "").frame("02:b4:0a:d5:00:02", "02:b4:0a:d5:00:03"), "accept"},
		{"to the gateway", "prerouting", tcp(a1.addr(), gw, 53).via("bg-id-a1", "").frame("02:b4:0a:d5:00:02", "02:b4:0a:d5:00:01"), "accept"},
		{"as another's MAC", "prerouting", tcp(a1.addr(), public, 22).via("bg-id-a1", "").frame("02:b4:0a:d5:00:03", "02:b4:0a:d5:00:01"), "drop"},
		{"as another's address", "prerouting", tcp(a2.addr(), public, 22).via("bg-id-a1", "").frame("02:b4:0a:d5:00:02", "02:b4:0a:d5:00:01"), "drop"},
		{"ARP as itself", "prerouting", packet{ether: unix.ETH_P_ARP, src: a1.IP, dst: netip.MustParseAddr(gw)}.via("bg-id-a1", "").frame("02:b4:0a:d5:00:02", "ff:ff:ff:ff:ff:ff"), "accept"},
		{"ARP as the gateway", "prerouting", packet{ether: unix.ETH_P_ARP, src: netip.MustParseAddr(gw), dst: a2.IP}.via("bg-id-a1", "").frame("02:b4:0a:d5:00:02", "ff:ff:ff:ff:ff:ff"), "drop"},
		{"IPv6", "prerouting", packet{ether: unix.ETH_P_IPV6}.via("bg-id-a1", "").frame("02:b4:0a:d5:00:02", "33:33:00:00:00:01"), "drop"},
		{"a port not banger's", "prerouting", tcp(lanPeer, public, 22).via("eth1", "").frame("02:00:00:00:00:99", "02:00:00:00:00:98"), "accept"},
		{"a published port's, readdressed by br_netfilter", "forward", tcp(a1.addr(), b1.addr(), 53).via("bg-id-a1", "bg-id-b1").frame("02:b4:0a:d5:00:02", "02:b4:0a:d5:00:04"), "accept"},
		{"flooded to its owner's", "forward", packet{ether: unix.ETH_P_ARP, src: a1.IP, dst: a2.IP}.via("bg-id-a1", "bg-id-a2").frame("02:b4:0a:d5:00:02", "ff:ff:ff:ff:ff:ff"), "accept"},
		{"flooded to another owner's", "forward", packet{ether: unix.ETH_P_ARP, src: a1.IP, dst: b1.IP}.via("bg-id-a1", "bg-id-b1").frame("02:b4:0a:d5:00:02", "ff:ff:ff:ff:ff:ff"), "drop"},
	} {
		if got := testHost.eval(t, br, tt.chain, tt.p); got != tt.want {
			t.Errorf("%s: %s: %s, want %s", tt.name, tt.p, got, tt.want)
		}
	}
	for _, from := range guests {
		for _, to := range guests {
			if from.VM == to.VM {
				continue
			}
			want := "accept"
			if from.Owner != to.Owner {
				want = "drop"
			}
			p := tcp(from.addr(), to.addr(), 22).via(from.Tap, "").frame(from.MAC.String(), to.MAC.String())
			if got := testHost.eval(t, br, "prerouting", p); got != want {
				t.Errorf("%s → %s's MAC: %s, want %s", from.VM, to.VM, got, want)
			}
			p = udp(from.addr(), "255.255.255.255", 67).via(from.Tap, to.Tap).frame(from.MAC.String(), "ff:ff:ff:ff:ff:ff")
			if got := testHost.eval(t, br, "forward", p); got != want {
				t.Errorf("%s's broadcast out of %s's tap: %s, want %s", from.VM, to.VM, got, want)
			}
		}
	}
}

// The same guests make the same rules, whatever order an allow list's
// addresses come in.
func TestTablesAreStable(t *testing.T) {
	g := b1
	g.Allowed = []netip.Addr{netip.MustParseAddr("203.0.113.12"), netip.MustParseAddr(opened)}
	h := g
	h.Allowed = []netip.Addr{netip.MustParseAddr(opened), netip.MustParseAddr("203.0.113.12")}
	x, _ := tables(t, testBridge(a1, g))
	y, _ := tables(t, testBridge(a1, h))
	if fmt.Sprint(x.Sets[len(x.Sets)-1].Elems) != fmt.Sprint(y.Sets[len(y.Sets)-1].Elems) {
		t.Errorf("allow set's elements in the order given: %v, %v", x.Sets, y.Sets)
	}
}

// Write queues each table anew, its sets before the rules that look
// them up, which name each set by its batch ID as well as its name.
func TestWrite(t *testing.T) {
	c, err := nftables.New(nftables.WithTestDial(nil))
	if err != nil {
		t.Fatal(err)
	}
	ts := testBridge(a1, a2, b1, b2).Tables()
	if err := Write(c, ts...); err != nil {
		t.Fatal(err)
	}
	lookups := 0
	for _, tb := range ts {
		ids := map[string]uint32{}
		for _, s := range tb.Sets {
			if s.ID == 0 {
				t.Errorf("set %s got no batch ID", s.Name)
			}
			ids[s.Name] = s.ID
		}
		for _, r := range tb.Rules {
			for _, e := range r.Exprs {
				if l, ok := e.(*expr.Lookup); ok {
					lookups++
					if l.SetID == 0 || l.SetID != ids[l.SetName] {
						t.Errorf("a lookup of %s has set ID %d, the set %d", l.SetName, l.SetID, ids[l.SetName])
					}
				}
			}
		}
	}
	if lookups == 0 {
		t.Error("no lookups: owners of two uids and an allow list make some")
	}
}

func (p packet) with(f func(*packet)) packet { f(&p); return p }

func reply(p *packet) { p.established = true }

func published(p *packet) { p.dnat = true }

func (p packet) String() string {
	proto := map[byte]string{unix.IPPROTO_TCP: "tcp", unix.IPPROTO_UDP: "udp", unix.IPPROTO_ICMP: "icmp"}[p.proto]
	s := fmt.Sprintf("%s %s → %s:%d", proto, p.src, p.dst, p.dport)
	if p.iif != "" || p.oif != "" {
		s += fmt.Sprintf(" (%s → %s)", p.iif, p.oif)
	}
	return s
}
