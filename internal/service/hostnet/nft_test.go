package hostnet

import (
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"github.com/banger-dev/banger/internal/service/hostnet/nftrules"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/wire/api"
)

func TestEgressRules(t *testing.T) {
	for _, tt := range []struct {
		policy string
		want   nftrules.Egress
	}{
		{"", nftrules.EgressOpen},
		{"open", nftrules.EgressOpen},
		// learn only records: its guest goes where it likes.
		{"learn", nftrules.EgressOpen},
		{"deny", nftrules.EgressDeny},
		{"allow=a.test", nftrules.EgressAllow},
	} {
		e, err := ParseEgress(tt.policy)
		if err != nil {
			t.Fatal(err)
		}
		if got := egressRules(e); got != tt.want {
			t.Errorf("%q: %v, want %v", tt.policy, got, tt.want)
		}
	}
}

// The rules are made of the attached guests as the service holds them:
// in the order of their names, each with its tap, lease, owner, ports,
// policy and what its allow list opened.
func TestBridgeRules(t *testing.T) {
	s := New(Deps{Log: slog.New(slog.DiscardHandler), Config: Config{Bridge: "banger0", Subnet: netip.MustParsePrefix("10.213.0.7/24"),
		Open: []netip.Prefix{netip.MustParsePrefix("192.168.1.10/32")}}})
	allow, _ := ParseEgress("allow=a.test")
	learn, _ := ParseEgress("learn")
	port := api.PortForward{HostPort: 8080, GuestPort: 80}
	for _, g := range []struct {
		vm     string
		owner  uint32
		ip     string
		egress Egress
		ports  []api.PortForward
		opened []string
	}{
		{"zed", 1000, "10.213.0.3", learn, nil, nil},
		{"amy", 2000, "10.213.0.2", allow, []api.PortForward{port}, []string{"203.0.113.10", "203.0.113.9"}},
	} {
		a := &attached{spec: Spec{VM: g.vm, ID: "id-" + g.vm, Owner: g.owner, Ports: g.ports, Egress: g.egress},
			lease: store.Lease{VM: g.vm, IP: netip.MustParseAddr(g.ip), MAC: store.MACFor(netip.MustParseAddr(g.ip))},
			tap:   TapName("id-" + g.vm), allowed: map[netip.Addr]bool{}}
		for _, o := range g.opened {
			a.allowed[netip.MustParseAddr(o)] = true
		}
		s.guests[g.vm] = a
	}
	lan := []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")}
	b := s.bridgeRules(lan)
	if b.Name != "banger0" || b.Gateway != netip.MustParseAddr("10.213.0.1") || b.Subnet != netip.MustParsePrefix("10.213.0.0/24") ||
		!slices.Equal(b.Connected, lan) || !slices.Equal(b.Open, s.d.Config.Open) {
		t.Errorf("bridge %+v", b)
	}
	if len(b.Guests) != 2 || b.Guests[0].VM != "amy" || b.Guests[1].VM != "zed" {
		t.Fatalf("guests %+v, want amy then zed", b.Guests)
	}
	amy, zed := b.Guests[0], b.Guests[1]
	slices.SortFunc(amy.Allowed, netip.Addr.Compare)
	if amy.ID != "id-amy" || amy.Tap != "bg-id-amy" || amy.Owner != 2000 || amy.IP != netip.MustParseAddr("10.213.0.2") ||
		amy.MAC.String() != store.MACFor(amy.IP) || amy.Egress != nftrules.EgressAllow || !slices.Equal(amy.Ports, []api.PortForward{port}) ||
		!slices.Equal(amy.Allowed, []netip.Addr{netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("203.0.113.10")}) {
		t.Errorf("amy %+v", amy)
	}
	if zed.Egress != nftrules.EgressOpen || zed.Owner != 1000 || len(zed.Allowed) != 0 {
		t.Errorf("zed %+v", zed)
	}
}

// The guard's rules are made of its users in the order of their names,
// each with its VMM's uid, DNS port and policy.
func TestGuardRules(t *testing.T) {
	deny, _ := ParseEgress("deny")
	allow, _ := ParseEgress("allow=a.test")
	g := &Guard{UIDFrom: 1900000000, UIDCount: 16, Open: []netip.Prefix{netip.MustParsePrefix("192.168.1.10/32")}, users: map[string]*userGuest{
		"v2": {spec: Spec{VM: "v2", ID: "id2", Egress: allow}, uid: 1900000002, port: 40002, allowed: map[netip.Addr]bool{netip.MustParseAddr("203.0.113.10"): true}},
		"v1": {spec: Spec{VM: "v1", ID: "id1", Egress: deny}, uid: 1900000001, port: 40001, allowed: map[netip.Addr]bool{}},
	}}
	r := guardRules{connected: []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")}, resolvers: []netip.Addr{netip.MustParseAddr("192.0.2.53")}}
	got := g.table(r)
	want := nftrules.Guard{UIDFrom: 1900000000, UIDCount: 16, Connected: r.connected, Open: g.Open, Resolvers: r.resolvers, Users: []nftrules.User{
		{VM: "v1", ID: "id1", UID: 1900000001, DNSPort: 40001, Egress: nftrules.EgressDeny},
		{VM: "v2", ID: "id2", UID: 1900000002, DNSPort: 40002, Egress: nftrules.EgressAllow, Allowed: []netip.Addr{netip.MustParseAddr("203.0.113.10")}},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("table(r) = %+v\nwant %+v", got, want)
	}
}
