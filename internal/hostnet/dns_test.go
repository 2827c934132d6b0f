package hostnet

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// upstream serves a zone on 127.0.0.1 and counts the names it is asked.
func upstream(t *testing.T, zone map[string]string) (addr string, asked func() []string) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var names []string
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		mu.Lock()
		names = append(names, r.Question[0].Name)
		mu.Unlock()
		m := new(dns.Msg)
		m.SetReply(r)
		if ip, ok := zone[r.Question[0].Name]; ok {
			rr, _ := dns.NewRR(r.Question[0].Name + " 60 IN A " + ip)
			m.Answer = append(m.Answer, rr)
		} else {
			m.SetRcode(r, dns.RcodeNameError)
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(names)
	}
}

type call struct {
	vm, name string
	addrs    []netip.Addr
}

// The forwarder answers a guest by its policy: a name it may not look up
// is NXDOMAIN and never reaches the upstream; an allowed one opens the
// guest's set before the answer; learn records; an address no guest has
// is refused.
func TestResolver(t *testing.T) {
	up, asked := upstream(t, map[string]string{"a.test.": "203.0.113.10", "b.test.": "203.0.113.20"})
	var policy Egress
	known := true
	var allowed, recorded []call
	h := &resolver{
		guest: func(ip netip.Addr) (Spec, bool) {
			return Spec{VM: "g", Egress: policy}, known && ip == netip.MustParseAddr("127.0.0.1")
		},
		allow: func(vm string, addrs []netip.Addr) error {
			allowed = append(allowed, call{vm: vm, addrs: addrs})
			return nil
		},
		record: func(_ context.Context, vm, name string, addrs []netip.Addr) error {
			recorded = append(recorded, call{vm, name, addrs})
			return nil
		},
		log: slog.New(slog.DiscardHandler), upstream: up,
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: h}
	go srv.ActivateAndServe()
	defer srv.Shutdown()
	ask := func(name string) (int, []string) {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		r, _, err := new(dns.Client).Exchange(m, pc.LocalAddr().String())
		if err != nil {
			t.Fatalf("ask %s: %v", name, err)
		}
		var ips []string
		for _, rr := range r.Answer {
			ips = append(ips, rr.(*dns.A).A.String())
		}
		return r.Rcode, ips
	}
	a := netip.MustParseAddr("203.0.113.10")

	policy, _ = ParseEgress("deny")
	if rc, _ := ask("a.test."); rc != dns.RcodeNameError || len(asked()) != 0 {
		t.Errorf("deny: rcode %d, upstream asked %v", rc, asked())
	}

	policy, _ = ParseEgress("allow=a.test")
	if rc, ips := ask("a.test."); rc != dns.RcodeSuccess || !slices.Equal(ips, []string{"203.0.113.10"}) {
		t.Errorf("allow: a.test: %d %v", rc, ips)
	}
	if rc, _ := ask("B.test."); rc != dns.RcodeNameError || slices.Contains(asked(), "B.test.") {
		t.Errorf("allow: b.test: rcode %d, upstream asked %v", rc, asked())
	}
	if len(allowed) != 1 || allowed[0].vm != "g" || !slices.Equal(allowed[0].addrs, []netip.Addr{a}) {
		t.Errorf("set opened with %+v", allowed)
	}

	policy, _ = ParseEgress("learn")
	recorded = nil
	ask("a.test.")
	ask("nope.test.")
	if len(recorded) != 2 || recorded[0].name != "a.test" || !slices.Equal(recorded[0].addrs, []netip.Addr{a}) || recorded[1].name != "nope.test" || len(recorded[1].addrs) != 0 {
		t.Errorf("learn recorded %+v", recorded)
	}

	policy, recorded = Egress{Mode: EgressOpen}, nil
	if rc, _ := ask("b.test."); rc != dns.RcodeSuccess || len(recorded) != 0 {
		t.Errorf("open: rcode %d, recorded %+v", rc, recorded)
	}

	known = false
	if rc, _ := ask("a.test."); rc != dns.RcodeRefused {
		t.Errorf("a stranger: rcode %d, want refused", rc)
	}
}
