package hostnet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/wire/api"
)

// forwarder is banger's DNS server on the bridge's address: every guest
// lookup goes through it, answered only as the guest's egress policy
// allows, and under an allow list its answers open the guest's set.
type forwarder struct {
	udp, tcp *dns.Server
}

func (f *forwarder) close() {
	f.udp.Shutdown()
	f.tcp.Shutdown()
}

// startDNS serves on the gateway's port 53, UDP and TCP.
func (s *Service) startDNS(ctx context.Context) (*forwarder, error) {
	addr := net.JoinHostPort(s.d.Config.Gateway().String(), "53")
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return nil, fmt.Errorf("DNS forwarder on %s: %w", addr, err)
	}
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("DNS forwarder on %s: %w", addr, err)
	}
	h := &resolver{guest: s.guestAt, allow: s.allow, record: s.d.Store.RecordResolved, log: s.d.Log, upstream: s.d.Config.Upstream,
		public: s.publicFilter(), activity: s.d.Activity}
	if h.upstream == "" {
		h.upstream = systemResolver()
	}
	f := &forwarder{udp: &dns.Server{PacketConn: pc, Handler: h}, tcp: &dns.Server{Listener: ln, Handler: h}}
	go f.udp.ActivateAndServe()
	go f.tcp.ActivateAndServe()
	s.d.Log.Info("DNS forwarder up", "addr", addr, "upstream", h.upstream)
	return f, nil
}

// systemResolver is the first nameserver of /etc/resolv.conf ("" when
// none).
func systemResolver() string {
	f, err := os.Open("/etc/resolv.conf")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if w := strings.Fields(sc.Text()); len(w) >= 2 && w[0] == "nameserver" {
			if a, err := netip.ParseAddr(w[1]); err == nil {
				return net.JoinHostPort(a.String(), "53")
			}
		}
	}
	return ""
}

// resolver answers the guests' lookups, each by its guest's policy.
type resolver struct {
	// guest is the attached guest at an address.
	guest func(netip.Addr) (Spec, bool)
	// allow opens a guest's set to addresses; record counts a lookup.
	allow    func(vm string, addrs []netip.Addr) error
	record   func(ctx context.Context, vm, name string, addrs []netip.Addr) error
	log      *slog.Logger
	upstream string
	// public judges which of an allow list's answers open the set.
	public publicFilter
	// activity gets each lookup, allowed or refused (nil: not recorded).
	activity Recorder
}

// upstreamTimeout bounds one question to the upstream resolver.
const upstreamTimeout = 5 * time.Second

// ServeDNS answers a guest's question by its policy: refused to a
// stranger, NXDOMAIN for a name the policy denies (no upstream ever sees
// it), else the upstream's answer, which under an allow list opens the
// guest's set first, and under learn or allow is recorded.
func (h *resolver) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	reply := func(rcode int) {
		m := new(dns.Msg)
		m.SetRcode(r, rcode)
		w.WriteMsg(m)
	}
	spec, name, rcode := h.admit(w.RemoteAddr(), r)
	if spec.VM != "" && h.activity != nil {
		// Every question of a guest's, whatever the answer: the record
		// counts them by name and verdict, within its bound.
		ev := api.ActivityEvent{Kind: api.ActLookup, Action: "allowed", Via: api.ViaGuest, Host: name}
		if rcode == dns.RcodeNameError {
			ev.Action, ev.Detail = "refused", "by the egress policy "+spec.Egress.String()
		}
		h.activity(spec.VM, ev)
	}
	if rcode != dns.RcodeSuccess {
		reply(rcode)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), upstreamTimeout)
	defer cancel()
	resp, err := h.exchange(ctx, r)
	if err != nil {
		h.log.Warn("DNS upstream", "upstream", h.upstream, "name", name, "err", err)
		reply(dns.RcodeServerFailure)
		return
	}
	addrs := answered(resp)
	recorded := addrs
	if spec.Egress.Mode == EgressAllow {
		if recorded, err = h.open(spec.VM, name, addrs); err != nil {
			h.log.Warn("open the egress set", "vm", spec.VM, "name", name, "err", err)
			reply(dns.RcodeServerFailure)
			return
		}
	}
	if spec.Egress.Records() && (r.Question[0].Qtype == dns.TypeA || len(addrs) > 0) {
		// Past the store's bound lookups go unrecorded, quietly: a guest
		// that makes names up must not fill the log either.
		if err := h.record(ctx, spec.VM, name, recorded); err != nil && !errors.Is(err, store.ErrTooManyResolved) {
			h.log.Warn("record a lookup", "vm", spec.VM, "name", name, "err", err)
		}
	}
	resp.Id = r.Id
	w.WriteMsg(resp)
}

// admit says whose question r is and the name it asks, or the rcode it
// is answered with at once (success: ask the upstream).
func (h *resolver) admit(from net.Addr, r *dns.Msg) (spec Spec, name string, rcode int) {
	src, err := netip.ParseAddrPort(from.String())
	if err != nil {
		return Spec{}, "", dns.RcodeRefused
	}
	spec, ok := h.guest(src.Addr().Unmap())
	if !ok || len(r.Question) != 1 || r.Opcode != dns.OpcodeQuery {
		// Only attached guests are served, one plain question at a time.
		return Spec{}, "", dns.RcodeRefused
	}
	name = strings.ToLower(strings.TrimSuffix(r.Question[0].Name, "."))
	if !spec.Egress.Allows(name) {
		// NXDOMAIN, not a silent drop: a denied name answers at once, and
		// carries nothing out (no upstream ever sees it).
		return spec, name, dns.RcodeNameError
	}
	if h.upstream == "" {
		return spec, name, dns.RcodeServerFailure
	}
	return spec, name, dns.RcodeSuccess
}

// exchange asks the upstream, again over TCP when the answer over UDP
// came truncated.
func (h *resolver) exchange(ctx context.Context, r *dns.Msg) (*dns.Msg, error) {
	c := &dns.Client{Net: "udp"}
	resp, _, err := c.ExchangeContext(ctx, r, h.upstream)
	if err == nil && resp.Truncated {
		c.Net = "tcp"
		resp, _, err = c.ExchangeContext(ctx, r, h.upstream)
	}
	return resp, err
}

// answered are the IPv4 addresses of an answer's A records.
func answered(resp *dns.Msg) []netip.Addr {
	var addrs []netip.Addr
	for _, rr := range resp.Answer {
		if a, ok := rr.(*dns.A); ok {
			if ip, ok := netip.AddrFromSlice(a.A.To4()); ok {
				addrs = append(addrs, ip)
			}
		}
	}
	return addrs
}

// open opens an allow list's set to the public ones of addrs, what name
// resolved to, and returns them. The answer still goes to the guest as
// it came: the set, not the answer, is what holds the guest (it may not
// reach an address the set lacks, however it learnt it), and an answer
// rewritten without some addresses would only make a refused connection
// look like a missing name. What opened is also the lookup's record: it
// opens the set again after a daemon restart, and vm egress says it is
// what the guest may reach.
func (h *resolver) open(vm, name string, addrs []netip.Addr) ([]netip.Addr, error) {
	open, refused, err := h.public.split(addrs)
	if err != nil {
		return nil, err
	}
	for a, why := range refused {
		h.log.Info("an allowed name resolved to an address an allow list never opens", "vm", vm, "name", name, "addr", a, "why", why)
	}
	// Before the answer: the guest connects as soon as it has it.
	if err := h.allow(vm, open); err != nil {
		return nil, err
	}
	return open, nil
}
