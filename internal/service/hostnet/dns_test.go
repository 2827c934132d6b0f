package hostnet

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"github.com/banger-dev/banger/internal/wire/api"
)

// upstream serves a zone on 127.0.0.1 and counts the names it is asked.
// A name's value is its addresses, comma-separated.
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
		if ips, ok := zone[r.Question[0].Name]; ok {
			for _, ip := range strings.Split(ips, ",") {
				rr, _ := dns.NewRR(r.Question[0].Name + " 60 IN A " + ip)
				m.Answer = append(m.Answer, rr)
			}
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
		public: publicFilter{subnet: netip.MustParsePrefix("10.213.0.0/24"), own: func() ([]netip.Addr, error) { return nil, nil }},
	}
	sh, addr := serveResolver(t, h)
	ask := func(name string) (int, []string) {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		r, err := sh.exchange(m, addr)
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

// An allow list opens only public addresses, however its names resolve:
// a name whose DNS answers with the host's loopback, its network, a
// link-local metadata service, the bridge or the host's own address
// (DNS rebinding) opens none of them. The answer still reaches the
// guest whole; the refusal is logged with the VM and the name; the
// record holds what opened.
func TestResolverOpensOnlyPublicAddresses(t *testing.T) {
	zone := map[string]string{
		"lo.test.":     "127.0.0.1",
		"lan.test.":    "10.1.2.3",
		"meta.test.":   "169.254.169.254",
		"cgnat.test.":  "100.64.0.1",
		"zero.test.":   "0.0.0.1",
		"bridge.test.": "10.213.0.1",
		"mirror.test.": "192.168.1.10",
		"self.test.":   "198.51.100.7",
		"bench.test.":  "198.18.0.10",
		"mixed.test.":  "203.0.113.10,192.168.1.1,127.0.0.53,203.0.113.11",
	}
	up, _ := upstream(t, zone)
	var allowed []netip.Addr
	var recorded []call
	var logs strings.Builder
	var logMu sync.Mutex
	policy, _ := ParseEgress("allow=*.test")
	h := &resolver{
		guest: func(netip.Addr) (Spec, bool) { return Spec{VM: "g", Egress: policy}, true },
		allow: func(_ string, addrs []netip.Addr) error {
			allowed = append(allowed, addrs...)
			return nil
		},
		record: func(_ context.Context, vm, name string, addrs []netip.Addr) error {
			recorded = append(recorded, call{vm, name, addrs})
			return nil
		},
		log:      slog.New(slog.NewTextHandler(lockedWriter{&logs, &logMu}, nil)),
		upstream: up,
		public: publicFilter{
			subnet: netip.MustParsePrefix("10.213.0.0/24"),
			// guest_lan opens a mirror on the LAN.
			open: []netip.Prefix{netip.MustParsePrefix("192.168.1.10/32")},
			own: func() ([]netip.Addr, error) {
				return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("198.51.100.7")}, nil
			},
		},
	}
	sh, addr := serveResolver(t, h)
	for _, tt := range []struct {
		name string
		open []string
		why  string
	}{
		{"lo.test", nil, "loopback"},
		{"lan.test", nil, "private"},
		{"meta.test", nil, "link-local"},
		{"cgnat.test", nil, "carrier-grade NAT"},
		{"zero.test", nil, "this network"},
		{"bridge.test", nil, "banger's bridge subnet"},
		{"mirror.test", []string{"192.168.1.10"}, ""},
		{"self.test", nil, "one of the host's own addresses"},
		// The e2e suite's outside internet: benchmarking addresses.
		{"bench.test", []string{"198.18.0.10"}, ""},
		{"mixed.test", []string{"203.0.113.10", "203.0.113.11"}, "private"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			allowed, recorded = nil, nil
			logMu.Lock()
			logs.Reset()
			logMu.Unlock()
			m := new(dns.Msg)
			m.SetQuestion(tt.name+".", dns.TypeA)
			r, err := sh.exchange(m, addr)
			if err != nil {
				t.Fatal(err)
			}
			var answered []string
			for _, rr := range r.Answer {
				answered = append(answered, rr.(*dns.A).A.String())
			}
			if r.Rcode != dns.RcodeSuccess || strings.Join(answered, ",") != zone[tt.name+"."] {
				t.Errorf("answer: rcode %d, %v; want the upstream's %s", r.Rcode, answered, zone[tt.name+"."])
			}
			var opened []string
			for _, a := range allowed {
				opened = append(opened, a.String())
			}
			if !slices.Equal(opened, tt.open) {
				t.Errorf("the set opened to %v, want %v", opened, tt.open)
			}
			if len(recorded) != 1 || recorded[0].name != tt.name || len(recorded[0].addrs) != len(tt.open) {
				t.Errorf("recorded %+v, want %s with %v", recorded, tt.name, tt.open)
			}
			logMu.Lock()
			out := logs.String()
			logMu.Unlock()
			if tt.why != "" && (!strings.Contains(out, "level=INFO") || !strings.Contains(out, "vm=g") || !strings.Contains(out, "name="+tt.name) || !strings.Contains(out, tt.why)) {
				t.Errorf("log: %s; want an INFO line with the vm, the name and %q", out, tt.why)
			}
		})
	}

	// When the host's addresses cannot be read, nothing opens.
	h.public.own = func() ([]netip.Addr, error) { return nil, errors.New("no netlink") }
	allowed = nil
	m := new(dns.Msg)
	m.SetQuestion("bench.test.", dns.TypeA)
	if r, err := sh.exchange(m, addr); err != nil || r.Rcode != dns.RcodeServerFailure || len(allowed) != 0 {
		t.Errorf("without the host's addresses: %v, %v, opened %v; want SERVFAIL, nothing opened", r, err, allowed)
	}
}

// syncHandler serves one query at a time, and exchange syncs with it
// before and after each query: what a test sets for the handler is set
// before it runs, what the handler records is recorded before the test
// reads it. (The exchange is that order already, but over a socket, which
// the race detector cannot see.)
// serveResolver serves h on 127.0.0.1 (UDP) until the test ends, and
// returns its handler, to ask through, and its address.
func serveResolver(t *testing.T, h dns.Handler) (*syncHandler, string) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sh := &syncHandler{h: h}
	srv := &dns.Server{PacketConn: pc, Handler: sh}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return sh, pc.LocalAddr().String()
}

type syncHandler struct {
	mu sync.Mutex
	h  dns.Handler
}

func (s *syncHandler) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.h.ServeDNS(w, r)
}

func (s *syncHandler) exchange(m *dns.Msg, addr string) (*dns.Msg, error) {
	s.sync()
	r, _, err := new(dns.Client).Exchange(m, addr)
	s.sync()
	return r, err
}

// sync waits for the handler to be done with what it was doing.
func (s *syncHandler) sync() {
	s.mu.Lock()
	//lint:ignore SA2001 the section is empty on purpose: a sync point
	s.mu.Unlock()
}

type lockedWriter struct {
	b  *strings.Builder
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// TestResolverRecordsActivity: every question of a guest's goes on its
// activity record, allowed or refused by its policy; a stranger's does
// not (it is no guest's).
func TestResolverRecordsActivity(t *testing.T) {
	up, _ := upstream(t, map[string]string{"a.test.": "203.0.113.10"})
	policy, _ := ParseEgress("allow=a.test")
	var mu sync.Mutex
	var got []string
	h := &resolver{
		guest: func(ip netip.Addr) (Spec, bool) {
			return Spec{VM: "g", Egress: policy}, ip == netip.MustParseAddr("127.0.0.1")
		},
		allow:  func(string, []netip.Addr) error { return nil },
		record: func(context.Context, string, string, []netip.Addr) error { return nil },
		log:    slog.New(slog.DiscardHandler), upstream: up,
		public: publicFilter{subnet: netip.MustParsePrefix("10.213.0.0/24"), own: func() ([]netip.Addr, error) { return nil, nil }},
		activity: func(vm string, ev api.ActivityEvent) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, vm+" "+ev.Kind+" "+ev.Action+" "+ev.Host+" "+ev.Via)
		},
	}
	sh, addr := serveResolver(t, h)
	for _, name := range []string{"a.test.", "B.Test.", "a.test."} {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		if _, err := sh.exchange(m, addr); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"g lookup allowed a.test guest", "g lookup refused b.test guest", "g lookup allowed a.test guest"}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, want) {
		t.Errorf("recorded %q, want %q", got, want)
	}
}
